//! `chipledger-ledger`: the transparency log, in SQLite.
//!
//! An RFC 6962 Merkle tree over DSSE envelopes ([`Ledger`]): all-or-nothing append validation
//! (signature by an enrolled, unrevoked key of the right role, per-key counters, time window,
//! idempotent duplicates), group commit with one signed C2SP checkpoint per committed batch in
//! the same transaction, inclusion/consistency proofs and C2SP tiles in O(log n) reads, derived
//! views (key registry, GPU inventory, per-GPU history, acquisitions, runs), a full [`audit`],
//! offline evidence bundles ([`bundle`]) and diversion reports built on them ([`diversion`]).
//!
//! It is the only crate that knows SQL. It never UPDATEs or DELETEs an entry or a checkpoint,
//! and it does not interpret records beyond what validation and the views need.

#![forbid(unsafe_code)]

pub mod audit;
pub mod bundle;
mod client;
mod cosignatures;
pub mod diversion;
mod error;
#[doc(hidden)]
#[allow(clippy::expect_used, clippy::panic)] // a fuzz target's failures are panics, on purpose
pub mod fuzzing;
mod record;
pub mod rotation;
mod schema;
mod store;
mod tokens;
mod tree;
mod views;
mod views_check;
pub mod witness;

pub use error::{Error, Rejection};
pub use store::{
    write_private_file, InitInfo, Ledger, LedgerConfig, ADMIN_KEY_FILE, DB_FILE, LOG_KEY_FILE, MAX_ENTRY_BYTES,
};
pub use tokens::TokenInfo;
pub use views::{EntryFilter, KeyInfo};

/// The system clock, for production use; tests pass a fixed one.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl chipledger_domain::log::Clock for SystemClock {
    fn now(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc()
    }
}
