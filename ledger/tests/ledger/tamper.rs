//! Tampering with the SQLite file through a separate connection, as an attacker with the file
//! would; each change must be found by the audit, with the index named.

use chipledger_domain::records::Role;
use rusqlite::Connection;

use crate::*;

/// A log of 1 + 1 + 20 entries, one per commit, so that every entry has its own checkpoint.
fn log() -> (Fixture, SigningKey) {
    let mut f = Fixture::new();
    let auditor = f.enroll(4, Role::Auditor, None);
    for c in 1..=20 {
        f.ledger.append(&[annotation(&auditor, c, &format!("finding {c}"))]).unwrap();
    }
    assert_eq!(f.ledger.audit(&mut |_, _| {}).unwrap().problem, None, "the untouched log audits clean");
    (f, auditor)
}

#[track_caller]
fn check_found(f: &Fixture, index: u64, what_part: &str) {
    let report = f.ledger.audit(&mut |_, _| {}).unwrap();
    let problem = report.problem.unwrap_or_else(|| panic!("tampering not found"));
    assert_eq!(problem.index, Some(index), "{problem}");
    assert!(problem.what.contains(what_part), "{problem}");
}

#[test]
fn changing_any_byte_of_a_stored_envelope_is_found_at_its_index() {
    let (f, _) = log();
    let conn = Connection::open(f.path().join(chipledger_ledger::DB_FILE)).unwrap();
    for (index, offset) in [(0u64, 10), (7, 40), (21, 120), (13, 3)] {
        let body: Vec<u8> =
            conn.query_row("SELECT body FROM entries WHERE idx = ?1", [index as i64], |r| r.get(0)).unwrap();
        let mut changed = body.clone();
        changed[offset] ^= 0x01;
        conn.execute("UPDATE entries SET body = ?1 WHERE idx = ?2", rusqlite::params![changed, index as i64]).unwrap();
        check_found(&f, index, "");
        conn.execute("UPDATE entries SET body = ?1 WHERE idx = ?2", rusqlite::params![body, index as i64]).unwrap();
    }
    assert_eq!(f.ledger.audit(&mut |_, _| {}).unwrap().problem, None);
}

/// Entries are stored packed (form 2: signature and LZ4-packed payload). Every byte of a packed
/// body, changed: the audit finds it at that index, or the change decodes to the very same
/// envelope (an LZ4 match pointing at an equal stretch of the dictionary) and the log says
/// exactly what it said.
#[test]
fn every_byte_of_a_packed_body_is_covered() {
    let (f, _) = log();
    let conn = Connection::open(f.path().join(chipledger_ledger::DB_FILE)).unwrap();
    let index = 13i64;
    let (body, form): (Vec<u8>, i64) = conn
        .query_row("SELECT body, form FROM entries WHERE idx = ?1", [index], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    assert_eq!(form, 2, "stored packed");
    let envelope = f.ledger.envelope(index as u64).unwrap();
    assert!(body.len() < envelope.len() / 2, "{} bytes stored for a {}-byte envelope", body.len(), envelope.len());
    let (mut found, mut same) = (0, 0);
    for offset in 0..body.len() {
        let mut changed = body.clone();
        changed[offset] ^= 0x01;
        conn.execute("UPDATE entries SET body = ?1 WHERE idx = ?2", rusqlite::params![changed, index]).unwrap();
        match f.ledger.audit(&mut |_, _| {}).unwrap().problem {
            Some(problem) => {
                assert_eq!(problem.index, Some(index as u64), "byte {offset}: {problem}");
                found += 1;
            }
            None => {
                assert_eq!(f.ledger.envelope(index as u64).unwrap(), envelope, "byte {offset}: unseen change");
                same += 1;
            }
        }
    }
    conn.execute("UPDATE entries SET body = ?1 WHERE idx = ?2", rusqlite::params![body, index]).unwrap();
    assert!(found > body.len() * 9 / 10, "{found} found, {same} decoding to the same envelope");
    assert_eq!(f.ledger.audit(&mut |_, _| {}).unwrap().problem, None);
}

#[test]
fn an_altered_envelope_with_a_matching_leaf_hash_breaks_the_signed_root() {
    let (f, auditor) = log();
    let forged = annotation(&auditor, 99, "a rewritten finding");
    let leaf = chipledger_domain::merkle::leaf_hash(&forged);
    let conn = Connection::open(f.path().join(chipledger_ledger::DB_FILE)).unwrap();
    conn.execute(
        "UPDATE entries SET body = ?1, form = 0, leaf_hash = ?2 WHERE idx = 9",
        rusqlite::params![forged, &leaf.0[..]],
    )
    .unwrap();
    check_found(&f, 9, "");
}

#[test]
fn a_deleted_row_is_found_at_its_index() {
    let (f, _) = log();
    sql(&f, "DELETE FROM entries WHERE idx = 12");
    check_found(&f, 12, "missing");
}

#[test]
fn altered_derived_columns_are_found_at_their_index() {
    for (change, index) in [
        ("UPDATE entries SET counter = counter + 1 WHERE idx = 7", 7),
        ("UPDATE entries SET counter = NULL WHERE idx = 8", 8),
        ("UPDATE entries SET kind = kind + 1 WHERE idx = 9", 9),
    ] {
        let (f, _) = log();
        sql(&f, change);
        check_found(&f, index, "columns do not match the envelope");
    }
}

#[test]
fn two_swapped_rows_are_found() {
    let (f, _) = log();
    sql(
        &f,
        "UPDATE entries SET idx = -1 WHERE idx = 5;
         UPDATE entries SET idx = 5 WHERE idx = 14;
         UPDATE entries SET idx = 14 WHERE idx = -1;",
    );
    check_found(&f, 5, "");
}

#[test]
fn a_truncated_log_is_found_by_the_audit_and_against_a_saved_checkpoint() {
    let (mut f, _) = log();
    let (_, saved) = f.ledger.checkpoint().unwrap();
    sql(&f, "DELETE FROM entries WHERE idx >= 18; DELETE FROM nodes; DELETE FROM checkpoints WHERE size > 18;");
    // The attacker removed the later checkpoints too; the saved one still shows the loss.
    let problem = f.ledger.check_against(saved.as_bytes()).unwrap().unwrap();
    assert_eq!(problem.index, Some(18), "{problem}");
    // A log whose checkpoints were left in place is caught by the audit itself.
    let (f2, _) = log();
    sql(&f2, "DELETE FROM entries WHERE idx >= 18");
    check_found(&f2, 18, "truncated");
    f.reopen_fails_or_not();
}

#[test]
fn a_replaced_checkpoint_is_found() {
    let (f, _) = log();
    let foreign = SigningKey::from_seed(&[66; 32]);
    let cp = chipledger_domain::note::Checkpoint {
        origin: "test.example/log".into(),
        size: 10,
        root: chipledger_domain::merkle::Hash([0; 32]),
        extensions: vec![],
    };
    let note = cp.sign("test.example/log", &foreign).unwrap().to_bytes();
    let conn = Connection::open(f.path().join(chipledger_ledger::DB_FILE)).unwrap();
    conn.execute("UPDATE checkpoints SET note = ?1 WHERE size = 10", [note]).unwrap();
    let problem = f.ledger.audit(&mut |_, _| {}).unwrap().problem.unwrap();
    assert_eq!(problem.checkpoint_size, Some(10), "{problem}");
}

#[test]
fn an_entry_re_signed_with_a_foreign_key_is_found() {
    let (f, _) = log();
    let foreign = SigningKey::from_seed(&[77; 32]);
    let resigned = annotation(&foreign, 3, "finding 3");
    let leaf = chipledger_domain::merkle::leaf_hash(&resigned);
    let conn = Connection::open(f.path().join(chipledger_ledger::DB_FILE)).unwrap();
    conn.execute(
        "UPDATE entries SET body = ?1, form = 0, leaf_hash = ?2 WHERE idx = 4",
        rusqlite::params![resigned, &leaf.0[..]],
    )
    .unwrap();
    check_found(&f, 4, "not enrolled");
}

trait ReopenCheck {
    fn reopen_fails_or_not(&mut self);
}

impl ReopenCheck for Fixture {
    /// A truncated log must not be opened for writing: it would sign a checkpoint inconsistent
    /// with one it signed before.
    fn reopen_fails_or_not(&mut self) {
        let r = Ledger::open(self.path(), LedgerConfig::default(), std::sync::Arc::new(FixedClock(NOW)));
        assert!(r.is_err(), "a truncated log opened for writing");
    }
}

#[test]
fn derived_views_that_disagree_with_a_replay_are_named() {
    let mut f = Fixture::new();
    let agent = f.enroll(2, Role::Agent, Some("hgx-1"));
    f.ledger
        .append(&[attestation(
            &agent,
            1,
            "hgx-1",
            &[h800("GPU-34bf77d1-c686-6821-79a8-32d326c5039c", "1651323018291")],
            NOW,
        )])
        .unwrap();
    let acq = f.acquisition("1651323018291");
    f.ledger.append(&[acq]).unwrap();
    let auditor = f.enroll(4, Role::Auditor, None);
    f.ledger.append(&[annotation(&auditor, 1, "about the GPU")]).unwrap();
    assert_eq!(f.ledger.audit(&mut |_, _| {}).unwrap().problem, None, "the untouched views match a replay");
    let cases: &[(&str, &str)] = &[
        (
            "UPDATE gpus SET host = 'elsewhere'",
            "the gpus view says GPU GPU-34bf77d1-c686-6821-79a8-32d326c5039c was last attested at entry 2 on elsewhere",
        ),
        ("UPDATE gpus SET sku = 'L40S-48GB'", "L40S-48GB"),
        ("DELETE FROM gpus", "the gpus view lacks GPU"),
        (
            "DELETE FROM gpu_records WHERE idx = 5",
            "the gpu_records view does not tie GPU GPU-34bf77d1-c686-6821-79a8-32d326c5039c to entry 5",
        ),
        (
            "INSERT INTO gpu_records (uuid, idx) VALUES ('GPU-00000000-0000-0000-0000-000000000001', 3)",
            "ties GPU GPU-00000000-0000-0000-0000-000000000001 to entry 3; a replay does not",
        ),
        ("DELETE FROM acquisitions", "the acquisitions view does not tie serial 1651323018291 to entry 3"),
        // The trail: the hosts a GPU was on, its records' hosts, and its last fingerprint change.
        (
            "UPDATE gpu_hosts SET host = 'elsewhere'",
            "the gpu_hosts view says GPU GPU-34bf77d1-c686-6821-79a8-32d326c5039c was attested on elsewhere (entries 2–2); a replay says on hgx-1 (entries 2–2)",
        ),
        ("DELETE FROM gpu_hosts", "was attested on ; a replay says on hgx-1"),
        (
            "UPDATE gpu_records SET host = 'elsewhere' WHERE idx = 2",
            "the gpu_records view's row for GPU GPU-34bf77d1-c686-6821-79a8-32d326c5039c at entry 2 holds another host, time or digest",
        ),
        (
            "UPDATE gpus SET changes = '{\"vbios\":{\"from\":{\"value\":\"96.00.00.00.01\",\"index\":1,\"host\":\"hgx-1\",\"since\":\"2026-11-29T09:00:00Z\"},\"to\":\"96.00.51.00.0E\",\"index\":2}}'",
            "facts changed: vbios 96.00.00.00.01 → 96.00.51.00.0E), a replay says entry 2 on hgx-1 (H800-SXM5-80GB, none)",
        ),
        ("UPDATE gpus SET known = 'garbage'", "the gpus view says GPU"),
        ("DELETE FROM gpu_facts WHERE field = 'vbios'", "holds another host, time or digest"),
        (
            "INSERT INTO gpu_facts (uuid, idx, field, value) VALUES ('GPU-34bf77d1-c686-6821-79a8-32d326c5039c', 99, 'vbios', 'x')",
            "the gpu_facts view holds",
        ),
        ("UPDATE keys SET last_counter = 99 WHERE enrolled_at = 1", "last counter 99"),
        ("UPDATE keys SET revoked_at = 5 WHERE enrolled_at = 4", "revoked at Some(5)"),
    ];
    for (sql_text, what) in cases {
        let conn = Connection::open(f.path().join(chipledger_ledger::DB_FILE)).unwrap();
        conn.execute_batch("BEGIN").unwrap();
        conn.execute_batch(sql_text).unwrap();
        let report = {
            // Audit the changed file, then put the views back.
            conn.execute_batch("COMMIT").unwrap();
            let r = f.ledger.audit(&mut |_, _| {}).unwrap();
            f.ledger.rebuild_views().unwrap();
            r
        };
        let problem = report.problem.unwrap_or_else(|| panic!("{sql_text}: not found"));
        assert!(problem.what.contains(what), "{sql_text}: {problem}");
        assert_eq!(f.ledger.audit(&mut |_, _| {}).unwrap().problem, None, "rebuilt after {sql_text}");
    }
    f.reopen();
}
