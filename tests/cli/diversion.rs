//! Diversion reports through the binary: `report diversion` on a ledger where a landmark's
//! round trip rules out a host's declared site, and `report verify` of the file elsewhere, with
//! only the log's key — and of edited copies, which fail and say where.

use std::path::{Path, PathBuf};

use chipledger_domain::encoding::{b64_decode, b64_encode};
use serde_json::Value;

use crate::ledger::{fails_in, ok_in};
use crate::location::{dump, landmark_named, locate};
use crate::{fails, ok};

const SG_SITE: &str = "1.3521,103.8198";
const SHANGHAI: &str = "31.2304,121.4737";

/// A ledger with host `hgx-sg` declared in Singapore by "Example DC", its H800 attested and
/// acquired for Singapore by "Other Lab", and a landmark enrolled at Shanghai that measured it
/// over loopback (well under 25 ms: within 3,800 km of Shanghai, so not at the declared site).
/// Returns the tempdir, the data directory and the log's verifier key.
fn planted() -> (tempfile::TempDir, PathBuf, String) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    ok_in(&data, &["init"]);
    let agent = ok_in(&data, &["agent", "enroll", "--hostname", "hgx-sg"]);
    let enroll_agent = [
        "keys",
        "enroll",
        "--role",
        "agent",
        "--name",
        "hgx-sg",
        "--key",
        agent.stdout.trim(),
        "--site",
        SG_SITE,
        "--operator",
        "Example DC",
        "--country",
        "SG",
    ];
    ok_in(&data, &enroll_agent);
    let lm_key = tmp.path().join("sha-1.pem");
    let lm = ok_in(&data, &["keys", "generate", "--name", "sha-1", "--out", lm_key.to_str().unwrap()]);
    let enroll_landmark = [
        "keys",
        "enroll",
        "--role",
        "landmark",
        "--name",
        "sha-1",
        "--key",
        lm.stdout.trim(),
        "--site",
        SHANGHAI,
        "--operator",
        "Landmark Org",
    ];
    ok_in(&data, &enroll_landmark);
    ok_in(&data, &["agent", "attest", "--hostname", "hgx-sg", "--from-file", &dump()]);
    let acquire = [
        "acquisition",
        "record",
        "--serial",
        "1651323018291",
        "--supplier",
        "Example Distributor",
        "--invoice",
        "INV-1",
        "--shipped",
        "2025-03-15",
        "--from",
        "US",
        "--to",
        "SG",
        "--end-user",
        "Other Lab",
        "--sku",
        "H800-SXM5-80GB",
    ];
    ok_in(&data, &acquire);
    let (mut server, addr) = landmark_named(&data, &lm_key, "sha-1", SHANGHAI, 1, "0");
    let (code, rows, stderr) = locate(&data, &addr);
    assert_eq!(code, 0, "{stderr}\n{rows}");
    server.wait().unwrap();
    let vkey = ok_in(&data, &["ledger", "info", "--format", "json"]).stdout;
    let vkey: Value = serde_json::from_str(&vkey).unwrap();
    (tmp, data, vkey["log_verifier_key"].as_str().unwrap().to_string())
}

/// `report diversion` into `name` beside the data directory; the report as JSON.
fn write_report(data: &Path, name: &str, extra: &[&str]) -> (PathBuf, Value) {
    let out = data.parent().unwrap().join(name);
    let mut args = vec!["report", "diversion", "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    let r = ok_in(data, &args);
    assert!(r.stdout.contains("wrote"), "{}", r.stdout);
    let report = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    (out, report)
}

/// The events of `kind` in `report`.
fn of_kind<'a>(report: &'a Value, kind: &str) -> Vec<&'a Value> {
    report["events"].as_array().unwrap().iter().filter(|e| e["kind"] == kind).collect()
}

/// The statement inside a bundle entry's envelope.
fn statement(entry: &Value) -> Value {
    let env: Value = serde_json::from_str(entry["envelope"].as_str().unwrap()).unwrap();
    serde_json::from_slice(&b64_decode(env["payload"].as_str().unwrap(), "payload").unwrap()).unwrap()
}

/// The position in the bundle of the first entry whose predicate type contains `kind`.
fn entry_of(report: &Value, kind: &str) -> usize {
    let entries = report["bundle"]["entries"].as_array().unwrap();
    entries.iter().position(|e| statement(e)["predicateType"].as_str().unwrap().contains(kind)).unwrap()
}

/// `report verify` of an edited copy of `report` must fail and say `part`.
#[track_caller]
fn edited_fails(dir: &Path, report: &Value, vkey: &str, edit: impl FnOnce(&mut Value), part: &str) {
    let mut copy = report.clone();
    edit(&mut copy);
    let path = dir.join("edited.json");
    std::fs::write(&path, serde_json::to_vec(&copy).unwrap()).unwrap();
    fails(&["report", "verify", path.to_str().unwrap(), "--log-key", vkey], part);
}

#[test]
fn a_host_located_far_from_its_declared_site_is_reported_and_the_report_verifies_offline() {
    let (tmp, data, vkey) = planted();
    let (_, report) = write_report(&data, "diversion.json", &[]);
    assert_eq!(report["format"], "chipledger-diversion-report/v1");
    let located = of_kind(&report, "location-other-than-licensed");
    assert_eq!(located.len(), 1, "{report:#}");
    let e = located[0];
    assert_eq!(e["host"], "hgx-sg");
    assert_eq!(e["serial"], "1651323018291");
    let reason = e["reason"].as_str().unwrap();
    assert!(reason.starts_with("contradicts-declared (host-key); licensed to SG"), "{reason}");
    assert!(reason.contains("landmark sha-1"), "{reason}");
    // It rests on the attestation, the acquisition, the proof and three enrollments (the
    // admin's own is not among them), each in the bundle.
    let cites: Vec<u64> = e["cites"].as_array().unwrap().iter().map(|c| c.as_u64().unwrap()).collect();
    assert_eq!(cites.len(), 5, "{cites:?}");
    let held: Vec<u64> =
        report["bundle"]["entries"].as_array().unwrap().iter().map(|e| e["index"].as_u64().unwrap()).collect();
    assert!(cites.iter().all(|c| held.contains(c)), "{cites:?} not all in {held:?}");
    let proof = &report["bundle"]["entries"][entry_of(&report, "location-proof")];
    assert!(cites.contains(&proof["index"].as_u64().unwrap()));
    // The site's operator is not the acquisition's end user.
    let user = of_kind(&report, "end-user-differs");
    assert_eq!(user.len(), 1, "{report:#}");
    assert!(user[0]["reason"].as_str().unwrap().contains("\"Other Lab\""), "{}", user[0]["reason"]);

    // Elsewhere, with nothing but the file and the log's key.
    let elsewhere = tempfile::tempdir().unwrap();
    let copy = elsewhere.path().join("report.json");
    std::fs::write(&copy, serde_json::to_vec(&report).unwrap()).unwrap();
    let v = ok(&["report", "verify", copy.to_str().unwrap(), "--log-key", &vkey]);
    assert!(v.stdout.contains("valid: diversion report"), "{}", v.stdout);
    assert!(v.stdout.contains("location-other-than-licensed of GPU-"), "{}", v.stdout);
    assert!(!v.stdout.contains("note:"), "{}", v.stdout);
    // Without the key it still checks, and says the key was the file's.
    let v = ok(&["report", "verify", copy.to_str().unwrap()]);
    assert!(v.stdout.contains("pin the log's key"), "{}", v.stdout);
    // Another log's key: refused.
    let other = tmp.path().join("other");
    ok_in(&other, &["init"]);
    let other_key: Value =
        serde_json::from_str(&ok_in(&other, &["ledger", "info", "--format", "json"]).stdout).unwrap();
    let other_key = other_key["log_verifier_key"].as_str().unwrap();
    fails(&["report", "verify", copy.to_str().unwrap(), "--log-key", other_key], "different log key");
    // The ledger it came from still verifies end to end.
    ok_in(&data, &["ledger", "verify"]);
}

#[test]
fn an_edited_diversion_report_fails_and_names_what_changed() {
    let (tmp, data, vkey) = planted();
    let (_, report) = write_report(&data, "diversion.json", &[]);
    let dir = tmp.path();
    let location =
        report["events"].as_array().unwrap().iter().position(|e| e["kind"] == "location-other-than-licensed").unwrap();

    // An event removed.
    let remove = |r: &mut Value| {
        r["events"].as_array_mut().unwrap().remove(location);
    };
    edited_fails(dir, &report, &vkey, remove, "which the report does not list");
    // Its reason edited.
    let soften = |r: &mut Value| r["events"][location]["reason"] = "consistent".into();
    edited_fails(dir, &report, &vkey, soften, "reason reads \"consistent\"");
    // An event added: the same one, for a GPU the records do not place there.
    let add = |r: &mut Value| {
        let mut e = r["events"][location].clone();
        e["uuid"] = "GPU-00000000-0000-0000-0000-000000000001".into();
        r["events"].as_array_mut().unwrap().push(e);
    };
    edited_fails(dir, &report, &vkey, add, "which its records do not give");
    // A field no report has.
    let extra = |r: &mut Value| r["events"][location]["note"] = "reviewed".into();
    edited_fails(dir, &report, &vkey, extra, "unknown field `note`");
    // The proof's round trip made longer (so that the declared site would fit): its leaf no
    // longer hashes into the checkpoint.
    let at = entry_of(&report, "location-proof");
    let index = report["bundle"]["entries"][at]["index"].as_u64().unwrap();
    let slower = |r: &mut Value| {
        let entry = &mut r["bundle"]["entries"][at];
        let mut env: Value = serde_json::from_str(entry["envelope"].as_str().unwrap()).unwrap();
        let mut st = statement(entry);
        st["predicate"]["min_rtt_ns"] = 40_000_000u64.into();
        env["payload"] = b64_encode(&serde_json::to_vec(&st).unwrap()).into();
        entry["envelope"] = serde_json::to_string(&env).unwrap().into();
    };
    edited_fails(dir, &report, &vkey, slower, &format!("entry {index}"));
    // The proof dropped from the bundle.
    let drop = |r: &mut Value| {
        r["bundle"]["entries"].as_array_mut().unwrap().remove(at);
    };
    edited_fails(dir, &report, &vkey, drop, &format!("cites entry {index}, which its bundle does not hold"));
    // A later reader's clock: the proof would be stale, and the event would not follow.
    let later = |r: &mut Value| r["generated_at"] = "2099-01-01T00:00:00Z".into();
    edited_fails(dir, &report, &vkey, later, "which its records do not give");
    // Settings under which no proof would count, or no event would be listed.
    edited_fails(dir, &report, &vkey, |r| r["max_age_secs"] = 1.into(), "max_age_secs 1 is outside");
    edited_fails(dir, &report, &vkey, |r| r["since_index"] = 3.into(), "since_index is 3 without a since time");
    let beyond = |r: &mut Value| {
        r["since"] = "2026-01-01T00:00:00Z".into();
        r["since_index"] = 1_000_000.into();
    };
    edited_fails(dir, &report, &vkey, beyond, "since_index 1000000 is beyond the checkpoint");
    let earlier = |r: &mut Value| r["generated_at"] = "2000-01-01T00:00:00Z".into();
    edited_fails(dir, &report, &vkey, earlier, "is before the newest location proof it carries");
    // Not a report's shape.
    edited_fails(dir, &report, &vkey, |r| r["events"] = "none".into(), "not a diversion report");
    // Cut short.
    let cut = dir.join("cut.json");
    std::fs::write(&cut, &serde_json::to_vec(&report).unwrap()[..500]).unwrap();
    fails(&["report", "verify", cut.to_str().unwrap(), "--log-key", &vkey], "is not a report: EOF while parsing");
    // Larger than any report may be: refused before it is read (a sparse file: nothing written).
    let big = dir.join("big.json");
    std::fs::File::create(&big).unwrap().set_len(512 * 1024 * 1024 + 1).unwrap();
    fails(&["report", "verify", big.to_str().unwrap(), "--log-key", &vkey], "larger than");
}

#[test]
fn since_keeps_the_events_whose_newest_entry_was_appended_at_or_after_it() {
    let (_tmp, data, vkey) = planted();
    let (_, all) = write_report(&data, "all.json", &["--since", "2000-01-01T00:00:00Z", "--max-age", "1h"]);
    assert_eq!(all["since_index"], 0);
    assert_eq!(all["max_age_secs"], 3600);
    assert_eq!(all["events"].as_array().unwrap().len(), 2, "{all:#}");
    let (path, none) = write_report(&data, "none.json", &["--since", "2099-01-01T00:00:00Z"]);
    assert_eq!(none["events"], Value::Array(vec![]), "{none:#}");
    let v = ok(&["report", "verify", path.to_str().unwrap(), "--log-key", &vkey]);
    assert!(v.stdout.contains(": 0 event(s)"), "{}", v.stdout);
    fails_in(&data, &["report", "diversion", "--since", "yesterday", "--out", "x.json"], "RFC 3339");
    fails_in(&data, &["report", "diversion", "--max-age", "0s", "--out", "x.json"], "between 1m and 30d");
    fails_in(&data, &["report", "diversion", "--max-age", "31d", "--out", "x.json"], "between 1m and 30d");
}

/// A report carries what its GPUs are judged by beyond the entries its events cite: another
/// host's GPU under the same serial, and an admin's resolution of that serial. The GPU the
/// serial was resolved to is no longer reported for it, the other one is, and the report
/// verifies from what it carries.
#[test]
fn a_report_carries_the_other_gpus_and_resolutions_its_gpus_are_judged_by() {
    let (tmp, data, vkey) = planted();
    let twin = tmp.path().join("twin.txt");
    let text = std::fs::read_to_string(dump()).unwrap();
    let gpu = "GPU-34bf77d1-c686-6821-79a8-32d326c5039c";
    let other = "GPU-34bf77d1-c686-6821-79a8-32d326c50aaa";
    assert!(text.contains(gpu));
    std::fs::write(&twin, text.replace(gpu, other)).unwrap();
    let state = tmp.path().join("hgx-02");
    let state = state.to_str().unwrap();
    let agent = ok_in(&data, &["agent", "enroll", "--hostname", "hgx-02", "--state-dir", state]);
    ok_in(&data, &["keys", "enroll", "--role", "agent", "--name", "hgx-02", "--key", agent.stdout.trim()]);
    let attest = ["agent", "attest", "--hostname", "hgx-02", "--state-dir", state, "--from-file"];
    ok_in(&data, &[&attest[..], &[twin.to_str().unwrap()]].concat());
    let (_, before) = write_report(&data, "before.json", &[]);
    let serial_events = |r: &Value| -> Vec<String> {
        of_kind(r, "tampering-or-spoofing")
            .iter()
            .filter(|e| e["signal"] == "serial-under-two-uuids")
            .map(|e| e["uuid"].as_str().unwrap().to_string())
            .collect()
    };
    // Events come by host, then GPU: hgx-02's first.
    assert_eq!(serial_events(&before), [other, gpu]);

    let resolved =
        ok_in(&data, &["gpu", "resolve-serial", "--gpu", gpu, "--serial", "1651323018291", "--reason", "RMA 17"]);
    assert!(resolved.stdout.contains("resolved"), "{}", resolved.stdout);
    let (path, after) = write_report(&data, "after.json", &[]);
    assert_eq!(serial_events(&after), [other]);
    // The resolved GPU is still where physics puts it.
    assert_eq!(of_kind(&after, "location-other-than-licensed")[0]["uuid"], gpu);
    // The bundle holds the resolution, though no event cites it.
    let kinds: Vec<String> = after["bundle"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| statement(e)["predicateType"].as_str().unwrap().to_string())
        .collect();
    assert!(kinds.iter().any(|k| k.contains("annotation")), "{kinds:?}");
    let v = ok(&["report", "verify", path.to_str().unwrap(), "--log-key", &vkey]);
    assert!(v.stdout.contains("(2 GPU(s))"), "{}", v.stdout);
    // Without the resolution the events are not what the records give.
    let at = entry_of(&after, "annotation");
    let drop = |r: &mut Value| {
        r["bundle"]["entries"].as_array_mut().unwrap().remove(at);
    };
    edited_fails(tmp.path(), &after, &vkey, drop, &format!("serial-under-two-uuids) of {gpu}"));
}
