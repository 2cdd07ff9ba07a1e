//! One signature rule on every path: the log accepts exactly what `verify_strict` accepts, in a
//! single append, a batch, and its audit. The construction below — `R` with an order-2
//! component, `s` right for `R` without it — passed the randomly weighted batch equation the log
//! used before whenever the weight was even (about half the time).

use chipledger_domain::dsse::Envelope;
use chipledger_domain::encoding::b64_encode;
use chipledger_domain::keys::SigningKey;
use chipledger_domain::merkle::{leaf_hash, root, Hash};
use chipledger_domain::note::Checkpoint;
use chipledger_domain::records::Role;
use rusqlite::Connection;

use crate::*;

const AUDITOR_SEED: [u8; 32] = [4; 32];

/// `envelope` re-signed by the key of `seed` with `R = [r]B + T` (`T` of order 2) and
/// `s = r + h·a`: `[s]B − [h]A = [r]B ≠ R`, so `verify_strict` refuses it.
fn with_torsion_signature(envelope: &[u8], seed: &[u8; 32], r: u64) -> Vec<u8> {
    use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
    use curve25519_dalek::Scalar;
    use sha2::{Digest, Sha512};
    let key = SigningKey::from_seed(seed);
    let mut env: Envelope = serde_json::from_slice(envelope).unwrap();
    let (message, _) = env.signed_message(&key.key_id()).unwrap();
    let a = ed25519_dalek::SigningKey::from_bytes(seed).to_scalar();
    let r = Scalar::from(r + 1) * Scalar::from_hash(Sha512::new().chain_update(&message));
    // EIGHT_TORSION[4] is (0, −1), the point of order 2.
    let big_r = (ED25519_BASEPOINT_POINT * r + EIGHT_TORSION[4]).compress();
    let h = Scalar::from_hash(
        Sha512::new().chain_update(big_r.as_bytes()).chain_update(key.public_key().to_bytes()).chain_update(&message),
    );
    let mut sig = big_r.as_bytes().to_vec();
    sig.extend_from_slice((r + h * a).as_bytes());
    assert!(key.public_key().verify(&message, &sig).is_err(), "strict refuses the construction");
    env.signatures[0].sig = b64_encode(&sig);
    env.to_json()
}

#[test]
fn a_batch_with_one_torsion_signature_is_refused_every_time_and_writes_nothing() {
    let mut f = Fixture::new();
    let auditor = f.enroll(AUDITOR_SEED[0], Role::Auditor, None);
    let size = f.ledger.size();
    let mut counter = 1;
    for attempt in 0..200u64 {
        let mut batch: Vec<Vec<u8>> =
            (0..8).map(|i| annotation(&auditor, counter + i, &format!("attempt {attempt}, note {i}"))).collect();
        let bad = (attempt % 8) as usize;
        batch[bad] = with_torsion_signature(&batch[bad], &AUDITOR_SEED, attempt);
        match f.ledger.append(&batch) {
            Err(chipledger_ledger::Error::Rejected { position, reason }) => {
                assert_eq!(position, bad, "attempt {attempt}: {reason}");
                assert!(reason.to_string().contains("signature"), "{reason}");
            }
            other => panic!("attempt {attempt}: a torsion signature was not refused: {other:?}"),
        }
        assert_eq!(f.ledger.size(), size, "nothing written");
        // Alone, too.
        assert!(f.ledger.append(&batch[bad..=bad]).is_err());
        counter += 8;
    }
    // The same records, honestly signed, go in.
    let good: Vec<Vec<u8>> = (0..8).map(|i| annotation(&auditor, counter + i, &format!("note {i}"))).collect();
    f.ledger.append(&good).unwrap();
}

/// A log operator (who holds the log key) plants the construction as the last entry and signs a
/// checkpoint over it: every audit names it.
#[test]
fn the_audit_names_a_planted_torsion_signature_every_time() {
    let mut f = Fixture::new();
    let auditor = f.enroll(AUDITOR_SEED[0], Role::Auditor, None);
    // Entries 0 (admin), 1 (auditor), 2..=8 (notes): the planted one lands at index 9, which
    // closes no stored subtree (level ≥ 2 nodes close at indexes ≡ 3 mod 4).
    let notes: Vec<Vec<u8>> = (1..=7).map(|c| annotation(&auditor, c, &format!("note {c}"))).collect();
    f.ledger.append(&notes).unwrap();
    let planted = with_torsion_signature(&annotation(&auditor, 8, "planted"), &AUDITOR_SEED, 5);
    let index = f.ledger.size();
    assert_eq!(index, 9);
    {
        let conn = Connection::open(f.path().join(chipledger_ledger::DB_FILE)).unwrap();
        let (kind, signer): (i64, i64) = conn
            .query_row("SELECT kind, signer FROM entries WHERE idx = 8", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap();
        conn.execute(
            "INSERT INTO entries (idx, leaf_hash, body, form, kind, signer, made_at, counter) VALUES (?1, ?2, ?3, 0, ?4, ?5, 0, 8)",
            rusqlite::params![index as i64, &leaf_hash(&planted).0[..], planted, kind, signer],
        )
        .unwrap();
        let mut st = conn.prepare("SELECT leaf_hash FROM entries ORDER BY idx").unwrap();
        let leaves: Vec<Hash> = st
            .query_map([], |r| r.get::<_, Vec<u8>>(0))
            .unwrap()
            .map(|h| Hash(h.unwrap().try_into().unwrap()))
            .collect();
        let log_key = SigningKey::from_pkcs8_pem(
            &std::fs::read_to_string(f.path().join(chipledger_ledger::LOG_KEY_FILE)).unwrap(),
        )
        .unwrap();
        let origin = f.ledger.origin().to_string();
        let cp =
            Checkpoint { origin: origin.clone(), size: leaves.len() as u64, root: root(&leaves), extensions: vec![] };
        let note = cp.sign(&origin, &log_key).unwrap().to_bytes();
        conn.execute(
            "INSERT INTO checkpoints (size, note, signed_at) VALUES (?1, ?2, 0)",
            rusqlite::params![leaves.len() as i64, note],
        )
        .unwrap();
    }
    f.reopen();
    for attempt in 0..200 {
        let report = f.ledger.audit(&mut |_, _| {}).unwrap();
        let problem = report.problem.unwrap_or_else(|| panic!("audit {attempt} accepted the planted signature"));
        assert_eq!(problem.index, Some(index), "{problem}");
        assert!(problem.what.contains("signature"), "{problem}");
    }
}
