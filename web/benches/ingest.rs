//! Ingest over loopback: a real `serve` on 127.0.0.1 and blocking HTTP clients.
//! 1. batched: 64 concurrent clients, each with its own enrolled key, POSTing batches of 100
//!    pre-signed attestation-sized records — entries/s;
//! 2. single: one envelope per request, 1,000 requests/s in all from the same 64 clients
//!    (each paced at 1,000/64 per second) — latency p50/p99.
//!
//! Every client signs its requests with its own enrolled key, as agents do; the server's
//! per-key rate limit (default 200 requests/s) applies.
//!
//! `CHIPLEDGER_BENCH_ENTRIES` sets the batched total (default 64,000).
//! Run: `cargo bench -p chipledger-web --bench ingest`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use chipledger_client::{Credential, HttpLogClient};
use chipledger_domain::fingerprint::GpuUuid;
use chipledger_domain::identify::Severity;
use chipledger_domain::keys::{SigningKey, VerifierKey};
use chipledger_domain::log::{Clock, LogClient};
use chipledger_domain::records::{sign_record, Annotation, AnnotationTarget, KeyEnrollment, Role, FORMAT_VERSION};
use chipledger_ledger::{Ledger, SystemClock};
use chipledger_web::ServerConfig;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let total: usize = std::env::var("CHIPLEDGER_BENCH_ENTRIES").ok().and_then(|v| v.parse().ok()).unwrap_or(64_000);
    let clients = 64;
    let batch = 100;
    let dir = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (ledger, info) = Ledger::init(dir.path(), "bench.example/log", clock.clone(), &mut rand_core::OsRng).unwrap();
    let admin = SigningKey::from_pkcs8_pem(&std::fs::read_to_string(&info.admin_key_path).unwrap()).unwrap();
    let seed = |i: usize| [i as u8 + 1; 32];
    let keys: Vec<SigningKey> = (0..clients).map(|i| SigningKey::from_seed(&seed(i))).collect();
    let now = clock.now();
    let enrollments: Vec<Vec<u8>> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let e = KeyEnrollment {
                format_version: FORMAT_VERSION,
                counter: 2 + i as u64,
                issued_at: now,
                key_id: k.key_id(),
                verifier_key: VerifierKey::new(&format!("auditor{i}"), k.public_key()).unwrap().to_string(),
                role: Role::Auditor,
                host: None,
                valid_from: now - time::Duration::days(1),
                valid_until: None,
                site: None,
            };
            sign_record(&e, &admin).unwrap().to_json()
        })
        .collect();
    ledger.append(&enrollments).unwrap();
    let uuid = GpuUuid::parse("GPU-34bf77d1-c686-6821-79a8-32d326c5039c").unwrap();
    // ~900-byte envelopes, about the size of a one-GPU attestation's summary.
    let text = "x".repeat(400);
    let sign = |key: &SigningKey, counter: u64| -> Vec<u8> {
        let a = Annotation {
            format_version: FORMAT_VERSION,
            counter,
            written_at: now,
            target: AnnotationTarget::Gpu { uuid: uuid.clone() },
            severity: Severity::Info,
            text: text.clone(),
            resolves_serial: None,
            settles_history: false,
        };
        sign_record(&a, key).unwrap().to_json()
    };
    let per_client = total / clients;
    let per_client_single = 32u64;
    let work: Vec<Vec<Vec<u8>>> = keys.iter().map(|k| (1..=per_client as u64).map(|c| sign(k, c)).collect()).collect();
    let single: Vec<Vec<Vec<u8>>> =
        keys.iter().map(|k| (1..=per_client_single).map(|c| sign(k, per_client as u64 + c)).collect()).collect();
    let client =
        |url: &str, i: usize| HttpLogClient::new(url).with_credential(Credential::Key(SigningKey::from_seed(&seed(i))));
    let envelope_bytes = work[0][0].len();

    let ledger = Arc::new(ledger);
    let (tx, rx) = std::sync::mpsc::channel();
    let server_ledger = ledger.clone();
    std::thread::spawn(move || {
        chipledger_web::serve(server_ledger, "127.0.0.1:0", ServerConfig::default(), |addr| tx.send(addr).unwrap())
            .unwrap();
    });
    let addr = rx.recv().unwrap();
    let url = format!("http://{addr}");

    let start = Instant::now();
    std::thread::scope(|s| {
        for (i, chunk) in work.iter().enumerate() {
            let url = url.clone();
            s.spawn(move || {
                let client = client(&url, i);
                for b in chunk.chunks(batch) {
                    client.submit(b).unwrap();
                }
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    println!(
        "batched: {} entries ({envelope_bytes}-byte envelopes) from {clients} clients in batches of {batch}: {:.2} s = {:.0} entries/s",
        per_client * clients,
        secs,
        (per_client * clients) as f64 / secs
    );

    // Each client sends one envelope every 64 ms, the clients offset by 1 ms: 1,000 requests/s.
    let pace = Duration::from_millis(clients as u64);
    let t0 = Instant::now() + Duration::from_millis(50);
    let mut lat: Vec<Duration> = std::thread::scope(|s| {
        let handles: Vec<_> = single
            .iter()
            .enumerate()
            .map(|(i, envs)| {
                let url = url.clone();
                s.spawn(move || {
                    let c = client(&url, i);
                    let mut lat = Vec::with_capacity(envs.len());
                    for (n, e) in envs.iter().enumerate() {
                        let due = t0 + Duration::from_millis(i as u64) + pace * n as u32;
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                        let s = Instant::now();
                        c.submit(std::slice::from_ref(e)).unwrap();
                        lat.push(s.elapsed());
                    }
                    lat
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let achieved = lat.len() as f64 / t0.elapsed().as_secs_f64();
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)].as_secs_f64() * 1000.0;
    println!(
        "single: {} requests from {clients} clients paced at 1,000/s in all (achieved {achieved:.0}/s): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        lat.len(),
        p(0.50),
        p(0.99),
        p(1.0)
    );
}
