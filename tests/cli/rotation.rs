//! The log key rotation drill, through the binary and a served log: rotate (begin, overlap,
//! finish), a reader pinning the old key follows the announcement it signed, and a checkpoint
//! signed only by the retired key after the overlap is refused.

use std::process::Command;

use chipledger_domain::keys::{SigningKey, VerifierKey};
use chipledger_domain::note::{Checkpoint, Note};
use chipledger_domain::rotation::{follow_log, Announcement};

use crate::ledger::{fails_in, ok_in, setup, with};

/// `chipledger ARGS…` with a person's token in the environment.
fn with_token(args: &[&str], token: &str) -> crate::Run {
    let out = Command::new(env!("CARGO_BIN_EXE_chipledger"))
        .args(args)
        .env("CHIPLEDGER_TOKEN", token)
        .output()
        .expect("running chipledger");
    crate::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn get(url: &str) -> String {
    ureq::get(url).call().unwrap().body_mut().read_to_string().unwrap()
}

#[test]
fn the_log_key_rotates_and_readers_pinning_the_old_key_follow() {
    let (tmp, data, auditor) = setup();
    let info: serde_json::Value =
        serde_json::from_str(&ok_in(&data, &["ledger", "info", "--format", "json"]).stdout).unwrap();
    let old = info["log_verifier_key"].as_str().unwrap().to_string();
    let old_vkey = VerifierKey::parse(&old).unwrap();
    let token = ok_in(&data, &["tokens", "create", "--role", "auditor", "--name", "auditor"]).stdout.trim().to_string();
    let append = |n: &str| {
        ok_in(
            &data,
            &["ledger", "debug-append-loop", "--key", auditor.to_str().unwrap(), "--count", n, "--batch", "1"],
        );
    };
    let serve = || crate::spawn_listening(&with(&data, &["serve", "--listen", "127.0.0.1:0"]));
    // A reader that pins the old key and reads the fleet from the server.
    let read = |url: &str| {
        let r = with_token(&["fleet", "--ledger", url, "--log-key", &old, "--format", "json"], &token);
        assert_eq!(r.code, 0, "the old-key reader failed:\n{}", r.stderr);
        r
    };
    append("2");
    let (mut s, url) = serve();
    read(&url);
    s.kill().unwrap();
    s.wait().unwrap();

    // Begin: the announcement is in the log; every checkpoint after carries both signatures.
    let begun = ok_in(&data, &["ledger", "rotate-key", "begin"]).stdout;
    let new = begun.split(" to ").nth(1).and_then(|r| r.split(' ').next()).unwrap().to_string();
    let new_vkey = VerifierKey::parse(&new).unwrap();
    assert_eq!(new_vkey.name(), old_vkey.name());
    append("2");
    let (mut s, url) = serve();
    let overlap = get(&format!("{url}/checkpoint"));
    let note = Note::parse(overlap.as_bytes()).unwrap();
    assert_eq!(note.signatures.len(), 2, "{overlap}");
    note.verify(std::slice::from_ref(&old_vkey)).unwrap();
    note.verify(std::slice::from_ref(&new_vkey)).unwrap();
    let r = read(&url);
    assert!(!r.stderr.contains("following"), "the pinned key still signs: {}", r.stderr);
    ok_in(&data, &["ledger", "verify"]);
    s.kill().unwrap();
    s.wait().unwrap();

    // Finish: the old key signs its last checkpoint; then the new key alone.
    let finished = ok_in(&data, &["ledger", "rotate-key", "finish"]).stdout;
    assert!(finished.contains(&format!("the log key is now {new}")), "{finished}");
    let retired_after: u64 =
        finished.split("nothing after size ").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    append("1");
    let (mut s, url) = serve();
    let after = get(&format!("{url}/checkpoint"));
    let note = Note::parse(after.as_bytes()).unwrap();
    assert_eq!(note.signatures.len(), 1, "{after}");
    note.verify(std::slice::from_ref(&new_vkey)).unwrap();
    assert!(note.verify(std::slice::from_ref(&old_vkey)).is_err());
    // The old-key reader follows the announcement, once per run, and reads on.
    let r = read(&url);
    assert!(r.stderr.contains("following") && r.stderr.contains(&new), "{}", r.stderr);

    // What it followed: the published rotations, signed by the old key, in the checkpoint.
    let published: serde_json::Value = serde_json::from_str(&get(&format!("{url}/log-keys"))).unwrap();
    let rotations = published["rotations"].as_array().unwrap();
    assert_eq!(rotations.len(), 2);
    let proofs: Vec<Vec<chipledger_domain::merkle::Hash>> =
        rotations.iter().map(|r| serde_json::from_value(r["inclusion_proof"].clone()).unwrap()).collect();
    let announcements: Vec<Announcement<'_>> = rotations
        .iter()
        .zip(&proofs)
        .map(|(r, p)| Announcement {
            index: r["index"].as_u64().unwrap(),
            envelope: r["envelope"].as_str().unwrap().as_bytes(),
            inclusion_proof: p,
        })
        .collect();
    let checkpoint = published["checkpoint"].as_str().unwrap();
    let (keys, cp) = follow_log(old_vkey.clone(), &announcements, checkpoint.as_bytes()).unwrap();
    assert_eq!(keys.current(), &new_vkey);
    assert_eq!(announcements[1].index + 1, retired_after);

    // Whoever still holds the retired key signs a larger checkpoint with it alone: refused, by a
    // follower and by the ledger's own check of a saved checkpoint.
    let retired = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("log-key.retired-"))
        .expect("the retired key file");
    let old_key = SigningKey::from_pkcs8_pem(&std::fs::read_to_string(&retired).unwrap()).unwrap();
    let forged_cp = Checkpoint {
        origin: cp.checkpoint.origin.clone(),
        size: cp.checkpoint.size + 5,
        root: cp.checkpoint.root,
        extensions: vec![],
    };
    let forged = forged_cp.sign(old_vkey.name(), &old_key).unwrap().to_bytes();
    let why = keys.open_checkpoint(&forged, None).unwrap_err().to_string();
    assert!(why.contains("retired after size"), "{why}");
    let forged_file = tmp.path().join("forged-checkpoint.txt");
    std::fs::write(&forged_file, &forged).unwrap();
    fails_in(&data, &["ledger", "verify", "--checkpoint", forged_file.to_str().unwrap()], "retired after size");
    // And the published rotations do not open it either.
    assert!(follow_log(old_vkey, &announcements, &forged).is_err());

    // The log audits whole, every checkpoint under the key of its time; no second rotation
    // while none is open to finish.
    ok_in(&data, &["ledger", "verify"]);
    fails_in(&data, &["ledger", "rotate-key", "finish"], "no rotation is open");
    let info = ok_in(&data, &["ledger", "info"]).stdout;
    assert!(info.contains(&format!("key {old} signs checkpoints of size 0 to size {retired_after}")), "{info}");
    s.kill().unwrap();
    s.wait().unwrap();
}
