//! What an operator sets: the server's limits, timeouts and TLS files.

use std::time::Duration;

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
    /// Envelope bytes per second (and burst; never less than one body) each caller may append:
    /// each key, token or session by its own bucket, callers without a credential by peer
    /// address. Appends are authorised by the envelopes' signatures, not the caller's, so no
    /// credential buys unmetered parsing.
    pub append_bytes_per_second: f64,
    pub append_bytes_burst: f64,
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
    /// Witnesses to submit each new checkpoint to (C2SP tlog-witness); their cosignatures are
    /// served with the checkpoint.
    pub witnesses: Vec<WitnessTarget>,
    /// How often the witnessing thread looks for a new checkpoint.
    pub witness_every: Duration,
}

/// A witness the log submits its checkpoints to: its key (name and cosignature/v1 public key)
/// and its URL (submission prefix).
#[derive(Clone, Debug)]
pub struct WitnessTarget {
    pub key: chipledger_domain::cosignature::WitnessKey,
    pub url: String,
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
            append_bytes_per_second: 4.0 * 1024.0 * 1024.0,
            append_bytes_burst: 16.0 * 1024.0 * 1024.0,
            max_connections: 1024,
            first_byte_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            witnesses: Vec::new(),
            witness_every: Duration::from_secs(1),
        }
    }
}
