//! Who is asking, and what they may do.
//!
//! Every request gets a [`Principal`] before it reaches a route: a request signed by an enrolled,
//! active key (`x-chipledger-signature`, see `chipledger_domain::auth`); a person's token
//! (`Authorization: Bearer clt_…`); a browser session (cookie `chipledger_session`, made by
//! logging in with a token); or nobody. Credentials that are present but wrong are refused here
//! with 401 — they never fall back to anonymous. Routes then ask for what they need:
//!
//! | route                                  | anonymous | auditor | admin | agent / node key |
//! |----------------------------------------|-----------|---------|-------|------------------|
//! | `/healthz`, `/readyz`, `/login`        | yes       | yes     | yes   | yes              |
//! | `POST /api/v1/entries`                 | yes¹      | yes¹    | yes¹  | yes¹             |
//! | `/checkpoint`, hash tiles              | yes       | yes     | yes   | yes              |
//! | log reads (proofs, entries, inventory…)| no (401)  | yes     | yes   | yes              |
//! | dashboard pages, exports, `/metrics`   | no²       | yes     | yes   | no (403)         |
//! | acquisition form                       | no²       | no (403)| yes   | no (403)         |
//!
//! ¹ each envelope must be signed by an enrolled key whose role may sign its record — the ledger
//! checks that; a signed request by a revoked key is refused before. ² pages redirect to `/login`.
//!
//! Each peer address (an IPv6 /64; behind a trusted proxy, the client it names) has a token
//! bucket charged before any credential is looked at, and each principal (anonymous callers:
//! their peer address) a bucket of its own.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chipledger_domain::auth::{RequestSignature, Token, SIGNATURE_HEADER};
use chipledger_domain::keys::VerifierKey;

use crate::error::{ledger_error, ApiError};
use crate::identity::{cookie, Principal, SESSION_COOKIE};
use crate::limits::{peer_bucket, too_many, Peer, Use};
use crate::state::{blocking, AppState};

/// Establishes the [`Principal`], applies the rate limit, and logs the request — refused ones
/// too, as `principal=refused`.
pub(crate) async fn authenticate(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let (response, who) = admit(s, req, next).await;
    tracing::info!(
        target: "chipledger::http",
        %method,
        %path,
        status = response.status().as_u16(),
        principal = %who,
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    response
}

/// The answer, and who it was for (never a secret).
async fn admit(s: AppState, req: Request, next: Next) -> (Response, String) {
    let refused = |r: Response| (r, "refused".to_string());
    let (mut parts, mut body) = req.into_parts();
    // The peer pays first, before its credential costs a hash, a signature check or a lookup.
    let peer = peer_bucket(&parts.extensions, &parts.headers, &s.config.trusted_proxies);
    if let Err(wait) = s.peers.take(&peer) {
        return (too_many(wait), "refused".to_string());
    }
    let unauthorized = |message: &str| -> Response { ApiError::new(StatusCode::UNAUTHORIZED, message).into_response() };
    // Whether the principal's bucket was charged already (a signed request's, before the
    // replay check).
    let mut charged = false;
    let principal = if let Some(h) = parts.headers.get(SIGNATURE_HEADER) {
        let Ok(sig) = h.to_str().map_err(|_| ()).and_then(|h| RequestSignature::parse(h).map_err(|_| ())) else {
            return refused(unauthorized(
                "the request signature is malformed: expected `<key id> <unix seconds> <nonce> <base64>`",
            ));
        };
        let ledger = s.ledger.clone();
        let key_id = sig.key_id.as_str().to_string();
        let key = match blocking(move || ledger.active_key(&key_id).map_err(ledger_error)).await {
            Ok(Some(k)) => k,
            Ok(None) => {
                return refused(unauthorized(
                    "the request is signed by a key that is not enrolled, or is revoked or expired: ask an admin \
                     to enroll it",
                ))
            }
            Err(e) => return refused(e.into_response()),
        };
        let Ok(vkey) = VerifierKey::parse(&key.verifier_key) else {
            return refused(
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the key registry is damaged").into_response(),
            );
        };
        // The body is read only for a key the log knows: a made-up key id costs a lookup, not
        // the server reading (and hashing) a body of up to the limit.
        let bytes = match axum::body::to_bytes(body, s.config.max_body_bytes).await {
            Ok(b) => b,
            Err(_) => {
                return refused(
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("the body is over the {}-byte limit", s.config.max_body_bytes),
                    )
                    .into_response(),
                )
            }
        };
        let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let now = s.ledger.now().unix_timestamp();
        if let Err(e) = sig.verify(vkey.public_key(), parts.method.as_str(), path, &bytes, now) {
            return refused(unauthorized(&format!("the request signature does not verify: {e}")));
        }
        let principal = Principal::Key { key_id: key.key_id, role: key.role, host: key.host };
        // The key's own bucket first: a key that floods the replay memory is slowed by its rate
        // limit (≤ ~120,000 live signatures each), never fills it for everyone alone.
        if let Err(wait) = s.limiter.take(&principal.label()) {
            return (too_many(wait), principal.label());
        }
        match s.replays.first_use(sig.replay_id(), sig.time, now) {
            Use::First => {}
            Use::Replayed => {
                return refused(unauthorized(
                    "this signed request was already served: each request is signed afresh, with a new nonce",
                ))
            }
            Use::Full => {
                return refused(
                    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the server is busy; retry shortly").into_response(),
                )
            }
        }
        body = Body::from(bytes);
        charged = true;
        principal
    } else if let Some(h) = parts.headers.get(header::AUTHORIZATION) {
        let Some(token) = h.to_str().ok().and_then(|h| h.strip_prefix("Bearer ")).and_then(|t| Token::parse(t).ok())
        else {
            return refused(unauthorized("the Authorization header is not `Bearer clt_<id>_<secret>`"));
        };
        let ledger = s.ledger.clone();
        match blocking(move || ledger.authenticate_token(&token).map_err(ledger_error)).await {
            Ok(Some(t)) => Principal::Person { token_id: t.id, name: t.name, role: t.role, csrf: None },
            Ok(None) => return refused(unauthorized("the token is not valid: unknown, revoked, or mistyped")),
            Err(e) => return refused(e.into_response()),
        }
    } else if let Some(session) = cookie(&parts.headers, SESSION_COOKIE).and_then(|id| s.sessions.get(id)) {
        // The token behind a session may have been revoked since the login.
        let ledger = s.ledger.clone();
        let id = session.token_id.clone();
        match blocking(move || ledger.live_token(&id).map_err(ledger_error)).await {
            Ok(Some(t)) => Principal::Person { token_id: t.id, name: t.name, role: t.role, csrf: Some(session.csrf) },
            Ok(None) => Principal::Anonymous,
            Err(e) => return refused(e.into_response()),
        }
    } else {
        Principal::Anonymous
    };
    let bucket = match &principal {
        Principal::Anonymous => peer.clone(),
        p => p.label(),
    };
    let who = principal.label();
    if !charged {
        if let Err(wait) = s.limiter.take(&bucket) {
            return (too_many(wait), who);
        }
    }
    parts.extensions.insert(principal);
    parts.extensions.insert(Peer(peer));
    (next.run(Request::from_parts(parts, body)).await, who)
}
