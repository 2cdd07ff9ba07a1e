//! What one agent key may claim: only its own host, only facts that agree with what the record
//! states; and what orders the views: the log, not the signer's clock.

use chipledger_domain::log::AsOf;
use chipledger_domain::records::{sign_record, GpuAttestation, Role};
use chipledger_ledger::{Error, Rejection};

use crate::*;

const U1: &str = "GPU-34bf77d1-c686-6821-79a8-32d326c5039c";
const U2: &str = "GPU-00000000-1111-2222-3333-444444444444";

#[track_caller]
fn check_refused(f: &Fixture, envelope: Vec<u8>, expected: impl Fn(&Rejection) -> bool) -> String {
    let size = f.ledger.size();
    match f.ledger.append(&[envelope]) {
        Err(Error::Rejected { position: 0, reason }) => {
            assert!(expected(&reason), "unexpected reason: {reason}");
            assert_eq!(f.ledger.size(), size, "nothing written");
            reason.to_string()
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// `attestation`, with `change` applied to the predicate before signing.
fn changed_attestation(agent: &SigningKey, host: &str, change: impl FnOnce(&mut GpuAttestation)) -> Vec<u8> {
    let env: chipledger_domain::dsse::Envelope =
        serde_json::from_slice(&attestation(agent, 7, host, &[h800(U1, "1651323018291")], NOW)).unwrap();
    let statement: serde_json::Value = serde_json::from_slice(&env.payload_bytes().unwrap()).unwrap();
    let mut a: GpuAttestation = serde_json::from_value(statement["predicate"].clone()).unwrap();
    change(&mut a);
    sign_record(&a, agent).unwrap().to_json()
}

#[test]
fn an_agent_key_attesting_another_host_is_refused_and_writes_nothing() {
    let mut f = Fixture::new();
    let agent = f.enroll(2, Role::Agent, Some("hgx-1"));
    f.enroll(3, Role::Agent, Some("hgx-2"));
    let why = check_refused(
        &f,
        attestation(&agent, 1, "hgx-2", &[h800(U2, "2")], NOW),
        |r| matches!(r, Rejection::WrongHost { enrolled_for, claimed, .. } if enrolled_for == "hgx-1" && claimed == "hgx-2"),
    );
    assert!(why.contains("hgx-1") && why.contains("hgx-2"), "{why}");
    assert!(f.ledger.inventory(AsOf::Latest).unwrap().is_empty());
    // Its own host: accepted.
    f.ledger.append(&[attestation(&agent, 2, "hgx-1", &[h800(U1, "1")], NOW)]).unwrap();
    // Moving the key to another host is an admin's act: revoke, enroll a key for the new host.
    let rev = f.revocation(&agent);
    f.ledger.append(&[rev]).unwrap();
    let moved = f.enroll(4, Role::Agent, Some("hgx-3"));
    f.ledger.append(&[attestation(&moved, 1, "hgx-3", &[h800(U1, "1")], NOW)]).unwrap();
    assert_eq!(f.ledger.audit(&mut |_, _| {}).unwrap().problem, None);
}

#[test]
fn an_agent_key_without_a_host_cannot_be_enrolled() {
    let mut f = Fixture::new();
    let key = SigningKey::from_seed(&[8; 32]);
    let env = f.enrollment(&key, Role::Agent, None);
    let why = check_refused(&f, env, |r| matches!(r, Rejection::BadEnrollment(_)));
    assert!(why.contains("host"), "{why}");
    // Other roles need none.
    f.enroll(9, Role::Auditor, None);
}

#[test]
fn a_record_whose_stated_digest_does_not_match_its_facts_is_refused() {
    let mut f = Fixture::new();
    let agent = f.enroll(2, Role::Agent, Some("hgx-1"));
    let forged_digest = changed_attestation(&agent, "hgx-1", |a| {
        a.gpus[0].fingerprint_digest = chipledger_domain::merkle::Hash([7; 32]);
    });
    // (The subjects are recomputed by signing, so only the digest's agreement with the facts
    // is at stake.)
    let why = check_refused(&f, forged_digest, |r| matches!(r, Rejection::MalformedStatement(_)));
    assert!(why.contains("digest"), "{why}");
    // Facts changed under an unchanged fingerprint: an H100's PCI id behind an H800's fingerprint.
    let swapped_facts = changed_attestation(&agent, "hgx-1", |a| a.gpus[0].facts.pci_device_id = Some(0x2330));
    let why = check_refused(&f, swapped_facts, |r| matches!(r, Rejection::MalformedStatement(_)));
    assert!(why.contains("fingerprint"), "{why}");
    // A UUID other than the one in the facts.
    let other_uuid = changed_attestation(&agent, "hgx-1", |a| {
        a.gpus[0].uuid = chipledger_domain::fingerprint::GpuUuid::parse(U2).unwrap()
    });
    check_refused(&f, other_uuid, |r| matches!(r, Rejection::MalformedStatement(_)));
    // The same GPU twice in one record.
    let twice = changed_attestation(&agent, "hgx-1", |a| a.gpus.push(a.gpus[0].clone()));
    check_refused(&f, twice, |r| matches!(r, Rejection::MalformedStatement(_)));
}

#[test]
fn the_latest_state_of_a_gpu_is_its_last_attestation_in_the_log_whatever_its_clock_says() {
    let mut f = Fixture::new();
    let agent = f.enroll(2, Role::Agent, Some("hgx-1"));
    // A record stamped 4 minutes ahead (within the skew), then one stamped now: the second is
    // later in the log and is the GPU's state.
    f.ledger
        .append(&[attestation(&agent, 1, "hgx-1", &[h800(U1, "ahead")], NOW + time::Duration::minutes(4))])
        .unwrap();
    f.ledger.append(&[attestation(&agent, 2, "hgx-1", &[h800(U1, "later")], NOW)]).unwrap();
    let inv = f.ledger.inventory(AsOf::Latest).unwrap();
    assert_eq!(inv.len(), 1);
    assert_eq!(inv[0].serial.as_deref(), Some("later"));
    f.ledger.rebuild_views().unwrap();
    assert_eq!(f.ledger.inventory(AsOf::Latest).unwrap()[0].serial.as_deref(), Some("later"));
    // Beyond the skew: refused.
    let future = attestation(&agent, 3, "hgx-1", &[h800(U1, "x")], NOW + time::Duration::minutes(6));
    check_refused(&f, future, |r| matches!(r, Rejection::FromTheFuture { .. }));
}

#[test]
fn the_audit_fails_entries_that_no_signed_checkpoint_covers() {
    let mut f = Fixture::new();
    let auditor = f.enroll(4, Role::Auditor, None);
    f.ledger.append(&[annotation(&auditor, 1, "one")]).unwrap();
    assert_eq!(f.ledger.audit(&mut |_, _| {}).unwrap().problem, None);
    // The checkpoints go, as if an empty log had been filled by hand.
    sql(&f, "DELETE FROM checkpoints");
    let report = f.ledger.audit(&mut |_, _| {}).unwrap();
    let problem = report.problem.expect("a log without checkpoints is not intact");
    assert!(problem.what.contains("no signed checkpoint"), "{problem}");
    assert_eq!(problem.index, Some(0));
}

#[test]
fn init_leaves_no_log_until_it_is_complete_and_recovers_from_an_unfinished_one() {
    let dir = tempfile::tempdir().unwrap();
    // What an init that stopped half-way leaves: its staging directory and stray key files.
    std::fs::create_dir(dir.path().join(".init-staging")).unwrap();
    std::fs::write(dir.path().join(".init-staging").join(chipledger_ledger::DB_FILE), b"half").unwrap();
    std::fs::write(dir.path().join(chipledger_ledger::ADMIN_KEY_FILE), b"stale").unwrap();
    let clock = std::sync::Arc::new(FixedClock(NOW));
    assert!(matches!(
        Ledger::open(dir.path(), chipledger_ledger::LedgerConfig::default(), clock.clone()),
        Err(Error::NotInitialized { .. })
    ));
    let (ledger, info) =
        Ledger::init(dir.path(), "test.example/log", clock, &mut rand_chacha::ChaCha20Rng::seed_from_u64(3)).unwrap();
    assert_eq!(ledger.size(), 1);
    assert_eq!(ledger.audit(&mut |_, _| {}).unwrap().problem, None);
    let admin = SigningKey::from_pkcs8_pem(&std::fs::read_to_string(&info.admin_key_path).unwrap()).unwrap();
    assert_eq!(ledger.keys().unwrap()[0].key_id, admin.key_id().to_string());
    assert!(!dir.path().join(".init-staging").exists());
}

#[test]
fn two_inits_racing_on_one_directory_leave_one_complete_log() {
    for round in 0..5u64 {
        let dir = tempfile::tempdir().unwrap();
        let results: Vec<Result<(Ledger, chipledger_ledger::InitInfo), Error>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..2u64)
                .map(|i| {
                    let path = dir.path().to_path_buf();
                    s.spawn(move || {
                        let clock = std::sync::Arc::new(FixedClock(NOW));
                        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(round * 2 + i);
                        Ledger::init(&path, "test.example/log", clock, &mut rng)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let won: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(won.len(), 1, "round {round}: exactly one init creates the log");
        assert!(results.iter().any(|r| matches!(r, Err(Error::AlreadyInitialized { .. }))), "round {round}");
        let (_, info) = won[0];
        let reopened =
            Ledger::open(dir.path(), chipledger_ledger::LedgerConfig::default(), std::sync::Arc::new(FixedClock(NOW)))
                .unwrap();
        assert_eq!(reopened.verifier_key(), &info.log_verifier_key, "the log key on disk is the winner's");
        assert_eq!(reopened.audit(&mut |_, _| {}).unwrap().problem, None);
    }
}

#[test]
fn an_annotation_naming_its_gpu_in_capitals_is_indexed_alike_by_append_and_audit() {
    use chipledger_domain::dsse::{Envelope, PAYLOAD_TYPE_IN_TOTO};
    let mut f = Fixture::new();
    let auditor = f.enroll(4, Role::Auditor, None);
    let env: Envelope = serde_json::from_slice(&annotation(&auditor, 1, "capitals")).unwrap();
    let payload = String::from_utf8(env.payload_bytes().unwrap()).unwrap();
    // Only the target's UUID in capitals: the subject (computed from the parsed, normalised UUID)
    // still matches.
    let target = "\"target\":{\"gpu\":{\"uuid\":\"GPU-34bf77d1-c686-6821-79a8-32d326c5039c\"}}";
    assert!(payload.contains(target), "{payload}");
    let shouted = payload.replace(
        target,
        &target.to_uppercase().replace("\"TARGET\":{\"GPU\":{\"UUID\"", "\"target\":{\"gpu\":{\"uuid\""),
    );
    let signed = Envelope::sign(PAYLOAD_TYPE_IN_TOTO, shouted.as_bytes(), &auditor).to_json();
    f.ledger.append(&[signed]).unwrap();
    assert_eq!(f.ledger.audit(&mut |_, _| {}).unwrap().problem, None, "the audit indexes the GPU as the append did");
}

/// A Slurm job record from the node key of `host`.
fn job_record(key: &SigningKey, counter: u64, host: &str) -> Vec<u8> {
    use chipledger_domain::records::{JobGpu, JobPhase, SchedulerJob, FORMAT_VERSION};
    let job = SchedulerJob {
        format_version: FORMAT_VERSION,
        counter,
        scheduler: "slurm".into(),
        cluster: "c1".into(),
        job_id: "42".into(),
        phase: JobPhase::Start,
        recorded_at: NOW,
        host: host.into(),
        node: None,
        user: Some("alice".into()),
        partition: Some("gpu".into()),
        policy_name: "default".into(),
        policy_digest: chipledger_domain::merkle::Hash([1; 32]),
        gpus: vec![JobGpu {
            device_index: 0,
            uuid: chipledger_domain::fingerprint::GpuUuid::parse(U1).unwrap(),
            attestation_index: 3,
            attestation_leaf: chipledger_domain::merkle::Hash([2; 32]),
            sku: Some("H800-SXM5-80GB".into()),
            classification: Some("3A090.a.1".into()),
            acquisition_verdict: "lawful".into(),
            evidence: "self-reported".into(),
        }],
        exit_state: None,
        start_index: None,
    };
    sign_record(&job, key).unwrap().to_json()
}

#[test]
fn a_job_record_speaks_only_for_its_node_keys_host() {
    let mut f = Fixture::new();
    let node = f.enroll(2, Role::Node, Some("hgx-1"));
    let agent = f.enroll(3, Role::Agent, Some("hgx-1"));
    let unbound = f.enroll(4, Role::Node, None);
    let why = check_refused(
        &f,
        job_record(&node, 1, "hgx-2"),
        |r| matches!(r, Rejection::WrongHost { enrolled_for, claimed, .. } if enrolled_for == "hgx-1" && claimed == "hgx-2"),
    );
    assert!(why.contains("hgx-2"), "{why}");
    check_refused(&f, job_record(&unbound, 1, "hgx-1"), |r| matches!(r, Rejection::WrongHost { .. }));
    // An agent key attests; it does not record jobs.
    check_refused(&f, job_record(&agent, 1, "hgx-1"), |r| matches!(r, Rejection::WrongRole { .. }));
    f.ledger.append(&[job_record(&node, 2, "hgx-1")]).unwrap();
    // The job is in the GPU's history.
    let uuid = chipledger_domain::fingerprint::GpuUuid::parse(U1).unwrap();
    let history = chipledger_domain::log::LogClient::history(&f.ledger, &uuid, None).unwrap();
    assert!(history.iter().any(|e| e.kind == chipledger_domain::records::RecordKind::SchedulerJob));
    assert_eq!(f.ledger.audit(&mut |_, _| {}).unwrap().problem, None);
}
