//! The inference node through the binary: plan, run on the tiny model, verify the report, and
//! the refusals an ML engineer meets first.

use std::path::{Path, PathBuf};

use crate::ledger::{fails_in, ok_in};
use crate::{fails, ok};

pub(crate) fn dump(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("agent/tests/data/nvidia-smi").join(name).display().to_string()
}

pub(crate) fn demo_policy() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("inference/policies/demo.toml").display().to_string()
}

/// A ledger with the real H800 dump attested from hgx-01, a lawful acquisition for its serial,
/// an enrolled node key and a tiny model.
pub(crate) fn fleet() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    ok_in(&data, &["init"]);
    let vkey = ok_in(&data, &["agent", "enroll", "--hostname", "hgx-01"]).stdout;
    ok_in(&data, &["keys", "enroll", "--role", "agent", "--name", "hgx-01", "--key", vkey.trim()]);
    ok_in(
        &data,
        &[
            "agent",
            "attest",
            "--hostname",
            "hgx-01",
            "--from-file",
            &dump("h800-sxm5-80gb-liguodongiot-llm-action.txt"),
        ],
    );
    let node_key = data.join("node-key.pem");
    let nvkey = ok(&["keys", "generate", "--name", "node-01", "--out", node_key.to_str().unwrap()]).stdout;
    ok_in(&data, &["keys", "enroll", "--role", "node", "--name", "node-01", "--key", nvkey.trim()]);
    ok_in(
        &data,
        &[
            "acquisition",
            "record",
            "--serial",
            "1651323018291",
            "--supplier",
            "Example Distributor",
            "--invoice",
            "INV-1",
            "--shipped",
            "2023-03-15",
            "--from",
            "SG",
            "--to",
            "CN",
            "--end-user",
            "Example Lab",
            "--sku",
            "H800-SXM5-80GB",
        ],
    );
    let model = tmp.path().join("tiny");
    ok(&["model", "tiny", "--arch", "llama", "--out", model.to_str().unwrap()]);
    (tmp, data, model)
}

#[test]
fn a_run_is_placed_on_the_qualifying_gpu_and_its_report_verifies_offline() {
    let (tmp, data, model) = fleet();
    let report = tmp.path().join("report.json");
    let r = ok_in(
        &data,
        &[
            "run",
            "--model",
            model.to_str().unwrap(),
            "--prompt",
            "Which GPU ran this?",
            "--max-tokens",
            "12",
            "--seed",
            "7",
            "--policy",
            &demo_policy(),
            "--node-name",
            "node-01",
            "--report-out",
            report.to_str().unwrap(),
        ],
    );
    assert!(r.stdout.contains("executed on: cpu"), "{}", r.stdout);
    assert!(
        r.stdout.contains("H800-SXM5-80GB serial 1651323018291") && r.stdout.contains("acquisition lawful"),
        "{}",
        r.stdout
    );
    let log_key = ok_in(&data, &["ledger", "info", "--format", "json"]).stdout;
    let v: serde_json::Value = serde_json::from_str(&log_key).unwrap();
    let vkey = v["log_verifier_key"].as_str().unwrap().to_string();
    let ok_verify =
        ok(&["report", "verify", report.to_str().unwrap(), "--log-key", &vkey, "--model", model.to_str().unwrap()]);
    assert!(
        ok_verify.stdout.contains("valid: run") && ok_verify.stdout.contains("3 model file(s) match"),
        "{}",
        ok_verify.stdout
    );
    // No witness cosigned the checkpoint this run was placed at: a reader that asks for one
    // refuses the report, naming the witness.
    let witness = chipledger_domain::cosignature::WitnessKey::new(
        "w.example",
        chipledger_domain::keys::SigningKey::from_seed(&[9; 32]).public_key(),
    )
    .unwrap()
    .to_string();
    fails(
        &["report", "verify", report.to_str().unwrap(), "--log-key", &vkey, "--witness", &witness],
        "0 of the 1 witness cosignatures required (missing: w.example)",
    );
    // The same seed gives the same output.
    let again = tmp.path().join("again.json");
    ok_in(
        &data,
        &[
            "run",
            "--model",
            model.to_str().unwrap(),
            "--prompt",
            "Which GPU ran this?",
            "--max-tokens",
            "12",
            "--seed",
            "7",
            "--policy",
            &demo_policy(),
            "--node-name",
            "node-01",
            "--report-out",
            again.to_str().unwrap(),
        ],
    );
    let out =
        |p: &Path| serde_json::from_slice::<serde_json::Value>(&std::fs::read(p).unwrap()).unwrap()["output"].clone();
    assert_eq!(out(&report), out(&again));
    // An edited report fails.
    let mut edited: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    edited["output"] = serde_json::Value::String("Paris".into());
    std::fs::write(&report, serde_json::to_vec(&edited).unwrap()).unwrap();
    fails(&["report", "verify", report.to_str().unwrap(), "--log-key", &vkey], "output does not match");
    ok_in(&data, &["ledger", "verify"]);
}

#[test]
fn refusals_explain_every_gpu_and_exit_non_zero() {
    let (_tmp, data, model) = fleet();
    // The built-in policy wants live probes: the imported H800 does not qualify.
    let r = fails_in(&data, &["run", "--model", model.to_str().unwrap(), "--prompt", "hi"], "no host qualifies");
    assert!(r.stderr.contains("imported from an nvidia-smi text dump"), "{}", r.stderr);
    // Planning R1 is fine (exit 0) and says why nothing can hold it.
    let plan = ok_in(&data, &["plan", "--model", "deepseek-r1", "--policy", &demo_policy()]);
    assert!(plan.stdout.contains("DeepSeek-R1") && plan.stdout.contains("too small"), "{}", plan.stdout);
    let bad = data.join("bad-policy.toml");
    std::fs::write(&bad, "max_attestation_age = \"a while\"\n").unwrap();
    fails_in(&data, &["plan", "--model", "deepseek-r1", "--policy", bad.to_str().unwrap()], "max_attestation_age");
    fails_in(&data, &["plan", "--model", "gpt-5"], "preset");
    fails_in(
        &data,
        &["run", "--model", "deepseek-r1", "--prompt", "hi", "--policy", &demo_policy()],
        "no host qualifies",
    );
}

#[test]
fn the_demo_tells_the_whole_story_and_leaves_a_ledger_that_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("demo");
    let r = ok_in(&data, &["demo"]);
    for part in [
        "SIMULATED",
        "dgx-a100-01",
        "hgx-h100-01",
        "hgx-h800-01",
        "18 active NVLinks; H800-SXM5-80GB has 8",
        "lawful-under-licence",
        "licence-required-none-recorded",
        "SIMULATED distance",
        "hgx-h800-02  ↔ sha-1: least round trip",
        "contradicts-declared (host-key)",
        "the declared site is 3,806 km from landmark sha-1",
        "location-other-than-licensed hgx-h800-02",
        "tampering-or-spoofing hgx-h800-02",
        "events recomputed",
        "no host can hold DeepSeek-R1",
        "nor split across hosts: no split over 2 to 8 hosts",
        "placed on hgx-h100-01",
        "not used: GPU-34bf77d1-c686-6821-79a8-32d326c5039c on hgx-h800-01: acquisition verdict licence-required-none-recorded",
        "executed on: cpu",
        "report verified offline",
        "ledger verified",
    ] {
        assert!(r.stdout.contains(part), "the demo output lacks {part:?}:\n{}", r.stdout);
    }
    ok_in(&data, &["ledger", "verify"]);
    let run = std::fs::read_dir(data.join("runs")).unwrap().next().unwrap().unwrap().path();
    ok(&["report", "verify", run.to_str().unwrap()]);
    let diversion = ok(&["report", "verify", data.join("diversion-report.json").to_str().unwrap()]);
    assert!(diversion.stdout.contains("hgx-h800-02"), "{}", diversion.stdout);
    // The data directory works after the demo: the run it suggests needs no key set-up.
    let line = r.stdout.lines().find(|l| l.contains(" run --model ")).expect("the demo suggests a run");
    assert!(line.contains("--node-name node-01"), "{line}");
    let policy = concat!(env!("CARGO_MANIFEST_DIR"), "/inference/policies/demo.toml");
    let model = data.join("models").join("tiny-r1-distill-qwen2");
    let again = ok_in(
        &data,
        &[
            "run",
            "--model",
            model.to_str().unwrap(),
            "--policy",
            policy,
            "--node-name",
            "node-01",
            "--prompt",
            "Hello",
            "--max-tokens",
            "4",
        ],
    );
    assert!(again.stdout.contains("signed and appended"), "{}", again.stdout);
    // And the endpoint it suggests answers there.
    let line = r.stdout.lines().find(|l| l.contains(" node serve ")).expect("the demo suggests node serve");
    assert!(line.contains("--node-name node-01") && line.contains("tiny-r1-distill-qwen2"), "{line}");
    let (mut node, url) = crate::spawn_listening(&crate::ledger::with(
        &data,
        &["node", "serve", "--model", model.to_str().unwrap(), "--policy", policy, "--node-name", "node-01"]
            .into_iter()
            .chain(["--listen", "127.0.0.1:0"])
            .collect::<Vec<_>>(),
    ));
    let mut answer = ureq::post(&format!("{url}/v1/chat/completions"))
        .send(r#"{"messages":[{"role":"user","content":"Hello"}],"max_tokens":3}"#)
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&answer.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(v["object"], "chat.completion", "{v}");
    let _ = node.kill();
    let _ = node.wait();
    fails_in(&data, &["demo"], "not empty");
}

/// Every GGUF `model tiny --gguf` writes (both architectures, every quantization) reads as
/// llama.cpp's loader needs it, checked by llama.cpp's own Python reader (the PyPI `gguf`
/// package, installed by scripts/test): candle writes an empty merges array as u32, which
/// llama.cpp refused ("invalid gguf type for tokenizer.ggml.merges").
#[test]
fn every_gguf_the_tiny_writer_makes_reads_as_llama_cpp_reads_it() {
    let python = std::env::var("CHIPLEDGER_GGUF_PYTHON")
        .expect("CHIPLEDGER_GGUF_PYTHON: a Python with the PyPI `gguf` package (scripts/test sets it up)");
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for arch in ["qwen2", "llama"] {
        for quant in ["q8_0", "q4_0", "q4_1", "f16"] {
            let path = dir.path().join(format!("{arch}-{quant}.gguf"));
            crate::ok(&["model", "tiny", "--arch", arch, "--gguf", quant, "--out", path.to_str().unwrap()]);
            files.push(path.to_str().unwrap().to_string());
        }
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/gguf-check.py");
    let out = std::process::Command::new(&python).arg(script).args(&files).output().expect("running the gguf reader");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert_eq!(text.lines().filter(|l| l.ends_with(": ok")).count(), 8, "{text}");
}
