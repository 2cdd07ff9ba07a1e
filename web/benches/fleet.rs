//! The dashboard at fleet scale: 10,000 GPUs (1,250 eight-GPU H800 hosts, each attested by its
//! own enrolled agent through the real Attestor from a synthetic dump made of the shipped one),
//! served through the router in-process, so the times are server time:
//! - cold: the first fleet page (reads and checks every attestation, classifies, verdicts);
//! - warm: the fleet page again (the fleet is cached per checkpoint), a filtered and sorted page,
//!   the CSV export of all 10,000 rows, `/metrics`.
//!
//! `CHIPLEDGER_BENCH_HOSTS` sets the number of hosts (default 1,250).
//! Run: `cargo bench -p chipledger-web --bench fleet`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_debug_implementations)]

#[path = "../../benches/support/synthetic_fleet.rs"]
mod synthetic_fleet;

#[path = "../../agent/tests/agent/synth.rs"]
#[allow(dead_code)] // the benchmark uses the text dump only
mod synth;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use chipledger_domain::keys::SigningKey;
use chipledger_domain::log::Clock;
use chipledger_domain::records::Role;
use chipledger_ledger::{Ledger, LedgerConfig, SystemClock};
use chipledger_web::{router, ServerConfig};
use http_body_util::BodyExt;
use tower::ServiceExt;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let hosts: usize = std::env::var("CHIPLEDGER_BENCH_HOSTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1250);
    let dir = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let h800 = std::fs::read_to_string(format!(
        "{}/../agent/tests/data/nvidia-smi/h800-sxm5-80gb-liguodongiot-llm-action.txt",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let setup = Instant::now();
    let board = synth::hgx_text(&h800, 8);
    let built = synthetic_fleet::build(dir.path(), hosts, &board, &[]);
    let ledger = Arc::new(Ledger::open(dir.path(), LedgerConfig::default(), clock.clone()).unwrap());
    let (_, token) = ledger.create_token("bench", Role::Auditor, &mut rand_core::OsRng).unwrap();
    let token = token.reveal();
    let gpus = ledger.inventory(chipledger_domain::log::AsOf::Latest).unwrap().len();
    println!(
        "setup: {hosts} hosts, {gpus} GPUs, {} log entries in {:.1} s",
        ledger.size(),
        setup.elapsed().as_secs_f64()
    );

    let app = router(ledger.clone(), ServerConfig { rate_per_second: 1e9, rate_burst: 1e9, ..ServerConfig::default() });
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let get = |uri: &str| -> (Duration, usize) {
        let req =
            Request::builder().uri(uri).header("authorization", format!("Bearer {token}")).body(Body::empty()).unwrap();
        let app = app.clone();
        rt.block_on(async move {
            let t = Instant::now();
            let r = app.oneshot(req).await.unwrap();
            assert!(r.status().is_success(), "{uri}: {}", r.status());
            let body = r.into_body().collect().await.unwrap().to_bytes();
            (t.elapsed(), body.len())
        })
    };
    // For profiling the cold path: CHIPLEDGER_BENCH_COLD_REPEAT=N reads the whole fleet N times.
    let repeat: usize = std::env::var("CHIPLEDGER_BENCH_COLD_REPEAT").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    for _ in 0..repeat {
        let fresh =
            router(ledger.clone(), ServerConfig { rate_per_second: 1e9, rate_burst: 1e9, ..ServerConfig::default() });
        let req =
            Request::builder().uri("/").header("authorization", format!("Bearer {token}")).body(Body::empty()).unwrap();
        rt.block_on(async move { fresh.oneshot(req).await.unwrap() });
    }
    let (cold, bytes) = get("/");
    println!("fleet page, cold (reads and checks {gpus} GPUs' attestations): {:.1} ms, {bytes} bytes", ms(cold));
    for (what, uri) in [
        ("fleet page, warm (first 500 of all rows)", "/"),
        ("fleet page, warm, filtered + sorted", "/?sku=H800-SXM5-80GB&q=hgx-01&sort=serial&dir=desc"),
        ("fleet page, warm, page 20", "/?page=20"),
        ("CSV export of every row", "/fleet.csv"),
        ("/metrics", "/metrics"),
    ] {
        let mut times: Vec<Duration> = (0..15).map(|_| get(uri).0).collect();
        times.sort();
        println!("{what}: median {:.1} ms, max {:.1} ms ({} bytes)", ms(times[7]), ms(times[14]), get(uri).1);
    }
    // A host re-attests (8 GPUs, new entries) between page loads: the next page reads only them.
    let mut times = Vec::new();
    for i in 0..5 {
        let key = SigningKey::generate(&mut rand_core::OsRng);
        let h = hosts + i;
        let name = synthetic_fleet::host_name(h);
        ledger.append(&[synthetic_fleet::enrollment(&built.admin, 2 + h as u64, &key, Role::Agent, &name)]).unwrap();
        synthetic_fleet::attest_host(dir.path(), &built.info, &board, h, key);
        times.push(get("/").0);
    }
    times.sort();
    println!(
        "fleet page after a new 8-GPU attestation (reads only the new entries): median {:.1} ms, max {:.1} ms",
        ms(times[2]),
        ms(times[4])
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
