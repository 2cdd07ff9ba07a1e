//! Location proofs through the binary: a landmark process (`landmark serve`) times an agent
//! process (`agent locate`) over real TCP. Distance is SIMULATED: the kernel here has no netem,
//! so a relay in this test delays every chunk by a one-way time; the product adds no delay.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::ledger::{fails_in, ok_in};
use crate::spawn_listening;

const SG_LANDMARK: &str = "1.2966,103.7764";
const SG_SITE: &str = "1.3521,103.8198";

pub(crate) fn dump() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("agent/tests/data/nvidia-smi/h800-sxm5-80gb-liguodongiot-llm-action.txt")
        .display()
        .to_string()
}

/// A ledger with agent `hgx-sg` (declared in Singapore) and landmark `sin-1` enrolled; the
/// landmark's key file.
fn scene() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    ok_in(&data, &["init"]);
    let vkey = ok_in(&data, &["agent", "enroll", "--hostname", "hgx-sg"]);
    ok_in(
        &data,
        &[
            "keys",
            "enroll",
            "--role",
            "agent",
            "--name",
            "hgx-sg",
            "--key",
            vkey.stdout.trim(),
            "--site",
            SG_SITE,
            "--operator",
            "Example DC",
            "--country",
            "SG",
        ],
    );
    let lm_key = tmp.path().join("sin-1.pem");
    let lm = ok_in(&data, &["keys", "generate", "--name", "sin-1", "--out", lm_key.to_str().unwrap()]);
    // A landmark without its surveyed site is refused at enrollment.
    fails_in(&data, &["keys", "enroll", "--role", "landmark", "--name", "sin-1", "--key", lm.stdout.trim()], "--site");
    ok_in(
        &data,
        &[
            "keys",
            "enroll",
            "--role",
            "landmark",
            "--name",
            "sin-1",
            "--key",
            lm.stdout.trim(),
            "--site",
            SG_LANDMARK,
            "--operator",
            "Landmark Org",
        ],
    );
    (tmp, data, lm_key)
}

fn landmark(data: &Path, key: &Path, at: &str, connections: u32) -> (std::process::Child, String) {
    landmark_named(data, key, "sin-1", at, connections, "0")
}

/// `landmark serve` logging at most one proof per host every `min_interval` seconds.
fn landmark_with(
    data: &Path,
    key: &Path,
    at: &str,
    connections: u32,
    min_interval: &str,
) -> (std::process::Child, String) {
    landmark_named(data, key, "sin-1", at, connections, min_interval)
}

/// `landmark serve` as `name` at `at`, for `connections` connections, logging at most one proof
/// per host every `min_interval` seconds: the child and its address.
pub(crate) fn landmark_named(
    data: &Path,
    key: &Path,
    name: &str,
    at: &str,
    connections: u32,
    min_interval: &str,
) -> (std::process::Child, String) {
    let args: Vec<String> = [
        "--data-dir",
        data.to_str().unwrap(),
        "landmark",
        "serve",
        "--name",
        name,
        "--at",
        at,
        "--key",
        key.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--rounds",
        "10",
        "--max-connections",
        &connections.to_string(),
        "--min-interval-secs",
        min_interval,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    spawn_listening(&args)
}

/// Runs `chipledger --data-dir DATA ARGS…`, whatever its exit.
fn run_in(data: &Path, args: &[&str]) -> crate::Run {
    let v = crate::ledger::with(data, args);
    crate::chipledger(&v.iter().map(String::as_str).collect::<Vec<_>>())
}

/// `agent locate` against `addr`; its JSON rows.
pub(crate) fn locate(data: &Path, addr: &str) -> (i32, serde_json::Value, String) {
    let r = run_in(
        data,
        &["agent", "locate", "--hostname", "hgx-sg", "--from-file", &dump(), "--landmark", addr, "--format", "json"],
    );
    let v = serde_json::from_str(&r.stdout).unwrap_or(serde_json::Value::Null);
    (r.code, v, r.stderr)
}

/// A relay that delays every chunk, each way, by `one_way` (the test's stand-in for distance).
fn relay(upstream: String, one_way: Duration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for down in listener.incoming().flatten() {
            let up = TcpStream::connect(&upstream).unwrap();
            for (from, to) in [(down.try_clone().unwrap(), up.try_clone().unwrap()), (up, down)] {
                pipe(from, to, one_way);
            }
        }
    });
    addr
}

/// Copies `from` to `to`, each chunk sent `delay` after it arrived (chunks keep their order
/// and do not wait for each other's delay).
fn pipe(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    from.set_nodelay(true).ok();
    to.set_nodelay(true).ok();
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                break;
            }
        }
    });
    std::thread::spawn(move || {
        for (at, chunk) in rx {
            if let Some(wait) = (at + delay).checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            if to.write_all(&chunk).is_err() {
                break;
            }
        }
        to.shutdown(std::net::Shutdown::Write).ok();
    });
}

#[test]
fn a_landmark_times_an_agents_answers_and_a_relay_only_makes_the_disk_larger() {
    let (_tmp, data, key) = scene();
    let (mut lm, addr) = landmark(&data, &key, SG_LANDMARK, 2);
    // Direct, over loopback.
    let (code, direct, stderr) = locate(&data, &addr);
    assert_eq!(code, 0, "{stderr}\n{direct}");
    let direct = &direct[0];
    assert_eq!(direct["landmark"], "sin-1");
    let direct_rtt = direct["min_rtt_ns"].as_u64().unwrap();
    assert!(direct["index"].as_u64().is_some(), "{direct}");
    // Through a relay adding 5 ms each way: at least 10 ms, and not much more.
    let relayed_addr = relay(addr.clone(), Duration::from_millis(5));
    let (code, relayed, stderr) = locate(&data, &relayed_addr);
    assert_eq!(code, 0, "{stderr}\n{relayed}");
    let rtt = relayed[0]["min_rtt_ns"].as_u64().unwrap();
    assert!(rtt >= 10_000_000, "measured {rtt} ns through a 2 x 5 ms relay");
    assert!(rtt < 10_000_000 + 40_000_000, "measured {rtt} ns, far over the simulated 10 ms");
    let (near, far) = (direct["bound_km"].as_f64().unwrap(), relayed[0]["bound_km"].as_f64().unwrap());
    assert!(far > near && far >= 1_498.0, "direct {direct_rtt} ns -> {near} km; relayed {far} km");
    lm.wait().unwrap();
    // Both proofs are in the log, which still verifies end to end.
    ok_in(&data, &["ledger", "verify"]);
}

#[test]
fn a_landmark_logs_one_proof_per_host_per_interval() {
    let (_tmp, data, key) = scene();
    let (mut lm, addr) = landmark_with(&data, &key, SG_LANDMARK, 2, "3600");
    let (code, rows, stderr) = locate(&data, &addr);
    assert_eq!(code, 0, "{stderr}\n{rows}");
    let (code, rows, _) = locate(&data, &addr);
    assert_ne!(code, 0);
    let error = rows[0]["error"].as_str().unwrap_or_default().to_string();
    assert!(error.contains("one per host every 3600 s"), "{rows}");
    lm.wait().unwrap();
    let listed = ok_in(&data, &["ledger", "log", "--located", "hgx-sg", "--format", "json"]);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&listed.stdout).unwrap().as_array().unwrap().len(), 1);
}

#[test]
fn a_landmark_claiming_other_coordinates_than_enrolled_gets_no_proof_logged() {
    let (_tmp, data, key) = scene();
    // Shanghai coordinates under the Singapore landmark's key.
    let (mut lm, addr) = landmark(&data, &key, "31.2304,121.4737", 1);
    let (code, rows, _) = locate(&data, &addr);
    assert_ne!(code, 0);
    let error = rows[0]["error"].as_str().unwrap_or_default().to_string();
    assert!(error.contains("coordinates"), "{rows}");
    lm.wait().unwrap();
}

#[test]
fn an_agent_key_not_enrolled_for_the_host_gets_no_proof_logged() {
    let (tmp, data, key) = scene();
    let (mut lm, addr) = landmark(&data, &key, SG_LANDMARK, 1);
    let state = tmp.path().join("other");
    ok_in(&data, &["agent", "enroll", "--hostname", "hgx-sg", "--state-dir", state.to_str().unwrap()]);
    let r = run_in(
        &data,
        &[
            "agent",
            "locate",
            "--hostname",
            "hgx-sg",
            "--state-dir",
            state.to_str().unwrap(),
            "--from-file",
            &dump(),
            "--landmark",
            &addr,
        ],
    );
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(r.stdout.contains("not enrolled") || r.stderr.contains("not enrolled"), "{}{}", r.stdout, r.stderr);
    lm.wait().unwrap();
}

#[test]
fn the_fleet_shows_where_its_hosts_proofs_put_each_gpu_and_the_log_lists_them_by_host() {
    let (_tmp, data, key) = scene();
    ok_in(&data, &["agent", "attest", "--hostname", "hgx-sg", "--from-file", &dump()]);
    let (mut lm, addr) = landmark(&data, &key, SG_LANDMARK, 1);
    let (code, rows, stderr) = locate(&data, &addr);
    assert_eq!(code, 0, "{stderr}\n{rows}");
    lm.wait().unwrap();
    let listed = ok_in(&data, &["ledger", "log", "--located", "hgx-sg", "--format", "json"]);
    let listed: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["kind"], "location-proof");
    let none = ok_in(&data, &["ledger", "log", "--located", "elsewhere", "--format", "json"]);
    assert_eq!(none.stdout.trim(), "[]");

    let fleet = ok_in(&data, &["fleet", "--format", "json"]);
    let fleet: serde_json::Value = serde_json::from_str(&fleet.stdout).unwrap();
    let gpu = &fleet[0];
    // Loopback bounds the key holder within a few km of the landmark's site; the host's declared
    // site is 7.8 km away. A round trip that short rules the declaration out (a Danger anomaly
    // says so); a longer one (a loaded machine) leaves it possible, but Singapore's neighbours
    // are then within reach too.
    let bound = rows[0]["bound_km"].as_f64().unwrap();
    let reason = gpu["location_reason"].as_str().unwrap();
    let anomalies = gpu["anomalies"].to_string();
    if bound < 7.8 {
        assert_eq!(gpu["location"], "contradicts-declared (host-key)", "{gpu}");
        assert!(reason.contains("7.8 km from landmark sin-1"), "{gpu}");
        assert!(anomalies.contains("contradict the declaration"), "{gpu}");
    } else {
        assert_eq!(gpu["location"], "possibly-outside (host-key)", "{gpu}");
        assert!(reason.contains("landmark sin-1") && reason.contains("MY"), "{gpu}");
        assert!(!anomalies.contains("contradict"), "{gpu}");
    }
    let csv = ok_in(&data, &["fleet", "--format", "csv"]);
    assert!(csv.stdout.lines().next().unwrap().ends_with(",location"), "{}", csv.stdout);
}

/// The `location-proof/v1` entries in the log: each one's index and statement.
fn proofs(data: &Path) -> Vec<(u64, serde_json::Value)> {
    let r = ok_in(data, &["ledger", "log", "--kind", "location-proof", "--format", "json"]);
    let entries: Vec<serde_json::Value> = serde_json::from_str(&r.stdout).unwrap();
    entries
        .iter()
        .map(|e| {
            let envelope: serde_json::Value = serde_json::from_str(e["envelope"].as_str().unwrap()).unwrap();
            let payload =
                chipledger_domain::encoding::b64_decode(envelope["payload"].as_str().unwrap(), "payload").unwrap();
            (e["index"].as_u64().unwrap(), serde_json::from_slice(&payload).unwrap())
        })
        .collect()
}

/// `agent run --landmark` answers its landmarks at start and every --locate-every: a landmark
/// that refuses the connection is logged as a warning and the next one is still answered; each
/// answer is logged with the landmark, the bound and the proof's index; SIGTERM ends the daemon
/// at once though the next round is seconds away.
#[test]
fn the_daemon_answers_its_landmarks_at_start_and_every_interval_and_stops_at_once() {
    let (_tmp, data, key) = scene();
    let (mut lm, addr) = landmark(&data, &key, SG_LANDMARK, 2);
    // A port nothing listens on: bound, then closed.
    let refused = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let mut daemon = crate::agent::Daemon::start_with(
        &data,
        &[
            "--hostname",
            "hgx-sg",
            "--from-file",
            &dump(),
            "--landmark",
            &refused,
            "--landmark",
            &addr,
            "--locate-every",
            "10s",
        ],
    );
    daemon.wait_line("location proof logged");
    crate::agent::wait_for("a second proof, one interval later", || proofs(&data).len() == 2);
    let asked = Instant::now();
    let lines = daemon.stop();
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "SIGTERM took {:?}: the responder sleeps out its interval",
        asked.elapsed()
    );
    lm.wait().unwrap();
    let all = lines.join("\n");
    let proofs = proofs(&data);
    for (index, statement) in &proofs {
        let subject = &statement["predicate"]["subject"];
        assert_eq!(subject["host"], "hgx-sg", "{statement}");
        // The GPUs the attestation names, as the agent's word.
        assert!(subject.to_string().contains("GPU-34bf77d1-c686-6821-79a8-32d326c5039c"), "{statement}");
        assert!(
            lines.iter().any(|l| l.contains("location proof logged")
                && l.contains("landmark=sin-1")
                && l.contains(&format!("index={index}"))
                && l.contains("bound_km=")),
            "no log line for the proof at {index}:\n{all}"
        );
    }
    let warnings: Vec<&String> = lines.iter().filter(|l| l.contains("WARN") && l.contains(&refused)).collect();
    assert!(warnings.len() >= 2, "the refusing landmark is a warning each round:\n{all}");
    let pem = std::fs::read_to_string(data.join("agent/agent-key.pem")).unwrap();
    let secret = pem.lines().find(|l| !l.starts_with("-----")).unwrap();
    assert!(!all.contains(secret), "the agent key reached the log:\n{all}");
    ok_in(&data, &["ledger", "verify"]);
}

#[test]
fn the_daemon_refuses_a_bad_landmark_list_or_interval_before_starting() {
    let (_tmp, data, _) = scene();
    let run = |extra: &[&str]| {
        let mut args = vec!["agent", "run", "--hostname", "hgx-sg", "--from-file"];
        let d = dump();
        args.push(&d);
        args.extend_from_slice(extra);
        run_in(&data, &args)
    };
    let r = run(&["--landmark", "no-port.example.org"]);
    assert!(r.code != 0 && r.stderr.contains("--landmark: entry 1"), "{}", r.stderr);
    let r = run(&["--landmark", "a.example.org:7443", "--locate-every", "5s"]);
    assert!(r.code != 0 && r.stderr.contains("minimum 10s"), "{}", r.stderr);
    let many: Vec<String> = (0..17).map(|i| format!("lm-{i}.example.org:7443")).collect();
    let mut args: Vec<&str> = Vec::new();
    for m in &many {
        args.extend(["--landmark", m]);
    }
    let r = run(&args);
    assert!(r.code != 0 && r.stderr.contains("at most 16"), "{}", r.stderr);
}

#[test]
fn a_landmark_subtracts_only_the_floor_its_enrollment_approves() {
    let (tmp, data, _) = scene();
    let key = tmp.path().join("sin-2.pem");
    let lm = ok_in(&data, &["keys", "generate", "--name", "sin-2", "--out", key.to_str().unwrap()]);
    let enroll = |role: &str, floor: &str| {
        run_in(
            &data,
            &[
                "keys",
                "enroll",
                "--role",
                role,
                "--name",
                "sin-2",
                "--key",
                lm.stdout.trim(),
                "--site",
                SG_LANDMARK,
                "--operator",
                "Landmark Org",
                "--floor-ns",
                floor,
            ],
        )
    };
    let agent = enroll("agent", "5000");
    assert!(agent.code != 0 && agent.stderr.contains("--floor-ns is a landmark's"), "{}", agent.stderr);
    let too_big = enroll("landmark", "2000000");
    assert!(too_big.code != 0 && too_big.stderr.contains("at most 1000000 ns"), "{}", too_big.stderr);
    assert_eq!(enroll("landmark", "5000").code, 0);
    let serve = |floor: &str| {
        let args: Vec<String> = [
            "--data-dir",
            data.to_str().unwrap(),
            "landmark",
            "serve",
            "--name",
            "sin-2",
            "--at",
            SG_LANDMARK,
            "--key",
            key.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--max-connections",
            "1",
            "--min-interval-secs",
            "0",
            "--floor-ns",
            floor,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        spawn_listening(&args)
    };
    // More than approved: the log refuses the proof.
    let (mut server, addr) = serve("10000");
    let (code, rows, _) = locate(&data, &addr);
    assert_ne!(code, 0);
    assert!(rows[0]["error"].as_str().unwrap_or_default().contains("approves 5000 ns"), "{rows}");
    server.wait().unwrap();
    // The approved floor: logged, and the bound is drawn from the round trip less it.
    let (mut server, addr) = serve("5000");
    let (code, rows, stderr) = locate(&data, &addr);
    assert_eq!(code, 0, "{stderr}\n{rows}");
    server.wait().unwrap();
    let rtt = rows[0]["min_rtt_ns"].as_u64().unwrap();
    let bound = rows[0]["bound_km"].as_f64().unwrap();
    let expected = 299.792458 * (rtt - 5000) as f64 / 1e6 / 2.0;
    assert!((bound - expected).abs() < 1e-6, "{bound} km for {rtt} ns less 5000 ns");
}
