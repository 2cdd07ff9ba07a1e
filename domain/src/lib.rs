//! `chipledger-domain`: the pure core of chipledger.
//!
//! What it holds: the record formats (in-toto Statement v1 in DSSE envelopes, typed predicates
//! in [`records`]), people's tokens and signed requests ([`auth`]), Ed25519 keys and C2SP verifier keys ([`keys`]), C2SP signed notes,
//! checkpoints and tlog-proofs ([`note`]), RFC 6962 Merkle math ([`merkle`]), the embedded GPU
//! catalog ([`catalog`]), GPU fingerprints ([`fingerprint`]), SKU identification and anomalies
//! ([`identify`]), a GPU's trail through the log and its history anomalies ([`trail`]), a GPU's
//! standing as a reader computes it ([`standing`]) and the fleet ([`fleet`]), NVIDIA attestation evidence ([`evidence`])
//! and reference integrity manifests ([`rim`]), country groups ([`country`]), landmarks' location proofs ([`location_proof`]), export classification and acquisition verdicts
//! ([`rules`]), delay-based location proofs and their verdicts ([`location`]), the events a diversion report lists ([`diversion`]), and the [`log::LogClient`] trait through which agents and nodes reach a log.
//!
//! What it does not do: no file, network or database IO, no clock and no randomness of its own
//! (time and RNGs are parameters), no printing. Everything here is deterministic, so every other
//! crate can test against it without fakes.

#![forbid(unsafe_code)]

pub mod auth;
pub mod catalog;
pub mod cosignature;
pub mod country;
pub mod diversion;
pub mod dsse;
pub mod encoding;
mod error;
pub mod evidence;
pub mod fingerprint;
pub mod fleet;
pub mod identify;
pub mod keys;
pub mod located;
pub mod location;
pub mod location_proof;
pub mod log;
pub mod merkle;
pub mod note;
pub mod records;
pub mod rim;
pub mod rotation;
pub mod rules;
pub mod serving;
pub mod standing;
pub mod tiles;
pub mod trail;
pub mod witness;

pub use error::Error;
