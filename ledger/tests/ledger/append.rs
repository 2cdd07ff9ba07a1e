use chipledger_domain::log::AsOf;
use chipledger_domain::merkle::{verify_consistency, verify_inclusion};
use chipledger_domain::note::open_checkpoint;
use chipledger_domain::records::{RecordKind, Role};
use chipledger_ledger::{EntryFilter, Error, Rejection};

use crate::*;

const U1: &str = "GPU-34bf77d1-c686-6821-79a8-32d326c5039c";
const U2: &str = "GPU-00000000-1111-2222-3333-444444444444";

#[track_caller]
fn check_refused(f: &mut Fixture, envelopes: &[Vec<u8>], position: usize, expected: impl Fn(&Rejection) -> bool) {
    let size = f.ledger.size();
    let cps = f.ledger.checkpoints().unwrap().len();
    match f.ledger.append(envelopes) {
        Err(Error::Rejected { position: p, reason }) => {
            assert_eq!(p, position, "{reason}");
            assert!(expected(&reason), "unexpected reason: {reason}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(f.ledger.size(), size, "nothing was written");
    assert_eq!(f.ledger.checkpoints().unwrap().len(), cps, "no checkpoint was signed");
    f.reopen();
    assert_eq!(f.ledger.size(), size, "nothing was written, even on disk");
}

#[test]
fn init_writes_the_admin_self_enrollment_as_entry_zero_and_a_checkpoint() {
    let f = Fixture::new();
    assert_eq!(f.ledger.size(), 1);
    let (size, note) = f.ledger.checkpoint().unwrap();
    assert_eq!(size, 1);
    let cp = open_checkpoint(note.as_bytes(), &[f.ledger.verifier_key().clone()], Some("test.example/log")).unwrap();
    assert_eq!(cp.checkpoint.size, 1);
    let keys = f.ledger.keys().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].role, Role::Admin);
    assert_eq!(keys[0].key_id, f.admin.key_id().to_string());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for file in [chipledger_ledger::LOG_KEY_FILE, chipledger_ledger::ADMIN_KEY_FILE] {
            let mode = std::fs::metadata(f.path().join(file)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{file}");
        }
    }
    let again = Ledger::init(
        f.path(),
        "x",
        std::sync::Arc::new(FixedClock(NOW)),
        &mut rand_chacha::ChaCha20Rng::seed_from_u64(1),
    );
    assert!(matches!(again, Err(Error::AlreadyInitialized { .. })));
}

#[test]
fn receipts_carry_proofs_that_verify_against_the_signed_checkpoint() {
    let mut f = Fixture::new();
    let agent = f.enroll(2, Role::Agent, Some("hgx-1"));
    let envs: Vec<Vec<u8>> =
        (1..=5).map(|c| attestation(&agent, c, "hgx-1", &[h800(U1, "1651323018291")], NOW)).collect();
    let receipts = f.ledger.append(&envs).unwrap();
    assert_eq!(receipts.iter().map(|r| r.index).collect::<Vec<_>>(), vec![2, 3, 4, 5, 6]);
    for r in &receipts {
        let cp = open_checkpoint(r.checkpoint.as_bytes(), &[f.ledger.verifier_key().clone()], None).unwrap();
        assert_eq!(cp.checkpoint.size, 7);
        verify_inclusion(r.index, 7, &r.leaf_hash, &r.inclusion_proof, &cp.checkpoint.root).unwrap();
    }
    let old_root = f.ledger.root_at(2).unwrap();
    let proof = f.ledger.consistency_proof(2, 7).unwrap();
    verify_consistency(2, 7, &old_root, &f.ledger.root_at(7).unwrap(), &proof).unwrap();
}

#[test]
fn an_exact_duplicate_returns_its_original_index_and_writes_nothing() {
    let mut f = Fixture::new();
    let agent = f.enroll(2, Role::Agent, Some("hgx-1"));
    let env = attestation(&agent, 1, "hgx-1", &[h800(U1, "1651323018291")], NOW);
    let first = f.ledger.append(std::slice::from_ref(&env)).unwrap();
    let size = f.ledger.size();
    let again = f.ledger.append(std::slice::from_ref(&env)).unwrap();
    assert_eq!(again[0].index, first[0].index);
    assert!(again[0].duplicate);
    assert_eq!(f.ledger.size(), size);
    let twice = f.ledger.append(&[env.clone(), env]).unwrap();
    assert!(twice.iter().all(|r| r.duplicate && r.index == first[0].index));
}

/// A log written by schema 2 (duplicates found by leaf-hash prefix, no counter column) opens
/// under schema 3: the counters are filled in from the stored envelopes, the audit passes, and a
/// resubmitted envelope is still recognised as a duplicate.
#[test]
fn a_schema_2_log_is_migrated_and_still_finds_duplicates() {
    let mut f = Fixture::new();
    let agent = f.enroll(2, Role::Agent, Some("hgx-1"));
    let envs: Vec<Vec<u8>> = (1..=4).map(|c| attestation(&agent, c, "hgx-1", &[h800(U1, "1")], NOW)).collect();
    let receipts = f.ledger.append(&envs).unwrap();
    sql(
        &f,
        &format!(
            "{UNDO_SCHEMA_4} DROP INDEX entries_by_signer; ALTER TABLE entries DROP COLUMN counter;
             CREATE INDEX entries_by_leaf ON entries (substr(leaf_hash, 1, 8)); PRAGMA user_version = 2;"
        ),
    );
    f.reopen();
    assert_eq!(f.ledger.audit(&mut |_, _| {}).unwrap().problem, None);
    let again = f.ledger.append(&envs[1..3]).unwrap();
    assert!(again.iter().all(|r| r.duplicate));
    assert_eq!(again.iter().map(|r| r.index).collect::<Vec<_>>(), vec![receipts[1].index, receipts[2].index]);
    // A replayed counter with different bytes is not a duplicate: it is refused.
    let replay = attestation(&agent, 2, "hgx-1", &[h800(U2, "2")], NOW);
    check_refused(&mut f, &[replay], 0, |r| matches!(r, Rejection::CounterNotIncreasing { .. }));
    f.ledger.append(&[attestation(&agent, 5, "hgx-1", &[h800(U1, "1")], NOW)]).unwrap();
    assert_eq!(f.ledger.audit(&mut |_, _| {}).unwrap().problem, None);
}

/// What schemas 8, 7, 5 and 4 added: ueids, witnesses' cosignatures, the GPU trails.
const UNDO_SCHEMA_4: &str =
    "DROP TABLE located; DROP INDEX gpus_ueid; ALTER TABLE gpus DROP COLUMN ueid; DROP TABLE cosignatures; DROP TABLE gpu_hosts; DROP TABLE gpu_facts; DROP TABLE gpu_settled; ALTER TABLE gpus DROP COLUMN known;
     ALTER TABLE gpus DROP COLUMN changes;
     ALTER TABLE gpu_records DROP COLUMN host; ALTER TABLE gpu_records DROP COLUMN observed_ns;
     ALTER TABLE gpu_records DROP COLUMN digest; PRAGMA user_version = 3;";

/// A schema-3 log gets its GPUs' trails from its entries: the same inventory, trails and all, as
/// a log that kept them from the start, and a clean audit.
#[test]
fn a_schema_3_log_gets_its_gpu_trails_from_its_entries() {
    let mut f = Fixture::new();
    let one = f.enroll(2, Role::Agent, Some("hgx-1"));
    let two = f.enroll(3, Role::Agent, Some("hgx-2"));
    let mut changed = h800(U1, "1");
    changed.vbios_version = Some("96.00.99.00.01".into());
    f.ledger.append(&[attestation(&one, 1, "hgx-1", &[h800(U1, "1"), h800(U2, "2")], NOW)]).unwrap();
    f.ledger.append(&[attestation(&one, 2, "hgx-1", &[changed.clone(), h800(U2, "2")], NOW)]).unwrap();
    f.ledger.append(&[attestation(&two, 1, "hgx-2", &[changed], NOW)]).unwrap();
    let before = f.ledger.inventory(AsOf::Latest).unwrap();
    let u1 = before.iter().find(|g| g.uuid.as_str() == U1).unwrap();
    assert_eq!(u1.trail.hosts.keys().map(String::as_str).collect::<Vec<_>>(), ["hgx-1", "hgx-2"]);
    assert_eq!(u1.trail.changes.keys().collect::<Vec<_>>(), ["vbios"], "{:?}", u1.trail);
    sql(&f, UNDO_SCHEMA_4);
    f.reopen();
    assert_eq!(f.ledger.inventory(AsOf::Latest).unwrap(), before);
    assert_eq!(f.ledger.audit(&mut |_, _| {}).unwrap().problem, None);
}

#[test]
fn a_schema_6_log_learns_each_hosts_attestation_before_the_last_and_each_gpus_ueid() {
    let mut f = Fixture::new();
    let one = f.enroll(2, Role::Agent, Some("hgx-1"));
    let mut named = h800(U1, "1");
    named.ueid = Some("53C22BA1".into());
    let first = f.ledger.append(&[attestation(&one, 1, "hgx-1", &[named.clone()], NOW)]).unwrap();
    let second = f.ledger.append(&[attestation(&one, 2, "hgx-1", &[named.clone()], NOW)]).unwrap();
    f.ledger.append(&[attestation(&one, 3, "hgx-1", &[named, h800(U2, "2")], NOW)]).unwrap();
    let before = f.ledger.inventory(AsOf::Latest).unwrap();
    let u1 = before.iter().find(|g| g.uuid.as_str() == U1).unwrap();
    assert_eq!(u1.trail.hosts["hgx-1"].previous_index, Some(second[0].index), "first at {}", first[0].index);
    assert_eq!(u1.ueid.as_deref(), Some("53C22BA1"));
    assert_eq!(before.iter().find(|g| g.uuid.as_str() == U2).unwrap().ueid, None);
    sql(
        &f,
        "DROP TABLE located; ALTER TABLE gpu_hosts DROP COLUMN prev_idx; DROP INDEX gpus_ueid;
         ALTER TABLE gpus DROP COLUMN ueid; PRAGMA user_version = 6;",
    );
    f.reopen();
    assert_eq!(f.ledger.inventory(AsOf::Latest).unwrap(), before);
    assert_eq!(f.ledger.audit(&mut |_, _| {}).unwrap().problem, None);
}

/// A schema-2 log with a damaged entry still opens after the migration, and the audit names the
/// damaged entry.
#[test]
fn a_damaged_schema_2_log_migrates_and_the_audit_names_the_damage() {
    let mut f = Fixture::new();
    let agent = f.enroll(2, Role::Agent, Some("hgx-1"));
    let envs: Vec<Vec<u8>> = (1..=3).map(|c| attestation(&agent, c, "hgx-1", &[h800(U1, "1")], NOW)).collect();
    f.ledger.append(&envs).unwrap();
    sql(
        &f,
        &format!(
            "{UNDO_SCHEMA_4} DROP INDEX entries_by_signer; ALTER TABLE entries DROP COLUMN counter;
             CREATE INDEX entries_by_leaf ON entries (substr(leaf_hash, 1, 8)); PRAGMA user_version = 2;
             UPDATE entries SET body = X'00' WHERE idx = 3;"
        ),
    );
    f.reopen();
    let problem = f.ledger.audit(&mut |_, _| {}).unwrap().problem.expect("the damage is found");
    assert_eq!(problem.index, Some(3), "{problem}");
}

#[test]
fn appends_are_refused_with_a_specific_reason_and_leave_no_trace() {
    let mut f = Fixture::new();
    let agent = f.enroll(2, Role::Agent, Some("hgx-1"));
    let stranger = SigningKey::from_seed(&[9; 32]);
    let good = attestation(&agent, 10, "hgx-1", &[h800(U1, "1")], NOW);

    // Unknown key, in second position: the first, valid envelope is not written either.
    let unknown = attestation(&stranger, 1, "hgx-9", &[h800(U2, "2")], NOW);
    check_refused(&mut f, &[good.clone(), unknown], 1, |r| matches!(r, Rejection::UnknownKey { .. }));
    // Wrong role: an agent may not record acquisitions; an admin may not attest GPUs.
    let admin_attests = attestation(&f.admin.clone_for_test(), 99, "hgx-1", &[h800(U1, "1")], NOW);
    check_refused(&mut f, &[admin_attests], 0, |r| {
        matches!(r, Rejection::WrongRole { kind: RecordKind::GpuAttestation, .. })
    });
    // Bad signature: a valid envelope with its payload swapped for another.
    let mut env: serde_json::Value = serde_json::from_slice(&good).unwrap();
    let other: serde_json::Value =
        serde_json::from_slice(&attestation(&agent, 11, "hgx-1", &[h800(U2, "3")], NOW)).unwrap();
    env["payload"] = other["payload"].clone();
    check_refused(&mut f, &[serde_json::to_vec(&env).unwrap()], 0, |r| matches!(r, Rejection::BadSignature { .. }));
    // Replayed or lower counter.
    f.ledger.append(std::slice::from_ref(&good)).unwrap();
    let replay = attestation(&agent, 10, "hgx-1", &[h800(U2, "4")], NOW);
    check_refused(&mut f, &[replay], 0, |r| matches!(r, Rejection::CounterNotIncreasing { counter: 10, last: 10, .. }));
    let lower = attestation(&agent, 3, "hgx-1", &[h800(U2, "4")], NOW);
    check_refused(&mut f, &[lower], 0, |r| matches!(r, Rejection::CounterNotIncreasing { .. }));
    // Clock skew: from the future, or older than the spool window.
    let future = attestation(&agent, 20, "hgx-1", &[h800(U2, "4")], NOW + time::Duration::hours(1));
    check_refused(&mut f, &[future], 0, |r| matches!(r, Rejection::FromTheFuture { .. }));
    let stale = attestation(&agent, 21, "hgx-1", &[h800(U2, "4")], NOW - time::Duration::days(30));
    check_refused(&mut f, &[stale], 0, |r| matches!(r, Rejection::TooOld { .. }));
    let spooled = attestation(&agent, 22, "hgx-1", &[h800(U2, "4")], NOW - time::Duration::days(2));
    f.ledger.append(&[spooled]).unwrap();
    // Oversize, malformed JSON, wrong payload type.
    let huge = vec![b' '; 300 * 1024];
    check_refused(&mut f, &[huge], 0, |r| matches!(r, Rejection::TooLarge { .. }));
    check_refused(&mut f, &[b"{not json".to_vec()], 0, |r| matches!(r, Rejection::MalformedEnvelope(_)));
    let mut typed: serde_json::Value =
        serde_json::from_slice(&attestation(&agent, 30, "hgx-1", &[h800(U2, "4")], NOW)).unwrap();
    typed["payloadType"] = "application/json".into();
    check_refused(&mut f, &[serde_json::to_vec(&typed).unwrap()], 0, |r| matches!(r, Rejection::WrongPayloadType(_)));
    // Revoked key.
    let rev = f.revocation(&agent);
    f.ledger.append(&[rev]).unwrap();
    let after = attestation(&agent, 40, "hgx-1", &[h800(U2, "4")], NOW);
    check_refused(&mut f, &[after], 0, |r| matches!(r, Rejection::RevokedKey { .. }));
}

#[test]
fn a_key_enrolled_earlier_in_the_same_batch_may_sign_later_in_it() {
    let mut f = Fixture::new();
    let agent = SigningKey::from_seed(&[5; 32]);
    let enroll = f.enrollment(&agent, Role::Agent, Some("hgx-5"));
    let att = attestation(&agent, 1, "hgx-5", &[h800(U1, "1")], NOW);
    let r = f.ledger.append(&[enroll, att]).unwrap();
    assert_eq!(r.len(), 2);
}

#[test]
fn concurrent_appends_are_group_committed_and_all_land() {
    let mut f = Fixture::new();
    let agents: Vec<SigningKey> = (0..4).map(|i| f.enroll(10 + i, Role::Agent, Some(&format!("h{i}")))).collect();
    let before = f.ledger.checkpoints().unwrap().len();
    std::thread::scope(|s| {
        for (i, a) in agents.iter().enumerate() {
            let ledger = &f.ledger;
            s.spawn(move || {
                for c in 1..=25u64 {
                    let uuid = format!("GPU-{:08x}-0000-0000-0000-000000000000", i);
                    ledger
                        .append(&[attestation(a, c, &format!("h{i}"), &[h800(&uuid, &format!("{i}"))], NOW)])
                        .unwrap();
                }
            });
        }
    });
    assert_eq!(f.ledger.size(), 5 + 100);
    let cps = f.ledger.checkpoints().unwrap().len() - before;
    assert!(cps <= 100, "at most one checkpoint per commit: {cps}");
    let report = f.ledger.audit(&mut |_, _| {}).unwrap();
    assert_eq!(report.problem, None);
}

#[test]
fn views_follow_the_entries_and_can_be_rebuilt() {
    let mut f = Fixture::new();
    let agent = f.enroll(2, Role::Agent, Some("hgx-1"));
    let agent2 = f.enroll(3, Role::Agent, Some("hgx-2"));
    f.ledger
        .append(&[attestation(&agent, 1, "hgx-1", &[h800(U1, "1651323018291"), h800(U2, "1651323018292")], NOW)])
        .unwrap();
    let size_one = f.ledger.size();
    // An hour later, U2 moves to hgx-2.
    f.reopen_at(NOW + time::Duration::hours(1));
    f.ledger.append(&[attestation(&agent2, 1, "hgx-2", &[h800(U2, "1651323018292")], NOW)]).unwrap();
    let acq = f.acquisition("1651323018291");
    f.ledger.append(&[acq]).unwrap();

    let inv = f.ledger.inventory(AsOf::Latest).unwrap();
    assert_eq!(inv.len(), 2);
    assert_eq!(inv.iter().find(|g| g.uuid.as_str() == U2).unwrap().host, "hgx-2");
    let then = f.ledger.inventory(AsOf::Size(size_one)).unwrap();
    assert_eq!(
        then.iter().find(|g| g.uuid.as_str() == U2).unwrap().host,
        "hgx-1",
        "inventory as of an earlier checkpoint"
    );
    assert_eq!(then[0].sku.as_deref(), Some("H800-SXM5-80GB"));
    // As of a time: what the checkpoints signed by then covered.
    let half_hour = f.ledger.inventory(AsOf::Time(NOW + time::Duration::minutes(30))).unwrap();
    assert_eq!(half_hour, then, "inventory as of a time between the two appends");
    assert!(f.ledger.inventory(AsOf::Time(NOW - time::Duration::seconds(1))).unwrap().is_empty());
    assert_eq!(f.ledger.inventory(AsOf::Time(NOW + time::Duration::hours(2))).unwrap(), inv);

    let hist = f.ledger.entries(&EntryFilter { gpu: Some(GpuUuid::parse(U2).unwrap()), ..Default::default() }).unwrap();
    assert_eq!(hist.len(), 2);
    let acqs = f.ledger.entries(&EntryFilter { kind: Some(RecordKind::Acquisition), ..Default::default() }).unwrap();
    assert_eq!(acqs.len(), 1);

    let keys_before = serde_json::to_string(&f.ledger.keys().unwrap()).unwrap();
    let inv_before = f.ledger.inventory(AsOf::Latest).unwrap();
    assert_eq!(f.ledger.rebuild_views().unwrap(), f.ledger.size());
    assert_eq!(serde_json::to_string(&f.ledger.keys().unwrap()).unwrap(), keys_before);
    assert_eq!(f.ledger.inventory(AsOf::Latest).unwrap(), inv_before);
}

#[test]
fn tiles_serve_stored_hashes_and_entry_bundles() {
    let mut f = Fixture::new();
    let auditor = f.enroll(4, Role::Auditor, None);
    let envs: Vec<Vec<u8>> = (1..=300).map(|c| annotation(&auditor, c, &format!("note {c}"))).collect();
    f.ledger.append(&envs).unwrap();
    let size = f.ledger.size();
    assert_eq!(size, 302);
    let tile = f.ledger.tile(0, 0, 256).unwrap();
    assert_eq!(tile.len(), 256 * 32);
    let leaf1 = chipledger_domain::merkle::leaf_hash(&f.ledger.envelope(1).unwrap());
    assert_eq!(&tile[32..64], &leaf1.0);
    let bundle = f.ledger.entry_bundle(1, 46).unwrap();
    let len = u16::from_be_bytes([bundle[0], bundle[1]]) as usize;
    assert_eq!(&bundle[2..2 + len], &f.ledger.envelope(256).unwrap()[..]);
    assert!(f.ledger.entry_bundle(1, 47).is_err(), "a tile past the end is an error");
}

trait CloneForTest {
    fn clone_for_test(&self) -> SigningKey;
}

impl CloneForTest for SigningKey {
    fn clone_for_test(&self) -> SigningKey {
        SigningKey::from_pkcs8_pem(&self.to_pkcs8_pem().unwrap()).unwrap()
    }
}

/// An envelope whose payload was swapped for another's: its signature no longer verifies.
fn bent(envelope: &[u8], other: &[u8]) -> Vec<u8> {
    let mut bent: serde_json::Value = serde_json::from_slice(envelope).unwrap();
    let other: serde_json::Value = serde_json::from_slice(other).unwrap();
    bent["payload"] = other["payload"].clone();
    serde_json::to_vec(&bent).unwrap()
}

/// What an append refuses for its own bytes — malformed, or badly signed by an enrolled key — it
/// refuses before it queues for the writer: while another process holds the database's write
/// lock, the refusal still comes at once, with its reason (the writer would wait for the lock
/// and then answer "not committed").
#[test]
fn malformed_and_badly_signed_appends_are_refused_without_the_writer() {
    let mut f = Fixture::new();
    let auditor = f.enroll(4, Role::Auditor, None);
    let good = annotation(&auditor, 1, "fine");
    let badly_signed = bent(&annotation(&auditor, 2, "original"), &annotation(&auditor, 2, "swapped"));
    let size = f.ledger.size();
    let other = rusqlite::Connection::open(f.path().join(chipledger_ledger::DB_FILE)).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    match f.ledger.append(&[good.clone(), badly_signed]) {
        Err(Error::Rejected { position: 1, reason: Rejection::BadSignature { .. } }) => {}
        other => panic!("expected a bad signature at 1, got {other:?}"),
    }
    match f.ledger.append(&[good.clone(), b"{not json".to_vec()]) {
        Err(Error::Rejected { position: 1, reason: Rejection::MalformedEnvelope(_) }) => {}
        other => panic!("expected a malformed envelope at 1, got {other:?}"),
    }
    other.execute_batch("ROLLBACK").unwrap();
    assert_eq!(f.ledger.size(), size);
    assert_eq!(f.ledger.append(&[good]).unwrap()[0].index, size);
}

/// A key enrolled in the same batch is not known before the lock: its signature is checked
/// under it, and a bad one still refuses the whole batch.
#[test]
fn a_bad_signature_by_a_key_enrolled_in_the_same_batch_is_refused() {
    let mut f = Fixture::new();
    let agent = SigningKey::from_seed(&[5; 32]);
    let enroll = f.enrollment(&agent, Role::Agent, Some("hgx-5"));
    let att = attestation(&agent, 1, "hgx-5", &[h800(U1, "1")], NOW);
    let other = attestation(&agent, 1, "hgx-5", &[h800(U2, "2")], NOW);
    check_refused(&mut f, &[enroll.clone(), bent(&att, &other)], 1, |r| matches!(r, Rejection::BadSignature { .. }));
    assert_eq!(f.ledger.append(&[enroll, att]).unwrap().len(), 2);
    assert_eq!(f.ledger.audit(&mut |_, _| {}).unwrap().problem, None);
}

#[test]
fn a_bad_signature_in_a_large_batch_is_refused_and_writes_nothing() {
    let mut f = Fixture::new();
    let auditor = f.enroll(4, Role::Auditor, None);
    let mut envs: Vec<Vec<u8>> = (1..=100).map(|c| annotation(&auditor, c, &format!("note {c}"))).collect();
    envs[57] = bent(&envs[57], &annotation(&auditor, 58, "another text"));
    check_refused(&mut f, &envs, 57, |r| matches!(r, Rejection::BadSignature { .. }));
    envs[57] = annotation(&auditor, 58, "note 58");
    let receipts = f.ledger.append(&envs).unwrap();
    assert_eq!(receipts.len(), 100);
    assert_eq!(f.ledger.audit(&mut |_, _| {}).unwrap().problem, None);
}

#[test]
fn stored_envelopes_come_back_byte_for_byte_canonical_or_not() {
    let mut f = Fixture::new();
    let auditor = f.enroll(4, Role::Auditor, None);
    let canonical = annotation(&auditor, 1, "canonical");
    let v: serde_json::Value = serde_json::from_slice(&annotation(&auditor, 2, "pretty")).unwrap();
    let pretty = serde_json::to_vec_pretty(&v).unwrap();
    let r = f.ledger.append(&[canonical.clone(), pretty.clone()]).unwrap();
    assert_eq!(f.ledger.envelope(r[0].index).unwrap(), canonical);
    assert_eq!(f.ledger.envelope(r[1].index).unwrap(), pretty);
    let listed = f.ledger.entries(&EntryFilter { from: Some(r[0].index), ..Default::default() }).unwrap();
    assert_eq!(listed[1].envelope.as_bytes(), &pretty[..]);
    assert_eq!(
        chipledger_domain::merkle::leaf_hash(&f.ledger.envelope(0).unwrap()),
        f.ledger.entries(&EntryFilter::default()).unwrap()[0].leaf_hash
    );
    // Payloads straight from storage equal the envelopes' payloads, in either storage form.
    let payloads = f.ledger.payloads(&[r[0].index, r[1].index]).unwrap();
    for ((index, leaf, payload), (env, receipt)) in payloads.iter().zip([(&canonical, &r[0]), (&pretty, &r[1])]) {
        let decoded = chipledger_domain::dsse::Envelope::from_json(env).unwrap().payload_bytes().unwrap();
        assert_eq!((index, leaf, payload), (&receipt.index, &receipt.leaf_hash, &decoded));
    }
    assert!(f.ledger.payloads(&[f.ledger.size()]).is_err());
    assert_eq!(f.ledger.audit(&mut |_, _| {}).unwrap().problem, None);
}

#[test]
fn the_newest_entries_come_back_in_log_order() {
    let mut f = Fixture::new();
    let auditor = f.enroll(4, Role::Auditor, None);
    let all: Vec<Vec<u8>> = (1..=5).map(|i| annotation(&auditor, i, &format!("note {i}"))).collect();
    let r = f.ledger.append(&all).unwrap();
    let last = f.ledger.entries(&EntryFilter { last: Some(2), ..Default::default() }).unwrap();
    assert_eq!(last.iter().map(|e| e.index).collect::<Vec<_>>(), [r[3].index, r[4].index]);
    let everything = f.ledger.entries(&EntryFilter { last: Some(100), ..Default::default() }).unwrap();
    assert_eq!(everything.len() as u64, f.ledger.size());
    assert!(everything.windows(2).all(|w| w[0].index < w[1].index));
}

/// The inventory as of an earlier size, read back from the per-record trail columns, is what the
/// latest view said at that size: hosts, fingerprint changes and all.
#[test]
fn the_inventory_as_of_every_earlier_size_is_what_the_view_said_then() {
    let mut f = Fixture::new();
    let one = f.enroll(2, Role::Agent, Some("hgx-1"));
    let two = f.enroll(3, Role::Agent, Some("hgx-2"));
    let mut reflashed = h800(U1, "1");
    reflashed.vbios_version = Some("96.00.99.00.01".into());
    let steps = [
        attestation(&one, 1, "hgx-1", &[h800(U1, "1"), h800(U2, "2")], NOW),
        attestation(&one, 2, "hgx-1", &[reflashed.clone(), h800(U2, "2")], NOW),
        attestation(&two, 1, "hgx-2", &[h800(U2, "2")], NOW),
        attestation(&one, 3, "hgx-1", &[reflashed, h800(U2, "2")], NOW),
        attestation(&two, 2, "hgx-2", &[h800(U1, "1")], NOW),
    ];
    let mut seen = Vec::new();
    for env in steps {
        f.ledger.append(&[env]).unwrap();
        seen.push((f.ledger.size(), f.ledger.inventory(AsOf::Latest).unwrap()));
    }
    // An admin settles U1's history, and hgx-1 attests it once more.
    f.admin_counter += 1;
    let settle = Annotation {
        format_version: FORMAT_VERSION,
        counter: f.admin_counter,
        written_at: NOW,
        target: AnnotationTarget::Gpu { uuid: GpuUuid::parse(U1).unwrap() },
        severity: Severity::Info,
        text: "moved by the operator".into(),
        resolves_serial: None,
        settles_history: true,
    };
    f.ledger.append(&[sign_record(&settle, &f.admin).unwrap().to_json()]).unwrap();
    let settled = f.ledger.inventory(AsOf::Latest).unwrap();
    let u1 = settled.iter().find(|g| g.uuid.as_str() == U1).unwrap();
    assert_eq!(u1.trail.hosts.keys().collect::<Vec<_>>(), ["hgx-2"], "{:?}", u1.trail);
    assert!(u1.trail.changes.is_empty(), "{:?}", u1.trail);
    seen.push((f.ledger.size(), settled));
    f.ledger.append(&[attestation(&one, 4, "hgx-1", &[h800(U1, "1")], NOW)]).unwrap();
    seen.push((f.ledger.size(), f.ledger.inventory(AsOf::Latest).unwrap()));
    for (size, then) in &seen {
        assert_eq!(&f.ledger.inventory(AsOf::Size(*size)).unwrap(), then, "as of size {size}");
    }
    let last = &seen.last().unwrap().1;
    let u1 = last.iter().find(|g| g.uuid.as_str() == U1).unwrap();
    assert_eq!(u1.trail.hosts.len(), 2);
    // A view rebuilt from the entries is the same view.
    f.ledger.rebuild_views().unwrap();
    assert_eq!(&f.ledger.inventory(AsOf::Latest).unwrap(), last);
    assert_eq!(f.ledger.audit(&mut |_, _| {}).unwrap().problem, None);
}

/// Opening a log reads its size, right edge, last checkpoint and key registry from one
/// snapshot: another process appending meanwhile never makes a healthy log look torn.
#[test]
fn opening_a_log_while_another_process_appends_never_sees_it_torn() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut f = Fixture::new();
    let auditor = f.enroll(2, Role::Auditor, None);
    let dir = f.path().to_path_buf();
    let done = AtomicBool::new(false);
    let opens = std::thread::scope(|s| {
        s.spawn(|| {
            for c in 1..=400 {
                f.ledger.append(&[annotation(&auditor, c, "while another process opens the log")]).unwrap();
            }
            done.store(true, Ordering::Release);
        });
        let mut opens = 0u32;
        while !done.load(Ordering::Acquire) {
            let clock = Arc::new(chipledger_domain::log::FixedClock(NOW));
            if let Err(e) = chipledger_ledger::Ledger::open(&dir, chipledger_ledger::LedgerConfig::default(), clock) {
                panic!("open {opens} during appends: {e}");
            }
            opens += 1;
        }
        opens
    });
    assert!(opens > 0);
}

/// A schema-4 log opens as schema 5 (a table for witnesses' cosignatures beside the log), and a
/// cosignature kept for a checkpoint is served with it; one for a size never signed is refused.
#[test]
fn a_schema_4_log_gains_cosignatures_served_with_its_checkpoint() {
    let mut f = Fixture::new();
    f.enroll(2, Role::Agent, Some("hgx-1"));
    sql(&f, "DROP TABLE located; DROP TABLE cosignatures; ALTER TABLE gpu_hosts DROP COLUMN prev_idx; DROP INDEX gpus_ueid; ALTER TABLE gpus DROP COLUMN ueid; PRAGMA user_version = 4;");
    f.reopen();
    let (size, note) = f.ledger.checkpoint().unwrap();
    let line = "\u{2014} w.example AAAAAQ==\n";
    f.ledger.add_cosignature(size, "w.example", line).unwrap();
    let (s, cosigned) = f.ledger.cosigned_checkpoint().unwrap();
    assert_eq!((s, cosigned), (size, format!("{note}{line}")));
    assert_eq!(f.ledger.witnessed_sizes().unwrap(), vec![("w.example".to_string(), size)]);
    assert!(f.ledger.add_cosignature(size + 7, "w.example", line).is_err());
    assert!(f.ledger.add_cosignature(size, "w.example", "not a signature line").is_err());
    assert_eq!(f.ledger.audit(&mut |_, _| {}).unwrap().problem, None);
}

/// A landmark at Singapore's coordinates, and a proof of `host` answered by `agent`.
fn landmark_and_proof(f: &mut Fixture, agent: &SigningKey, host: &str, counter: u64) -> (SigningKey, Vec<u8>) {
    use chipledger_domain::location::Coord;
    use chipledger_domain::location_proof::{answer, LocatedSubject, LocationProof, ProofHeader, Round};
    let landmark = SigningKey::from_seed(&[40; 32]);
    let at = Coord::parse("1.2966,103.7764").unwrap();
    f.admin_counter += 1;
    let e = chipledger_domain::records::KeyEnrollment {
        format_version: FORMAT_VERSION,
        counter: f.admin_counter,
        issued_at: NOW,
        key_id: landmark.key_id(),
        verifier_key: VerifierKey::new("sin-1", landmark.public_key()).unwrap().to_string(),
        role: Role::Landmark,
        host: Some("sin-1".into()),
        valid_from: NOW - time::Duration::days(10),
        valid_until: None,
        site: Some(chipledger_domain::records::Site {
            at,
            operator: "Landmark Org".into(),
            country: None,
            floor_ns: 0,
        }),
    };
    f.ledger.append(&[sign_record(&e, &f.admin).unwrap().to_json()]).unwrap();
    let rounds = (0..3u8)
        .map(|i| {
            let nonce = [i + counter as u8; 32];
            Round {
                nonce: nonce.iter().map(|b| format!("{b:02x}")).collect(),
                rtt_ns: 200_000 + u64::from(i),
                answer: answer(agent, "sin-1", host, &nonce),
            }
        })
        .collect();
    let header = ProofHeader { counter, measured_at: NOW, landmark: "sin-1".into(), landmark_at: at, floor_ns: 0 };
    let subject = LocatedSubject { host: host.into(), key_id: agent.key_id(), gpus: vec![] };
    let proof = LocationProof::new(header, subject, rounds);
    let signed = sign_record(&proof, &landmark).unwrap().to_json();
    (landmark, signed)
}

/// Location proofs are listed by the host they locate; a schema-7 log indexes its proofs on
/// opening, and the audit checks the index against a replay.
#[test]
fn location_proofs_are_listed_by_host_and_a_schema_7_log_indexes_its_own() {
    use chipledger_domain::log::LogClient;
    let mut f = Fixture::new();
    let agent = f.enroll(2, Role::Agent, Some("hgx-1"));
    f.enroll(3, Role::Agent, Some("hgx-2"));
    let (_, proof) = landmark_and_proof(&mut f, &agent, "hgx-1", 1);
    let receipt = f.ledger.append(&[proof]).unwrap();
    let listed = |f: &Fixture, host: Option<&str>| -> Vec<u64> {
        LogClient::location_proofs(&f.ledger, host, NOW - time::Duration::days(1))
            .unwrap()
            .iter()
            .map(|e| e.index)
            .collect()
    };
    assert_eq!(listed(&f, Some("hgx-1")), vec![receipt[0].index]);
    assert_eq!(listed(&f, Some("hgx-2")), Vec::<u64>::new());
    assert_eq!(listed(&f, None), vec![receipt[0].index]);
    let sites = LogClient::sites(&f.ledger).unwrap();
    // The two agent keys (no site) and the landmark (its site); not the admin's key.
    let listed_sites: Vec<(Role, &str, bool)> =
        sites.iter().map(|s| (s.role, s.host.as_str(), s.site.is_some())).collect();
    assert_eq!(
        listed_sites,
        [(Role::Agent, "hgx-1", false), (Role::Agent, "hgx-2", false), (Role::Landmark, "sin-1", true)]
    );

    sql(&f, "DROP TABLE located; PRAGMA user_version = 7;");
    f.reopen();
    assert_eq!(listed(&f, Some("hgx-1")), vec![receipt[0].index]);
    assert_eq!(f.ledger.audit(&mut |_, _| {}).unwrap().problem, None);
    // A row the log's entries do not give is named by the audit.
    sql(&f, "INSERT INTO located (host, idx) VALUES ('hgx-2', 1)");
    let problem = f.ledger.audit(&mut |_, _| {}).unwrap().problem.expect("the audit names the stray row");
    assert!(format!("{problem:?}").contains("located"), "{problem:?}");
}
