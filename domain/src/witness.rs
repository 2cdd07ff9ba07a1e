//! A C2SP tlog-witness's decision on an `add-checkpoint` request, as a pure function of the
//! request, the logs it follows and what it last cosigned: cosign (and remember a new head) or
//! refuse with the status the spec names. Persisting the head atomically with the check, and
//! signing, are the caller's.
//!
//! The request body is `old <size>\n`, up to 63 consistency-proof lines (base64 hashes), an
//! empty line, then the signed checkpoint.

use crate::keys::VerifierKey;
use crate::merkle::{self, Hash};
use crate::note::{Checkpoint, Note, MAX_NOTE_BYTES};

/// The most consistency-proof lines a request may carry (the spec's bound).
pub const MAX_PROOF_LINES: usize = 63;

/// A parsed `add-checkpoint` body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddCheckpoint {
    pub old: u64,
    pub proof: Vec<Hash>,
    /// The signed checkpoint note, verbatim.
    pub checkpoint: Vec<u8>,
}

/// Why a witness refuses, with the HTTP status the spec gives each.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the request is malformed: {0}")]
    Malformed(String),
    #[error("this witness follows no log with origin {0:?}")]
    UnknownLog(String),
    #[error("no signature on the checkpoint verifies under a key this witness trusts for {0:?}")]
    NotSigned(String),
    #[error("the old size {old} is larger than the checkpoint's size {size}")]
    OldTooLarge { old: u64, size: u64 },
    /// The old size is not the latest cosigned one, or the same size with another root. The
    /// answer's body is the latest cosigned size.
    #[error("the latest checkpoint this witness cosigned has size {latest}")]
    Conflict { latest: u64 },
    #[error("the consistency proof from size {old} to {size} does not verify")]
    BadProof { old: u64, size: u64 },
}

impl Refusal {
    /// The HTTP status the spec names for this refusal.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Malformed(_) | Refusal::OldTooLarge { .. } => 400,
            Refusal::NotSigned(_) => 403,
            Refusal::UnknownLog(_) => 404,
            Refusal::Conflict { .. } => 409,
            Refusal::BadProof { .. } => 422,
        }
    }
}

impl AddCheckpoint {
    /// Parses a request body, bounded.
    pub fn parse(body: &[u8]) -> Result<AddCheckpoint, Refusal> {
        let bad = |m: &str| Refusal::Malformed(m.to_string());
        if body.len() > MAX_NOTE_BYTES + 64 * (MAX_PROOF_LINES + 1) {
            return Err(bad("the body is larger than any checkpoint and proof"));
        }
        let text = std::str::from_utf8(body).map_err(|_| bad("the body is not UTF-8"))?;
        let (head, checkpoint) = text.split_once("\n\n").ok_or_else(|| bad("no empty line before the checkpoint"))?;
        let mut lines = head.split('\n');
        let old = lines
            .next()
            .and_then(|l| l.strip_prefix("old "))
            .ok_or_else(|| bad("the first line is not `old <size>`"))?;
        if old.is_empty() || !old.bytes().all(|b| b.is_ascii_digit()) || (old.len() > 1 && old.starts_with('0')) {
            return Err(bad("the old size is not a decimal number without leading zeros"));
        }
        let old = old.parse::<u64>().map_err(|_| bad("the old size is out of range"))?;
        let mut proof = Vec::new();
        for line in lines {
            if proof.len() == MAX_PROOF_LINES {
                return Err(bad("more than 63 consistency proof lines"));
            }
            proof.push(Hash::from_base64(line).map_err(|_| bad("a proof line is not base64 of a 32-byte hash"))?);
        }
        Ok(AddCheckpoint { old, proof, checkpoint: checkpoint.as_bytes().to_vec() })
    }

    /// The request body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("old {}\n", self.old);
        for h in &self.proof {
            out.push_str(&h.to_base64());
            out.push('\n');
        }
        out.push('\n');
        let mut out = out.into_bytes();
        out.extend_from_slice(&self.checkpoint);
        out
    }
}

/// A log a witness follows: its origin and the keys it trusts for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FollowedLog {
    pub origin: String,
    pub keys: Vec<VerifierKey>,
}

/// What the witness will cosign: the checkpoint (its note text is what the cosignature signs)
/// and the new head to persist before answering.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    pub checkpoint: Checkpoint,
    pub text: String,
}

/// The stateless half of a decision: the request's checkpoint parsed, of a followed log, and
/// signed by a key the witness trusts for it (no head needed: run before any lock).
pub fn check_signed(req: &AddCheckpoint, logs: &[FollowedLog]) -> Result<Accepted, Refusal> {
    let note = Note::parse(&req.checkpoint).map_err(|e| Refusal::Malformed(e.to_string()))?;
    let cp = Checkpoint::parse(&note.text).map_err(|e| Refusal::Malformed(e.to_string()))?;
    let log = logs.iter().find(|l| l.origin == cp.origin).ok_or_else(|| Refusal::UnknownLog(cp.origin.clone()))?;
    // Signatures by keys it does not trust are ignored; one by a trusted key must verify.
    note.verify(&log.keys).map_err(|_| Refusal::NotSigned(cp.origin.clone()))?;
    if req.old > cp.size {
        return Err(Refusal::OldTooLarge { old: req.old, size: cp.size });
    }
    Ok(Accepted { text: note.text, checkpoint: cp })
}

/// The half that needs the head: `signed` (from [`check_signed`] on `req`) against what the
/// witness last cosigned of that log, `latest` (size, root; `None`: never).
pub fn check_head(req: &AddCheckpoint, signed: Accepted, latest: Option<(u64, Hash)>) -> Result<Accepted, Refusal> {
    let cp = &signed.checkpoint;
    let (latest_size, latest_root) = match latest {
        Some((size, root)) => (size, Some(root)),
        None => (0, None),
    };
    if req.old != latest_size {
        return Err(Refusal::Conflict { latest: latest_size });
    }
    let no_proof = |ok: bool| {
        if ok && req.proof.is_empty() {
            Ok(())
        } else {
            Err(Refusal::BadProof { old: req.old, size: cp.size })
        }
    };
    match latest_root {
        // Never cosigned this log: nothing to be consistent with, and the proof must be empty;
        // an empty tree has the empty root.
        None => no_proof(cp.size > 0 || cp.root == merkle::empty_root())?,
        Some(root) if req.old == cp.size => {
            if root != cp.root {
                return Err(Refusal::Conflict { latest: latest_size });
            }
            no_proof(true)?;
        }
        // A head of size 0 is the empty tree; any checkpoint extends it.
        Some(root) if req.old == 0 => no_proof(root == merkle::empty_root())?,
        Some(root) => merkle::verify_consistency(req.old, cp.size, &root, &cp.root, &req.proof)
            .map_err(|_| Refusal::BadProof { old: req.old, size: cp.size })?,
    }
    Ok(signed)
}

/// Decides on `req` for a witness that follows `logs` and last cosigned `latest` (size, root)
/// of the request's log (`None`: never): [`check_signed`], then [`check_head`].
pub fn decide(req: &AddCheckpoint, logs: &[FollowedLog], latest: Option<(u64, Hash)>) -> Result<Accepted, Refusal> {
    check_head(req, check_signed(req, logs)?, latest)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a failure is the point
mod tests {
    use super::*;
    use crate::keys::SigningKey;
    use crate::merkle::{leaf_hash, MemoryTree};

    fn log(n: usize) -> (MemoryTree, SigningKey, FollowedLog) {
        let mut t = MemoryTree::default();
        for i in 0..n {
            t.push(leaf_hash(format!("entry {i}").as_bytes()));
        }
        let key = SigningKey::from_seed(&[1; 32]);
        let vkey = VerifierKey::new("example.com/log", key.public_key()).unwrap();
        (t, key, FollowedLog { origin: "example.com/log".into(), keys: vec![vkey] })
    }

    fn request(t: &MemoryTree, key: &SigningKey, old: u64, size: u64) -> AddCheckpoint {
        let cp =
            Checkpoint { origin: "example.com/log".into(), size, root: t.root_at(size).unwrap(), extensions: vec![] };
        let proof = if old == 0 || old > size { vec![] } else { merkle::consistency_proof(t, old, size).unwrap() };
        AddCheckpoint { old, proof, checkpoint: cp.sign("example.com/log", key).unwrap().to_bytes() }
    }

    #[test]
    fn a_growing_log_is_cosigned_and_every_spec_refusal_has_its_status() {
        let (t, key, followed) = log(40);
        let logs = [followed];
        let first = request(&t, &key, 0, 10);
        assert_eq!(AddCheckpoint::parse(&first.to_bytes()).unwrap(), first);
        let a = decide(&first, &logs, None).unwrap();
        assert_eq!(a.checkpoint.size, 10);
        let head = Some((10, a.checkpoint.root));
        let next = request(&t, &key, 10, 30);
        assert_eq!(decide(&next, &logs, head).unwrap().checkpoint.size, 30);
        // The same head again: fine. The same size with another root: 409.
        assert!(decide(&request(&t, &key, 10, 10), &logs, head).is_ok());
        let mut forked = request(&t, &key, 10, 10);
        let cp =
            Checkpoint { origin: "example.com/log".into(), size: 10, root: leaf_hash(b"fork"), extensions: vec![] };
        forked.checkpoint = cp.sign("example.com/log", &key).unwrap().to_bytes();
        assert_eq!(decide(&forked, &logs, head).unwrap_err().status(), 409);
        // A stale old size: 409, saying the latest.
        assert_eq!(decide(&request(&t, &key, 5, 30), &logs, head).unwrap_err(), Refusal::Conflict { latest: 10 });
        // A bad proof: 422.
        let mut bent = request(&t, &key, 10, 30);
        bent.proof[0] = leaf_hash(b"x");
        assert_eq!(decide(&bent, &logs, head).unwrap_err().status(), 422);
        // Old past the checkpoint: 400. An unknown log: 404. A foreign signature: 403.
        assert_eq!(decide(&request(&t, &key, 31, 30), &logs, head).unwrap_err().status(), 400);
        let other = FollowedLog { origin: "other.example/log".into(), keys: logs[0].keys.clone() };
        assert_eq!(decide(&first, &[other], None).unwrap_err().status(), 404);
        let stranger = SigningKey::from_seed(&[9; 32]);
        assert_eq!(decide(&request(&t, &stranger, 10, 30), &logs, head).unwrap_err().status(), 403);
        // The same size again with a proof: 422. A first size-0 checkpoint must be the empty tree.
        let mut again = request(&t, &key, 10, 10);
        again.proof = vec![leaf_hash(b"x")];
        assert_eq!(decide(&again, &logs, head).unwrap_err().status(), 422);
        let empty = Checkpoint { origin: "example.com/log".into(), size: 0, root: leaf_hash(b"x"), extensions: vec![] };
        let bogus = AddCheckpoint {
            old: 0,
            proof: vec![],
            checkpoint: empty.sign("example.com/log", &key).unwrap().to_bytes(),
        };
        assert_eq!(decide(&bogus, &logs, None).unwrap_err().status(), 422);
        // A first request must start from 0 with no proof.
        let mut with_proof = request(&t, &key, 0, 10);
        with_proof.proof = vec![leaf_hash(b"x")];
        assert_eq!(decide(&with_proof, &logs, None).unwrap_err().status(), 422);
        assert_eq!(decide(&request(&t, &key, 10, 30), &logs, None).unwrap_err(), Refusal::Conflict { latest: 0 });
    }

    #[test]
    fn malformed_bodies_are_400_and_bounded() {
        for bad in [&b""[..], b"old 1\n", b"old 01\n\nx", b"new 1\n\nx", b"old 1\nnot-base64\n\nx", b"\xff\n\n"] {
            assert_eq!(AddCheckpoint::parse(bad).unwrap_err().status(), 400, "{bad:?}");
        }
        let mut many = String::from("old 1\n");
        for _ in 0..64 {
            many.push_str(&leaf_hash(b"h").to_base64());
            many.push('\n');
        }
        many.push_str("\nx");
        assert!(AddCheckpoint::parse(many.as_bytes()).unwrap_err().to_string().contains("63"));
    }
}
