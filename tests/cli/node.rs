//! The serving node through the binary: the gate under a real clock — an attestation ages out
//! while serving, then a new one arrives — and the receipts of what it answered.

use std::time::{Duration, Instant};

use crate::inference::{demo_policy, dump, fleet};
use crate::ledger::{ok_in, with};
use crate::{ok, spawn_listening};

/// (status, Retry-After, body) of one chat completion.
fn ask(url: &str) -> (u16, Option<String>, Vec<u8>) {
    let mut r = ureq::post(&format!("{url}/v1/chat/completions"))
        .header("content-type", "application/json")
        .config()
        .http_status_as_error(false)
        .build()
        .send(r#"{"messages":[{"role":"user","content":"Which GPU answers?"}],"max_tokens":2}"#)
        .unwrap();
    let retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
    (r.status().as_u16(), retry, r.body_mut().read_to_vec().unwrap())
}

fn get(url: &str) -> (u16, String) {
    let mut r = ureq::get(url).config().http_status_as_error(false).build().call().unwrap();
    (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
}

fn attest(data: &std::path::Path) {
    ok_in(
        data,
        &[
            "agent",
            "attest",
            "--hostname",
            "hgx-01",
            "--from-file",
            &dump("h800-sxm5-80gb-liguodongiot-llm-action.txt"),
        ],
    );
}

#[test]
fn the_gate_answers_503_once_the_attestation_ages_out_and_serves_again_after_a_new_one() {
    let (tmp, data, model) = fleet();
    let policy = tmp.path().join("short.toml");
    let demo = std::fs::read_to_string(demo_policy()).unwrap();
    std::fs::write(&policy, demo.replace("max_attestation_age = \"7d\"", "max_attestation_age = \"5s\"")).unwrap();
    attest(&data);
    let (mut child, url) = spawn_listening(&with(
        &data,
        &[
            "node",
            "serve",
            "--model",
            model.to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
            "--node-name",
            "node-01",
            "--listen",
            "127.0.0.1:0",
            "--batch-interval-ms",
            "200",
            "--recheck-ms",
            "100",
        ],
    ));
    // Served, then refused once the attestation is 5 s old, then served after a new one.
    let mut seen: Vec<u16> = Vec::new();
    let mut served_ids: Vec<(String, Vec<u8>, bool)> = Vec::new();
    let mut reattested = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let (status, retry, body) = ask(&url);
        if seen.last() != Some(&status) {
            seen.push(status);
        }
        match status {
            200 => {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                served_ids.push((v["id"].as_str().unwrap().to_string(), body, reattested.is_some()));
                if reattested.is_some() {
                    break;
                }
            }
            503 => {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(v["error"]["code"], "gpus_not_qualified", "{v}");
                let why = v["error"]["message"].as_str().unwrap();
                assert!(why.contains("5s") || why.contains("aged out") || why.contains("old"), "{why}");
                assert!(retry.is_some(), "a 503 says when to retry");
                if reattested.is_none() {
                    attest(&data);
                    reattested = Some(Instant::now());
                }
            }
            other => panic!("unexpected status {other}: {}", String::from_utf8_lossy(&body)),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Nothing answered between the age-out and the new attestation: one refusal run, no flicker.
    assert_eq!(seen, [200, 503, 200], "statuses in order");
    // Every answer has a receipt that verifies against the response as received; the last one
    // cites the new attestation.
    let info: serde_json::Value =
        serde_json::from_str(&ok_in(&data, &["ledger", "info", "--format", "json"]).stdout).unwrap();
    let vkey = info["log_verifier_key"].as_str().unwrap().to_string();
    let mut cited = Vec::new();
    for (id, body, _) in [served_ids.first().unwrap().clone(), served_ids.last().unwrap().clone()] {
        let receipt = loop {
            let (status, text) = get(&format!("{url}/v1/provenance/{id}"));
            if status == 200 {
                break text;
            }
            assert_eq!(status, 202, "{text}");
            std::thread::sleep(Duration::from_millis(100));
        };
        let r = tmp.path().join(format!("{id}.json"));
        let b = tmp.path().join(format!("{id}.body"));
        std::fs::write(&r, &receipt).unwrap();
        std::fs::write(&b, &body).unwrap();
        let v = ok(&["report", "verify", r.to_str().unwrap(), "--log-key", &vkey, "--response", b.to_str().unwrap()]);
        assert!(v.stdout.contains(&format!("valid: response {id}")), "{}", v.stdout);
        cited.push(v.stdout.split("attested at log index ").nth(1).unwrap().split(' ').next().unwrap().to_string());
        // Altered by one byte, the response is not the one the receipt records.
        let mut altered = body.clone();
        altered.push(b' ');
        std::fs::write(&b, &altered).unwrap();
        let (receipt_path, body_path) = (r.to_str().unwrap(), b.to_str().unwrap());
        crate::fails(
            &["report", "verify", receipt_path, "--log-key", &vkey, "--response", body_path],
            "SHA-256 differs",
        );
        // A receipt is checked against the log's key the verifier pins, never only the one it names.
        crate::fails(&["report", "verify", receipt_path], "--log-key");
    }
    assert_ne!(cited[0], cited[1], "the answer after the new attestation cites the new attestation");
    let _ = child.kill();
    let _ = child.wait();
}
