//! `chipledger-agent`: what runs on every GPU host.
//!
//! It probes each NVIDIA GPU through a [`GpuProbe`] — [`NvmlProbe`] (NVML, loaded at run time) or
//! [`FileProbe`] (recorded `nvidia-smi -q`, `-q -x` and `nvlink -s` output) — into owned
//! [`GpuFacts`](chipledger_domain::fingerprint::GpuFacts), adds [`host`] facts, identifies each
//! SKU and its anomalies (including the ones only the log's history shows), signs a
//! `gpu-attestation/v1` record with the host's agent key ([`attest`]), keeps it in a durable
//! [`spool`] until a log accepts it, and checks the log's receipt (inclusion proof against a
//! signed checkpoint, consistency with the last checkpoint it saw). [`daemon`] does that on an
//! interval and whenever the set of GPUs changes; [`config`] reads `agent.toml`.
//!
//! What it does not do: no SQL and no HTTP (it reaches a log through
//! [`LogClient`](chipledger_domain::log::LogClient)), no printing (tracing events only), and
//! only [`nvml`] touches NVML.

mod error;

pub mod attest;
pub mod config;
pub mod daemon;
pub mod evidence;
pub mod host;
pub mod nvml;
pub mod probe;
pub mod smi;
pub mod spool;

pub use error::Error;
pub use nvml::NvmlProbe;
pub use probe::{GpuProbe, ProbeReport};
pub use smi::FileProbe;
