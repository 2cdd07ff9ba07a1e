//! The one error type of `chipledger-web`.

/// What a server or client call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: String, source: std::io::Error },
    #[error("{url}: {message}")]
    Http { url: String, message: String },
    #[error(transparent)]
    Domain(#[from] chipledger_domain::Error),
}
