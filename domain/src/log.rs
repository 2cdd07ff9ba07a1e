//! What agents, nodes and tools need from a transparency log, whoever runs it.
//!
//! [`LogClient`] is implemented by `chipledger-ledger` (a local SQLite file) and by the web
//! crate's HTTP client (a remote `chipledger serve`), so the same agent and node code works on one
//! machine or against a fleet's central log. [`Clock`] is how time enters the core.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::fingerprint::GpuUuid;
use crate::keys::VerifierKey;
use crate::merkle::{self, Hash};
use crate::note::{open_checkpoint, Checkpoint};
use crate::records::{ProbeSource, RecordKind};

/// The current time, passed in so that the core stays deterministic.
pub trait Clock: Send + Sync {
    fn now(&self) -> OffsetDateTime;
}

/// A clock that always says the same time (tests, replays).
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub OffsetDateTime);

impl Clock for FixedClock {
    fn now(&self) -> OffsetDateTime {
        self.0
    }
}

/// What the log answers for one appended envelope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub index: u64,
    pub leaf_hash: Hash,
    /// `true` when the exact envelope was already in the log (the original index is returned).
    pub duplicate: bool,
    /// The signed checkpoint (C2SP signed note text) the proof is against.
    pub checkpoint: String,
    pub inclusion_proof: Vec<Hash>,
}

/// One GPU's latest attested state, as the inventory view holds it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InventoryGpu {
    pub uuid: GpuUuid,
    pub host: String,
    pub serial: Option<String>,
    /// The hardware identity its NVIDIA evidence names (`GpuFacts::ueid`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ueid: Option<String>,
    pub sku: Option<String>,
    pub fingerprint_digest: Hash,
    /// Index of the attestation this state comes from.
    pub index: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub observed_at: OffsetDateTime,
    pub source: ProbeSource,
    /// Its trail through the log as of the same point: hosts, and the attestation before its
    /// fingerprint last changed.
    #[serde(default)]
    pub trail: crate::trail::Trail,
}

/// Which state of the log a query reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AsOf {
    /// Everything appended so far.
    Latest,
    /// The first `size` entries (a checkpoint's tree size).
    Size(u64),
    /// Entries appended at or before this time.
    #[serde(with = "time::serde::rfc3339")]
    Time(OffsetDateTime),
}

/// An entry as a reader sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntrySummary {
    pub index: u64,
    pub leaf_hash: Hash,
    pub kind: RecordKind,
    pub key_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub appended_at: OffsetDateTime,
    /// The envelope JSON exactly as stored.
    pub envelope: String,
}

/// The log operations agents, nodes and tools rely on.
pub trait LogClient {
    /// Appends envelopes (all or nothing) and returns one receipt each.
    fn submit(&self, envelopes: &[Vec<u8>]) -> Result<Vec<Receipt>, crate::Error>;
    /// The latest signed checkpoint (note text).
    fn checkpoint(&self) -> Result<String, crate::Error>;
    fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, crate::Error>;
    fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, crate::Error>;
    fn inventory(&self, as_of: AsOf) -> Result<Vec<InventoryGpu>, crate::Error>;
    /// The entries about one GPU, in log order: all of them, or only the `latest` newest.
    fn history(&self, uuid: &GpuUuid, latest: Option<usize>) -> Result<Vec<EntrySummary>, crate::Error>;
    /// The latest state of the GPUs that report this serial.
    fn inventory_by_serial(&self, serial: &str) -> Result<Vec<InventoryGpu>, crate::Error>;
    /// One entry by index.
    fn entry(&self, index: u64) -> Result<EntrySummary, crate::Error>;
    /// The acquisition records that name this serial, in log order.
    fn acquisitions(&self, serial: &str) -> Result<Vec<EntrySummary>, crate::Error>;
    /// The location proofs that locate `host` (every host's when `None`) appended at or after
    /// `since`, in log order: the newest [`MAX_LOCATION_PROOFS`] at most.
    fn location_proofs(&self, host: Option<&str>, since: OffsetDateTime) -> Result<Vec<EntrySummary>, crate::Error>;
    /// Every enrolled landmark and agent key, with its site if it has one (a landmark's surveyed
    /// one, an agent host's declared one), in enrollment order, revoked ones included (with when).
    fn sites(&self) -> Result<Vec<EnrolledSite>, crate::Error>;
}

/// The most location proofs one [`LogClient::location_proofs`] answer holds (the newest): about
/// 26 MiB of ten-round proofs, inside what an HTTP client reads in one answer.
pub const MAX_LOCATION_PROOFS: u64 = 10_000;

/// A landmark or agent key and its site, as the log's key registry holds them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnrolledSite {
    pub key_id: String,
    pub role: crate::records::Role,
    /// The landmark's name, or the agent's host.
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<crate::records::Site>,
    /// The log index of its enrollment.
    pub enrolled_at: u64,
    /// The log index of its revocation, if revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<u64>,
}

impl Receipt {
    /// Checks this receipt for `envelope` (its exact bytes): the checkpoint is signed by
    /// `log_key`, the leaf hash is the envelope's, and the inclusion proof leads from it to the
    /// checkpoint's root. The one receipt check: agents, nodes and report verification call it.
    pub fn verify(&self, envelope: &[u8], log_key: &VerifierKey) -> Result<Checkpoint, crate::Error> {
        let cp = open_checkpoint(self.checkpoint.as_bytes(), std::slice::from_ref(log_key), None)?.checkpoint;
        let leaf = merkle::leaf_hash(envelope);
        if leaf != self.leaf_hash {
            return Err(crate::Error::InclusionProof {
                index: self.index,
                size: cp.size,
                reason: format!("the receipt names leaf {}, not the envelope's ({leaf})", self.leaf_hash),
            });
        }
        merkle::verify_inclusion(self.index, cp.size, &leaf, &self.inclusion_proof, &cp.root)?;
        Ok(cp)
    }
}

/// Checks that checkpoint `new` extends `old` of the same log: same origin; for a larger tree,
/// `proof` is the consistency proof from `old` to `new`; for the same size, the same root; for a
/// smaller tree, `proof` is the consistency proof from `new` to `old` (an older checkpoint the
/// later one extends). The one consistency rule: agents, nodes, report verification and the
/// dashboard call it.
pub fn check_consistent(old: &Checkpoint, new: &Checkpoint, proof: &[Hash]) -> Result<(), crate::Error> {
    let inconsistent = |reason: String| crate::Error::ConsistencyProof { old: old.size, new: new.size, reason };
    if old.origin != new.origin {
        return Err(inconsistent(format!("the origin changed from {:?} to {:?}", old.origin, new.origin)));
    }
    match new.size.cmp(&old.size) {
        std::cmp::Ordering::Greater => merkle::verify_consistency(old.size, new.size, &old.root, &new.root, proof),
        std::cmp::Ordering::Less => merkle::verify_consistency(new.size, old.size, &new.root, &old.root, proof),
        std::cmp::Ordering::Equal if old.root == new.root => Ok(()),
        std::cmp::Ordering::Equal => Err(inconsistent("two different roots for one tree size".into())),
    }
}

/// The newest checkpoint a reader has verified, and the rule that every later one must extend
/// it ([`check_consistent`]): a log that shows two histories is caught by the first reader that
/// saw both.
#[derive(Clone, Debug)]
pub struct CheckpointTracker {
    log_key: VerifierKey,
    last: Option<(String, Checkpoint)>,
}

impl CheckpointTracker {
    /// A tracker that last saw `saved` (a signed checkpoint's note text), if anything.
    pub fn new(log_key: VerifierKey, saved: Option<&str>) -> Result<CheckpointTracker, crate::Error> {
        let last = match saved {
            Some(text) => {
                let cp = open_checkpoint(text.as_bytes(), std::slice::from_ref(&log_key), None)?.checkpoint;
                Some((text.to_string(), cp))
            }
            None => None,
        };
        Ok(CheckpointTracker { log_key, last })
    }

    /// Accepts the signed checkpoint `text` if it extends the last one seen (`proof(from, to)`
    /// gives the consistency proof between two sizes, asked only when the sizes differ), and
    /// remembers it when it is newer.
    pub fn extend(
        &mut self,
        text: &str,
        proof: impl FnOnce(u64, u64) -> Result<Vec<Hash>, crate::Error>,
    ) -> Result<Checkpoint, crate::Error> {
        let cp = open_checkpoint(text.as_bytes(), std::slice::from_ref(&self.log_key), None)?.checkpoint;
        if let Some((_, old)) = &self.last {
            let hashes = match cp.size.cmp(&old.size) {
                std::cmp::Ordering::Greater => proof(old.size, cp.size)?,
                std::cmp::Ordering::Less => proof(cp.size, old.size)?,
                std::cmp::Ordering::Equal => Vec::new(),
            };
            check_consistent(old, &cp, &hashes)?;
            if cp.size <= old.size {
                return Ok(cp);
            }
        }
        self.last = Some((text.to_string(), cp.clone()));
        Ok(cp)
    }

    /// The last checkpoint seen.
    pub fn last(&self) -> Option<&Checkpoint> {
        self.last.as_ref().map(|(_, c)| c)
    }

    /// The last checkpoint's note text, to save.
    pub fn last_text(&self) -> Option<&str> {
        self.last.as_ref().map(|(t, _)| t.as_str())
    }
}
