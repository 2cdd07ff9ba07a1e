//! The JSON bodies the server writes and the client reads, defined once for both.

use serde::{Deserialize, Serialize};

/// A JSON error body: what went wrong, for the caller (and, for a refused append, which
/// envelope of the batch).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<usize>,
}

/// An inclusion or consistency proof: its hashes in RFC 6962 order.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Hashes {
    pub hashes: Vec<chipledger_domain::merkle::Hash>,
}

/// `GET /log-keys`: the log's key rotations, public like the checkpoint — each rotation record's
/// exact envelope with its inclusion proof in `checkpoint` (the latest, cosigned).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct LogKeys {
    pub checkpoint: String,
    pub rotations: Vec<PublishedRotation>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct PublishedRotation {
    pub index: u64,
    /// The envelope JSON exactly as appended.
    pub envelope: String,
    pub inclusion_proof: Vec<chipledger_domain::merkle::Hash>,
}
