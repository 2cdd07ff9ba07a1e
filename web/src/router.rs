//! The routes: which path goes to which handler, behind which layers (authentication, rate
//! limits, body limit, timeouts, load shedding, security headers).

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chipledger_ledger::Ledger;

use crate::api;
use crate::auth;
use crate::config::ServerConfig;
use crate::error::{problem, ApiError};
use crate::identity::Principal;
use crate::ops;
use crate::pages::{acquisition, bundle, fleet, gpu, log, login, runs};
use crate::state::AppState;

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
        .route("/tile/entries/{*path}", get(api::entry_bundle))
        .route("/api/v1/entries/{index}", get(api::entry))
        .route("/api/v1/proof/inclusion", get(api::inclusion))
        .route("/api/v1/proof/consistency", get(api::consistency))
        .route("/api/v1/gpus/{uuid}/history", get(api::history))
        .route("/api/v1/acquisitions", get(api::acquisitions))
        .route("/api/v1/location-proofs", get(api::location_proofs))
        .route("/api/v1/sites", get(api::sites))
        .route("/api/v1/inventory", get(api::inventory))
        .route("/api/v1/runs", get(api::runs))
        .route_layer(axum::middleware::from_fn(require_reader));
    // The checkpoint and the hash tiles are sizes and hashes only: anyone may follow the log —
    // witnesses, mirrors, auditors without an account — and a split view shows. Entries
    // (entry bundles, every API that returns records) keep needing a credential.
    let public = Router::new()
        .route("/checkpoint", get(api::checkpoint))
        .route("/log-keys", get(api::log_keys))
        .route("/tile/{level}/{*path}", get(api::tile));
    Router::new()
        .merge(public)
        .merge(reads)
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/api/v1/entries", post(api::append).get(api::list_unsupported))
        .route("/login", get(login::login_page).post(login::login))
        .route("/logout", post(login::logout))
        .route("/", get(fleet::fleet))
        .route("/fleet.csv", get(fleet::fleet_csv))
        .route("/fleet.json", get(fleet::fleet_json))
        .route("/gpus/{uuid}", get(gpu::gpu))
        .route("/runs", get(runs::runs))
        .route("/runs.json", get(runs::runs_json))
        .route("/runs/{index}", get(runs::run))
        .route("/log", get(log::log_status))
        .route("/bundle", get(bundle::bundle))
        .route("/acquisitions/new", get(acquisition::acquisition_form))
        .route("/acquisitions", post(acquisition::record_acquisition))
        .route("/assets/style.css", get(crate::pages::style))
        .fallback(|| async { problem(StatusCode::NOT_FOUND, "no such route; the API lives under /api/v1/") })
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::authenticate))
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
    // Every read but the stylesheet, the checkpoint and hash tiles (which say `public`
    // themselves) needs a credential: nothing a shared cache may keep and hand
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
