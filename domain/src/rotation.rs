//! Moving a log to a new key without a new log.
//!
//! The operator announces the move in the log itself: a `log-key-rotation/v1` record, signed by
//! an admin like every record, and carrying two signatures of its own over one fixed statement
//! (origin, phase, the log index it sits at, old key, new key): the old log key's, which is the
//! authority a reader pinning the old key follows, and the new key's, which proves the operator
//! holds it. `begin` opens an overlap in which every checkpoint carries both keys' signatures;
//! `finish` closes it: the old key signs no checkpoint larger than the one that covers the
//! `finish` record. Binding the statement to its index keeps an announcement from being
//! replayed anywhere else in the log.
//!
//! [`LogKeys`] is what a reader pins: each key with the checkpoint sizes it may sign, started
//! from one pinned key and extended only by rotation records that key (then its successor)
//! signed, in log order. A checkpoint verifies only under a key whose window holds its size.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::encoding::{b64_decode, b64_encode};
use crate::keys::{SigningKey, VerifierKey};
use crate::note::{Checkpoint, Note, VerifiedCheckpoint};
use crate::records::{Predicate, RecordKind, Subject};
use crate::Error;

/// Which end of the overlap a rotation record marks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// The new key signs every checkpoint from here on, beside the old one.
    Begin,
    /// The old key signs nothing after the checkpoint that covers this record.
    Finish,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::Begin => "begin",
            Phase::Finish => "finish",
        }
    }
}

/// `log-key-rotation/v1`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogKeyRotation {
    pub format_version: u32,
    pub counter: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    pub origin: String,
    pub phase: Phase,
    /// The log index this record sits at (the log refuses it anywhere else).
    pub at_index: u64,
    /// C2SP verifier keys; both named `origin`.
    pub old_key: String,
    pub new_key: String,
    /// Ed25519 signatures over [`statement`], base64.
    pub old_key_signature: String,
    pub new_key_signature: String,
}

/// The bytes both keys sign.
pub fn statement(origin: &str, phase: Phase, at_index: u64, old_key: &str, new_key: &str) -> Vec<u8> {
    format!(
        "chipledger log-key-rotation/v1\norigin {origin}\nphase {}\nindex {at_index}\nold {old_key}\nnew {new_key}\n",
        phase.as_str()
    )
    .into_bytes()
}

impl LogKeyRotation {
    /// A rotation statement signed by both keys (the record still needs an admin's envelope).
    pub fn new(
        origin: &str,
        phase: Phase,
        at_index: u64,
        old: &SigningKey,
        new: &SigningKey,
        counter: u64,
        issued_at: OffsetDateTime,
    ) -> Result<LogKeyRotation, Error> {
        let old_key = VerifierKey::new(origin, old.public_key())?.to_string();
        let new_key = VerifierKey::new(origin, new.public_key())?.to_string();
        let msg = statement(origin, phase, at_index, &old_key, &new_key);
        Ok(LogKeyRotation {
            format_version: crate::records::FORMAT_VERSION,
            counter,
            issued_at,
            origin: origin.to_string(),
            phase,
            at_index,
            old_key_signature: b64_encode(&old.sign(&msg)),
            new_key_signature: b64_encode(&new.sign(&msg)),
            old_key,
            new_key,
        })
    }

    /// Both keys, parsed, after checking their names, that they differ and both signatures.
    pub fn keys(&self) -> Result<(VerifierKey, VerifierKey), String> {
        let old = VerifierKey::parse(&self.old_key).map_err(|e| format!("old_key: {e}"))?;
        let new = VerifierKey::parse(&self.new_key).map_err(|e| format!("new_key: {e}"))?;
        if old.name() != self.origin || new.name() != self.origin {
            return Err(format!("both keys must be named after the origin {:?}", self.origin));
        }
        if old.public_key() == new.public_key() {
            return Err("the new key is the old key".into());
        }
        let msg = statement(&self.origin, self.phase, self.at_index, &self.old_key, &self.new_key);
        for (what, key, sig) in [("old", &old, &self.old_key_signature), ("new", &new, &self.new_key_signature)] {
            let raw = b64_decode(sig, "rotation signature").map_err(|e| format!("{what}_key_signature: {e}"))?;
            key.public_key()
                .verify(&msg, &raw)
                .map_err(|_| format!("the {what} key's signature does not verify over the rotation statement"))?;
        }
        Ok((old, new))
    }
}

impl Predicate for LogKeyRotation {
    const KIND: RecordKind = RecordKind::LogKeyRotation;

    fn check(&self) -> Result<(), String> {
        self.keys().map(drop)
    }
    fn subjects(&self) -> Vec<Subject> {
        let name = format!("log-key:{}", self.new_key);
        let digest = crate::merkle::Hash::sha256(self.new_key.as_bytes());
        vec![Subject::sha256(name, &digest)]
    }
}

/// A key and the checkpoint sizes it may sign (`from ..= until`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyWindow {
    pub key: VerifierKey,
    pub from: u64,
    pub until: Option<u64>,
}

/// The log keys a reader trusts, each for the checkpoint sizes it may sign.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogKeys {
    windows: Vec<KeyWindow>,
    /// A rotation begun and not finished: (old, new) key positions in `windows`.
    pending: Option<(usize, usize)>,
    /// Rotation records followed, by log index.
    followed: Vec<u64>,
}

impl LogKeys {
    /// One pinned key, trusted for every size until a rotation it signed says otherwise.
    pub fn pinned(key: VerifierKey) -> LogKeys {
        LogKeys { windows: vec![KeyWindow { key, from: 0, until: None }], pending: None, followed: Vec::new() }
    }

    pub fn windows(&self) -> &[KeyWindow] {
        &self.windows
    }

    /// The log indexes of the rotation records followed so far.
    pub fn followed(&self) -> &[u64] {
        &self.followed
    }

    /// The newest key: the one that signs the log's checkpoints from now on.
    pub fn current(&self) -> &VerifierKey {
        // Invariant: `windows` is never empty (`pinned` starts it with one).
        &self.windows[self.windows.len() - 1].key
    }

    /// Every key, oldest first.
    pub fn keys(&self) -> Vec<VerifierKey> {
        self.windows.iter().map(|w| w.key.clone()).collect()
    }

    /// Follows one rotation record at log `index`, in log order: a `begin` must name the current
    /// key as its old key (with no rotation open), a `finish` the open rotation's keys; both
    /// keys' signatures must verify (the record's own check).
    pub fn follow(&mut self, r: &LogKeyRotation, index: u64) -> Result<(), Error> {
        let bad = |reason: String| Error::Rotation { index, reason };
        if r.at_index != index {
            return Err(bad(format!("the record says it sits at index {}", r.at_index)));
        }
        if self.followed.last().is_some_and(|&last| last >= index) {
            return Err(bad("rotation records must be followed in log order".into()));
        }
        let (old, new) = r.keys().map_err(bad)?;
        let last = self.windows.len() - 1;
        match r.phase {
            Phase::Begin => {
                if let Some((_, n)) = self.pending {
                    return Err(bad(format!("a rotation to {} is still open", self.windows[n].key)));
                }
                if self.windows[last].key != old || self.windows[last].until.is_some() {
                    return Err(bad(format!(
                        "its old key {old} is not the log's current key {}",
                        self.windows[last].key
                    )));
                }
                if self.windows.iter().any(|w| w.key == new) {
                    return Err(bad(format!("{new} was a log key before")));
                }
                self.windows.push(KeyWindow { key: new, from: index + 1, until: None });
                self.pending = Some((last, last + 1));
            }
            Phase::Finish => {
                let Some((o, n)) = self.pending else {
                    return Err(bad("no rotation is open".into()));
                };
                if self.windows[o].key != old || self.windows[n].key != new {
                    return Err(bad(format!(
                        "it names {old} → {new}, but the open rotation is {} → {}",
                        self.windows[o].key, self.windows[n].key
                    )));
                }
                // The checkpoint that covers this record (size index + 1) is the old key's last.
                self.windows[o].until = Some(index + 1);
                self.pending = None;
            }
        }
        self.followed.push(index);
        Ok(())
    }

    /// Opens a signed checkpoint: it must carry a valid signature by a key whose window holds
    /// its size (signatures by other keys are ignored, as C2SP notes require).
    pub fn open_checkpoint(&self, msg: &[u8], origin: Option<&str>) -> Result<VerifiedCheckpoint, Error> {
        let note = Note::parse(msg)?;
        let checkpoint = Checkpoint::parse(&note.text)?;
        if let Some(o) = origin {
            if checkpoint.origin != o {
                return Err(Error::OriginMismatch { expected: o.to_string(), found: checkpoint.origin });
            }
        }
        let size = checkpoint.size;
        let holds = |w: &KeyWindow| w.from <= size && w.until.is_none_or(|u| size <= u);
        for w in self.windows.iter().filter(|w| holds(w)) {
            if let Ok(verified) = note.verify(std::slice::from_ref(&w.key)) {
                return Ok(VerifiedCheckpoint { checkpoint, note: verified });
            }
        }
        // Say why: a key that may not sign this size, or none of ours at all.
        for w in self.windows.iter().filter(|w| !holds(w)) {
            if note.verify(std::slice::from_ref(&w.key)).is_ok() {
                let why = match w.until {
                    Some(u) if size > u => format!("retired after size {u} (a rotation finished)"),
                    _ => format!("not a log key before size {}", w.from),
                };
                return Err(Error::Rotation {
                    index: size,
                    reason: format!("a checkpoint of size {size} signed only by {}, which is {why}", w.key),
                });
            }
        }
        Err(Error::NoteUnverified {
            signers: note
                .signatures
                .iter()
                .map(|s| format!("{}+{:08x}", s.name, s.key_hash))
                .collect::<Vec<_>>()
                .join(", "),
        })
    }
}

/// A rotation record as a log publishes it: its index, exact envelope bytes and inclusion proof
/// in the checkpoint published with it.
#[derive(Clone, Copy, Debug)]
pub struct Announcement<'a> {
    pub index: u64,
    pub envelope: &'a [u8],
    pub inclusion_proof: &'a [crate::merkle::Hash],
}

/// Most rotation records a reader follows at once.
pub const MAX_ANNOUNCEMENTS: usize = 1024;

/// What a reader pinning `pinned` makes of a log's published rotations and checkpoint: it
/// follows each announcement in log order (each signed by the key it rotates from, then its
/// successor), opens the checkpoint with the keys that gives, and checks every announcement is
/// in that checkpoint's tree at its index. The envelopes' admin signatures are the log's
/// admission rule, not what a reader trusts: the log keys' own signatures are.
pub fn follow_log(
    pinned: VerifierKey,
    announcements: &[Announcement<'_>],
    checkpoint: &[u8],
) -> Result<(LogKeys, VerifiedCheckpoint), Error> {
    if announcements.len() > MAX_ANNOUNCEMENTS {
        return Err(Error::TooLarge {
            what: "rotation announcements",
            limit: MAX_ANNOUNCEMENTS,
            found: announcements.len(),
        });
    }
    let origin = pinned.name().to_string();
    let mut records = Vec::with_capacity(announcements.len());
    for a in announcements {
        let env = crate::dsse::Envelope::from_json(a.envelope)?;
        match crate::records::Record::from_payload(&env.payload_bytes()?)? {
            crate::records::Record::LogKeyRotation(r) => records.push((a.index, r)),
            other => {
                return Err(Error::Rotation {
                    index: a.index,
                    reason: format!("the entry is a {:?}, not a rotation", other.kind()),
                })
            }
        }
    }
    // A reader pinning a later key starts at the first rotation away from it; the ones before
    // led to the key it pinned.
    let pinned_text = pinned.to_string();
    let start =
        records.iter().position(|(_, r)| r.phase == Phase::Begin && r.old_key == pinned_text).unwrap_or(records.len());
    let mut keys = LogKeys::pinned(pinned);
    for (index, r) in &records[start..] {
        keys.follow(r, *index)?;
    }
    let cp = keys.open_checkpoint(checkpoint, Some(&origin))?;
    for a in announcements {
        let leaf = crate::merkle::leaf_hash(a.envelope);
        crate::merkle::verify_inclusion(a.index, cp.checkpoint.size, &leaf, a.inclusion_proof, &cp.checkpoint.root)?;
    }
    Ok((keys, cp))
}
