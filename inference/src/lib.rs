//! `chipledger-inference`: the inference node — the only crate that knows candle.
//!
//! [`policy::Policy`] (TOML over a built-in default) says which GPUs may run a workload;
//! [`requirements`] estimates what a model needs (weights + KV cache + overhead) from a
//! `config.json`, a GGUF header or a DeepSeek-R1-family preset; [`fleet::load`] (from `domain`) reads every GPU's
//! latest attestation and acquisition verdict from a log at one verified checkpoint;
//! [`placement::place`] is the pure scheduler (one host, enough memory, a reason for every GPU not
//! chosen); [`runner::Model`] runs qwen2/llama safetensors and GGUF models on candle with
//! R1's chat template, seeded sampling, a KV cache and `<think>` kept apart; [`tiny`] writes the
//! deterministic random-weight model tests and the demo use; [`node`] builds, signs and appends
//! the `run-provenance/v1` record and [`report::verify`] checks the saved report offline.
//!
//! What it does not do: no SQL, no HTTP (a log is a `LogClient`), no NVML, no printing, and it
//! never downloads weights. The CPU build never claims a GPU executed a run: reports name the
//! backend that did.

mod error;

pub mod cluster;
pub mod engine;
pub mod fleet;
#[doc(hidden)]
pub mod fuzzing;
pub mod node;
pub mod placement;
pub mod policy;
pub mod report;
pub mod requirements;
pub mod runner;
pub mod serving;
pub mod tiny;

pub use error::Error;
