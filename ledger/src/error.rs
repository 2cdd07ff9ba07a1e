//! The one error type of `chipledger-ledger`.

use std::path::PathBuf;

use chipledger_domain::records::{RecordKind, Role};

/// Everything that can go wrong in the ledger.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An append was refused; nothing of the batch was written.
    #[error("envelope {position} of the batch was refused: {reason}")]
    Rejected { position: usize, reason: Rejection },
    #[error("no ledger in {path}: run `chipledger init` first (or pass --data-dir / set CHIPLEDGER_HOME)")]
    NotInitialized { path: PathBuf },
    #[error("{path} already holds a ledger; refusing to initialise over it")]
    AlreadyInitialized { path: PathBuf },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the database schema is version {found}; this build understands up to {supported}")]
    SchemaTooNew { found: i64, supported: i64 },
    #[error("the stored log is inconsistent ({0}); run `chipledger ledger verify` to locate the damage")]
    Corrupt(String),
    #[error("the append could not be committed, nothing was written: {0}")]
    NotCommitted(String),
    #[error("index {index} is not in the log (size {size})")]
    NoSuchEntry { index: u64, size: u64 },
    #[error("a token is for a person: its role is admin or auditor, not {role}")]
    TokenRole { role: &'static str },
    #[error("a token's name is 1 to 100 printable characters (who holds it, e.g. \"alice, audit team\")")]
    TokenName,
    #[error("no token with id {id:?} (`chipledger tokens list` shows them)")]
    NoSuchToken { id: String },
    #[error("token {id} is already revoked")]
    TokenAlreadyRevoked { id: String },
    /// An evidence bundle that does not verify (its checkpoint, an entry's inclusion, signature
    /// or authorisation, or its form).
    #[error("the evidence bundle does not verify: {0}")]
    Bundle(String),
    /// A diversion report that does not verify, or that this log could not write so that it would.
    #[error("diversion report: {0}")]
    Diversion(String),
    /// A key rotation asked for out of turn.
    #[error("log key rotation: {0}")]
    Rotation(String),
    #[error(transparent)]
    Domain(#[from] chipledger_domain::Error),
}

/// Why one envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("it is {size} bytes, over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("malformed DSSE envelope: {0}")]
    MalformedEnvelope(String),
    #[error("payload type is {0:?}; records must be application/vnd.in-toto+json")]
    WrongPayloadType(String),
    #[error("malformed statement: {0}")]
    MalformedStatement(String),
    #[error("it carries {0} signatures; records carry exactly one")]
    SignatureCount(usize),
    #[error("signed by key {key_id}, which is not enrolled in this log")]
    UnknownKey { key_id: String },
    #[error("signed by key {key_id}, revoked at index {revoked_at}")]
    RevokedKey { key_id: String, revoked_at: u64 },
    #[error("signed by key {key_id}, whose enrollment is not valid at {at}")]
    KeyNotValid { key_id: String, at: String },
    #[error("key {key_id} has role {role:?}, which may not sign {kind:?} records")]
    WrongRole { key_id: String, role: Role, kind: RecordKind },
    #[error("key {key_id} is enrolled for host {enrolled_for:?} and may not attest host {claimed:?}; an admin enrolls a key for that host (or revokes and re-enrolls this one) to move it")]
    WrongHost { key_id: String, enrolled_for: String, claimed: String },
    #[error("log key rotation records are appended only by `chipledger ledger rotate-key`, which checks them against the log's keys")]
    RotationNotAppendable,
    #[error("the log key rotation record says it sits at index {claimed}, but it would be appended at {index}")]
    RotationOutOfPlace { claimed: u64, index: u64 },
    #[error("key {key_id} has role {role:?}; only an admin key may resolve which GPU holds a serial")]
    ResolutionNeedsAdmin { key_id: String, role: Role },
    #[error("the signature by key {key_id} does not verify")]
    BadSignature { key_id: String },
    #[error("counter {counter} of key {key_id} is not above its last counter {last} (a replay or reordering)")]
    CounterNotIncreasing { key_id: String, counter: u64, last: u64 },
    #[error("made at {made_at}, more than {skew_seconds}s ahead of the log's clock ({now})")]
    FromTheFuture { made_at: String, now: String, skew_seconds: i64 },
    #[error("made at {made_at}, older than the {max_delay_seconds}s the log accepts ({now})")]
    TooOld { made_at: String, now: String, max_delay_seconds: i64 },
    #[error("the first entry must be an admin key enrolling itself")]
    NeedsSelfEnrollment,
    #[error("invalid enrollment: {0}")]
    BadEnrollment(String),
    #[error("invalid revocation: {0}")]
    BadRevocation(String),
    #[error("invalid location proof: {0}")]
    BadLocationProof(String),
}

impl Rejection {
    /// What a caller that proved no identity is told: the whole reason where it is about the
    /// bytes sent alone, one generic reason wherever it would say what the log knows of a key
    /// (its enrolment, host, validity, last counter).
    pub fn for_anyone(&self) -> String {
        match self {
            Rejection::UnknownKey { .. }
            | Rejection::RevokedKey { .. }
            | Rejection::KeyNotValid { .. }
            | Rejection::WrongRole { .. }
            | Rejection::WrongHost { .. }
            | Rejection::ResolutionNeedsAdmin { .. }
            | Rejection::BadSignature { .. }
            // Authorisation runs before the signature is checked: a forged envelope must learn
            // from it neither that a key is enrolled nor its last counter.
            | Rejection::CounterNotIncreasing { .. }
            | Rejection::BadEnrollment(_)
            | Rejection::BadRevocation(_)
            | Rejection::NeedsSelfEnrollment => "its signer may not append it".into(),
            other => other.to_string(),
        }
    }
}
