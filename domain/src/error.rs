//! The one error type of `chipledger-domain`.

use crate::merkle::Hash;

/// Everything that can go wrong in the pure core. Each variant names what was wrong and carries
/// what a caller needs to explain it; none of them carries secret material.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error("location proof: {reason}")]
    Location { reason: String },
    #[error("{what} is not valid standard padded base64")]
    Base64 { what: &'static str },
    #[error("{what} is not valid hex: {reason}")]
    Hex { what: &'static str, reason: String },
    #[error("{what} is not valid JSON: {message}")]
    Json { what: &'static str, message: String },
    #[error("{what} is {found} bytes, over the limit of {limit}")]
    TooLarge { what: &'static str, limit: usize, found: usize },
    #[error("private key PEM is not a PKCS#8 Ed25519 key: {reason}")]
    PrivateKeyPem { reason: String },
    #[error("public key is not a valid Ed25519 point")]
    InvalidPublicKey,
    #[error("public key is weak (small order); it could sign for any message and is refused")]
    WeakPublicKey,
    #[error("verifier key {key:?} is malformed: {reason}")]
    VerifierKey { key: String, reason: &'static str },
    #[error("key name {name:?} is not allowed: {reason}")]
    KeyName { name: String, reason: &'static str },
    #[error("signature by key {key_id} does not verify")]
    BadSignature { key_id: String },
    #[error("the envelope carries no signature by key {key_id}")]
    NoSignatureByKey { key_id: String },
    #[error("DSSE envelope: {reason}")]
    Envelope { reason: String },
    #[error("in-toto statement: {reason}")]
    Statement { reason: String },
    #[error("record of type {predicate_type}: {reason}")]
    Record { predicate_type: String, reason: String },
    #[error("signed note is malformed at line {line}: {reason}")]
    NoteMalformed { line: usize, reason: &'static str },
    #[error("signed note has no signature by a known key (signed by: {signers})")]
    NoteUnverified { signers: String },
    /// A log key rotation that cannot be followed, or a checkpoint its key may not sign.
    #[error("log key rotation at {index}: {reason}")]
    Rotation { index: u64, reason: String },
    #[error("signed note signature by {key} does not verify")]
    NoteBadSignature { key: String },
    #[error("the checkpoint has {have} of the {need} witness cosignatures required (missing: {missing})")]
    QuorumNotMet { have: usize, need: usize, missing: String },
    #[error("GPU attestation evidence: {reason}")]
    Evidence { reason: String },
    #[error("tile {level}/{index}: {reason}")]
    Tile { level: u8, index: u64, reason: String },
    #[error("witness policy: {reason}")]
    WitnessPolicy { reason: String },
    #[error("checkpoint is malformed at line {line}: {reason}")]
    Checkpoint { line: usize, reason: &'static str },
    #[error("checkpoint origin is {found:?}, expected {expected:?}")]
    OriginMismatch { expected: String, found: String },
    #[error("tlog-proof is malformed at line {line}: {reason}")]
    ProofMalformed { line: usize, reason: &'static str },
    #[error("index {index} is outside a tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("tree sizes {old} → {new} do not form a valid consistency range")]
    BadTreeRange { old: u64, new: u64 },
    #[error("inclusion proof for index {index} in tree size {size} does not verify: {reason}")]
    InclusionProof { index: u64, size: u64, reason: String },
    #[error("consistency proof from size {old} to {new} does not verify: {reason}")]
    ConsistencyProof { old: u64, new: u64, reason: String },
    #[error("no stored hash for the subtree at level {level}, index {index}")]
    MissingNode { level: u8, index: u64 },
    #[error("root hash mismatch: expected {expected}, found {found}")]
    RootMismatch { expected: Hash, found: Hash },
    #[error("embedded {table} table, line {line}: {message}")]
    Catalog { table: &'static str, line: u64, message: String },
    #[error("no catalog SKU named {name:?} (try `chipledger catalog` for the list)")]
    UnknownSku { name: String },
    #[error("PCI id {id:?} is not of the form 0xDEVICE or 0xDEVICE:0xSUBSYSTEM: {reason}")]
    PciId { id: String, reason: &'static str },
    #[error("{input:?} is not an ISO 3166-1 alpha-2 country code")]
    Country { input: String },
    #[error("coordinate {input:?} is not \"lat,lon\" in decimal degrees (e.g. \"1.2897,103.8501\"): {reason}")]
    Coordinate { input: String, reason: &'static str },
    #[error("GPU UUID {input:?} is malformed: {reason}")]
    GpuUuid { input: String, reason: &'static str },
    #[error("token is malformed: {reason}")]
    Token { reason: &'static str },
    #[error("request signature is malformed or refused: {reason}")]
    RequestSignature { reason: &'static str },
    /// A log could not serve a request (unreachable, busy, broken); trying again later may work.
    #[error("{0}")]
    Log(String),
    /// A log refused a record for good (bad signature, unknown key, replayed counter…); sending it
    /// again will not help.
    #[error("{0}")]
    LogRejected(String),
}
