//! `chipledger mirror`: follows a log through 10,000 appends (and a restart of the log), refuses
//! a fork of it — another database with the same key — and keeps the evidence, and serves an
//! inclusion proof that verifies while the log server is stopped.

use std::path::Path;
use std::process::{Child, Command};

use chipledger_domain::keys::VerifierKey;
use chipledger_domain::merkle::{leaf_hash, verify_inclusion};
use chipledger_domain::note::open_checkpoint;

use crate::ledger::ok_in;

fn serve(data: &Path, port: u16) -> Child {
    let args: Vec<String> = ["--data-dir", data.to_str().unwrap(), "serve", "--listen", &format!("127.0.0.1:{port}")]
        .iter()
        .map(|s| s.to_string())
        .collect();
    crate::spawn_listening(&args).0
}

fn stop(mut c: Child) {
    let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
    let _ = c.wait();
}

fn get(url: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    match agent.get(url).call() {
        Ok(mut r) => (r.status().as_u16(), r.body_mut().read_to_string().unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

/// Waits until the mirror's checkpoint has `size`.
fn wait_for(mirror: &str, size: u64) -> String {
    for _ in 0..600 {
        let (status, cp) = get(&format!("{mirror}/checkpoint"));
        if status == 200 && cp.lines().nth(1) == Some(size.to_string().as_str()) {
            return cp;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("the mirror never reached size {size}: {:?}", get(&format!("{mirror}/checkpoint")));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn size_of(data: &Path) -> u64 {
    ok_in(data, &["ledger", "checkpoint"]).stdout.lines().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_mirror_follows_the_log_refuses_a_fork_and_proves_inclusion_while_the_log_is_down() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    ok_in(&data, &["init"]);
    let info: serde_json::Value =
        serde_json::from_str(&ok_in(&data, &["ledger", "info", "--format", "json"]).stdout).unwrap();
    let log_vkey = info["log_verifier_key"].as_str().unwrap().to_string();
    let admin_key = data.join(chipledger_ledger::ADMIN_KEY_FILE);
    let append = |dir: &Path, batch: &str, count: &str| {
        ok_in(
            dir,
            &["ledger", "debug-append-loop", "--key", admin_key.to_str().unwrap(), "--batch", batch, "--count", count],
        );
    };
    let port = free_port();
    let log_url = format!("http://127.0.0.1:{port}");
    let server = serve(&data, port);
    let mirror_dir = tmp.path().join("mirror");
    let args: Vec<String> = [
        "mirror",
        "--from",
        &log_url,
        "--log-key",
        &log_vkey,
        "--to",
        mirror_dir.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--every",
        "0.2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (mut mirror, mirror_url) = crate::spawn_listening(&args);
    // 10,000 appends, in ten batches.
    append(&data, "1000", "10");
    let size = size_of(&data);
    assert!(size > 10_000);
    wait_for(&mirror_url, size);
    // A fork: the log copied now (the server stopped for a consistent copy), to grow apart.
    stop(server);
    let fork = tmp.path().join("fork");
    std::fs::create_dir(&fork).unwrap();
    for f in std::fs::read_dir(&data).unwrap() {
        let f = f.unwrap();
        if f.file_type().unwrap().is_file() {
            std::fs::copy(f.path(), fork.join(f.file_name())).unwrap();
        }
    }
    let server = serve(&data, port);
    append(&data, "5", "1");
    let size = size_of(&data);
    wait_for(&mirror_url, size);
    append(&fork, "7", "1");
    let fork_port = free_port();
    let fork_server = serve(&fork, fork_port);
    let once: Vec<String> = [
        "mirror",
        "--from",
        &format!("http://127.0.0.1:{fork_port}"),
        "--log-key",
        &log_vkey,
        "--to",
        mirror_dir.to_str().unwrap(),
        "--once",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let r = crate::chipledger(&once.iter().map(String::as_str).collect::<Vec<_>>());
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(r.stderr.contains("FORK") && r.stderr.contains("is not the one mirrored"), "{}", r.stderr);
    let evidence: Vec<_> = std::fs::read_dir(&mirror_dir)
        .unwrap()
        .filter_map(|f| f.ok())
        .filter(|f| f.file_name().to_string_lossy().starts_with("fork-"))
        .collect();
    assert_eq!(evidence.len(), 1);
    stop(fork_server);
    // The log goes down; the mirror still proves inclusion, against the log's own signature.
    stop(server);
    let (status, cp) = get(&format!("{mirror_url}/checkpoint"));
    assert_eq!(status, 200);
    let key = VerifierKey::parse(&log_vkey).unwrap();
    let cp = open_checkpoint(cp.as_bytes(), std::slice::from_ref(&key), None).unwrap().checkpoint;
    assert_eq!(cp.size, size);
    let ledger = chipledger_ledger::Ledger::open(
        &data,
        chipledger_ledger::LedgerConfig::default(),
        std::sync::Arc::new(chipledger_ledger::SystemClock),
    )
    .unwrap();
    for index in [0, 1234, size - 1] {
        let (status, body) = get(&format!("{mirror_url}/api/v1/proof/inclusion?index={index}&size={size}"));
        assert_eq!(status, 200, "{body}");
        let proof: chipledger_client::wire::Hashes = serde_json::from_str(&body).unwrap();
        let leaf = leaf_hash(&ledger.envelope(index).unwrap());
        verify_inclusion(index, size, &leaf, &proof.hashes, &cp.root).unwrap();
    }
    // Its tiles are the log's, at their C2SP paths.
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let tile = agent.get(&format!("{mirror_url}/tile/0/000")).call().unwrap().body_mut().read_to_vec().unwrap();
    assert_eq!(tile.len(), 8192);
    assert_eq!(&tile[32..64], &leaf_hash(&ledger.envelope(1).unwrap()).0[..]);
    let _ = mirror.kill();
}
