//! `chipledger-web`: the only crate that knows HTTP.
//!
//! [`router`] serves a [`Ledger`] over HTTP: the JSON log API under `/api/v1/` (append envelopes →
//! receipts; entries; inclusion and consistency proofs; a GPU's history; acquisitions by serial;
//! the inventory as of a checkpoint size or a time) and the C2SP tlog-tiles read endpoints
//! (`/checkpoint`, `/tile/<L>/<N>[.p/<W>]`, `/tile/entries/<N>[.p/<W>]`) with cache headers.
//! SQLite work runs on the blocking pool (`spawn_blocking`), never on the async executor; request
//! bodies are size-limited, requests time out, and past a concurrency limit the server answers
//! 503. The client agents and nodes use is `chipledger-client`, which links none of this.
//!
//! The same router serves the auditor dashboard (server-rendered askama pages, CSV/JSON exports,
//! evidence bundles, each GPU's location verdict judged per request with its map, the admin's
//! acquisition form) and `/metrics`, `/healthz`, `/readyz`. The
//! checkpoint and hash tiles are public (sizes and hashes: witnesses and mirrors follow the log
//! without an account); every other read needs a credential — a request signed by an enrolled
//! key, a person's token, or a session made from one — and a wrong credential is refused, never treated as anonymous; writes are
//! authorised by the envelopes' own signatures. [`serve`] adds TLS, a WAL-folding thread, the
//! periodic audit and graceful shutdown. The auth matrix is in `web/API.md`.

// Layered: each module imports only the layers below it — error, config, listen, map, views,
// locations, audit, identity, limits, witnessing, state, auth, api, ops, pages, router, server, witness, mirror (lowest first;
// `WEB_LAYERS` in tests/cli/architecture.rs, which checks every import).
mod api;
mod audit;
mod auth;
mod config;
mod error;
mod identity;
mod limits;
mod listen;
mod locations;
mod map;
mod mirror;
mod ops;
mod pages;
mod router;
mod server;
mod state;
mod views;
mod witness;
mod witnessing;

pub use config::{ServerConfig, TlsFiles, WitnessTarget};
pub use error::Error;
pub use mirror::{mirror_router, serve_mirror};
pub use router::router;
pub use server::serve;
pub use witness::{serve_witness, witness_router, Witness, WitnessError};
