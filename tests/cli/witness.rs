//! `chipledger witness serve` as a process: killed with SIGKILL at random moments while a log and
//! a fork of it (a second database with the same key) race to be cosigned, it never cosigns
//! both branches, and after each restart it remembers what it cosigned.

use std::process::{Child, Command};
use std::sync::Arc;

use chipledger_domain::cosignature::WitnessKey;
use chipledger_domain::keys::SigningKey;
use chipledger_domain::note::Note;
use chipledger_domain::records::{sign_record, Annotation, AnnotationTarget, FORMAT_VERSION};
use chipledger_domain::witness::AddCheckpoint;
use chipledger_ledger::{Ledger, LedgerConfig};

struct WitnessProcess {
    child: Child,
    url: String,
}

fn start(args: &[String]) -> WitnessProcess {
    let (child, url) = crate::spawn_listening(args);
    WitnessProcess { child, url }
}

fn note(key: &SigningKey, counter: u64, text: &str) -> Vec<u8> {
    let a = Annotation {
        format_version: FORMAT_VERSION,
        counter,
        written_at: time::OffsetDateTime::now_utc(),
        target: AnnotationTarget::Gpu {
            uuid: chipledger_domain::fingerprint::GpuUuid::parse("GPU-00000000-1111-2222-3333-444444444444").unwrap(),
        },
        severity: chipledger_domain::identify::Severity::Info,
        text: text.into(),
        resolves_serial: None,
        settles_history: false,
    };
    sign_record(&a, key).unwrap().to_json()
}

/// One add-checkpoint from `log`'s latest checkpoint with a proof from `old`: the status and
/// body, or `None` when the connection broke (the witness was killed).
fn submit(url: &str, log: &Ledger, old: u64) -> Option<(u16, String, String)> {
    let (size, checkpoint) = log.checkpoint().unwrap();
    let proof = if old == 0 || old > size { vec![] } else { log.consistency_proof(old, size).unwrap() };
    let body = AddCheckpoint { old, proof, checkpoint: checkpoint.clone().into_bytes() }.to_bytes();
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut r = agent.post(&format!("{url}/add-checkpoint")).send(&body).ok()?;
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().ok()?;
    Some((status, text, checkpoint))
}

/// Checks a cosignature line on `checkpoint` and notes what it cosigned.
fn record(vkey: &WitnessKey, cosigned: &mut Vec<(char, u64, String)>, branch: char, line: &str, checkpoint: &str) {
    let mut note = Note::parse(checkpoint.as_bytes()).unwrap();
    note.signatures.extend(Note::parse(format!("x\n\n{line}").as_bytes()).unwrap().signatures);
    vkey.cosignature_time(&note).unwrap().unwrap();
    let cp = chipledger_domain::note::Checkpoint::parse(&note.text).unwrap();
    cosigned.push((branch, cp.size, cp.root.to_base64()));
}

#[test]
fn a_killed_witness_never_cosigns_two_branches_of_a_forked_log() {
    let tmp = tempfile::tempdir().unwrap();
    let a_dir = tmp.path().join("a");
    let clock = Arc::new(chipledger_ledger::SystemClock);
    let (a, info) = Ledger::init(&a_dir, "fork.example/log", clock.clone(), &mut rand_core::OsRng).unwrap();
    let admin = SigningKey::from_pkcs8_pem(&std::fs::read_to_string(&info.admin_key_path).unwrap()).unwrap();
    a.append(&(2..12).map(|c| note(&admin, c, "shared")).collect::<Vec<_>>()).unwrap();
    let fork_at = a.size();
    drop(a);
    let b_dir = tmp.path().join("b");
    std::fs::create_dir(&b_dir).unwrap();
    for f in std::fs::read_dir(&a_dir).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), b_dir.join(f.file_name())).unwrap();
    }
    let a = Ledger::open(&a_dir, LedgerConfig::default(), clock.clone()).unwrap();
    let b = Ledger::open(&b_dir, LedgerConfig::default(), clock).unwrap();
    let key_file = tmp.path().join("witness.pem");
    crate::ok(&["keys", "generate", "--name", "w.example/1", "--out", key_file.to_str().unwrap()]);
    let vkey = crate::ok(&["witness", "vkey", "--key", key_file.to_str().unwrap(), "--name", "w.example/1"]).stdout;
    let vkey = WitnessKey::parse(vkey.trim()).unwrap();
    let args: Vec<String> = [
        "witness",
        "serve",
        "--key",
        key_file.to_str().unwrap(),
        "--name",
        "w.example/1",
        "--log",
        &format!("fork.example/log={}", a.verifier_key()),
        "--state",
        tmp.path().join("witness.db").to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut witness = start(&args);
    // Every cosignature the witness gave: (branch, size, root).
    let mut cosigned: Vec<(char, u64, String)> = Vec::new();
    let mut kills = 0;
    let mut counter = 100;
    for round in 0..60u64 {
        // Each branch grows by its own entries.
        counter += 1;
        a.append(&[note(&admin, counter, &format!("a {round}"))]).unwrap();
        b.append(&[note(&admin, counter, &format!("b {round}"))]).unwrap();
        for (branch, log) in [('a', &a), ('b', &b)] {
            // Where the witness stands (a 409 to old size 0 says; the first contact is cosigned
            // outright), then the checkpoint from there.
            let latest = match submit(&witness.url, log, 0) {
                Some((409, latest, _)) => latest,
                Some((200, line, checkpoint)) => {
                    record(&vkey, &mut cosigned, branch, &line, &checkpoint);
                    continue;
                }
                Some(other) => panic!("{other:?}"),
                None => {
                    witness = start(&args);
                    continue;
                }
            };
            let old: u64 = latest.trim().parse().unwrap();
            // Kill it at a random moment around the cosigning.
            let killer = (round % 3 == 0).then(|| {
                let pid = witness.child.id();
                let wait =
                    std::time::Duration::from_micros(rand_core::RngCore::next_u32(&mut rand_core::OsRng) as u64 % 3000);
                std::thread::spawn(move || {
                    std::thread::sleep(wait);
                    let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
                })
            });
            let answer = submit(&witness.url, log, old);
            if let Some(k) = killer {
                k.join().unwrap();
                let _ = witness.child.wait();
                kills += 1;
                witness = start(&args);
            }
            if let Some((200, line, checkpoint)) = answer {
                record(&vkey, &mut cosigned, branch, &line, &checkpoint);
            }
        }
    }
    let _ = witness.child.kill();
    assert!(kills >= 15, "{kills} kills");
    assert!(cosigned.len() >= 20, "{cosigned:?}");
    // Past the fork point, every cosigned checkpoint is of one branch.
    let branches: std::collections::BTreeSet<char> =
        cosigned.iter().filter(|(_, size, _)| *size > fork_at).map(|(b, _, _)| *b).collect();
    assert_eq!(branches.len(), 1, "cosigned both branches: {cosigned:?}");
    // And sizes never went back.
    assert!(cosigned.windows(2).all(|w| w[0].1 <= w[1].1), "{cosigned:?}");
}

/// Three witnesses and a log server that submits to them: `/checkpoint` (public) comes back
/// cosigned by all three; a reader asking for 2 of 3 accepts it and a bundle exported from the
/// log; with two witnesses stopped, a new checkpoint has one cosignature and the same reader
/// refuses it, naming the witnesses missing.
#[test]
fn a_quorum_of_witnesses_cosigns_the_logs_checkpoints() {
    use crate::ledger::ok_in;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    ok_in(&data, &["init"]);
    let mut witnesses = Vec::new();
    let mut vkeys = Vec::new();
    let info: serde_json::Value =
        serde_json::from_str(&ok_in(&data, &["ledger", "info", "--format", "json"]).stdout).unwrap();
    let log_vkey = info["log_verifier_key"].as_str().unwrap().to_string();
    let origin = info["origin"].as_str().unwrap().to_string();
    for i in 1..=3 {
        let key = tmp.path().join(format!("w{i}.pem"));
        let name = format!("w{i}.example");
        crate::ok(&["keys", "generate", "--name", &name, "--out", key.to_str().unwrap()]);
        let vkey = crate::ok(&["witness", "vkey", "--key", key.to_str().unwrap(), "--name", &name]).stdout;
        let args: Vec<String> = [
            "witness",
            "serve",
            "--key",
            key.to_str().unwrap(),
            "--name",
            &name,
            "--log",
            &format!("{origin}={log_vkey}"),
            "--state",
            tmp.path().join(format!("w{i}.db")).to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        witnesses.push(start(&args));
        vkeys.push(vkey.trim().to_string());
    }
    let mut serve = vec!["--data-dir".to_string(), data.to_str().unwrap().into(), "serve".into()];
    serve.extend(["--listen".into(), "127.0.0.1:0".into()]);
    for (w, v) in witnesses.iter().zip(&vkeys) {
        serve.extend(["--witness".to_string(), format!("{v}@{}", w.url)]);
    }
    let mut server = start(&serve);
    let admin_key = data.join(chipledger_ledger::ADMIN_KEY_FILE);
    let append = |n: &str| {
        ok_in(&data, &["ledger", "debug-append-loop", "--key", admin_key.to_str().unwrap(), "--count", n]);
    };
    append("3");
    let fetch = |url: &str| -> String {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        agent.get(&format!("{url}/checkpoint")).call().unwrap().body_mut().read_to_string().unwrap()
    };
    // Wait for the three cosignatures of the latest checkpoint.
    let wait_for = |cosignatures: usize, size: &str| -> String {
        for _ in 0..200 {
            let cp = fetch(&server.url);
            let lines = cp.lines().filter(|l| l.starts_with("\u{2014} w")).count();
            if cp.lines().nth(1) == Some(size) && lines >= cosignatures {
                return cp;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("no checkpoint of size {size} with {cosignatures} cosignatures: {}", fetch(&server.url));
    };
    let size = ok_in(&data, &["ledger", "checkpoint"]).stdout.lines().nth(1).unwrap().to_string();
    let cp = wait_for(3, &size);
    let saved = tmp.path().join("checkpoint.txt");
    std::fs::write(&saved, &cp).unwrap();
    let policy: Vec<String> = vkeys.iter().flat_map(|v| ["--witness".to_string(), v.clone()]).collect();
    let mut verify: Vec<String> =
        vec!["ledger".into(), "verify".into(), "--checkpoint".into(), saved.to_str().unwrap().into()];
    verify.extend(policy.iter().cloned());
    verify.extend(["--quorum".into(), "2".into()]);
    let verify_args: Vec<&str> = verify.iter().map(String::as_str).collect();
    let r = ok_in(&data, &verify_args);
    assert!(r.stdout.contains("witnessed by 3 of 2 required"), "{}", r.stdout);
    // A node reads the fleet only at a checkpoint the witnesses saw (here: the data directory's,
    // with the cosignatures the server kept).
    let mut plan: Vec<String> = vec!["plan".into(), "--model".into(), "r1-distill-qwen-1.5b".into()];
    plan.extend(policy.iter().cloned());
    plan.extend(["--quorum".into(), "2".into()]);
    let plan_args: Vec<&str> = plan.iter().map(String::as_str).collect();
    ok_in(&data, &plan_args);
    // A bundle carries the cosigned checkpoint.
    let bundle = tmp.path().join("bundle.json");
    ok_in(&data, &["ledger", "export", "--out", bundle.to_str().unwrap()]);
    let mut vb: Vec<String> = vec!["ledger".into(), "verify-bundle".into(), bundle.to_str().unwrap().into()];
    vb.extend(policy.iter().cloned());
    vb.extend(["--quorum".into(), "2".into()]);
    let r = crate::ok(&vb.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(r.stdout.contains("witnessed by 3 of 2 required"), "{}", r.stdout);
    // Two witnesses stop; the log goes on; its new checkpoint has one cosignature.
    for w in witnesses.iter_mut().skip(1) {
        let _ = w.child.kill();
        let _ = w.child.wait();
    }
    append("2");
    let size = ok_in(&data, &["ledger", "checkpoint"]).stdout.lines().nth(1).unwrap().to_string();
    let cp = wait_for(1, &size);
    std::fs::write(&saved, &cp).unwrap();
    let r = crate::chipledger(&with(&data, &verify_args).iter().map(String::as_str).collect::<Vec<_>>());
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stderr.contains("1 of the 2 witness cosignatures required (missing: w2.example, w3.example)"),
        "{}",
        r.stderr
    );
    let r = crate::chipledger(&with(&data, &plan_args).iter().map(String::as_str).collect::<Vec<_>>());
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(r.stderr.contains("missing: w2.example, w3.example"), "{}", r.stderr);
    let _ = server.child.kill();
    let _ = witnesses[0].child.kill();
}

fn with(dir: &std::path::Path, args: &[&str]) -> Vec<String> {
    crate::ledger::with(dir, args)
}
