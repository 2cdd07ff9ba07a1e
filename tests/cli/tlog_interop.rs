//! The log read by code nobody here wrote: Go's golang.org/x/mod/sumdb/note and sumdb/tlog
//! (Debian's golang-golang-x-mod-dev) open the served checkpoint — cosigned by a witness, whose
//! line Go must ignore — read the public hash tiles at their C2SP paths, recompute the root and
//! check inclusion proofs (`interop/go/tlogcheck.go`).

use std::path::Path;
use std::process::Command;

use crate::ledger::ok_in;

#[test]
fn go_sumdb_note_and_tlog_read_the_log_and_its_tiles() {
    let go = Command::new("go").arg("version").output();
    assert!(
        go.as_ref().is_ok_and(|o| o.status.success()) && Path::new("/usr/share/gocode/src/golang.org/x/mod/sumdb/tlog").is_dir(),
        "this test needs Go and golang.org/x/mod: apt-get install golang-go golang-golang-x-mod-dev (scripts/test does)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    ok_in(&data, &["init"]);
    let admin_key = data.join(chipledger_ledger::ADMIN_KEY_FILE);
    // 700 entries: two full level-0 tiles, a partial one, a partial level-1 tile.
    ok_in(
        &data,
        &["ledger", "debug-append-loop", "--key", admin_key.to_str().unwrap(), "--batch", "100", "--count", "7"],
    );
    let info: serde_json::Value =
        serde_json::from_str(&ok_in(&data, &["ledger", "info", "--format", "json"]).stdout).unwrap();
    let (log_vkey, origin) = (info["log_verifier_key"].as_str().unwrap(), info["origin"].as_str().unwrap());
    // A witness, so that the checkpoint carries a line under a key Go does not know.
    let wkey = tmp.path().join("w.pem");
    crate::ok(&["keys", "generate", "--name", "w.example", "--out", wkey.to_str().unwrap()]);
    let wvkey = crate::ok(&["witness", "vkey", "--key", wkey.to_str().unwrap(), "--name", "w.example"]).stdout;
    let spawn = |args: Vec<String>| crate::spawn_listening(&args);
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let state = tmp.path().join("w.db");
    let log_arg = format!("{origin}={log_vkey}");
    let (mut witness, wurl) = spawn(s(&[
        "witness",
        "serve",
        "--key",
        wkey.to_str().unwrap(),
        "--name",
        "w.example",
        "--log",
        &log_arg,
        "--state",
        state.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]));
    let wit_arg = format!("{}@{wurl}", wvkey.trim());
    let (mut server, url) =
        spawn(s(&["--data-dir", data.to_str().unwrap(), "serve", "--listen", "127.0.0.1:0", "--witness", &wit_arg]));
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut cosigned = false;
    for _ in 0..100 {
        let cp = agent.get(&format!("{url}/checkpoint")).call().unwrap().body_mut().read_to_string().unwrap();
        if cp.contains("\u{2014} w.example ") {
            cosigned = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(cosigned, "the witness never cosigned");
    let out = Command::new("go")
        .args(["run", "interop/go/tlogcheck.go", &url, log_vkey, "25"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("GO111MODULE", "off")
        .env("GOPATH", "/usr/share/gocode")
        .env("GOCACHE", tmp.path().join("gocache"))
        .env("HOME", tmp.path())
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = witness.kill();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.starts_with(&format!("ok: {origin} size 701 ")), "{stdout}");
    assert!(stdout.contains("25 inclusion proofs check; 1 other signatures ignored"), "{stdout}");
}
