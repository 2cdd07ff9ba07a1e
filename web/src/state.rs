//! What every handler shares ([`AppState`]: the ledger, the configuration, sessions, rate
//! limiters, caches) and [`blocking`], which runs ledger work off the async executor.

use std::sync::Arc;

use axum::http::StatusCode;
use chipledger_domain::keys::SigningKey;
use chipledger_ledger::Ledger;

use crate::audit::AuditStatus;
use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::identity::Sessions;
use crate::limits::{RateLimiter, Replays};
use crate::locations::LocationCache;
use crate::views::FleetCache;
use crate::witnessing::Witnessing;

/// The most signed requests remembered at once (~32 MiB): over ten minutes of skew, ~1,700
/// signed requests a second.
const MAX_LIVE_SIGNATURES: usize = 1_000_000;

#[derive(Clone)]
pub(crate) struct AppState {
    pub ledger: Arc<Ledger>,
    pub config: ServerConfig,
    pub sessions: Arc<Sessions>,
    pub limiter: Arc<RateLimiter>,
    /// Per peer address (an IPv6 /64), charged before any credential is looked at.
    pub peers: Arc<RateLimiter>,
    /// Signed requests already served (within the clock skew), to refuse replays.
    pub replays: Arc<Replays>,
    /// Bytes of envelopes appended, per principal (callers without a credential: per peer
    /// address).
    pub append_bytes: Arc<RateLimiter>,
    /// The last writability check and when it ran: probes share it for a second.
    pub ready: Arc<std::sync::Mutex<Option<(std::time::Instant, bool)>>>,
    /// A writability check is running.
    pub ready_checking: Arc<std::sync::atomic::AtomicBool>,
    pub fleet: Arc<FleetCache>,
    /// The location facts as of the last checkpoint a page read (the judgements are per request).
    pub locations: Arc<LocationCache>,
    pub audit: Arc<AuditStatus>,
    /// Each witness's progress (the witnessing thread's, when `serve` runs one).
    pub witnessing: Arc<Witnessing>,
    /// The data directory's admin key, when it has one: signs what admins enter in forms.
    pub admin_key: Option<Arc<SigningKey>>,
    pub admin_lock: Arc<std::sync::Mutex<()>>,
}

impl AppState {
    pub(crate) fn new(ledger: Arc<Ledger>, config: ServerConfig) -> AppState {
        let admin_path = ledger.dir().join(chipledger_ledger::ADMIN_KEY_FILE);
        let admin_key = std::fs::read_to_string(&admin_path)
            .ok()
            .and_then(|pem| SigningKey::from_pkcs8_pem_owned(pem).ok())
            .map(Arc::new);
        AppState {
            sessions: Arc::new(Sessions::new(config.session_ttl)),
            limiter: Arc::new(RateLimiter::new(config.rate_per_second, config.rate_burst)),
            peers: Arc::new(RateLimiter::new(config.peer_rate_per_second, config.peer_rate_burst)),
            replays: Arc::new(Replays::new(MAX_LIVE_SIGNATURES)),
            append_bytes: Arc::new(RateLimiter::new(
                config.append_bytes_per_second,
                config.append_bytes_burst.max(config.max_body_bytes as f64),
            )),
            ready: Arc::new(std::sync::Mutex::new(None)),
            ready_checking: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            fleet: Arc::new(FleetCache::default()),
            locations: Arc::new(LocationCache::default()),
            audit: Arc::new(AuditStatus::default()),
            witnessing: Arc::new(Witnessing::default()),
            admin_key,
            admin_lock: Arc::new(std::sync::Mutex::new(())),
            ledger,
            config,
        }
    }
}

/// Runs ledger work on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|_| Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the request's worker failed")))
}
