//! `chipledger witness serve`: a C2SP tlog-witness. `POST /add-checkpoint` takes an old size, a
//! consistency proof and a signed checkpoint of a log it follows, checks them against the head
//! it last cosigned for that log (`chipledger_domain::witness::decide`), stores the new head
//! durably and atomically with the check (`chipledger_ledger::witness::WitnessState`), and only
//! then answers with a timestamped `cosignature/v1` line. Refusals carry the spec's statuses: 400
//! malformed, 403 not signed by a trusted key, 404 unknown log, 409 (with the latest cosigned
//! size, `text/x.tlog.size`) on a stale old size or a fork at the same size, 422 on a bad proof.
//! Requests need no credential (the checkpoint's signature is what is checked); each peer
//! address has a rate limit, and bodies are bounded.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use chipledger_domain::cosignature::{Cosigner, WitnessKey};
use chipledger_domain::keys::SigningKey;
use chipledger_domain::witness::{check_head, check_signed, AddCheckpoint, FollowedLog, Refusal, MAX_PROOF_LINES};
use chipledger_ledger::witness::WitnessState;

use crate::config::ServerConfig;
use crate::limits::{peer_bucket, too_many, RateLimiter};

/// A witness: its name and key, the logs it follows, and where it keeps their heads.
pub struct Witness {
    pub name: String,
    pub key: SigningKey,
    pub logs: Vec<FollowedLog>,
    pub state: WitnessState,
}

impl std::fmt::Debug for Witness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Witness").field("name", &self.name).field("logs", &self.logs.len()).finish_non_exhaustive()
    }
}

impl Witness {
    /// The witness's public key, as clients configure it.
    pub fn vkey(&self) -> Result<WitnessKey, chipledger_domain::Error> {
        WitnessKey::new(&self.name, self.key.public_key())
    }

    /// Handles one `add-checkpoint` body at `now` (unix seconds): the cosignature line, or why
    /// not. Blocking (a durable commit).
    pub fn add_checkpoint(&self, body: &[u8], now: u64) -> Result<String, WitnessError> {
        let req = AddCheckpoint::parse(body)?;
        // Parsing and the log's signature need no lock; only the head comparison does.
        let signed = check_signed(&req, &self.logs)?;
        let origin = signed.checkpoint.origin.clone();
        let accepted = self
            .state
            .advance(&origin, |head| {
                check_head(&req, signed, head).map(|a| (a.text, a.checkpoint.size, a.checkpoint.root))
            })
            .map_err(|e| WitnessError::State(e.to_string()))??;
        // The head is on disk: now, and only now, the cosignature.
        let line = Cosigner { name: &self.name, key: &self.key }
            .cosign(&accepted, now)
            .map_err(|e| WitnessError::State(e.to_string()))?
            .line();
        Ok(line)
    }
}

/// Why a witness did not cosign.
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("the witness's state: {0}")]
    State(String),
}

#[derive(Clone)]
struct WitnessApp {
    witness: Arc<Witness>,
    peers: Arc<RateLimiter>,
    trusted_proxies: Vec<std::net::IpAddr>,
}

/// The witness's routes.
pub fn witness_router(witness: Arc<Witness>, config: &ServerConfig) -> Router {
    let app = WitnessApp {
        witness,
        peers: Arc::new(RateLimiter::new(config.peer_rate_per_second, config.peer_rate_burst)),
        trusted_proxies: config.trusted_proxies.clone(),
    };
    Router::new()
        .route("/add-checkpoint", post(add_checkpoint))
        .layer(DefaultBodyLimit::max(chipledger_domain::note::MAX_NOTE_BYTES + 64 * (MAX_PROOF_LINES + 1)))
        .with_state(app)
}

async fn add_checkpoint(State(app): State<WitnessApp>, req: axum::extract::Request) -> Response {
    let (parts, body) = req.into_parts();
    let peer = peer_bucket(&parts.extensions, &parts.headers, &app.trusted_proxies);
    if let Err(wait) = app.peers.take(&peer) {
        return too_many(wait);
    }
    let limit = chipledger_domain::note::MAX_NOTE_BYTES + 64 * (MAX_PROOF_LINES + 1);
    let body: Bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => {
            return (StatusCode::PAYLOAD_TOO_LARGE, "the body is larger than any checkpoint and proof\n")
                .into_response()
        }
    };
    let witness = app.witness.clone();
    let now = time::OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
    let result = tokio::task::spawn_blocking(move || witness.add_checkpoint(&body, now)).await;
    match result {
        Ok(Ok(line)) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], line).into_response(),
        Ok(Err(WitnessError::Refused(Refusal::Conflict { latest }))) => {
            (StatusCode::CONFLICT, [(header::CONTENT_TYPE, "text/x.tlog.size")], format!("{latest}\n")).into_response()
        }
        Ok(Err(WitnessError::Refused(r))) => {
            let status = StatusCode::from_u16(r.status()).unwrap_or(StatusCode::BAD_REQUEST);
            (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{r}\n")).into_response()
        }
        Ok(Err(WitnessError::State(e))) => {
            tracing::error!(error = %e, "the witness could not keep its state");
            (StatusCode::INTERNAL_SERVER_ERROR, "the witness could not keep its state; nothing was cosigned\n")
                .into_response()
        }
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "the request's worker failed\n").into_response(),
    }
}

/// Serves `witness` on `addr` until SIGINT or SIGTERM. Blocking: it owns its runtime.
/// `on_ready` gets the bound address.
pub fn serve_witness(
    witness: Arc<Witness>,
    addr: &str,
    config: ServerConfig,
    on_ready: impl FnOnce(std::net::SocketAddr),
) -> Result<(), crate::error::Error> {
    tracing::info!(%addr, name = %witness.name, logs = witness.logs.len(), "serving the witness");
    let app = witness_router(witness, &config);
    crate::server::serve_plain(addr, config, app, on_ready)
}
