//! Attestation against a real local ledger: receipts checked, refusals set aside, outages
//! survived through the spool.

use std::sync::atomic::Ordering;

use chipledger_agent::attest::{Attestor, AttestorConfig};
use chipledger_agent::Error;
use chipledger_domain::identify::HistoryRules;
use chipledger_domain::keys::{SigningKey, VerifierKey};
use chipledger_domain::log::LogClient;
use chipledger_domain::merkle;
use chipledger_domain::records::ProbeSource;
use time::macros::datetime;

use super::*;

#[test]
fn an_attestation_lands_in_the_ledger_marked_as_an_import_and_its_receipt_verifies() {
    let clock = TestClock::at(datetime!(2026-11-29 09:00 UTC));
    let mut fleet = Fleet::new(clock.clone());
    let key = fleet.agent_key(1, "hgx-01");
    let mut agent = fleet.attestor(key, "agent-1");
    let report = parse(&[("hgx.txt", &eight_gpu_text(8))]);
    let att = agent.build(&report, host("hgx-01")).unwrap();
    assert_eq!(att.gpus.len(), 8);
    assert_eq!(att.source, ProbeSource::NvidiaSmiText);
    assert!(att.gpus.iter().all(|g| g.identification.sku.as_deref() == Some("H800-SXM5-80GB")));
    let spooled = agent.sign_and_spool(&att).unwrap();
    assert!(spooled.path.exists());
    let flush = agent.flush().unwrap();
    assert_eq!((flush.accepted.len(), flush.rejected.len(), flush.unavailable.as_deref()), (1, 0, None));
    assert!(!spooled.path.exists(), "an accepted record leaves the spool");
    let receipt = &flush.accepted[0].receipt;
    let envelope = fleet.log.ledger.envelope(receipt.index).unwrap();
    assert_eq!(merkle::leaf_hash(&envelope), receipt.leaf_hash);
    let inventory = fleet.log.inventory(chipledger_domain::log::AsOf::Latest).unwrap();
    assert_eq!(inventory.len(), 8);
    assert!(inventory.iter().all(|g| g.host == "hgx-01" && g.source == ProbeSource::NvidiaSmiText));
    assert_eq!(agent.state().checkpoint.as_deref(), Some(receipt.checkpoint.as_str()));
}

#[test]
fn a_receipt_signed_by_another_key_is_not_believed_and_the_record_stays_spooled() {
    let clock = TestClock::at(datetime!(2026-11-29 09:00 UTC));
    let mut fleet = Fleet::new(clock.clone());
    let key = fleet.agent_key(1, "hgx-01");
    let impostor = VerifierKey::new("test.example/log", SigningKey::from_seed(&[9; 32]).public_key()).unwrap();
    let mut agent = Attestor::new(AttestorConfig {
        key,
        log: Box::new(fleet.log.clone()),
        log_key: impostor,
        state_dir: fleet.dir.path().join("agent"),
        clock: fleet.clock.clone(),
        history_rules: HistoryRules::default(),
    })
    .unwrap();
    let att = agent.build(&probe_files(&[H800_TXT]), host("hgx-01")).unwrap();
    agent.sign_and_spool(&att).unwrap();
    let err = agent.flush().unwrap_err();
    assert!(matches!(err, Error::Receipt { .. }), "{err}");
    assert_eq!(agent.spool().pending().unwrap().len(), 1);
}

#[test]
fn a_record_the_log_refuses_is_set_aside_with_its_reason_and_does_not_block_the_rest() {
    let clock = TestClock::at(datetime!(2026-11-29 09:00 UTC));
    let mut fleet = Fleet::new(clock.clone());
    let enrolled = fleet.agent_key(1, "hgx-01");
    let stranger = SigningKey::from_seed(&[42; 32]);
    let mut bad = fleet.attestor(stranger, "agent-1");
    let att = bad.build(&probe_files(&[H800_TXT]), host("hgx-01")).unwrap();
    bad.sign_and_spool(&att).unwrap();
    let flush = bad.flush().unwrap();
    assert_eq!(flush.rejected.len(), 1);
    assert!(flush.rejected[0].1.contains("not enrolled"), "{:?}", flush.rejected);
    let reason = std::fs::read_to_string(format!("{}.reason", flush.rejected[0].0.display())).unwrap();
    assert!(reason.contains("not enrolled"));
    assert!(bad.spool().pending().unwrap().is_empty());
    // The same state directory with the enrolled key carries on.
    drop(bad);
    let mut good = fleet.attestor(enrolled, "agent-1");
    let att = good.build(&probe_files(&[H800_TXT]), host("hgx-01")).unwrap();
    good.sign_and_spool(&att).unwrap();
    assert_eq!(good.flush().unwrap().accepted.len(), 1);
}

#[test]
fn records_made_while_the_log_is_away_all_land_in_order_when_it_returns() {
    let clock = TestClock::at(datetime!(2026-11-29 09:00 UTC));
    let mut fleet = Fleet::new(clock.clone());
    let key = fleet.agent_key(1, "hgx-01");
    let mut agent = fleet.attestor(key, "agent-1");
    fleet.log.up.store(false, Ordering::SeqCst);
    let mut counters = Vec::new();
    for n in 1..=4 {
        clock.advance(time::Duration::minutes(20));
        let att = agent.build(&parse(&[("hgx.txt", &eight_gpu_text(n))]), host("hgx-01")).unwrap();
        counters.push(att.counter);
        agent.sign_and_spool(&att).unwrap();
        let flush = agent.flush().unwrap();
        assert!(flush.unavailable.is_some());
        assert_eq!(flush.remaining, n);
    }
    // A restart while the log is away: the spool is on disk.
    drop(agent);
    let key = SigningKey::from_seed(&[1; 32]);
    let mut agent = fleet.attestor(key, "agent-1");
    assert_eq!(agent.spool().pending().unwrap().len(), 4);
    fleet.log.up.store(true, Ordering::SeqCst);
    clock.advance(time::Duration::hours(3));
    let flush = agent.flush().unwrap();
    assert_eq!(flush.accepted.iter().map(|a| a.counter).collect::<Vec<_>>(), counters, "sent in counter order");
    let indices: Vec<u64> = flush.accepted.iter().map(|a| a.receipt.index).collect();
    assert!(indices.windows(2).all(|w| w[0] < w[1]), "{indices:?}");
    assert!(agent.spool().pending().unwrap().is_empty());
}

#[test]
fn counters_keep_increasing_across_restarts_even_without_the_state_file() {
    let clock = TestClock::at(datetime!(2026-11-29 09:00 UTC));
    let mut fleet = Fleet::new(clock.clone());
    fleet.agent_key(1, "hgx-01");
    let mut agent = fleet.attestor(SigningKey::from_seed(&[1; 32]), "agent-1");
    let a = agent.build(&probe_files(&[H800_TXT]), host("hgx-01")).unwrap();
    let b = agent.build(&probe_files(&[H800_TXT]), host("hgx-01")).unwrap();
    assert!(b.counter > a.counter, "same instant, still increasing");
    drop(agent);
    std::fs::remove_file(fleet.dir.path().join("agent-1/state.json")).unwrap();
    clock.advance(time::Duration::seconds(1));
    let mut agent = fleet.attestor(SigningKey::from_seed(&[1; 32]), "agent-1");
    let c = agent.build(&probe_files(&[H800_TXT]), host("hgx-01")).unwrap();
    assert!(c.counter > b.counter, "time-based counters survive a lost state file");
}

/// An attestation larger than a log entry may be (an 8-GPU host's confidential-computing
/// evidence can be) is refused before it is spooled, with the reason, instead of being spooled
/// and then refused by the log for good.
#[test]
fn an_attestation_over_the_entry_size_is_refused_before_the_spool() {
    let clock = TestClock::at(datetime!(2026-11-29 09:00 UTC));
    let mut fleet = Fleet::new(clock.clone());
    let key = fleet.agent_key(1, "hgx-01");
    let mut agent = fleet.attestor(key, "agent-1");
    let report = parse(&[("hgx.txt", &eight_gpu_text(8))]);
    let mut att = agent.build(&report, host("hgx-01")).unwrap();
    let blob = "A".repeat(8 * 1024);
    att.vendor_evidence = att
        .gpus
        .iter()
        .map(|g| chipledger_domain::records::VendorEvidence {
            gpu: g.uuid.clone(),
            kind: "nvml-cc-attestation-report".into(),
            digest: merkle::Hash::sha256(blob.as_bytes()),
            blob: blob.clone(),
            nonce: None,
            nonce_checkpoint: None,
        })
        .collect();
    let err = agent.sign_and_spool(&att).unwrap_err();
    assert!(matches!(err, Error::TooLarge { limit: 65_535, .. }), "{err}");
    assert!(err.to_string().contains("at most 65535"), "{err}");
    assert!(agent.spool().pending().unwrap().is_empty(), "nothing spooled");
}
