//! `chipledger mirror --listen`: what a mirror holds, served read-only — the latest verified
//! checkpoint, the hash tiles (C2SP paths), and inclusion and consistency proofs computed from
//! them — so that readers can check inclusion while the log itself is down. Entry bundles stay
//! in the mirror's directory (they are records: the log serves them only with a credential).

use std::sync::{Arc, RwLock};

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chipledger_client::mirror::{read_tile, Mirror};
use chipledger_client::wire::Hashes;
use serde::Deserialize;

use crate::config::ServerConfig;
use crate::error::problem;
use crate::limits::{peer_bucket, too_many, RateLimiter};

#[derive(Clone)]
struct MirrorApp {
    mirror: Arc<RwLock<Mirror>>,
    peers: Arc<RateLimiter>,
    trusted_proxies: Vec<std::net::IpAddr>,
}

/// The mirror's read-only routes.
pub fn mirror_router(mirror: Arc<RwLock<Mirror>>, config: &ServerConfig) -> Router {
    let app = MirrorApp {
        mirror,
        peers: Arc::new(RateLimiter::new(config.peer_rate_per_second, config.peer_rate_burst)),
        trusted_proxies: config.trusted_proxies.clone(),
    };
    Router::new()
        .route("/checkpoint", get(checkpoint))
        .route("/tile/{level}/{*path}", get(tile))
        .route("/api/v1/proof/inclusion", get(inclusion))
        .route("/api/v1/proof/consistency", get(consistency))
        .route("/healthz", get(|| async { "ok\n" }))
        .fallback(|| async {
            problem(StatusCode::NOT_FOUND, "a mirror serves /checkpoint, /tile/… and /api/v1/proof/…")
        })
        .layer(axum::middleware::from_fn_with_state(app.clone(), limit))
        .with_state(app)
}

async fn limit(State(app): State<MirrorApp>, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let peer = peer_bucket(req.extensions(), req.headers(), &app.trusted_proxies);
    match app.peers.take(&peer) {
        Ok(()) => next.run(req).await,
        Err(wait) => too_many(wait),
    }
}

fn read(app: &MirrorApp) -> std::sync::RwLockReadGuard<'_, Mirror> {
    app.mirror.read().unwrap_or_else(|p| p.into_inner())
}

async fn checkpoint(State(app): State<MirrorApp>) -> Response {
    match read(&app).checkpoint_note() {
        Some(note) => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::CACHE_CONTROL, "public, no-cache")],
            note.to_string(),
        )
            .into_response(),
        None => problem(StatusCode::SERVICE_UNAVAILABLE, "the mirror holds no checkpoint yet"),
    }
}

async fn tile(State(app): State<MirrorApp>, Path((level, path)): Path<(u8, String)>) -> Response {
    let Some((index, width)) = chipledger_domain::tiles::parse_tile_index_path(&path) else {
        return problem(StatusCode::BAD_REQUEST, "a tile is /tile/<L>/<N>[.p/<W>]");
    };
    let dir = read(&app).dir().to_path_buf();
    match tokio::task::spawn_blocking(move || read_tile(&dir, Some(level), index, width)).await {
        Ok(Some(bytes)) => {
            let cache = if width == 256 { "public, max-age=31536000, immutable" } else { "public, no-cache" };
            ([(header::CONTENT_TYPE, "application/octet-stream"), (header::CACHE_CONTROL, cache)], bytes)
                .into_response()
        }
        _ => problem(StatusCode::NOT_FOUND, "the mirror holds no such tile"),
    }
}

#[derive(Deserialize)]
struct InclusionQuery {
    index: u64,
    size: Option<u64>,
}

async fn inclusion(State(app): State<MirrorApp>, Query(q): Query<InclusionQuery>) -> Response {
    let m = read(&app);
    match m.inclusion_proof(q.index, q.size.unwrap_or_else(|| m.size())) {
        Ok(hashes) => Json(Hashes { hashes }).into_response(),
        Err(e) => problem(StatusCode::NOT_FOUND, e.to_string()),
    }
}

#[derive(Deserialize)]
struct ConsistencyQuery {
    old: u64,
    new: Option<u64>,
}

async fn consistency(State(app): State<MirrorApp>, Query(q): Query<ConsistencyQuery>) -> Response {
    let m = read(&app);
    match m.consistency_proof(q.old, q.new.unwrap_or_else(|| m.size())) {
        Ok(hashes) => Json(Hashes { hashes }).into_response(),
        Err(e) => problem(StatusCode::NOT_FOUND, e.to_string()),
    }
}

/// Serves `mirror` on `addr` until SIGINT or SIGTERM (blocking, its own runtime); `on_ready`
/// gets the bound address. The caller keeps syncing the mirror meanwhile.
pub fn serve_mirror(
    mirror: Arc<RwLock<Mirror>>,
    addr: &str,
    config: ServerConfig,
    on_ready: impl FnOnce(std::net::SocketAddr),
) -> Result<(), crate::error::Error> {
    let app = mirror_router(mirror, &config);
    crate::server::serve_plain(addr, config, app, on_ready)
}
