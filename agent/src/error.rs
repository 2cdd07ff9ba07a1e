//! The one error type of `chipledger-agent`.

use std::path::PathBuf;

/// Everything that can go wrong in the agent. None of the variants carries key material.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// NVML could not be started: no driver, no library, no permission.
    #[error(
        "cannot use NVML: {reason}. Is the NVIDIA driver installed and loaded? On a host without \
         a GPU or driver, import recorded output instead: --from-file <nvidia-smi -q -x output>"
    )]
    NvmlUnavailable { reason: String },
    /// An NVML call that every supported GPU answers failed.
    #[error("NVML {call} failed: {message}")]
    Nvml { call: &'static str, message: String },
    /// An nvidia-smi dump could not be read as one.
    #[error("{path}, line {line}: {message}")]
    Dump { path: String, line: u64, message: String },
    /// A file is none of the nvidia-smi outputs the import probe understands.
    #[error("{path}: {reason}")]
    UnknownDump { path: String, reason: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// A file of NVIDIA attestation evidence that is not one.
    #[error("{path}: not NVIDIA attestation evidence: {reason}")]
    Evidence { path: String, reason: String },
    /// The configuration is malformed; `key` names the setting.
    #[error("configuration {origin}: {key}: {message}")]
    Config { origin: String, key: String, message: String },
    /// The log answered, but its receipt does not prove what it claims.
    #[error("the log's receipt for index {index} does not verify: {reason}")]
    Receipt { index: u64, reason: String },
    /// The log's new checkpoint is not an extension of the one this agent saw before.
    #[error(
        "the log forked or rolled back: checkpoint {new_size} is not consistent with {old_size} seen earlier: {reason}"
    )]
    Inconsistent { old_size: u64, new_size: u64, reason: String },
    /// A signed attestation larger than a log entry may be: it would be refused for good.
    #[error(
        "the signed attestation is {size} bytes; a log entry is at most {limit} (a C2SP entry bundle's 2-byte \
         length): attest fewer GPUs per record, or keep vendor evidence beside the record"
    )]
    TooLarge { size: usize, limit: usize },
    /// The spool holds a file that is not an envelope written by this agent.
    #[error("spool file {path} is damaged: {reason}")]
    Spool { path: PathBuf, reason: String },
    #[error(transparent)]
    Domain(#[from] chipledger_domain::Error),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}
