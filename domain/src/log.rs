//! What agents, nodes and tools need from a transparency log, whoever runs it.
//!
//! [`LogClient`] is implemented by `chipledger-ledger` (a local SQLite file) and by the web
//! crate's HTTP client (a remote `chipledger serve`), so the same agent and node code works on one
//! machine or against a fleet's central log. [`Clock`] is how time enters the core.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::fingerprint::GpuUuid;
use crate::merkle::Hash;
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
    pub sku: Option<String>,
    pub fingerprint_digest: Hash,
    /// Index of the attestation this state comes from.
    pub index: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub observed_at: OffsetDateTime,
    pub source: ProbeSource,
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
}
