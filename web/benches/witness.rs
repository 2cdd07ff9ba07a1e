//! The witness's throughput: checkpoints cosigned per second.
//! - direct: `Witness::add_checkpoint` on one log growing by one entry per checkpoint (parse,
//!   log-signature check, consistency proof, a durable head commit, the cosignature);
//! - HTTP: the same through `serve_witness` on loopback, 16 logs submitting at once (one client
//!   thread each, keep-alive), as a witness serving many logs sees it.
//!
//! `CHIPLEDGER_BENCH_CHECKPOINTS` sets the checkpoints per run (default 5,000).
//! Run: `cargo bench -p chipledger-web --bench witness`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_debug_implementations)]

use std::sync::Arc;
use std::time::Instant;

use chipledger_domain::keys::{SigningKey, VerifierKey};
use chipledger_domain::merkle::{self, leaf_hash, MemoryTree};
use chipledger_domain::note::Checkpoint;
use chipledger_domain::witness::{AddCheckpoint, FollowedLog};
use chipledger_ledger::witness::WitnessState;
use chipledger_web::{serve_witness, ServerConfig, Witness};

/// `n` add-checkpoint bodies for a log named `origin` growing by one entry each.
fn requests(origin: &str, key: &SigningKey, n: u64) -> Vec<Vec<u8>> {
    let mut tree = MemoryTree::default();
    let mut out = Vec::with_capacity(n as usize);
    for size in 1..=n {
        tree.push(leaf_hash(format!("{origin} {size}").as_bytes()));
        let old = size - 1;
        let proof = if old == 0 { vec![] } else { merkle::consistency_proof(&tree, old, size).unwrap() };
        let cp = Checkpoint { origin: origin.into(), size, root: tree.root_at(size).unwrap(), extensions: vec![] };
        out.push(AddCheckpoint { old, proof, checkpoint: cp.sign(origin, key).unwrap().to_bytes() }.to_bytes());
    }
    out
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let n: u64 = std::env::var("CHIPLEDGER_BENCH_CHECKPOINTS").ok().and_then(|v| v.parse().ok()).unwrap_or(5000);
    let dir = tempfile::tempdir().unwrap();
    let logs: Vec<(String, SigningKey)> =
        (0..16u8).map(|i| (format!("bench.example/log{i}"), SigningKey::from_seed(&[i + 1; 32]))).collect();
    let followed: Vec<FollowedLog> = logs
        .iter()
        .map(|(o, k)| FollowedLog { origin: o.clone(), keys: vec![VerifierKey::new(o, k.public_key()).unwrap()] })
        .collect();
    let witness = Arc::new(Witness {
        name: "bench.example/witness".into(),
        key: SigningKey::from_seed(&[99; 32]),
        logs: followed,
        state: WitnessState::open(&dir.path().join("witness.db")).unwrap(),
    });

    // Direct, one log.
    let bodies = requests(&logs[0].0, &logs[0].1, n);
    let t = Instant::now();
    for body in &bodies {
        witness.add_checkpoint(body, 1_800_000_000).unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    println!("direct, one log: {n} checkpoints in {secs:.2}s = {:.0} checkpoints/s", n as f64 / secs);

    // HTTP, 16 logs at once (log 0 starts again from its head: a fresh run of logs 1–15).
    let (tx, rx) = std::sync::mpsc::channel();
    let w = witness.clone();
    std::thread::spawn(move || serve_witness(w, "127.0.0.1:0", ServerConfig::default(), |a| tx.send(a).unwrap()));
    let addr = rx.recv().unwrap();
    let per = n / 16;
    let work: Vec<Vec<Vec<u8>>> = logs[1..].iter().map(|(o, k)| requests(o, k, per)).collect();
    let t = Instant::now();
    let threads: Vec<_> = work
        .into_iter()
        .map(|bodies| {
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
                for body in bodies {
                    let r = agent.post(&format!("http://{addr}/add-checkpoint")).send(&body[..]).unwrap();
                    assert_eq!(r.status().as_u16(), 200);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let total = per * 15;
    let secs = t.elapsed().as_secs_f64();
    println!("HTTP, 15 logs at once: {total} checkpoints in {secs:.2}s = {:.0} checkpoints/s", total as f64 / secs);
}
