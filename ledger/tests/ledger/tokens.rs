//! People's tokens and the key lookup behind signed requests.

use chipledger_domain::auth::Token;
use chipledger_domain::records::Role;
use rand_chacha::rand_core::SeedableRng;

use crate::Fixture;

#[test]
fn a_token_authenticates_until_it_is_revoked_in_any_process() {
    let mut f = Fixture::new();
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
    let (info, token) = f.ledger.create_token("alice, audit", Role::Auditor, &mut rng).unwrap();
    assert_eq!(info.role, Role::Auditor);
    assert_eq!(f.ledger.authenticate_token(&token).unwrap().unwrap().id, info.id);

    // The right id with another secret is nobody.
    let forged = Token::parse(&format!("clt_{}_{}", token.id(), "0".repeat(64))).unwrap();
    assert_eq!(f.ledger.authenticate_token(&forged).unwrap(), None);

    // Only the hash is stored: the secret appears nowhere in the database file.
    let db = std::fs::read(f.path().join(chipledger_ledger::DB_FILE)).unwrap();
    let secret = token.reveal();
    let secret = secret.rsplit('_').next().unwrap().as_bytes();
    assert!(!db.windows(secret.len()).any(|w| w == secret));

    // Revoked through another handle on the same directory (another process, say).
    let other = chipledger_ledger::Ledger::open(
        f.path(),
        chipledger_ledger::LedgerConfig::default(),
        std::sync::Arc::new(chipledger_domain::log::FixedClock(crate::NOW)),
    )
    .unwrap();
    assert!(other.revoke_token(&info.id).unwrap().revoked_at.is_some());
    assert_eq!(f.ledger.authenticate_token(&token).unwrap(), None);
    assert_eq!(f.ledger.live_token(&info.id).unwrap(), None);
    assert!(other.revoke_token(&info.id).unwrap_err().to_string().contains("already revoked"));
    assert!(other.revoke_token("0123456789ab").unwrap_err().to_string().contains("no token"));
    f.reopen();
    assert_eq!(f.ledger.tokens().unwrap().len(), 1);
}

#[test]
fn tokens_are_for_people_with_names() {
    let f = Fixture::new();
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(2);
    assert!(f.ledger.create_token("bot", Role::Agent, &mut rng).unwrap_err().to_string().contains("admin or auditor"));
    assert!(f.ledger.create_token("  ", Role::Admin, &mut rng).is_err());
    assert!(f.ledger.create_token("a\nb", Role::Admin, &mut rng).is_err());
    assert!(f.ledger.tokens().unwrap().is_empty());
}

#[test]
fn active_key_excludes_unknown_and_revoked_keys() {
    let mut f = Fixture::new();
    let agent = f.enroll(21, Role::Agent, Some("host-a"));
    let found = f.ledger.active_key(agent.key_id().as_str()).unwrap().unwrap();
    assert_eq!(found.role, Role::Agent);
    assert_eq!(found.host.as_deref(), Some("host-a"));
    assert!(f.ledger.active_key(&"0".repeat(64)).unwrap().is_none());
    let revocation = f.revocation(&agent);
    f.ledger.append(&[revocation]).unwrap();
    assert!(f.ledger.active_key(agent.key_id().as_str()).unwrap().is_none());
}
