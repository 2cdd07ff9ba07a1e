//! Tests of `chipledger-domain` through its public API: known-answer vectors that freeze every
//! format, property tests for the proofs, and table tests for the catalog and the rules.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure is the point

mod catalog;
mod diversion;
mod dsse_records;
mod evidence;
mod fingerprint;
mod hardware;
mod identify;
mod keys;
mod located;
mod location;
mod location_proof;
mod merkle;
mod note;
mod rim;
mod rotation;
mod rules;
mod sigsum_interop;
mod standing;
mod support;
mod synthetic;
mod tracker;
mod trail;
