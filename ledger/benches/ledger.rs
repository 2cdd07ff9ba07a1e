//! Ledger figures for issue #3, as a `--release` bench binary (a 1 M-entry log takes minutes to
//! build, which criterion's sampling would multiply). Run:
//!
//! ```sh
//! cargo bench -p chipledger-ledger --bench ledger            # 1,000,000 entries
//! CHIPLEDGER_BENCH_ENTRIES=100000 cargo bench -p chipledger-ledger --bench ledger
//! CHIPLEDGER_BENCH_KEEP=1 …   # keep the log afterwards (e.g. for `sqlite3_analyzer`)
//! ```
//!
//! Prints: durable append throughput in batches of 1,000 and one entry per commit
//! (`synchronous=FULL`, signature check and checkpoint per commit), audit throughput, inclusion
//! proof time at the full size, open time, and bytes on disk per entry.
//!
//! The WAL is folded into the database by SQLite's default (a commit that crosses the threshold
//! folds it); `CHIPLEDGER_BENCH_FOLD=thread` folds it on a thread of its own as `chipledger serve`
//! does (`Ledger::defer_wal_folding` + `fold_wal`: less raw throughput on two cores, no commit
//! that stalls for the fold).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a bench: failing loudly is right

use std::sync::Arc;
use std::time::Instant;

use chipledger_domain::fingerprint::GpuUuid;
use chipledger_domain::identify::Severity;
use chipledger_domain::keys::{SigningKey, VerifierKey};
use chipledger_domain::log::FixedClock;
use chipledger_domain::records::{sign_record, Annotation, AnnotationTarget, KeyEnrollment, Role, FORMAT_VERSION};
use chipledger_ledger::{Ledger, LedgerConfig};
use rand_chacha::rand_core::SeedableRng;
use time::macros::datetime;
use time::OffsetDateTime;

const NOW: OffsetDateTime = datetime!(2026-11-29 09:00 UTC);

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing and expects speed.
    if !std::env::args().any(|a| a == "--bench") {
        println!("ledger bench: run with `cargo bench -p chipledger-ledger --bench ledger`");
        return;
    }
    let n: u64 = std::env::var("CHIPLEDGER_BENCH_ENTRIES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let dir = tempfile::tempdir_in(std::env::var("CHIPLEDGER_BENCH_DIR").unwrap_or_else(|_| ".".into())).unwrap();
    let clock = Arc::new(FixedClock(NOW));
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
    let (ledger, info) = Ledger::init(dir.path(), "bench.example/log", clock.clone(), &mut rng).unwrap();
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
    let ledger = Arc::new(ledger);
    let fold_in_commits = !std::env::var("CHIPLEDGER_BENCH_FOLD").is_ok_and(|v| v == "thread");
    let folding = Arc::new(std::sync::atomic::AtomicBool::new(!fold_in_commits));
    if !fold_in_commits {
        ledger.defer_wal_folding().unwrap();
        let (l, on) = (ledger.clone(), folding.clone());
        std::thread::spawn(move || {
            while on.load(std::sync::atomic::Ordering::Relaxed) {
                l.fold_wal().unwrap();
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        });
    }
    println!("WAL folded {}", if fold_in_commits { "by commits (SQLite default)" } else { "by a thread of its own" });

    let t = Instant::now();
    let envelopes = sign_many(&auditor, 1, n);
    let avg_len = envelopes.iter().map(|e| e.len()).sum::<usize>() as f64 / n as f64;
    println!("signed {n} envelopes (avg {avg_len:.0} bytes) in {:.1}s", t.elapsed().as_secs_f64());
    let limit = strict_limit(&auditor, &envelopes[..envelopes.len().min(100_000)]);
    println!("limit: verify_strict of the same envelopes on two threads = {limit:.0} entries/s");

    // Batches of 1,000.
    let t = Instant::now();
    for chunk in envelopes.chunks(1000) {
        ledger.append(chunk).unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    let rate = n as f64 / secs;
    println!(
        "append, batches of 1000: {n} entries in {secs:.2}s = {rate:.0} entries/s ({:.0} % of the limit)",
        100.0 * rate / limit
    );
    drop(envelopes);
    if std::env::var("CHIPLEDGER_BENCH_ONLY_APPEND").is_ok() {
        return;
    }

    // One entry per commit.
    let singles = 3000u64;
    let more = sign_many(&auditor, n + 1, singles);
    let t = Instant::now();
    for e in &more {
        ledger.append(std::slice::from_ref(e)).unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    let rate = singles as f64 / secs;
    println!(
        "append, one per commit: {singles} entries in {secs:.2}s = {rate:.0} entries/s ({:.0} % of the limit)",
        100.0 * rate / limit
    );

    let size = ledger.size();
    // Inclusion proofs at full size.
    let t = Instant::now();
    let proofs = 20_000u64;
    for i in 0..proofs {
        let idx = (i * 7_919_993) % size;
        ledger.inclusion_proof(idx, size).unwrap();
    }
    println!("inclusion proof at size {size}: {:.1} µs each", t.elapsed().as_secs_f64() * 1e6 / proofs as f64);

    // Audit.
    let t = Instant::now();
    let report = ledger.audit(&mut |_, _| {}).unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert!(report.problem.is_none(), "{:?}", report.problem);
    let rate = report.entries as f64 / secs;
    println!(
        "audit: {} entries in {secs:.2}s = {rate:.0} entries/s ({:.0} % of the limit)",
        report.entries,
        100.0 * rate / limit
    );

    // Bytes on disk, after a WAL checkpoint folds the log into the main file.
    folding.store(false, std::sync::atomic::Ordering::Relaxed);
    std::thread::sleep(std::time::Duration::from_millis(300));
    drop(ledger);
    {
        let conn = rusqlite::Connection::open(dir.path().join(chipledger_ledger::DB_FILE)).unwrap();
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).unwrap();
    }
    let mut bytes = 0u64;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let e = entry.unwrap();
        if e.file_name().to_string_lossy().starts_with(chipledger_ledger::DB_FILE) {
            bytes += e.metadata().unwrap().len();
        }
    }
    println!(
        "disk: {bytes} bytes for {size} entries = {:.0} bytes/entry (envelopes average {avg_len:.0} bytes)",
        bytes as f64 / size as f64
    );

    // Opening.
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        let l = Ledger::open(dir.path(), LedgerConfig::default(), clock.clone()).unwrap();
        best = best.min(t.elapsed().as_secs_f64());
        drop(l);
    }
    println!("open a {size}-entry log: {:.1} ms (best of 5)", best * 1e3);
    if std::env::var("CHIPLEDGER_BENCH_KEEP").is_ok() {
        println!("kept the log in {}", dir.keep().display());
    }
}

/// Entries per second that ed25519-dalek's `verify_strict` checks on two threads, over the
/// signatures of `envelopes` (messages extracted beforehand): what a log that checks every
/// signature strictly, and does nothing else, could reach on two cores.
fn strict_limit(key: &SigningKey, envelopes: &[Vec<u8>]) -> f64 {
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&key.public_key().to_bytes()).unwrap();
    let signed: Vec<(Vec<u8>, ed25519_dalek::Signature)> = envelopes
        .iter()
        .map(|e| {
            let env: chipledger_domain::dsse::Envelope = serde_json::from_slice(e).unwrap();
            let (m, s) = env.signed_message(&key.key_id()).unwrap();
            (m, ed25519_dalek::Signature::from_slice(&s).unwrap())
        })
        .collect();
    let t = Instant::now();
    std::thread::scope(|s| {
        for part in signed.chunks(signed.len().div_ceil(2)) {
            s.spawn(move || assert!(part.iter().all(|(m, sig)| vk.verify_strict(m, sig).is_ok())));
        }
    });
    signed.len() as f64 / t.elapsed().as_secs_f64()
}

/// Signs `count` annotations with counters from `first`, on every core.
fn sign_many(key: &SigningKey, first: u64, count: u64) -> Vec<Vec<u8>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let per = count.div_ceil(threads);
    let uuid = GpuUuid::parse("GPU-34bf77d1-c686-6821-79a8-32d326c5039c").unwrap();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let uuid = uuid.clone();
                s.spawn(move || {
                    let start = first + t * per;
                    let end = (start + per).min(first + count);
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
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    })
}
