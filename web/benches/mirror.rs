//! A mirror catching up with a log: `Mirror::sync` from nothing to a log of 1,000,000 entries
//! served by `chipledger_web::serve` on loopback (public checkpoint and hash tiles: ~3,900 tile
//! requests, every leaf hashed into the tree, the root checked, every higher tile checked), then
//! an incremental sync after 10,000 more.
//!
//! `CHIPLEDGER_BENCH_ENTRIES` sets the size (default 1,000,000).
//! Run: `cargo bench -p chipledger-web --bench mirror`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_debug_implementations)]

use std::sync::Arc;
use std::time::Instant;

use chipledger_client::mirror::Mirror;
use chipledger_domain::fingerprint::GpuUuid;
use chipledger_domain::identify::Severity;
use chipledger_domain::keys::{SigningKey, VerifierKey};
use chipledger_domain::log::FixedClock;
use chipledger_domain::records::{sign_record, Annotation, AnnotationTarget, KeyEnrollment, Role, FORMAT_VERSION};
use chipledger_ledger::Ledger;
use chipledger_web::{serve, ServerConfig};
use time::macros::datetime;

const NOW: time::OffsetDateTime = datetime!(2026-12-01 12:00 UTC);

fn notes(key: &SigningKey, first: u64, count: u64) -> Vec<Vec<u8>> {
    let uuid = GpuUuid::parse("GPU-34bf77d1-c686-6821-79a8-32d326c5039c").unwrap();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let per = count.div_ceil(threads);
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let uuid = uuid.clone();
                s.spawn(move || {
                    let (start, end) = (first + t * per, (first + (t + 1) * per).min(first + count));
                    (start..end)
                        .map(|c| {
                            let a = Annotation {
                                format_version: FORMAT_VERSION,
                                counter: c,
                                written_at: NOW,
                                target: AnnotationTarget::Gpu { uuid: uuid.clone() },
                                severity: Severity::Info,
                                text: "ok".into(),
                                resolves_serial: None,
                                settles_history: false,
                            };
                            sign_record(&a, key).unwrap().to_json()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    })
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let n: u64 = std::env::var("CHIPLEDGER_BENCH_ENTRIES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let (ledger, info) =
        Ledger::init(dir.path(), "bench.example/log", Arc::new(FixedClock(NOW)), &mut rand_core::OsRng).unwrap();
    let admin = SigningKey::from_pkcs8_pem(&std::fs::read_to_string(&info.admin_key_path).unwrap()).unwrap();
    let auditor = SigningKey::from_seed(&[3; 32]);
    let enroll = KeyEnrollment {
        format_version: FORMAT_VERSION,
        counter: 2,
        issued_at: NOW,
        key_id: auditor.key_id(),
        verifier_key: VerifierKey::new("auditor", auditor.public_key()).unwrap().to_string(),
        role: Role::Auditor,
        host: None,
        valid_from: NOW - time::Duration::days(1),
        valid_until: None,
        site: None,
    };
    ledger.append(&[sign_record(&enroll, &admin).unwrap().to_json()]).unwrap();
    let t = Instant::now();
    for chunk in notes(&auditor, 1, n).chunks(1000) {
        ledger.append(chunk).unwrap();
    }
    println!("built a log of {} entries in {:.1}s", ledger.size(), t.elapsed().as_secs_f64());
    let log_key = ledger.verifier_key().clone();
    let ledger = Arc::new(ledger);
    let (tx, rx) = std::sync::mpsc::channel();
    let served = ledger.clone();
    std::thread::spawn(move || serve(served, "127.0.0.1:0", ServerConfig::default(), |a| tx.send(a).unwrap()));
    let url = format!("http://{}", rx.recv().unwrap());
    let mirror_dir = tempfile::tempdir().unwrap();
    let mut mirror = Mirror::open(mirror_dir.path(), &url, log_key.clone(), None).unwrap();
    let t = Instant::now();
    let r = mirror.sync().unwrap();
    let secs = t.elapsed().as_secs_f64();
    println!(
        "mirror catch-up: {} entries ({} tiles) in {secs:.2}s = {:.0} entries/s",
        r.to,
        r.tiles,
        r.to as f64 / secs
    );
    for chunk in notes(&auditor, n + 1, 10_000).chunks(1000) {
        ledger.append(chunk).unwrap();
    }
    let t = Instant::now();
    let r = mirror.sync().unwrap();
    println!("mirror incremental: {}..{} ({} tiles) in {:.3}s", r.from, r.to, r.tiles, t.elapsed().as_secs_f64());
    let t = Instant::now();
    let reopened = Mirror::open(mirror_dir.path(), &url, log_key, None).unwrap();
    println!(
        "mirror reopen (rebuild and check the tree from its tiles): {:.2}s, size {}",
        t.elapsed().as_secs_f64(),
        reopened.size()
    );
}
