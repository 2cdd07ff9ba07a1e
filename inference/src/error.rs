//! The one error type of `chipledger-inference`.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("policy {origin}: {key}: {message}")]
    Policy { origin: String, key: String, message: String },
    #[error("{path}: {message}")]
    Model { path: PathBuf, message: String },
    #[error("no model {model:?}: give a model directory (config.json + *.safetensors + tokenizer.json), a .gguf file, or a preset ({presets})")]
    UnknownModel { model: String, presets: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// A provenance report does not verify.
    #[error("the report does not verify: {0}")]
    Report(String),
    /// Nothing qualifies, or the run cannot honour the policy.
    #[error("{0}")]
    Refused(String),
    /// What a scheduler told a hook does not parse, or a scheduler object cannot be written.
    #[error("{0}")]
    Cluster(String),
    #[error(transparent)]
    Domain(#[from] chipledger_domain::Error),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}
