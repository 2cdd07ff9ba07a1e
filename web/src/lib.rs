//! `chipledger-web`: the only crate that knows HTTP.
//!
//! [`router`] serves a [`Ledger`] over HTTP: the JSON log API under `/api/v1/` (append envelopes →
//! receipts; entries; inclusion and consistency proofs; a GPU's history; acquisitions by serial;
//! the inventory as of a checkpoint size or a time) and the C2SP tlog-tiles read endpoints
//! (`/checkpoint`, `/tile/<L>/<N>[.p/<W>]`, `/tile/entries/<N>[.p/<W>]`) with cache headers.
//! SQLite work runs on the blocking pool (`spawn_blocking`), never on the async executor; request
//! bodies are size-limited, requests time out, and past a concurrency limit the server answers
//! 503. [`client::HttpLogClient`] is the blocking `LogClient` agents and nodes use with
//! `--ledger http://…`.
//!
//! What it does not do yet: people's tokens, the dashboard and metrics (issue #6 goes on); reads
//! are open to anyone who can reach the listener, so `serve` binds loopback unless told otherwise.
//! Writes need no token: every envelope must be signed by an enrolled key whose role may sign it,
//! which the ledger checks.

mod api;
mod auth;
pub mod client;
mod dash;
mod error;
mod ops;
mod views;

pub use api::{router, serve, ServerConfig, TlsFiles};
pub use client::{Credential, HttpLogClient};
pub use error::Error;
