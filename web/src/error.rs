//! The server's errors: [`Error`], what starting or running it fails with, and [`ApiError`], an
//! answer's status and JSON body (`chipledger_client::wire::Problem`), with how ledger and domain
//! errors map to statuses without leaking internals. The bottom of the server's layers: it
//! imports no other module of this crate.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chipledger_client::wire::Problem;
use chipledger_ledger::Error as LedgerError;

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

pub(crate) fn problem(status: StatusCode, message: impl Into<String>) -> Response {
    ApiError::new(status, message).into_response()
}

/// An error answer: a status and a JSON body for the caller.
pub(crate) struct ApiError {
    status: StatusCode,
    body: Problem,
}

impl ApiError {
    pub(crate) fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    pub(crate) fn message(&self) -> &str {
        &self.body.error
    }

    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, body: Problem { error: message.into(), position: None } }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

/// Maps a ledger error to a status without leaking internals (details go to the log).
pub(crate) fn ledger_error(e: LedgerError) -> ApiError {
    match e {
        LedgerError::Rejected { position, reason } => {
            // An entry over the format's size is too large, not malformed: 413.
            let status = match reason {
                chipledger_ledger::Rejection::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            let body =
                Problem { error: format!("envelope {position} was refused: {reason}"), position: Some(position) };
            ApiError { status, body }
        }
        LedgerError::NoSuchEntry { index, size } => {
            ApiError::new(StatusCode::NOT_FOUND, format!("index {index} is not in the log (size {size})"))
        }
        LedgerError::Domain(d) => ApiError::new(StatusCode::BAD_REQUEST, d.to_string()),
        LedgerError::NotCommitted(_) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the append could not be committed; retry")
        }
        other => {
            tracing::error!(error = %other, "ledger error");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the ledger failed; the server log has details")
        }
    }
}

pub(crate) fn domain_error(e: chipledger_domain::Error) -> ApiError {
    match e {
        chipledger_domain::Error::IndexOutOfRange { .. } => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
        chipledger_domain::Error::Log(m) => {
            tracing::error!(error = %m, "ledger error");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the ledger failed; the server log has details")
        }
        other => ApiError::new(StatusCode::BAD_REQUEST, other.to_string()),
    }
}
