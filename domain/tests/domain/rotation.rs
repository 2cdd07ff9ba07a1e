//! Log key rotation as a reader follows it: the overlap, the retirement, and the statements a
//! follower must refuse.

use chipledger_domain::keys::{SigningKey, VerifierKey};
use chipledger_domain::merkle::Hash;
use chipledger_domain::note::Checkpoint;
use chipledger_domain::records::{Predicate, Record};
use chipledger_domain::rotation::{LogKeyRotation, LogKeys, Phase};
use time::macros::datetime;

const ORIGIN: &str = "example.org/log";

fn key(seed: u8) -> (SigningKey, VerifierKey) {
    let k = SigningKey::from_seed(&[seed; 32]);
    let v = VerifierKey::new(ORIGIN, k.public_key()).unwrap();
    (k, v)
}

fn rotation(phase: Phase, index: u64, old: &SigningKey, new: &SigningKey) -> LogKeyRotation {
    LogKeyRotation::new(ORIGIN, phase, index, old, new, 1, datetime!(2026-12-07 12:00 UTC)).unwrap()
}

/// A checkpoint of `size` signed by `signers`, in order.
fn checkpoint(size: u64, signers: &[&SigningKey]) -> Vec<u8> {
    let cp = Checkpoint { origin: ORIGIN.into(), size, root: Hash([size as u8; 32]), extensions: vec![] };
    let mut note = cp.sign(ORIGIN, signers[0]).unwrap();
    for s in &signers[1..] {
        note.cosign(ORIGIN, s).unwrap();
    }
    note.to_bytes()
}

#[test]
fn a_reader_pinning_the_old_key_follows_the_rotation_and_refuses_the_retired_key_after_it() {
    let (old, old_v) = key(1);
    let (new, new_v) = key(2);
    let mut keys = LogKeys::pinned(old_v.clone());
    assert!(keys.open_checkpoint(&checkpoint(10, &[&old]), Some(ORIGIN)).is_ok());
    // Before the announcement, the new key means nothing.
    assert!(keys.open_checkpoint(&checkpoint(10, &[&new]), Some(ORIGIN)).is_err());

    keys.follow(&rotation(Phase::Begin, 20, &old, &new), 20).unwrap();
    // The overlap: both sign; either signature opens it.
    for signers in [vec![&old, &new], vec![&new, &old], vec![&old], vec![&new]] {
        assert!(keys.open_checkpoint(&checkpoint(25, &signers), Some(ORIGIN)).is_ok());
    }
    // The new key may not sign what came before its announcement.
    let early = keys.open_checkpoint(&checkpoint(20, &[&new]), Some(ORIGIN)).unwrap_err().to_string();
    assert!(early.contains("not a log key before size 21"), "{early}");

    keys.follow(&rotation(Phase::Finish, 30, &old, &new), 30).unwrap();
    assert_eq!(keys.current(), &new_v);
    assert!(keys.open_checkpoint(&checkpoint(31, &[&old]), Some(ORIGIN)).is_ok(), "the finish record's checkpoint");
    let retired = keys.open_checkpoint(&checkpoint(32, &[&old]), Some(ORIGIN)).unwrap_err().to_string();
    assert!(retired.contains("retired after size 31"), "{retired}");
    assert!(keys.open_checkpoint(&checkpoint(32, &[&new]), Some(ORIGIN)).is_ok());
    // Old checkpoints still open: the old key signed them in its time.
    assert!(keys.open_checkpoint(&checkpoint(5, &[&old]), Some(ORIGIN)).is_ok());
    assert_eq!(keys.followed(), [20, 30]);
}

#[test]
fn rotations_that_do_not_follow_are_refused() {
    let (old, old_v) = key(1);
    let (new, _) = key(2);
    let (other, _) = key(3);
    let fresh = || LogKeys::pinned(old_v.clone());
    // Signed by a key the reader does not hold as current.
    let err = fresh().follow(&rotation(Phase::Begin, 5, &other, &new), 5).unwrap_err().to_string();
    assert!(err.contains("not the log's current key"), "{err}");
    // Bound to its index.
    let err = fresh().follow(&rotation(Phase::Begin, 5, &old, &new), 6).unwrap_err().to_string();
    assert!(err.contains("sits at index 5"), "{err}");
    // A finish without a begin; a second begin while one is open; out of order.
    assert!(fresh().follow(&rotation(Phase::Finish, 5, &old, &new), 5).is_err());
    let mut k = fresh();
    k.follow(&rotation(Phase::Begin, 5, &old, &new), 5).unwrap();
    assert!(k.follow(&rotation(Phase::Begin, 6, &new, &other), 6).is_err());
    assert!(k.follow(&rotation(Phase::Finish, 4, &old, &new), 4).is_err());
    assert!(k.follow(&rotation(Phase::Finish, 7, &old, &other), 7).is_err(), "finishing another rotation");
    // A statement whose signature does not match its keys does not parse as a record at all.
    let mut forged = rotation(Phase::Begin, 5, &old, &new);
    forged.new_key = VerifierKey::new(ORIGIN, other.public_key()).unwrap().to_string();
    assert!(forged.check().unwrap_err().contains("signature does not verify"));
    let mut same = rotation(Phase::Begin, 5, &old, &new);
    same.new_key = same.old_key.clone();
    assert!(same.check().is_err());
    let st = chipledger_domain::records::statement(&forged).unwrap();
    assert!(Record::from_statement(&st).is_err());
}
