//! A fleet over loopback: `chipledger serve`, two agents attesting through HTTP, a node running
//! through HTTP, every receipt checked by its client.

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::ledger::ok_in;
use crate::{fails, ok};

fn dump(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("agent/tests/data/nvidia-smi").join(name).display().to_string()
}

struct Server {
    child: std::process::Child,
    url: String,
    key: String,
}

impl Server {
    fn start(data: &Path) -> Server {
        Server::start_with(data, &[])
    }

    fn start_with(data: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_chipledger"))
            .args(["--data-dir", data.to_str().unwrap(), "serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let url = lines.next().unwrap().unwrap().strip_prefix("listening on ").unwrap().to_string();
        let key = lines.next().unwrap().unwrap().strip_prefix("log key ").unwrap().to_string();
        Server { child, url, key }
    }

    fn stop(mut self) {
        assert!(Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap().success());
        assert!(self.child.wait().unwrap().success(), "the server stops cleanly on SIGTERM");
    }
}

#[test]
fn agents_and_a_node_work_against_a_server_over_loopback() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    ok_in(&data, &["init"]);
    let server = Server::start(&data);
    for (host, file) in
        [("hgx-01", "h800-sxm5-80gb-liguodongiot-llm-action.txt"), ("dgx-02", "a100-sxm4-80gb-influxdata-telegraf.xml")]
    {
        let state = tmp.path().join(host);
        let vkey = ok(&["agent", "enroll", "--hostname", host, "--state-dir", state.to_str().unwrap()]).stdout;
        ok_in(&data, &["keys", "enroll", "--role", "agent", "--name", host, "--key", vkey.trim()]);
        let r = ok(&[
            "agent",
            "attest",
            "--ledger",
            &server.url,
            "--log-key",
            &server.key,
            "--state-dir",
            state.to_str().unwrap(),
            "--hostname",
            host,
            "--from-file",
            &dump(file),
        ]);
        assert!(r.stdout.contains("inclusion proof verified"), "{}", r.stdout);
    }
    // Without the log key, a remote ledger is refused.
    let state = tmp.path().join("hgx-01");
    fails(
        &[
            "agent",
            "attest",
            "--ledger",
            &server.url,
            "--state-dir",
            state.to_str().unwrap(),
            "--from-file",
            &dump("h800-sxm5-80gb-liguodongiot-llm-action.txt"),
        ],
        "--log-key",
    );
    // A node plans and runs through the server.
    let node_key = tmp.path().join("node.pem");
    let nvkey = ok(&["keys", "generate", "--name", "node-01", "--out", node_key.to_str().unwrap()]).stdout;
    ok_in(&data, &["keys", "enroll", "--role", "node", "--name", "node-01", "--key", nvkey.trim()]);
    ok_in(
        &data,
        &[
            "acquisition",
            "record",
            "--serial",
            "1650522003820",
            "--supplier",
            "S",
            "--invoice",
            "I",
            "--shipped",
            "2022-06-01",
            "--from",
            "US",
            "--to",
            "CN",
            "--end-user",
            "E",
        ],
    );
    let model = tmp.path().join("tiny");
    ok(&["model", "tiny", "--out", model.to_str().unwrap()]);
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("inference/policies/demo.toml");
    let report = tmp.path().join("report.json");
    let r = ok(&[
        "--data-dir",
        tmp.path().join("node-data").to_str().unwrap(),
        "run",
        "--ledger",
        &server.url,
        "--log-key",
        &server.key,
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        "hi",
        "--max-tokens",
        "4",
        "--policy",
        policy.to_str().unwrap(),
        "--node-key",
        node_key.to_str().unwrap(),
        "--node-name",
        "node-01",
        "--report-out",
        report.to_str().unwrap(),
    ]);
    assert!(
        r.stdout.contains("A100-SXM4-80GB serial 1650522003820") && r.stdout.contains("acquisition lawful"),
        "{}",
        r.stdout
    );
    ok(&["report", "verify", report.to_str().unwrap(), "--log-key", &server.key]);

    // An auditor finds the run on the dashboard, re-verified against the log.
    let token = ok_in(&data, &["tokens", "create", "--role", "auditor", "--name", "auditor"]).stdout.trim().to_string();
    let get = |path: &str| -> (u16, String) {
        let mut r = ureq::get(&format!("{}{path}", server.url))
            .header("authorization", &format!("Bearer {token}"))
            .config()
            .http_status_as_error(false)
            .build()
            .call()
            .unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    };
    let (status, runs) = get("/api/v1/runs");
    assert_eq!(status, 200, "{runs}");
    let runs: serde_json::Value = serde_json::from_str(&runs).unwrap();
    let index = runs[0]["index"].as_u64().unwrap();
    let (status, page) = get(&format!("/runs/{index}"));
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Verified against the log") && !page.contains("FAILED"), "{page}");
    assert!(page.contains("signed by the node") && page.contains("attestation of GPU-"), "{page}");
    let (status, gpu) = get("/gpus/GPU-513536b6-7d19-9063-b049-1e69664bb298");
    assert_eq!(status, 200);
    assert!(gpu.contains("id=\"verdict\">lawful<") && gpu.contains("ran "), "{gpu}");
    server.stop();
    ok_in(&data, &["ledger", "verify"]);
}

#[test]
fn the_demo_serves_its_dashboard_to_the_auditor_token_it_prints() {
    use chipledger_domain::log::{AsOf, LogClient};
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("demo");
    let mut child = Command::new(env!("CARGO_BIN_EXE_chipledger"))
        .args(["--data-dir", data.to_str().unwrap(), "demo", "--serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut url = None;
    let mut token = None;
    let mut log_key = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("   log key ") {
            log_key = Some(rest.trim().to_string());
        }
        if let Some(rest) = line.strip_prefix("7. dashboard: ") {
            url = Some(rest.split_whitespace().next().unwrap().trim_end_matches('/').to_string());
        }
        if line.trim_start().starts_with("clt_") {
            token = Some(line.trim().to_string());
            break;
        }
    }
    let (url, token) = (url.expect("the dashboard's URL"), token.expect("an auditor token"));
    let client = chipledger_client::HttpLogClient::new(&url)
        .with_credential(chipledger_client::Credential::Token(token.clone()));
    let fleet = client.inventory(AsOf::Latest).unwrap();
    assert!(fleet.len() >= 4, "{fleet:?}");
    // Without the token the same read is refused.
    let anonymous = chipledger_client::HttpLogClient::new(&url);
    let e = anonymous.inventory(AsOf::Latest).unwrap_err().to_string();
    assert!(e.contains("401") && e.contains("needs a credential"), "{e}");
    // `chipledger fleet` gives the dashboard's export, row for row, from the server and from the
    // data directory.
    let dashboard = ureq::get(&format!("{url}/fleet.csv"))
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(dashboard.lines().count() >= 5 && dashboard.starts_with("host,sku,serial,uuid"), "{dashboard}");
    let log_key = log_key.expect("the demo prints its log key");
    let remote = Command::new(env!("CARGO_BIN_EXE_chipledger"))
        .args(["fleet", "--ledger", &url, "--log-key", &log_key, "--format", "csv"])
        .env("CHIPLEDGER_TOKEN", &token)
        .output()
        .unwrap();
    assert!(remote.status.success(), "{}", String::from_utf8_lossy(&remote.stderr));
    assert_eq!(String::from_utf8_lossy(&remote.stdout), dashboard, "chipledger fleet --ledger URL");
    let local = ok(&["--data-dir", data.to_str().unwrap(), "fleet", "--format", "csv"]);
    assert_eq!(local.stdout, dashboard, "chipledger fleet on the data directory");
    let table = ok(&["--data-dir", data.to_str().unwrap(), "fleet"]).stdout;
    assert!(table.contains("H800-SXM5-80GB") && table.contains("imported"), "{table}");
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    assert!(child.wait().unwrap().success());
}

#[test]
fn an_agent_attests_over_tls_trusting_only_the_servers_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    ok_in(&data, &["init"]);
    let tls = Path::new(env!("CARGO_MANIFEST_DIR")).join("web/tests/data/tls");
    let (cert, key) = (tls.join("cert.pem"), tls.join("key.pem"));
    let server = Server::start_with(&data, &["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()]);
    assert!(server.url.starts_with("https://127.0.0.1:"), "{}", server.url);
    let url = server.url.replace("127.0.0.1", "localhost");
    let state = tmp.path().join("agent");
    let vkey = ok(&["agent", "enroll", "--hostname", "hgx-01", "--state-dir", state.to_str().unwrap()]).stdout;
    ok_in(&data, &["keys", "enroll", "--role", "agent", "--name", "hgx-01", "--key", vkey.trim()]);
    let attest = |ca: Option<&Path>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_chipledger"));
        c.args(["agent", "attest", "--ledger", &url, "--log-key", &server.key, "--state-dir"])
            .args([state.to_str().unwrap(), "--hostname", "hgx-01", "--from-file"])
            .arg(dump("h800-sxm5-80gb-liguodongiot-llm-action.txt"));
        if let Some(ca) = ca {
            c.env("CHIPLEDGER_CA_CERT", ca);
        }
        c.output().unwrap()
    };
    // The test CA is not a public root: without it the server is not trusted, and nothing is sent.
    let refused = attest(None);
    assert!(!refused.status.success());
    let out = attest(Some(&tls.join("ca.pem")));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("inclusion proof verified"), "{stdout}");
    server.stop();
    ok_in(&data, &["ledger", "verify"]);
}

#[test]
fn tokens_are_created_once_listed_without_secrets_and_revoked() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    ok_in(&data, &["init"]);
    let r = ok_in(&data, &["tokens", "create", "--role", "auditor", "--name", "alice, audit"]);
    let token = r.stdout.trim().to_string();
    assert!(token.starts_with("clt_") && r.stderr.contains("shown once"), "{r:?}");
    let id = token.split('_').nth(1).unwrap().to_string();
    let list = ok_in(&data, &["tokens", "list", "--format", "json"]).stdout;
    assert!(list.contains(&id) && list.contains("alice, audit"), "{list}");
    assert!(!list.contains(token.rsplit('_').next().unwrap()), "the secret is never listed");
    ok_in(&data, &["tokens", "revoke", &id]);
    crate::ledger::fails_in(&data, &["tokens", "revoke", &id], "already revoked");
    crate::ledger::fails_in(&data, &["tokens", "revoke", "0123456789ab"], "no token");
    fails(&["--data-dir", data.to_str().unwrap(), "tokens", "create", "--role", "agent", "--name", "x"], "admin");
}

#[test]
fn a_remote_ledger_without_a_credential_says_how_to_get_one() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    ok_in(&data, &["init"]);
    let server = Server::start(&data);
    let empty = tmp.path().join("nobody");
    let r = fails(
        &[
            "--data-dir",
            empty.to_str().unwrap(),
            "plan",
            "--model",
            "deepseek-r1",
            "--ledger",
            &server.url,
            "--log-key",
            &server.key,
        ],
        "CHIPLEDGER_TOKEN",
    );
    assert!(r.stderr.contains("chipledger tokens create"), "{}", r.stderr);
    server.stop();
}

#[test]
fn the_packaged_server_unit_runs_a_command_this_binary_accepts() {
    let unit =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/chipledger-serve.service"))
            .unwrap();
    let unit = unit.replace("\\\n", " ");
    let exec = unit.lines().find_map(|l| l.strip_prefix("ExecStart=")).unwrap();
    let args: Vec<&str> = exec.split_whitespace().skip(1).collect();
    assert!(unit.contains("User=chipledger") && unit.contains("ProtectSystem=strict"));
    // The flags parse; on this machine it stops at the missing ledger (or certificate), saying so.
    let r = crate::chipledger(&args);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("no ledger in /var/lib/chipledger") || r.stderr.contains("/etc/chipledger/tls/cert.pem"),
        "{}",
        r.stderr
    );
}

#[test]
fn an_agent_key_attesting_another_host_through_the_server_is_refused_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    ok_in(&data, &["init"]);
    let server = Server::start(&data);
    let state = tmp.path().join("agent");
    let vkey = ok(&["agent", "enroll", "--hostname", "hgx-01", "--state-dir", state.to_str().unwrap()]).stdout;
    ok_in(&data, &["keys", "enroll", "--role", "agent", "--name", "hgx-01", "--key", vkey.trim()]);
    let before = ok_in(&data, &["ledger", "info"]).stdout;
    // The same key, claiming to speak for hgx-02.
    let r = crate::chipledger(&[
        "agent",
        "attest",
        "--ledger",
        &server.url,
        "--log-key",
        &server.key,
        "--state-dir",
        state.to_str().unwrap(),
        "--hostname",
        "hgx-02",
        "--from-file",
        &dump("h800-sxm5-80gb-liguodongiot-llm-action.txt"),
    ]);
    let said = format!("{}{}", r.stdout, r.stderr);
    assert!(said.contains("is enrolled for host \"hgx-01\" and may not attest host \"hgx-02\""), "{said}");
    drop(server);
    assert_eq!(ok_in(&data, &["ledger", "info"]).stdout, before, "nothing was written");
}
