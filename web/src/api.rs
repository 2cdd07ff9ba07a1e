//! The routes.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use chipledger_domain::fingerprint::GpuUuid;
use chipledger_domain::log::{AsOf, LogClient};
use chipledger_domain::records::RecordKind;
use chipledger_ledger::{Error as LedgerError, Ledger};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::auth::{Principal, RateLimiter, Scope, Sessions};
use crate::dash;
use crate::ops::{self, AuditStatus};
use crate::views::FleetCache;
use chipledger_domain::keys::SigningKey;

/// Server limits.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The largest request body (a batch of envelopes).
    pub max_body_bytes: usize,
    /// The most envelopes in one append.
    pub max_batch: usize,
    /// Requests being served at once before the server answers 503.
    pub concurrency: usize,
    pub request_timeout: Duration,
    /// Requests per second each principal may sustain (anonymous callers: per peer address),
    /// and the burst above it.
    pub rate_per_second: f64,
    pub rate_burst: f64,
    /// How long a dashboard login lasts.
    pub session_ttl: Duration,
    /// Mark session cookies `Secure` and send HSTS (set when serving TLS, or behind a proxy
    /// that terminates it).
    pub secure_cookies: bool,
    /// An attestation older than this shows as stale on the dashboard.
    pub fresh_for: time::Duration,
    /// How often `serve` audits the whole log (the first audit runs at start).
    pub audit_every: Duration,
    /// Serve HTTPS with this certificate chain and key (PEM files); session cookies are then
    /// marked `Secure`.
    pub tls: Option<TlsFiles>,
    /// Requests per second (and burst) each peer address may send, whoever it says it is:
    /// checked before any credential costs the server a hash, a signature check or a lookup.
    /// An IPv6 peer is its /64.
    pub peer_rate_per_second: f64,
    pub peer_rate_burst: f64,
    /// Envelope bytes per second (and burst; never less than one body) each peer address may
    /// append without a credential.
    pub anonymous_append_bytes_per_second: f64,
    pub anonymous_append_bytes_burst: f64,
    /// Proxies whose `X-Forwarded-For` names the real peer (its right-most address that is not
    /// itself one of them); from any other peer the header is ignored.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Connections open at once; one past it is closed at once.
    pub max_connections: usize,
    /// How long a new connection may stay silent before its first byte.
    pub first_byte_timeout: Duration,
    /// How long a request's headers may take to arrive (and an idle keep-alive connection may
    /// wait for its next request).
    pub header_timeout: Duration,
}

/// A PEM certificate chain and its private key.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_body_bytes: 8 * 1024 * 1024,
            max_batch: 1000,
            concurrency: 256,
            request_timeout: Duration::from_secs(30),
            rate_per_second: 200.0,
            rate_burst: 1000.0,
            session_ttl: Duration::from_secs(12 * 3600),
            secure_cookies: false,
            fresh_for: time::Duration::hours(2),
            audit_every: Duration::from_secs(3600),
            tls: None,
            peer_rate_per_second: 2000.0,
            peer_rate_burst: 4000.0,
            trusted_proxies: Vec::new(),
            anonymous_append_bytes_per_second: 4.0 * 1024.0 * 1024.0,
            anonymous_append_bytes_burst: 16.0 * 1024.0 * 1024.0,
            max_connections: 1024,
            first_byte_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Clone)]
pub(crate) struct AppState {
    pub ledger: Arc<Ledger>,
    pub config: ServerConfig,
    pub sessions: Arc<Sessions>,
    pub limiter: Arc<RateLimiter>,
    /// Per peer address (an IPv6 /64), charged before any credential is looked at.
    pub peers: Arc<RateLimiter>,
    /// Bytes of envelopes per peer address, for appends by callers without a credential.
    pub append_bytes: Arc<RateLimiter>,
    /// The last writability check and when it ran: probes share it for a second.
    pub ready: Arc<std::sync::Mutex<Option<(std::time::Instant, bool)>>>,
    /// A writability check is running.
    pub ready_checking: Arc<std::sync::atomic::AtomicBool>,
    pub fleet: Arc<FleetCache>,
    pub audit: Arc<AuditStatus>,
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
            append_bytes: Arc::new(RateLimiter::new(
                config.anonymous_append_bytes_per_second,
                config.anonymous_append_bytes_burst.max(config.max_body_bytes as f64),
            )),
            ready: Arc::new(std::sync::Mutex::new(None)),
            ready_checking: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            fleet: Arc::new(FleetCache::default()),
            audit: Arc::new(AuditStatus::default()),
            admin_key,
            admin_lock: Arc::new(std::sync::Mutex::new(())),
            ledger,
            config,
        }
    }
}

/// Refuses log reads to callers without a credential.
async fn require_reader(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    match req.extensions().get::<Principal>().map(Principal::may_read) {
        Some(Ok(())) => next.run(req).await,
        Some(Err(e)) => e.into_response(),
        None => ApiError::internal("no principal").into_response(),
    }
}

/// The whole server over `ledger`: log API, dashboard, metrics.
pub fn router(ledger: Arc<Ledger>, config: ServerConfig) -> Router {
    router_with(AppState::new(ledger, config))
}

pub(crate) fn router_with(state: AppState) -> Router {
    let config = state.config.clone();
    // Served over HTTPS, directly or behind a TLS proxy: browsers are told to keep to HTTPS.
    let https = config.secure_cookies || config.tls.is_some();
    let limits = tower::ServiceBuilder::new()
        .layer(axum::error_handling::HandleErrorLayer::new(|e: tower::BoxError| async move {
            if e.is::<tower::timeout::error::Elapsed>() {
                problem(StatusCode::REQUEST_TIMEOUT, "the request took too long")
            } else {
                problem(StatusCode::SERVICE_UNAVAILABLE, "the server is busy; retry shortly")
            }
        }))
        .load_shed()
        .concurrency_limit(config.concurrency)
        .timeout(config.request_timeout);
    let reads = Router::new()
        .route("/checkpoint", get(checkpoint))
        .route("/tile/entries/{index}", get(entry_bundle))
        .route("/tile/entries/{index}/{width}", get(partial_entry_bundle))
        .route("/tile/{level}/{index}", get(tile))
        .route("/tile/{level}/{index}/{width}", get(partial_tile))
        .route("/api/v1/entries/{index}", get(entry))
        .route("/api/v1/proof/inclusion", get(inclusion))
        .route("/api/v1/proof/consistency", get(consistency))
        .route("/api/v1/gpus/{uuid}/history", get(history))
        .route("/api/v1/acquisitions", get(acquisitions))
        .route("/api/v1/inventory", get(inventory))
        .route("/api/v1/runs", get(runs))
        .route_layer(axum::middleware::from_fn(require_reader));
    Router::new()
        .merge(reads)
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/api/v1/entries", post(append).get(list_unsupported))
        .route("/login", get(dash::login_page).post(dash::login))
        .route("/logout", post(dash::logout))
        .route("/", get(dash::fleet))
        .route("/fleet.csv", get(dash::fleet_csv))
        .route("/fleet.json", get(dash::fleet_json))
        .route("/gpus/{uuid}", get(dash::gpu))
        .route("/runs", get(dash::runs))
        .route("/runs.json", get(dash::runs_json))
        .route("/runs/{index}", get(dash::run))
        .route("/log", get(dash::log_status))
        .route("/bundle", get(dash::bundle))
        .route("/acquisitions/new", get(dash::acquisition_form))
        .route("/acquisitions", post(dash::record_acquisition))
        .route("/assets/style.css", get(dash::style))
        .fallback(|| async { problem(StatusCode::NOT_FOUND, "no such route; the API lives under /api/v1/") })
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::auth::authenticate))
        .layer(axum::middleware::map_response(move |r: Response| async move { security_headers(r, https) }))
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(limits)
        .with_state(state)
}

/// Headers every answer carries: HSTS over HTTPS, no caching by default, no sniffing, no framing (the admin form cannot be clickjacked),
/// and a policy that allows only this server's own stylesheet and no script at all.
fn security_headers(mut r: Response, https: bool) -> Response {
    let h = r.headers_mut();
    if https {
        h.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000"));
    }
    // Every read but the stylesheet needs a credential: nothing a shared cache may keep and hand
    // to the next caller, unless a handler says otherwise (and then `private`).
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    r
}

/// A JSON error body: what went wrong, for the caller.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct Problem {
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<usize>,
}

fn problem(status: StatusCode, message: impl Into<String>) -> Response {
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

fn domain_error(e: chipledger_domain::Error) -> ApiError {
    match e {
        chipledger_domain::Error::IndexOutOfRange { .. } => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
        chipledger_domain::Error::Log(m) => {
            tracing::error!(error = %m, "ledger error");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the ledger failed; the server log has details")
        }
        other => ApiError::new(StatusCode::BAD_REQUEST, other.to_string()),
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

async fn append(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(peer): Extension<crate::auth::Peer>,
    body: Bytes,
) -> Response {
    // Appends need no credential (each envelope carries its signature), so a caller that proved
    // none pays for the bytes it makes the server parse, by address.
    if matches!(p, Principal::Anonymous) {
        if let Err(wait) = s.append_bytes.take_n(&peer.0, body.len() as f64) {
            let mut r = problem(
                StatusCode::TOO_MANY_REQUESTS,
                "too many envelope bytes from this address; slow down, or sign the request with an enrolled key",
            );
            if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return r;
        }
    }
    let envelopes: Vec<Box<RawValue>> = match serde_json::from_slice::<Vec<Box<RawValue>>>(&body) {
        Ok(v) => v,
        Err(e) => match serde_json::from_slice::<Box<RawValue>>(&body) {
            Ok(one) if one.get().trim_start().starts_with('{') => vec![one],
            _ => {
                return problem(StatusCode::BAD_REQUEST, format!("the body is not a JSON array of DSSE envelopes: {e}"))
            }
        },
    };
    if envelopes.is_empty() {
        return problem(StatusCode::BAD_REQUEST, "no envelopes in the request");
    }
    if envelopes.len() > s.config.max_batch {
        return problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{} envelopes; at most {} per request", envelopes.len(), s.config.max_batch),
        );
    }
    // Each envelope is stored and hashed exactly as it appears in the request.
    let raw: Vec<Vec<u8>> = envelopes.iter().map(|e| e.get().as_bytes().to_vec()).collect();
    let ledger = s.ledger.clone();
    match blocking(move || Ok(ledger.append(&raw))).await {
        Ok(Ok(receipts)) => Json(receipts).into_response(),
        // Why an envelope was refused names keys, their enrolment and their last counters: a
        // caller that proved no identity learns which envelope and what kind of problem, the
        // server log the rest.
        Ok(Err(LedgerError::Rejected { position, reason })) if matches!(p, Principal::Anonymous) => {
            tracing::info!(position, %reason, "an anonymous append was refused");
            let status = match reason {
                chipledger_ledger::Rejection::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            let body = Problem {
                error: format!(
                    "envelope {position} was refused: {}; sign the request with an enrolled key for the details",
                    reason.for_anyone()
                ),
                position: Some(position),
            };
            (status, Json(body)).into_response()
        }
        Ok(Err(e)) => ledger_error(e).into_response(),
        Err(r) => r.into_response(),
    }
}

async fn list_unsupported() -> Response {
    problem(StatusCode::METHOD_NOT_ALLOWED, "POST envelopes here; read one entry at /api/v1/entries/<index>")
}

async fn checkpoint(State(s): State<AppState>) -> Response {
    let ledger = s.ledger.clone();
    match blocking(move || ledger.checkpoint().map_err(ledger_error)).await {
        Ok((_, note)) => {
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::CACHE_CONTROL, "private, no-cache")], note)
                .into_response()
        }
        Err(r) => r.into_response(),
    }
}

/// `N` (a full tile) or `N.p` + `W` (a partial tile of width W < 256) → (index, width).
fn tile_index(index: &str, width: Option<&str>) -> Option<(u64, u16)> {
    match width {
        None => Some((index.parse().ok()?, 256)),
        Some(w) => {
            let n = index.strip_suffix(".p")?.parse().ok()?;
            let w = w.parse::<u16>().ok().filter(|w| (1..256).contains(w))?;
            Some((n, w))
        }
    }
}

fn tile_response(bytes: Vec<u8>, full: bool) -> Response {
    // Full tiles never change; partial ones grow until they are full. Both need a credential, so
    // only the caller's own cache may keep them.
    let cache = if full { "private, max-age=31536000, immutable" } else { "private, no-cache" };
    let mut r = bytes.into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    r
}

const BAD_TILE: &str = "a tile is /tile/<L>/<N> or /tile/<L>/<N>.p/<W> with 1 ≤ W ≤ 255";

async fn serve_tile(s: AppState, level: Option<u8>, index: String, width: Option<String>) -> Response {
    let Some((index, width)) = tile_index(&index, width.as_deref()) else {
        return problem(StatusCode::BAD_REQUEST, BAD_TILE);
    };
    let ledger = s.ledger.clone();
    let result = blocking(move || {
        match level {
            Some(l) => ledger.tile(l, index, width),
            None => ledger.entry_bundle(index, width),
        }
        .map_err(ledger_error)
    })
    .await;
    match result {
        Ok(b) => tile_response(b, width == 256),
        Err(r) => r.into_response(),
    }
}

async fn tile(State(s): State<AppState>, Path((level, index)): Path<(u8, String)>) -> Response {
    serve_tile(s, Some(level), index, None).await
}

async fn partial_tile(State(s): State<AppState>, Path((level, index, width)): Path<(u8, String, String)>) -> Response {
    serve_tile(s, Some(level), index, Some(width)).await
}

async fn entry_bundle(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(index): Path<String>,
) -> Response {
    if let Err(e) = p.may_read_all("entry bundles (every record)") {
        return e.into_response();
    }
    serve_tile(s, None, index, None).await
}

async fn partial_entry_bundle(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path((index, width)): Path<(String, String)>,
) -> Response {
    if let Err(e) = p.may_read_all("entry bundles (every record)") {
        return e.into_response();
    }
    serve_tile(s, None, index, Some(width)).await
}

async fn entry(State(s): State<AppState>, Extension(p): Extension<Principal>, Path(index): Path<u64>) -> Response {
    let scope = p.scope();
    if let Scope::Agent { .. } = scope {
        return p.may_read_all("entries by index").into_response();
    }
    let ledger = s.ledger.clone();
    match blocking(move || LogClient::entry(ledger.as_ref(), index).map_err(domain_error)).await {
        // A node reads the attestations and acquisitions placement judges, nothing else.
        Ok(e) if scope == Scope::Node && !matches!(e.kind, RecordKind::GpuAttestation | RecordKind::Acquisition) => {
            p.may_read_all(&format!("{} entries", e.kind.predicate_type())).into_response()
        }
        Ok(e) => Json(e).into_response(),
        Err(r) => r.into_response(),
    }
}

#[derive(Deserialize)]
struct InclusionQuery {
    index: u64,
    size: Option<u64>,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct Hashes {
    pub hashes: Vec<chipledger_domain::merkle::Hash>,
}

async fn inclusion(State(s): State<AppState>, Query(q): Query<InclusionQuery>) -> Response {
    let ledger = s.ledger.clone();
    match blocking(move || {
        let size = q.size.unwrap_or_else(|| ledger.size());
        ledger.inclusion_proof(q.index, size).map_err(ledger_error)
    })
    .await
    {
        Ok(hashes) => Json(Hashes { hashes }).into_response(),
        Err(r) => r.into_response(),
    }
}

#[derive(Deserialize)]
struct ConsistencyQuery {
    old: u64,
    new: Option<u64>,
}

async fn consistency(State(s): State<AppState>, Query(q): Query<ConsistencyQuery>) -> Response {
    let ledger = s.ledger.clone();
    match blocking(move || {
        let new = q.new.unwrap_or_else(|| ledger.size());
        ledger.consistency_proof(q.old, new).map_err(ledger_error)
    })
    .await
    {
        Ok(hashes) => Json(Hashes { hashes }).into_response(),
        Err(r) => r.into_response(),
    }
}

#[derive(Deserialize)]
struct HistoryQuery {
    latest: Option<usize>,
}

/// The most entries `?latest=` asks of a GPU's history at once.
const MAX_HISTORY: usize = 10_000;

async fn history(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(uuid): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Response {
    let uuid = match GpuUuid::parse(&uuid) {
        Ok(u) => u,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e.to_string()),
    };
    if q.latest.is_some_and(|n| n == 0 || n > MAX_HISTORY) {
        return problem(StatusCode::BAD_REQUEST, format!("latest is 1 to {MAX_HISTORY} entries"));
    }
    let scope = p.scope();
    let ledger = s.ledger.clone();
    // Without `latest`, the whole history: readers decide on it (an admin's resolution of a
    // serial may be older than any window), so it is never silently cut.
    let latest = q.latest;
    match blocking(move || LogClient::history(ledger.as_ref(), &uuid, latest).map_err(domain_error)).await {
        // An agent reads a GPU's attestations (every host's: a GPU seen on two hosts, or moved,
        // is what it compares a new one with); a node also the admin's resolutions of serials.
        // Neither reads the GPU's runs or other annotations.
        Ok(v) => match scope {
            Scope::Agent { .. } => Json(v.into_iter().filter(is_attestation).collect::<Vec<_>>()).into_response(),
            Scope::Node => Json(v.into_iter().filter(|e| is_attestation(e) || is_resolution(e)).collect::<Vec<_>>())
                .into_response(),
            Scope::Everything => Json(v).into_response(),
        },
        Err(r) => r.into_response(),
    }
}

fn is_attestation(e: &chipledger_domain::log::EntrySummary) -> bool {
    e.kind == RecordKind::GpuAttestation
}

/// Whether an entry is an annotation resolving which GPU holds a serial.
fn is_resolution(e: &chipledger_domain::log::EntrySummary) -> bool {
    e.kind == RecordKind::Annotation
        && chipledger_domain::dsse::Envelope::from_json(e.envelope.as_bytes())
            .and_then(|env| env.payload_bytes())
            .and_then(|p| chipledger_domain::records::Record::from_payload(&p))
            .is_ok_and(
                |r| matches!(r, chipledger_domain::records::Record::Annotation(a) if a.resolves_serial.is_some()),
            )
}

#[derive(Deserialize)]
struct SerialQuery {
    serial: String,
}

async fn acquisitions(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<SerialQuery>,
) -> Response {
    if matches!(p.scope(), Scope::Agent { .. }) {
        return p.may_read_all("acquisition records").into_response();
    }
    let ledger = s.ledger.clone();
    match blocking(move || LogClient::acquisitions(ledger.as_ref(), &q.serial).map_err(domain_error)).await {
        Ok(v) => Json(v).into_response(),
        Err(r) => r.into_response(),
    }
}

#[derive(Deserialize)]
struct RunsQuery {
    limit: Option<u64>,
}

/// The newest run reports (default 100, at most 1,000), newest first.
async fn runs(State(s): State<AppState>, Extension(p): Extension<Principal>, Query(q): Query<RunsQuery>) -> Response {
    if let Err(e) = p.may_read_all("run reports") {
        return e.into_response();
    }
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let ledger = s.ledger.clone();
    match blocking(move || crate::views::runs(&ledger, limit).map_err(ledger_error)).await {
        Ok(v) => Json(v).into_response(),
        Err(r) => r.into_response(),
    }
}

#[derive(Deserialize)]
struct InventoryQuery {
    size: Option<u64>,
    time: Option<String>,
    serial: Option<String>,
}

async fn inventory(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<InventoryQuery>,
) -> Response {
    if matches!(p.scope(), Scope::Agent { .. }) && q.serial.is_none() {
        return p.may_read_all("the whole inventory").into_response();
    }
    if let Some(serial) = q.serial {
        if q.size.is_some() || q.time.is_some() {
            return problem(StatusCode::BAD_REQUEST, "serial reads the latest state; give it without size or time");
        }
        let ledger = s.ledger.clone();
        return match blocking(move || ledger.inventory_by_serial(&serial).map_err(ledger_error)).await {
            Ok(v) => Json(v).into_response(),
            Err(r) => r.into_response(),
        };
    }
    let as_of = match (q.size, q.time) {
        (Some(n), None) => AsOf::Size(n),
        (None, Some(t)) => match time::OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339) {
            Ok(t) => AsOf::Time(t),
            Err(e) => return problem(StatusCode::BAD_REQUEST, format!("time {t:?} is not RFC 3339: {e}")),
        },
        (None, None) => AsOf::Latest,
        (Some(_), Some(_)) => return problem(StatusCode::BAD_REQUEST, "give size or time, not both"),
    };
    let ledger = s.ledger.clone();
    match blocking(move || ledger.inventory(as_of).map_err(ledger_error)).await {
        Ok(v) => Json(v).into_response(),
        Err(r) => r.into_response(),
    }
}

/// Serves `ledger` on `addr` until SIGINT or SIGTERM, finishing requests in flight. Blocking:
/// it owns its tokio runtime. `on_ready` gets the bound address (e.g. port 0 → the real port).
pub fn serve(
    ledger: Arc<Ledger>,
    addr: &str,
    config: ServerConfig,
    on_ready: impl FnOnce(std::net::SocketAddr),
) -> Result<(), crate::Error> {
    let listen_err = |source| crate::Error::Listen { addr: addr.to_string(), source };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(listen_err)?;
    let tls = config.tls.clone();
    let limits = config.clone();
    let config = ServerConfig { secure_cookies: config.secure_cookies || tls.is_some(), ..config };
    // Commits never stall on folding the WAL: a thread of its own does it (started once the
    // listener is bound). Set here, off the async executor: it takes the writer's lock.
    ledger.defer_wal_folding().map_err(|e| crate::Error::Ledger(e.to_string()))?;
    runtime.block_on(async move {
        // The certificate first: a bad one stops the server before it claims to be ready.
        let rustls = match &tls {
            None => None,
            Some(files) => Some(
                axum_server::tls_rustls::RustlsConfig::from_pem_file(&files.cert, &files.key)
                    .await
                    .map_err(|source| crate::Error::Tls { cert: files.cert.clone(), key: files.key.clone(), source })?,
            ),
        };
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(listen_err)?;
        let bound = listener.local_addr().map_err(listen_err)?;
        tracing::info!(%bound, tls = tls.is_some(), "serving the ledger");
        let folding = ledger.clone();
        std::thread::Builder::new()
            .name("wal".into())
            .spawn(move || loop {
                if let Err(e) = folding.fold_wal() {
                    tracing::warn!(error = %e, "folding the write-ahead log");
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            })
            .map_err(listen_err)?;
        let state = AppState::new(ledger, config);
        // The audit runs on its own thread: at start, then every `audit_every`.
        let audit_state = state.clone();
        std::thread::Builder::new()
            .name("audit".into())
            .spawn(move || {
                // The first fleet page should not pay for reading the whole fleet.
                if let Err(e) = audit_state.fleet.get(&audit_state.ledger) {
                    tracing::warn!(status = %e.status(), "could not read the fleet at start");
                }
                loop {
                    audit_state.audit.run(&audit_state.ledger);
                    std::thread::sleep(audit_state.config.audit_every);
                }
            })
            .map_err(listen_err)?;
        let edge = crate::listen::Capped::new(limits.max_connections, limits.first_byte_timeout);
        let app = router_with(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
        let handle = axum_server::Handle::new();
        let stopper = handle.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            stopper.graceful_shutdown(Some(Duration::from_secs(30)));
        });
        let mut server = axum_server::from_tcp(listener.into_std().map_err(listen_err)?)
            .map_err(listen_err)?
            .handle(handle)
            // HTTP/1 only (every client here speaks it; an HTTP/2 connection would have no idle
            // timeout), and a whole first request in time: protocol detection and a TLS session
            // gone silent after its handshake are otherwise untimed.
            .http1_only()
            .first_request_timeout(limits.header_timeout);
        // Headers in time; an idle keep-alive connection waits for its next request's headers
        // under the same timer.
        server
            .http_builder()
            .http1()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(limits.header_timeout);
        on_ready(bound);
        match rustls {
            None => server.acceptor(edge).serve(app).await.map_err(listen_err),
            Some(rustls) => {
                let tls = axum_server::tls_rustls::RustlsAcceptor::new(rustls).acceptor(edge);
                server.acceptor(tls).serve(app).await.map_err(listen_err)
            }
        }
    })
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
