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
//! | log reads (tiles, proofs, inventory…)  | no (401)  | yes     | yes   | yes              |
//! | dashboard pages, exports, `/metrics`   | no²       | yes     | yes   | no (403)         |
//! | acquisition form                       | no²       | no (403)| yes   | no (403)         |
//!
//! ¹ each envelope must be signed by an enrolled key whose role may sign its record — the ledger
//! checks that; a signed request by a revoked key is refused before. ² pages redirect to `/login`.
//!
//! Each peer address (an IPv6 /64; behind a trusted proxy, the client it names) has a token
//! bucket charged before any credential is looked at, and each principal (anonymous callers:
//! their peer address) a bucket of its own.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chipledger_domain::auth::{RequestSignature, Token, SIGNATURE_HEADER};
use chipledger_domain::keys::VerifierKey;
use chipledger_domain::records::Role;
use rand_core::RngCore;

use crate::api::{blocking, ApiError, AppState};

pub(crate) const SESSION_COOKIE: &str = "chipledger_session";

/// Who is asking.
#[derive(Clone, Debug)]
pub(crate) enum Principal {
    Anonymous,
    /// A person, by token or by a session made from one. `csrf` is the session's form token;
    /// requests with a bearer token carry no ambient credential and need none.
    Person {
        token_id: String,
        name: String,
        role: Role,
        csrf: Option<String>,
    },
    /// An enrolled agent, node, admin or auditor key that signed this request; `host` is the
    /// host an agent or node key was enrolled for.
    Key {
        key_id: String,
        role: Role,
        host: Option<String>,
    },
}

/// What a principal may read of the log beyond checkpoints, tiles and proofs: each role only
/// what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scope {
    /// People (any role) and admin or auditor keys: every record.
    Everything,
    /// An agent key: a GPU's attestations (to compare a new one with), and which GPUs report a
    /// serial. `host` is the host it was enrolled for.
    Agent { host: String },
    /// A node key: what placement reads — the inventory, attestations, acquisitions, and GPU
    /// histories (where an admin's resolution of a shared serial is).
    Node,
}

impl Principal {
    /// The rate-limit bucket and the name request logs use (never a secret).
    pub(crate) fn label(&self) -> String {
        match self {
            Principal::Anonymous => "anonymous".into(),
            Principal::Person { token_id, role, .. } => format!("token:{token_id}:{}", role.as_str()),
            Principal::Key { key_id, role, .. } => format!("key:{}:{}", &key_id[..16], role.as_str()),
        }
    }

    /// Reads of the log: anyone with a credential.
    /// What this principal may read (after [`Principal::may_read`]).
    pub(crate) fn scope(&self) -> Scope {
        match self {
            Principal::Key { role: Role::Agent, host, .. } => Scope::Agent { host: host.clone().unwrap_or_default() },
            Principal::Key { role: Role::Node, .. } => Scope::Node,
            _ => Scope::Everything,
        }
    }

    /// Refuses what this principal's scope does not cover, saying what it may read instead.
    pub(crate) fn may_read_all(&self, what: &str) -> Result<(), ApiError> {
        match self.scope() {
            Scope::Everything => Ok(()),
            Scope::Agent { .. } => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "agent keys do not read {what}: they read checkpoints, tiles and proofs, a GPU's attestations \
                     (/api/v1/gpus/<uuid>/history) and which GPUs report a serial (/api/v1/inventory?serial=)"
                ),
            )),
            Scope::Node => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "node keys do not read {what}: they read checkpoints, tiles and proofs, the inventory, \
                     attestation and acquisition entries, acquisitions by serial, and GPU histories"
                ),
            )),
        }
    }

    pub(crate) fn may_read(&self) -> Result<(), ApiError> {
        match self {
            Principal::Anonymous => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "this needs a credential: a person's token (Authorization: Bearer clt_…, from `chipledger tokens \
                 create`), a dashboard session (log in at /login), or a request signed by an enrolled key",
            )),
            _ => Ok(()),
        }
    }

    /// Dashboard pages, exports and metrics: people only.
    pub(crate) fn person(&self) -> Result<Role, ApiError> {
        match self {
            Principal::Person { role, .. } => Ok(*role),
            Principal::Key { .. } => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "keys append and read the log; the dashboard, exports and metrics are for people with a token",
            )),
            Principal::Anonymous => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "this needs a person's token (Authorization: Bearer clt_…) or a dashboard session (log in at /login)",
            )),
        }
    }

    pub(crate) fn admin(&self) -> Result<(), ApiError> {
        match self.person()? {
            Role::Admin => Ok(()),
            _ => Err(ApiError::new(StatusCode::FORBIDDEN, "only an admin may do this; auditors read and export")),
        }
    }
}

/// Browser sessions, in memory: a restart logs everyone out.
#[derive(Debug)]
pub(crate) struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    ttl: Duration,
}

#[derive(Debug, Clone)]
struct Session {
    token_id: String,
    csrf: String,
    expires: Instant,
}

fn random_hex() -> String {
    let mut b = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

impl Sessions {
    pub(crate) fn new(ttl: Duration) -> Sessions {
        Sessions { map: Mutex::new(HashMap::new()), ttl }
    }

    /// A new session for a token; returns (session id, csrf token).
    pub(crate) fn create(&self, token_id: &str) -> (String, String) {
        let id = random_hex();
        let csrf = random_hex();
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, s| s.expires > now);
        map.insert(id.clone(), Session { token_id: token_id.to_string(), csrf: csrf.clone(), expires: now + self.ttl });
        (id, csrf)
    }

    fn get(&self, id: &str) -> Option<Session> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(id).filter(|s| s.expires > Instant::now()).cloned()
    }

    pub(crate) fn remove(&self, id: &str) {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }
}

/// Per-principal token buckets.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    pub(crate) fn new(per_second: f64, burst: f64) -> RateLimiter {
        RateLimiter { per_second, burst, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one request from `key`'s bucket, or says how long to wait.
    fn take(&self, key: &str) -> Result<(), Duration> {
        self.take_n(key, 1.0)
    }

    /// Takes `n` units (requests, bytes) from `key`'s bucket, or says how long to wait. More than
    /// a full bucket is never available.
    pub(crate) fn take_n(&self, key: &str, n: f64) -> Result<(), Duration> {
        let now = Instant::now();
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            // Forget buckets that have refilled; they hold no state worth keeping.
            let (rate, burst) = (self.per_second, self.burst);
            map.retain(|_, (level, at)| *level + now.duration_since(*at).as_secs_f64() * rate < burst);
        }
        let (level, at) = map.entry(key.to_string()).or_insert((self.burst, now));
        *level = (*level + now.duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        *at = now;
        if *level >= n {
            *level -= n;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(((n - *level) / self.per_second).min(3600.0)))
        }
    }
}

pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The caller's address as a rate-limit bucket ([`peer_bucket`]), for routes that charge it more.
#[derive(Clone, Debug)]
pub(crate) struct Peer(pub String);

/// The bucket of a caller by address: its peer, or the client a trusted proxy names; an IPv6
/// address by its /64 (one host holds a whole /64, and would otherwise get 2^64 buckets).
pub(crate) fn peer_bucket(extensions: &axum::http::Extensions, headers: &HeaderMap, trusted: &[IpAddr]) -> String {
    let Some(ConnectInfo(addr)) = extensions.get::<ConnectInfo<SocketAddr>>() else {
        return "anonymous".to_string();
    };
    format!("anonymous:{}", bucket_of(client_address(addr.ip(), headers, trusted)))
}

/// The client behind a chain of trusted proxies: the right-most `X-Forwarded-For` address that
/// is not one of them (the left ones are the client's own say). From an untrusted peer, the peer.
pub(crate) fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    let trusted: Vec<IpAddr> = trusted.iter().map(|ip| ip.to_canonical()).collect();
    if !trusted.contains(&peer.to_canonical()) {
        return peer;
    }
    // From the right: each trusted hop vouches for the address left of it. The walk stops at
    // the first untrusted address (the client) or at an entry it cannot read (then the nearest
    // trusted hop stands: nothing further left is vouched for).
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut nearest = peer;
    for entry in entries.into_iter().rev() {
        let Ok(ip) = entry.parse::<IpAddr>() else { return nearest };
        let ip = ip.to_canonical();
        if !trusted.contains(&ip) {
            return ip;
        }
        nearest = ip;
    }
    nearest
}

/// An address as a rate-limit bucket: IPv4 whole, IPv6 by its /64.
fn bucket_of(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

fn too_many(wait: Duration) -> Response {
    let mut r =
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too many requests from this caller; slow down").into_response();
    if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

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
    let principal = if let Some(h) = parts.headers.get(SIGNATURE_HEADER) {
        let Ok(sig) = h.to_str().map_err(|_| ()).and_then(|h| RequestSignature::parse(h).map_err(|_| ())) else {
            return refused(unauthorized(
                "the request signature is malformed: expected `<key id> <unix seconds> <base64>`",
            ));
        };
        let ledger = s.ledger.clone();
        let key_id = sig.key_id.as_str().to_string();
        let key = match blocking(move || ledger.active_key(&key_id).map_err(crate::api::ledger_error)).await {
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
        body = Body::from(bytes);
        Principal::Key { key_id: key.key_id, role: key.role, host: key.host }
    } else if let Some(h) = parts.headers.get(header::AUTHORIZATION) {
        let Some(token) = h.to_str().ok().and_then(|h| h.strip_prefix("Bearer ")).and_then(|t| Token::parse(t).ok())
        else {
            return refused(unauthorized("the Authorization header is not `Bearer clt_<id>_<secret>`"));
        };
        let ledger = s.ledger.clone();
        match blocking(move || ledger.authenticate_token(&token).map_err(crate::api::ledger_error)).await {
            Ok(Some(t)) => Principal::Person { token_id: t.id, name: t.name, role: t.role, csrf: None },
            Ok(None) => return refused(unauthorized("the token is not valid: unknown, revoked, or mistyped")),
            Err(e) => return refused(e.into_response()),
        }
    } else if let Some(session) = cookie(&parts.headers, SESSION_COOKIE).and_then(|id| s.sessions.get(id)) {
        // The token behind a session may have been revoked since the login.
        let ledger = s.ledger.clone();
        let id = session.token_id.clone();
        match blocking(move || ledger.live_token(&id).map_err(crate::api::ledger_error)).await {
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
    if let Err(wait) = s.limiter.take(&bucket) {
        return (too_many(wait), who);
    }
    parts.extensions.insert(principal);
    parts.extensions.insert(Peer(peer));
    (next.run(Request::from_parts(parts, body)).await, who)
}

/// Compares a form's CSRF token with the session's, for form posts made with a session cookie.
pub(crate) fn check_csrf(principal: &Principal, submitted: Option<&str>) -> Result<(), ApiError> {
    match principal {
        Principal::Person { csrf: Some(expected), .. } => {
            let ok =
                submitted.is_some_and(|s| chipledger_domain::auth::constant_time_eq(s.as_bytes(), expected.as_bytes()));
            if ok {
                Ok(())
            } else {
                Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "the form's CSRF token is missing or stale: reload the page and submit again",
                ))
            }
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a failure is the point
mod peer_tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn an_ipv6_peer_is_its_64_and_an_ipv4_one_itself() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(bucket_of(a), bucket_of(b));
        assert_ne!(bucket_of(a), bucket_of(c));
        assert_eq!(bucket_of("192.0.2.7".parse().unwrap()), "192.0.2.7");
        assert_eq!(bucket_of("::ffff:192.0.2.7".parse().unwrap()), "192.0.2.7");
    }

    #[test]
    fn only_a_trusted_proxy_names_the_client_and_only_by_its_rightmost_untrusted_address() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "203.0.113.9".parse().unwrap();
        let trusted = [proxy];
        // From an untrusted peer the header is the peer's own say: ignored.
        assert_eq!(client_address(other, &headers(&["198.51.100.1"]), &trusted), other);
        // From the proxy: the right-most address it did not add itself.
        let h = headers(&["1.1.1.1, 198.51.100.1", "10.0.0.1"]);
        assert_eq!(client_address(proxy, &h, &trusted), "198.51.100.1".parse::<IpAddr>().unwrap());
        // Garbage the client put left of what the proxy appended changes nothing; an entry the
        // proxy's hop cannot vouch for leaves the nearest trusted hop.
        let client: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(client_address(proxy, &headers(&["nonsense, 198.51.100.1"]), &trusted), client);
        assert_eq!(client_address(proxy, &headers(&["198.51.100.1, nonsense"]), &trusted), proxy);
        // A trusted proxy written as an IPv4-mapped IPv6 address is the same proxy.
        let mapped = ["::ffff:10.0.0.1".parse::<IpAddr>().unwrap()];
        assert_eq!(client_address(proxy, &headers(&["198.51.100.1"]), &mapped), client);
        assert_eq!(client_address(proxy, &HeaderMap::new(), &trusted), proxy);
    }
}
