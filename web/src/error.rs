//! The one error type of `chipledger-web`'s server side (the client speaks `LogClient`, whose
//! errors are the domain's).

/// What starting or running the server can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: String, source: std::io::Error },
    #[error("cannot use the TLS certificate {cert} and key {key} (PEM files): {source}")]
    Tls { cert: std::path::PathBuf, key: std::path::PathBuf, source: std::io::Error },
    #[error("the ledger: {0}")]
    Ledger(String),
}
