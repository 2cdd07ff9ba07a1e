//! The Slurm Prolog's decision time at fleet scale: a ledger of 10,000 GPUs (1,250 eight-GPU
//! H800 hosts, each attested by its own enrolled agent through the real Attestor from a
//! synthetic dump made of the shipped one), then `chipledger slurm prolog` run as Slurm runs it —
//! one process per job, `SLURM_JOB_GPUS` naming all eight GPUs of one host — 1,000 times against
//! the data directory and 1,000 times against `chipledger serve` on loopback. Reports p50/p99/max
//! of the decision (read the host's GPUs at the current checkpoint and judge them, as the hook
//! prints it) and of the whole hook (process start to exit, the signed job record appended).
//!
//! `CHIPLEDGER_BENCH_HOSTS` (default 1,250) and `CHIPLEDGER_BENCH_RUNS` (default 1,000).
//! Run: `cargo bench --bench slurm`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_debug_implementations)]

#[path = "support/synthetic_fleet.rs"]
#[allow(dead_code)] // one fleet, built once: no host added afterwards
mod synthetic_fleet;

#[path = "../agent/tests/agent/synth.rs"]
#[allow(dead_code)] // the text dump only
mod synth;

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chipledger_domain::keys::SigningKey;
use chipledger_domain::records::Role;
use chipledger_ledger::{Ledger, LedgerConfig, SystemClock};

const BIN: &str = env!("CARGO_BIN_EXE_chipledger");

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let hosts: usize = std::env::var("CHIPLEDGER_BENCH_HOSTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1250);
    let runs: usize = std::env::var("CHIPLEDGER_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ledger");
    let h800 = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/agent/tests/data/nvidia-smi/h800-sxm5-80gb-liguodongiot-llm-action.txt"
    ))
    .unwrap();
    let setup = Instant::now();
    // The hook's own key: role node, bound to host hgx-0000.
    let node_key = SigningKey::generate(&mut rand_core::OsRng);
    let info =
        synthetic_fleet::build(&data, hosts, &synth::hgx_text(&h800, 8), &[(&node_key, Role::Node, "hgx-0000")]).info;
    let ledger = Ledger::open(&data, LedgerConfig::default(), Arc::new(SystemClock)).unwrap();
    let gpus = ledger.inventory(chipledger_domain::log::AsOf::Latest).unwrap().len();
    println!(
        "setup: {hosts} hosts, {gpus} GPUs, {} log entries in {:.1} s",
        ledger.size(),
        setup.elapsed().as_secs_f64()
    );
    drop(ledger);

    // Imported facts, no acquisition records: a policy that lets these synthetic GPUs qualify,
    // so every run takes the whole path (decide, sign, append, check the receipt).
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "name = \"bench\"\nrequire_live_probe = false\nallowed_verdicts = [\"no-acquisition-record\"]\n\
         tolerated_anomalies = [\"nvlink-fewer\", \"unknown-subsystem\"]\n",
    )
    .unwrap();
    let key_file = dir.path().join("node.pem");
    std::fs::write(&key_file, node_key.to_pkcs8_pem().unwrap().as_bytes()).unwrap();
    let config = |name: &str, ledger_line: &str| {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!(
                "{ledger_line}\nkey_file = {key:?}\nstate_dir = {state:?}\npolicy = {policy:?}\nscontrol = \"/bin/true\"\ncluster = \"bench\"\n",
                key = key_file,
                state = dir.path().join(format!("{name}-state")),
            ),
        )
        .unwrap();
        path
    };
    let local = config("local.toml", &format!("ledger = {data:?}"));
    report("against the data directory", &run(&local, runs, 0));

    let mut server = Command::new(BIN)
        .args(["serve", "--data-dir", data.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let first = std::io::BufReader::new(server.stdout.take().unwrap()).lines().next().unwrap().unwrap();
    let url = first.strip_prefix("listening on ").unwrap().to_string();
    let remote = config("remote.toml", &format!("ledger = {url:?}\nlog_key = \"{}\"", info.log_verifier_key));
    report(&format!("against chipledger serve ({url})"), &run(&remote, runs, runs));
    server.kill().unwrap();
    let _ = server.wait();
}

/// (decision, whole hook) per run.
fn run(config: &Path, runs: usize, first_job: usize) -> Vec<(Duration, Duration)> {
    let mut out = Vec::with_capacity(runs);
    for i in 0..runs {
        let t = Instant::now();
        let o = Command::new(BIN)
            .args(["slurm", "prolog", "--config", config.to_str().unwrap(), "--node", "hgx-0000"])
            .env("SLURM_JOB_ID", (first_job + i + 1).to_string())
            .env("SLURM_JOB_GPUS", "0,1,2,3,4,5,6,7")
            .env("SLURM_JOB_USER", "bench")
            .output()
            .unwrap();
        let whole = t.elapsed();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "run {i}: {err}");
        let ms: f64 = err
            .split("decided in ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("run {i}: no decision time in {err:?}"));
        out.push((Duration::from_secs_f64(ms / 1e3), whole));
    }
    out
}

fn report(what: &str, times: &[(Duration, Duration)]) {
    let pick = |f: fn(&(Duration, Duration)) -> Duration| {
        let mut v: Vec<Duration> = times.iter().map(f).collect();
        v.sort();
        let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1].as_secs_f64() * 1e3;
        format!("p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms", at(0.50), at(0.99), at(1.0))
    };
    println!("prolog {what}, {} runs:", times.len());
    println!("  decision (read the host's 8 GPUs at the checkpoint, judge): {}", pick(|t| t.0));
    println!("  whole hook (process start to exit, job record appended):   {}", pick(|t| t.1));
}
