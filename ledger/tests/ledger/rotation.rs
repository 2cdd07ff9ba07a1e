//! Log key rotation on the ledger: only the rotation commands append rotation records; another
//! process holding the log open stops signing once the keys move; a `finish` interrupted after
//! its record is completed by the next open; two rotations in a row, and readers pinning any of
//! the keys follow.

use std::sync::Arc;

use chipledger_domain::keys::{SigningKey, VerifierKey};
use chipledger_domain::log::{FixedClock, LogClient};
use chipledger_domain::records::{sign_record, Role};
use chipledger_domain::rotation::{follow_log, Announcement, LogKeyRotation, Phase};
use chipledger_ledger::{Error, Ledger, LedgerConfig, Rejection};

use crate::*;

fn open(f: &Fixture) -> Ledger {
    Ledger::open(f.path(), LedgerConfig::default(), Arc::new(FixedClock(NOW))).unwrap()
}

/// A rotation record as published: index, envelope, inclusion proof.
type Published = (u64, Vec<u8>, Vec<chipledger_domain::merkle::Hash>);

/// The published rotations and checkpoint, as GET /log-keys serves them.
fn published(ledger: &Ledger) -> (Vec<Published>, String) {
    let (size, checkpoint) = ledger.checkpoint().unwrap();
    let rotations = ledger
        .rotation_records()
        .unwrap()
        .into_iter()
        .map(|(i, _)| (i, ledger.envelope(i).unwrap(), LogClient::inclusion_proof(ledger, i, size).unwrap()))
        .collect();
    (rotations, checkpoint)
}

fn follow(ledger: &Ledger, pinned: &VerifierKey) -> chipledger_domain::rotation::LogKeys {
    let (rotations, checkpoint) = published(ledger);
    let a: Vec<Announcement<'_>> =
        rotations.iter().map(|(i, e, p)| Announcement { index: *i, envelope: e, inclusion_proof: p }).collect();
    follow_log(pinned.clone(), &a, checkpoint.as_bytes()).unwrap().0
}

#[test]
fn rotation_records_come_only_from_the_rotation_commands() {
    let f = Fixture::new();
    let old = SigningKey::from_pkcs8_pem(&std::fs::read_to_string(f.path().join("log-key.pem")).unwrap()).unwrap();
    let new = SigningKey::from_seed(&[42; 32]);
    // Even a well-formed record, signed by the log key and an admin, is refused through append.
    let r = LogKeyRotation::new("test.example/log", Phase::Begin, f.ledger.size(), &old, &new, 2, NOW).unwrap();
    let env = sign_record(&r, &f.admin).unwrap().to_json();
    match f.ledger.append(&[env]) {
        Err(Error::Rejected { reason: Rejection::RotationNotAppendable, .. }) => {}
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn two_rotations_and_every_reader_follows() {
    let mut f = Fixture::new();
    let first = f.ledger.verifier_key().clone();
    let k2 = SigningKey::from_seed(&[2; 32]);
    let k3 = SigningKey::from_seed(&[3; 32]);
    let vk = |k: &SigningKey| VerifierKey::new("test.example/log", k.public_key()).unwrap();
    let auditor = f.enroll(5, Role::Auditor, None);
    let mut counter = 1;
    let mut note = |f: &Fixture| {
        counter += 1;
        f.ledger.append(&[annotation(&auditor, counter, "x")]).unwrap();
    };
    for new in [&k2, &k3] {
        let ledger = open(&f);
        f.admin_counter += 1;
        ledger.begin_key_rotation(&f.admin, f.admin_counter, new).unwrap();
        f.reopen();
        note(&f);
        let ledger = open(&f);
        f.admin_counter += 1;
        ledger.finish_key_rotation(&f.admin, f.admin_counter).unwrap();
        f.reopen();
        note(&f);
        assert_eq!(f.ledger.verifier_key(), &vk(new));
    }
    assert_eq!(f.ledger.audit(&mut |_, _| {}).unwrap().problem, None);
    // Readers pinning the first, second or third key all end at the third.
    for pinned in [first, vk(&k2), vk(&k3)] {
        assert_eq!(follow(&f.ledger, &pinned).current(), &vk(&k3), "pinned {pinned}");
    }
}

#[test]
fn another_process_stops_signing_once_the_keys_move() {
    let f = Fixture::new();
    let other = open(&f);
    let new = SigningKey::from_seed(&[9; 32]);
    let mut f = f;
    f.admin_counter += 1;
    other.begin_key_rotation(&f.admin, f.admin_counter, &new).unwrap();
    let auditor_env = {
        f.admin_counter += 1;
        f.enrollment(&SigningKey::from_seed(&[6; 32]), Role::Auditor, None)
    };
    // `f.ledger` opened before the rotation: it must not sign with keys that may be retired.
    let e = f.ledger.append(std::slice::from_ref(&auditor_env)).unwrap_err().to_string();
    assert!(e.contains("restart"), "{e}");
    f.reopen();
    f.ledger.append(&[auditor_env]).unwrap();
}

#[test]
fn a_finish_interrupted_after_its_record_is_completed_by_the_next_open() {
    let mut f = Fixture::new();
    let old_vkey = f.ledger.verifier_key().clone();
    let new = SigningKey::from_seed(&[11; 32]);
    f.admin_counter += 1;
    open(&f).begin_key_rotation(&f.admin, f.admin_counter, &new).unwrap();
    f.admin_counter += 1;
    open(&f).finish_key_rotation(&f.admin, f.admin_counter).unwrap();
    // Put the files and meta back as they were before the renames: a crash right after the
    // finish record was committed.
    let dir = f.path().to_path_buf();
    let retired = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("log-key.retired-"))
        .unwrap();
    std::fs::rename(dir.join("log-key.pem"), dir.join("log-key.next.pem")).unwrap();
    std::fs::rename(&retired, dir.join("log-key.pem")).unwrap();
    let conn = rusqlite::Connection::open(dir.join("ledger.sqlite")).unwrap();
    conn.execute("UPDATE meta SET value = ?1 WHERE key = 'log_verifier_key'", [old_vkey.to_string()]).unwrap();
    drop(conn);
    f.reopen();
    let new_vkey = VerifierKey::new("test.example/log", new.public_key()).unwrap();
    assert_eq!(f.ledger.verifier_key(), &new_vkey);
    assert!(!dir.join("log-key.next.pem").exists());
    f.admin_counter += 1;
    let env = f.enrollment(&SigningKey::from_seed(&[12; 32]), Role::Auditor, None);
    f.ledger.append(&[env]).unwrap();
    assert_eq!(f.ledger.audit(&mut |_, _| {}).unwrap().problem, None);
}
