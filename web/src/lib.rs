//! `chipledger-web`: the only crate that knows HTTP.
//!
//! [`router`] serves a [`Ledger`] over HTTP: the JSON log API under `/api/v1/` (append envelopes →
//! receipts; entries; inclusion and consistency proofs; a GPU's history; acquisitions by serial;
//! the inventory as of a checkpoint size or a time) and the C2SP tlog-tiles read endpoints
//! (`/checkpoint`, `/tile/<L>/<N>[.p/<W>]`, `/tile/entries/<N>[.p/<W>]`) with cache headers.
//! SQLite work runs on the blocking pool (`spawn_blocking`), never on the async executor; request
//! bodies are size-limited, requests time out, and past a concurrency limit the server answers
//! 503. [`client::HttpLogClient`] is the blocking `LogClient` agents and nodes use with
//! `--ledger http(s)://…`.
//!
//! The same router serves the auditor dashboard (server-rendered askama pages, CSV/JSON exports,
//! evidence bundles, the admin's acquisition form) and `/metrics`, `/healthz`, `/readyz`. Every
//! read needs a credential — a request signed by an enrolled key, a person's token, or a session
//! made from one — and a wrong credential is refused, never treated as anonymous; writes are
//! authorised by the envelopes' own signatures. [`serve`] adds TLS, a WAL-folding thread, the
//! periodic audit and graceful shutdown. The auth matrix is in `web/API.md`.

mod api;
mod auth;
pub mod client;
mod dash;
mod error;
mod listen;
mod ops;
mod views;

pub use api::{router, serve, ServerConfig, TlsFiles};
pub use client::{Credential, HttpLogClient};
pub use error::Error;
