//! How many challenge rounds a landmark sustains: a landmark and a responder on loopback, each
//! connection running the protocol's full 64 rounds (greeting, hello, 64 timed challenges and
//! Ed25519 answers, every answer verified, the outcome line). Rounds per second = 64 / time.
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
}

criterion_group!(benches, bench);
criterion_main!(benches);
