//! The agent through the binary: probe, enroll, attest, the daemon under real signals, and the
//! errors an operator meets first.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::ledger::{fails_in, ok_in, with};
use crate::{fails, ok};

fn dump(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("agent/tests/data/nvidia-smi").join(name).display().to_string()
}

const H800: &str = "h800-sxm5-80gb-liguodongiot-llm-action.txt";
const H100: &str = "h100-sxm5-80gb-utkuozdemir-nvidia_gpu_exporter.txt";
const H100_LINKS: &str = "h100-sxm5-80gb-nvlink-s-utkuozdemir-nvidia_gpu_exporter.txt";

/// A ledger with this host's agent key enrolled as `host`.
fn enrolled(host: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    ok_in(&data, &["init"]);
    let vkey = ok_in(&data, &["agent", "enroll", "--hostname", host]);
    assert!(vkey.stderr.contains("chipledger keys enroll --role agent"), "{}", vkey.stderr);
    ok_in(&data, &["keys", "enroll", "--role", "agent", "--name", host, "--key", vkey.stdout.trim()]);
    (tmp, data)
}

#[test]
fn probe_shows_a_row_per_gpu_and_says_the_facts_were_imported() {
    let r = ok(&["agent", "probe", "--from-file", &dump(H100), "--from-file", &dump(H100_LINKS)]);
    assert!(r.stdout.contains("IMPORTED"), "{}", r.stdout);
    assert!(
        r.stdout.contains("H100-SXM5-80GB") && r.stdout.contains("18/18") && r.stdout.contains("3A090.a.1"),
        "{}",
        r.stdout
    );
    let json = ok(&["agent", "probe", "--from-file", &dump(H800), "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["source"], "nvidia-smi-text");
    assert_eq!(v["gpus"][0]["sku"], "H800-SXM5-80GB");
    assert_eq!(v["gpus"][0]["serial"], "1651323018291");
}

#[test]
fn probe_without_a_driver_says_so_and_suggests_importing() {
    if Path::new("/proc/driver/nvidia").exists() {
        return; // a GPU host: the NVML contract test covers it
    }
    fails(&["agent", "probe"], "--from-file");
    fails(&["agent", "probe"], "NVIDIA driver");
}

#[test]
fn attest_puts_a_verified_attestation_in_the_ledger() {
    let (_tmp, data) = enrolled("hgx-01");
    let r = ok_in(&data, &["agent", "attest", "--hostname", "hgx-01", "--from-file", &dump(H800)]);
    assert!(r.stdout.contains("H800-SXM5-80GB") && r.stdout.contains("inclusion proof verified"), "{}", r.stdout);
    let log = ok_in(&data, &["ledger", "log", "--kind", "gpu-attestation", "--format", "json"]);
    assert!(log.stdout.contains("gpu-attestation"), "{}", log.stdout);
    ok_in(&data, &["ledger", "verify"]);
    // A relabelled H100 shows its anomaly in the receipt.
    let relabelled = data.parent().unwrap().join("h100-as-h800.txt");
    std::fs::write(&relabelled, std::fs::read_to_string(dump(H100)).unwrap().replacen("0x233010DE", "0x232410DE", 1))
        .unwrap();
    let r = ok_in(
        &data,
        &[
            "agent",
            "attest",
            "--hostname",
            "hgx-01",
            "--from-file",
            relabelled.to_str().unwrap(),
            "--from-file",
            &dump(H100_LINKS),
        ],
    );
    assert!(r.stdout.contains("18 active NVLinks; H800-SXM5-80GB has 8"), "{}", r.stdout);
}

#[test]
fn attest_errors_name_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    fails_in(&data, &["agent", "attest", "--from-file", &dump(H800)], "agent enroll");
    ok_in(&data, &["init"]);
    ok_in(&data, &["agent", "enroll", "--hostname", "hgx-01"]);
    fails_in(&data, &["agent", "attest", "--hostname", "hgx-01", "--from-file", &dump(H800)], "not enrolled");
    let bad = tmp.path().join("agent.toml");
    std::fs::write(&bad, "interval = \"soon\"\n").unwrap();
    fails_in(&data, &["agent", "attest", "--config", bad.to_str().unwrap(), "--from-file", &dump(H800)], "interval");
    std::fs::write(&bad, "intervall = \"1h\"\n").unwrap();
    fails_in(&data, &["agent", "attest", "--config", bad.to_str().unwrap(), "--from-file", &dump(H800)], "intervall");
    fails_in(
        &data,
        &["agent", "attest", "--ledger", "https://ledger.example", "--from-file", &dump(H800)],
        "--log-key",
    );
    // A server that does not answer: the attestation waits in the spool, and the message says so.
    let log_key = ok_in(&data, &["ledger", "info", "--format", "json"]).stdout;
    let log_key =
        serde_json::from_str::<serde_json::Value>(&log_key).unwrap()["log_verifier_key"].as_str().unwrap().to_string();
    let r = fails_in(
        &data,
        &[
            "agent",
            "attest",
            "--hostname",
            "hgx-01",
            "--ledger",
            "http://127.0.0.1:9",
            "--log-key",
            &log_key,
            "--from-file",
            &dump(H800),
        ],
        "unavailable",
    );
    assert!(r.stderr.contains("spool"), "{}", r.stderr);
    let garbage = tmp.path().join("garbage.txt");
    std::fs::write(&garbage, "hello\n").unwrap();
    fails_in(
        &data,
        &["agent", "attest", "--hostname", "hgx-01", "--from-file", garbage.to_str().unwrap()],
        "not nvidia-smi output",
    );
}

fn attestation_count(data: &Path) -> usize {
    let r = ok_in(data, &["ledger", "log", "--kind", "gpu-attestation", "--format", "json"]);
    serde_json::from_str::<serde_json::Value>(&r.stdout).unwrap().as_array().unwrap().len()
}

pub fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(30), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running `agent run` whose stderr lines arrive on a channel.
pub struct Daemon {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Daemon {
    fn start(data: &Path, config: &Path) -> Daemon {
        Daemon::start_with(data, &["--config", config.to_str().unwrap()])
    }

    /// `agent run ARGS…` on the ledger in `data`.
    pub fn start_with(data: &Path, args: &[&str]) -> Daemon {
        let mut child = Command::new(env!("CARGO_BIN_EXE_chipledger"))
            .args(with(data, &[&["agent", "run"], args].concat()))
            .env("CHIPLEDGER_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut d = Daemon { child, lines, seen: Vec::new() };
        d.wait_line("agent daemon started");
        d
    }

    /// Waits for a log line containing `part` (signal handlers are in place once the daemon
    /// says it started).
    pub fn wait_line(&mut self, part: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.seen.iter().any(|l| l.contains(part)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => self.seen.push(l),
                Err(_) => panic!("no log line with {part:?}; saw:\n{}", self.seen.join("\n")),
            }
        }
    }

    fn signal(&self, sig: &str) {
        assert!(Command::new("kill").args([sig, &self.child.id().to_string()]).status().unwrap().success());
    }

    /// SIGTERM, then the exit must be clean; every line it logged.
    pub fn stop(mut self) -> Vec<String> {
        self.signal("-TERM");
        let status = self.child.wait().unwrap();
        self.seen.extend(self.lines.iter());
        assert!(status.success(), "exit {status:?}:\n{}", self.seen.join("\n"));
        assert!(self.seen.iter().any(|l| l.contains("stopping")), "{}", self.seen.join("\n"));
        assert!(!self.seen.iter().any(|l| l.contains("panicked")), "{}", self.seen.join("\n"));
        self.seen
    }
}

#[test]
fn the_daemon_attests_reloads_on_sighup_and_stops_cleanly_on_sigterm() {
    let (tmp, data) = enrolled("hgx-01");
    let config = tmp.path().join("agent.toml");
    let write_config = |interval: &str| {
        let text = format!(
            "poll = \"100ms\"\ninterval = {interval:?}\nhostname = \"hgx-01\"\nfrom_files = [{:?}]\n",
            dump(H800)
        );
        std::fs::write(&config, text).unwrap();
    };
    write_config("1h");
    let mut daemon = Daemon::start(&data, &config);
    wait_for("the first attestation", || attestation_count(&data) == 1);
    write_config("2h");
    daemon.signal("-HUP");
    daemon.wait_line("configuration reloaded");
    daemon.stop();
    // SIGTERM mid-cycle, while the first attestation of this run is being made or sent: it is
    // in the log or in the spool, and the next start sends it.
    let daemon = Daemon::start(&data, &config);
    daemon.stop();
    let before = attestation_count(&data);
    let spool = data.join("agent/spool");
    let waiting = || std::fs::read_dir(&spool).unwrap().filter(|e| e.as_ref().unwrap().path().is_file()).count();
    let left = waiting();
    let daemon = Daemon::start(&data, &config);
    wait_for("the spool sent and a fresh attestation", || {
        attestation_count(&data) == before + left + 1 && waiting() == 0
    });
    daemon.stop();
    ok_in(&data, &["ledger", "verify"]);
}

/// A reflash shows in `chipledger fleet` as the reader computes it; the admin's `gpu settle`
/// after review stands it down; only an admin key may, and only with a reason.
#[test]
fn a_reflash_shows_in_the_fleet_until_an_admin_settles_it() {
    let (_tmp, data) = enrolled("hgx-01");
    ok_in(&data, &["agent", "attest", "--hostname", "hgx-01", "--from-file", &dump(H800)]);
    let reflashed = data.parent().unwrap().join("h800-reflashed.txt");
    std::fs::write(
        &reflashed,
        std::fs::read_to_string(dump(H800)).unwrap().replacen("96.00.51.00.0E", "96.00.99.00.01", 1),
    )
    .unwrap();
    ok_in(&data, &["agent", "attest", "--hostname", "hgx-01", "--from-file", reflashed.to_str().unwrap()]);
    let fleet =
        || -> serde_json::Value { serde_json::from_str(&ok_in(&data, &["fleet", "--format", "json"]).stdout).unwrap() };
    let anomalies = fleet()[0]["anomalies"].to_string();
    assert!(anomalies.contains("VBIOS of GPU-34bf77d1") && anomalies.contains("96.00.51.00.0E"), "{anomalies}");
    let uuid = "GPU-34bf77d1-c686-6821-79a8-32d326c5039c";
    fails_in(&data, &["gpu", "settle", "--gpu", uuid, "--reason", " "], "--reason is empty");
    let agent_key = data.join("agent").join("agent-key.pem");
    assert!(agent_key.exists());
    fails_in(
        &data,
        &["gpu", "settle", "--gpu", uuid, "--reason", "x", "--admin-key", agent_key.to_str().unwrap()],
        "not an active admin key",
    );
    let r = ok_in(&data, &["gpu", "settle", "--gpu", uuid, "--reason", "vendor reflash, ticket 4411"]);
    assert!(r.stdout.contains("history settled"), "{}", r.stdout);
    assert_eq!(fleet()[0]["anomalies"], serde_json::json!([]));
    ok_in(&data, &["ledger", "verify"]);
}

/// Evidence captured elsewhere goes into an attestation with the dump (`--evidence`,
/// `--cert-chain`). Readers verify it and hold it to the dump: the sample with a dump of its own
/// driver and VBIOS raises no anomaly (an import stays an import); the same evidence with one
/// byte of its signed part changed, or with a dump of another driver, is `evidence-invalid`; a
/// policy that requires vendor evidence places none of them (it needs a live probe).
#[test]
fn imported_nvidia_evidence_is_verified_and_held_to_its_dump() {
    let (tmp, data) = enrolled("hgx-01");
    // A second host: its own agent key and state.
    let state2 = tmp.path().join("hgx-02");
    let vkey = ok_in(&data, &["agent", "enroll", "--hostname", "hgx-02", "--state-dir", state2.to_str().unwrap()]);
    ok_in(&data, &["keys", "enroll", "--role", "agent", "--name", "hgx-02", "--key", vkey.stdout.trim()]);
    let evidence_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("domain/tests/data/nvidia-attestation");
    let report = evidence_dir.join("hopperAttestationReport.txt");
    let chain = evidence_dir.join("hopperCertChain.txt");
    let attest = |host: &str, state: Option<&Path>, dump_name: &str, report: &Path| {
        let mut args = vec![
            "agent".to_string(),
            "attest".into(),
            "--hostname".into(),
            host.into(),
            "--from-file".into(),
            dump(dump_name),
            "--evidence".into(),
            report.display().to_string(),
            "--cert-chain".into(),
            chain.display().to_string(),
        ];
        if let Some(s) = state {
            args.extend(["--state-dir".into(), s.display().to_string()]);
        }
        ok_in(&data, &args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    // The H100 dump, edited to the sample's driver and VBIOS.
    let matching = tmp.path().join("h100-550.txt");
    std::fs::write(
        &matching,
        std::fs::read_to_string(dump(H100)).unwrap().replacen("590.48.01", "550.90.07", 1).replacen(
            "96.00.A5.00.01",
            "96.00.9F.00.01",
            1,
        ),
    )
    .unwrap();
    attest("hgx-01", None, matching.to_str().unwrap(), &report);
    // One hex digit of the response's opaque data (the driver version's), changed.
    let text = std::fs::read_to_string(&report).unwrap();
    let bent = tmp.path().join("bent.txt");
    let at = text.len() - 400;
    let flipped = if &text[at..at + 1] == "0" { "1" } else { "0" };
    std::fs::write(&bent, format!("{}{flipped}{}", &text[..at], &text[at + 1..])).unwrap();
    attest("hgx-02", Some(&state2), H800, &bent);
    let fleet = ok_in(&data, &["fleet", "--format", "json"]).stdout;
    let rows: serde_json::Value = serde_json::from_str(&fleet).unwrap();
    let row = |host: &str| rows.as_array().unwrap().iter().find(|r| r["host"] == host).unwrap().clone();
    assert_eq!(row("hgx-01")["evidence"], "imported", "{}", row("hgx-01"));
    assert!(!row("hgx-01").to_string().contains("evidence does not verify"), "{}", row("hgx-01"));
    let invalid = row("hgx-02");
    assert!(invalid.to_string().contains("NVIDIA attestation evidence does not verify"), "{invalid}");
    assert_eq!(invalid["evidence"], "evidence-invalid", "{invalid}");
    // Placement under a policy that takes imported facts but requires hardware evidence.
    let policy = tmp.path().join("hw.toml");
    std::fs::write(
        &policy,
        "name = \"hw\"\nrequire_live_probe = false\nrequire_vendor_evidence = true\nallowed_verdicts = [\"lawful\", \
         \"lawful-under-licence\", \"licence-required-none-recorded\", \"no-acquisition-record\", \"needs-review\"]\n\
         tolerated_anomalies = [\"nvlink-fewer\", \"unknown-subsystem\"]\n",
    )
    .unwrap();
    let plan = ok_in(
        &data,
        &["plan", "--model", "r1-distill-qwen-1.5b", "--policy", policy.to_str().unwrap(), "--format", "json"],
    );
    let plan: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    assert!(plan["placement"]["host"].is_null(), "{plan}");
    assert!(plan.to_string().contains("evidence-below"), "{plan}");
    // NVIDIA's sample RIMs carried with the evidence: readers verify them at the record's time,
    // when their signing certificates (valid to June 2025) have expired: evidence-invalid.
    let rims = [
        "--driver-rim".to_string(),
        evidence_dir.join("Driver_RIM_test_no_gpu.swidtag").display().to_string(),
        "--vbios-rim".into(),
        evidence_dir.join("1010_0200_882_96005E0001_test_no_gpu.swidtag").display().to_string(),
    ];
    let mut args: Vec<String> = ["agent", "attest", "--hostname", "hgx-01", "--from-file"].map(String::from).to_vec();
    args.extend([matching.display().to_string(), "--evidence".into(), report.display().to_string()]);
    args.extend(["--cert-chain".into(), chain.display().to_string()]);
    args.extend(rims);
    ok_in(&data, &args.iter().map(String::as_str).collect::<Vec<_>>());
    let rows: serde_json::Value = serde_json::from_str(&ok_in(&data, &["fleet", "--format", "json"]).stdout).unwrap();
    let row = rows.as_array().unwrap().iter().find(|r| r["host"] == "hgx-01").unwrap();
    assert_eq!(row["evidence"], "evidence-invalid", "{row}");
    assert!(
        row.to_string().contains("the driver RIM: ") && row.to_string().contains("is not valid at the report's time"),
        "{row}"
    );
}
