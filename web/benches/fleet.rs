//! The dashboard at fleet scale: 10,000 GPUs (1,250 eight-GPU H800 hosts, each attested by its
//! own enrolled agent through the real Attestor from a synthetic dump made of the shipped one),
//! served through the router in-process, so the times are server time:
//! - cold: the first fleet page (reads and checks every attestation, classifies, verdicts);
//! - warm: the fleet page again (the fleet is cached per checkpoint), a filtered and sorted page,
//!   the CSV export of all 10,000 rows, `/metrics`;
//! - after a host re-attests: the page reads only the new entries;
//! - with location proofs (three landmarks × every host): the first page after they were
//!   appended (reads them, judges every host), the page again, the CSV export, a GPU's page
//!   with its host's proofs and the map.
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
use chipledger_domain::keys::{SigningKey, VerifierKey};
use chipledger_domain::location::Coord;
use chipledger_domain::location_proof::{answer, LocatedSubject, LocationProof, ProofHeader, Round};
use chipledger_domain::log::Clock;
use chipledger_domain::records::{sign_record, KeyEnrollment, Role, Site, FORMAT_VERSION};
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

    // Three landmarks each time every host once (three rounds): an hour of hourly answers.
    let landmarks = [
        ("fra-1", "50.1109,8.6821", 500_000u64),
        ("sin-1", "1.2966,103.7764", 95_000_000),
        ("iad-1", "39.0438,-77.4874", 46_000_000),
    ];
    let setup = Instant::now();
    let measured_at = clock.now() - time::Duration::minutes(10);
    for (n, (name, site, rtt_ns)) in landmarks.iter().enumerate() {
        let key = SigningKey::generate(&mut rand_core::OsRng);
        let admin_counter = 2 + (hosts + 100 + n) as u64;
        ledger.append(&[landmark_enrollment(&built.admin, admin_counter, &key, name, site)]).unwrap();
        let proofs: Vec<Vec<u8>> = (0..hosts)
            .map(|h| {
                let host = synthetic_fleet::host_name(h);
                let agent = synthetic_fleet::agent_key(h);
                let rounds = (0..3u8)
                    .map(|i| {
                        let mut nonce = [i; 32];
                        nonce[..8].copy_from_slice(&(h as u64).to_le_bytes());
                        let rtt_ns = rtt_ns + u64::from(i) * 20_000 + (h as u64 % 97) * 1_000;
                        Round { nonce: hex::encode(nonce), rtt_ns, answer: answer(&agent, name, &host, &nonce) }
                    })
                    .collect();
                let header = ProofHeader {
                    counter: 1 + h as u64,
                    measured_at,
                    landmark: name.to_string(),
                    landmark_at: Coord::parse(site).unwrap(),
                    floor_ns: 0,
                };
                let subject = LocatedSubject { host, key_id: agent.key_id(), gpus: vec![] };
                sign_record(&LocationProof::new(header, subject, rounds), &key).unwrap().to_json()
            })
            .collect();
        for chunk in proofs.chunks(500) {
            ledger.append(chunk).unwrap();
        }
    }
    println!(
        "location proofs: {} landmarks x {hosts} hosts appended in {:.1} s",
        landmarks.len(),
        setup.elapsed().as_secs_f64()
    );
    let (first, _) = get("/");
    println!(
        "fleet page, first after the proofs (reads {} proofs, judges every host): {:.1} ms",
        landmarks.len() * hosts,
        ms(first)
    );
    let rows: serde_json::Value = {
        let req = Request::builder()
            .uri("/fleet.json?q=hgx-0000")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        let app = app.clone();
        let body = rt.block_on(async move { app.oneshot(req).await.unwrap().into_body().collect().await.unwrap() });
        serde_json::from_slice(&body.to_bytes()).unwrap()
    };
    let uuid = rows[0]["uuid"].as_str().unwrap().to_string();
    println!("  (hgx-0000: {})", rows[0]["location"]);
    let gpu_page = format!("/gpus/{uuid}");
    for (what, uri) in [
        ("fleet page, warm, with locations", "/"),
        ("CSV export of every row, with locations", "/fleet.csv"),
        ("a GPU's page with its host's proofs and the map", gpu_page.as_str()),
    ] {
        let mut times: Vec<Duration> = (0..15).map(|_| get(uri).0).collect();
        times.sort();
        println!("{what}: median {:.1} ms, max {:.1} ms ({} bytes)", ms(times[7]), ms(times[14]), get(uri).1);
    }
}

/// An admin-signed enrollment of landmark `name` at its surveyed `site`.
fn landmark_enrollment(admin: &SigningKey, counter: u64, key: &SigningKey, name: &str, site: &str) -> Vec<u8> {
    let now = SystemClock.now();
    let e = KeyEnrollment {
        format_version: FORMAT_VERSION,
        counter,
        issued_at: now,
        key_id: key.key_id(),
        verifier_key: VerifierKey::new(name, key.public_key()).unwrap().to_string(),
        role: Role::Landmark,
        host: Some(name.to_string()),
        valid_from: now - time::Duration::days(1),
        valid_until: None,
        site: Some(Site { at: Coord::parse(site).unwrap(), operator: "bench".into(), country: None, floor_ns: 0 }),
    };
    sign_record(&e, admin).unwrap().to_json()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
