//! The one receipt check and the one consistency rule every reader of the log uses.

use chipledger_domain::keys::{SigningKey, VerifierKey};
use chipledger_domain::log::{check_consistent, CheckpointTracker, Receipt};
use chipledger_domain::merkle::{consistency_proof, inclusion_proof, leaf_hash, Hash, MemoryTree};
use chipledger_domain::note::Checkpoint;

const ORIGIN: &str = "test.example/log";

struct Log {
    key: SigningKey,
    vkey: VerifierKey,
    envelopes: Vec<Vec<u8>>,
    tree: MemoryTree,
}

fn log(entries: usize) -> Log {
    let key = SigningKey::from_seed(&[9; 32]);
    let vkey = VerifierKey::new(ORIGIN, key.public_key()).unwrap();
    let envelopes: Vec<Vec<u8>> = (0..entries).map(|i| format!("envelope {i}").into_bytes()).collect();
    let tree = MemoryTree::from_leaves(envelopes.iter().map(|e| leaf_hash(e)).collect());
    Log { key, vkey, envelopes, tree }
}

impl Log {
    fn checkpoint(&self, size: u64) -> (String, Checkpoint) {
        let cp = Checkpoint { origin: ORIGIN.into(), size, root: self.tree.root_at(size).unwrap(), extensions: vec![] };
        let text = String::from_utf8(cp.sign(ORIGIN, &self.key).unwrap().to_bytes()).unwrap();
        (text, cp)
    }

    fn receipt(&self, index: u64, size: u64) -> Receipt {
        Receipt {
            index,
            leaf_hash: leaf_hash(&self.envelopes[index as usize]),
            duplicate: false,
            checkpoint: self.checkpoint(size).0,
            inclusion_proof: inclusion_proof(&self.tree, index, size).unwrap(),
        }
    }
}

#[test]
fn a_receipt_verifies_for_its_envelope_under_the_log_key_only() {
    let l = log(10);
    let r = l.receipt(3, 7);
    assert_eq!(r.verify(&l.envelopes[3], &l.vkey).unwrap().size, 7);
    assert!(r.verify(&l.envelopes[4], &l.vkey).unwrap_err().to_string().contains("not the envelope's"));
    let other = VerifierKey::new(ORIGIN, SigningKey::from_seed(&[8; 32]).public_key()).unwrap();
    assert!(r.verify(&l.envelopes[3], &other).is_err());
    let mut bent = r.clone();
    bent.inclusion_proof[0] = Hash([1; 32]);
    assert!(bent.verify(&l.envelopes[3], &l.vkey).is_err());
}

#[test]
fn a_checkpoint_must_extend_the_last_one_seen() {
    let l = log(12);
    let (_, c5) = l.checkpoint(5);
    let (_, c9) = l.checkpoint(9);
    check_consistent(&c5, &c9, &consistency_proof(&l.tree, 5, 9).unwrap()).unwrap();
    check_consistent(&c9, &c5, &consistency_proof(&l.tree, 5, 9).unwrap()).unwrap();
    check_consistent(&c9, &c9, &[]).unwrap();
    // Another history of the same size: refused, with or without a proof.
    let fork = Checkpoint { root: Hash([7; 32]), ..c9.clone() };
    assert!(check_consistent(&c9, &fork, &[]).unwrap_err().to_string().contains("two different roots"));
    assert!(check_consistent(&c5, &fork, &consistency_proof(&l.tree, 5, 9).unwrap()).is_err());
    let elsewhere = Checkpoint { origin: "other.example/log".into(), ..c9.clone() };
    assert!(check_consistent(&c5, &elsewhere, &[]).unwrap_err().to_string().contains("origin changed"));

    // The tracker keeps the newest and asks for proofs between the sizes it compares.
    let (t5, _) = l.checkpoint(5);
    let (t9, _) = l.checkpoint(9);
    let mut tracker = CheckpointTracker::new(l.vkey.clone(), Some(&t5)).unwrap();
    tracker.extend(&t9, |a, b| Ok(consistency_proof(&l.tree, a, b).unwrap())).unwrap();
    assert_eq!(tracker.last_text(), Some(t9.as_str()));
    // An older one it extends is accepted and changes nothing.
    tracker.extend(&t5, |a, b| Ok(consistency_proof(&l.tree, a, b).unwrap())).unwrap();
    assert_eq!(tracker.last().unwrap().size, 9);
    // A forked later history is refused and the last stays.
    let forked = {
        let mut other = log(12);
        other.envelopes[2] = b"rewritten".to_vec();
        other.tree = MemoryTree::from_leaves(other.envelopes.iter().map(|e| leaf_hash(e)).collect());
        other
    };
    let (t11, _) = forked.checkpoint(11);
    assert!(tracker.extend(&t11, |a, b| Ok(consistency_proof(&forked.tree, a, b).unwrap())).is_err());
    assert_eq!(tracker.last().unwrap().size, 9);
}
