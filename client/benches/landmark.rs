//! How many challenge rounds a landmark sustains: a landmark and a responder on loopback, each
//! connection running the protocol's full 64 rounds (greeting, hello, 64 timed challenges and
//! Ed25519 answers, every answer verified, the outcome line). Rounds per second = 64 / time.
//!
//! Also prints the loopback floor: the least round trip of 10 rounds, as a landmark measures it
//! (the figure: ≤ 0.2 ms, ≤ 30 km of radius).
//!
//! Run: `cargo bench -p chipledger-client --bench landmark`.

#![allow(clippy::unwrap_used, missing_debug_implementations)]

use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use chipledger_client::locate::{challenge, respond, send_outcome, Outcome};
use chipledger_domain::keys::SigningKey;
use chipledger_domain::location_proof::MAX_ROUNDS;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn bench(c: &mut Criterion) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // The landmark: one thread, measuring connection after connection.
    std::thread::spawn(move || {
        let mut rng = rand_core::OsRng;
        for mut stream in listener.incoming().flatten() {
            let m = challenge(&mut stream, "bench-landmark", MAX_ROUNDS, Duration::from_secs(5), &mut rng).unwrap();
            let min = m.rounds.iter().map(|r| r.rtt_ns).min();
            let outcome = Outcome { ok: true, index: Some(0), min_rtt_ns: min, bound_km: None, error: None };
            send_outcome(&mut stream, &outcome).unwrap();
        }
    });
    let key = SigningKey::generate(&mut rand_core::OsRng);
    let mut group = c.benchmark_group("landmark");
    group.throughput(Throughput::Elements(MAX_ROUNDS as u64));
    group.bench_function("64 challenge rounds over loopback, answers verified", |b| {
        b.iter(|| {
            let mut stream = TcpStream::connect(addr).unwrap();
            respond(&mut stream, &key, "bench-host", &[], Duration::from_secs(5)).unwrap()
        })
    });
    group.finish();
    // The floor a landmark measures over loopback: the least of 10 rounds, five connections.
    let floor = (0..5)
        .map(|_| {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let lm = std::thread::spawn(move || {
                let (mut stream, _) = listener.accept().unwrap();
                let m = challenge(&mut stream, "floor", 10, Duration::from_secs(5), &mut rand_core::OsRng).unwrap();
                let min = m.rounds.iter().map(|r| r.rtt_ns).min();
                let outcome = Outcome { ok: true, index: None, min_rtt_ns: min, bound_km: None, error: None };
                send_outcome(&mut stream, &outcome).unwrap();
                min.unwrap()
            });
            let mut stream = TcpStream::connect(addr).unwrap();
            respond(&mut stream, &key, "bench-host", &[], Duration::from_secs(5)).unwrap();
            lm.join().unwrap()
        })
        .collect::<Vec<_>>();
    let worst = *floor.iter().max().unwrap();
    println!(
        "landmark: loopback floor, least of 10 rounds, over 5 connections: {:?} ns (worst {:.1} us = {:.1} km)",
        floor,
        worst as f64 / 1e3,
        chipledger_domain::location::bound_km(worst, 0)
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
