//! `chipledger-client`: the HTTP `LogClient` agents and nodes use with `--ledger http(s)://…`.
//! Blocking (ureq), with timeouts and retries on connection failures and 503; it returns the
//! server's receipts, which callers verify against the log's key (the agent and the node both do).
//! [`wire`] holds the JSON bodies it shares with the server; this crate links no server code, so
//! an agent or a node built from it carries no HTTP server.

pub mod locate;
pub mod mirror;
pub mod wire;
pub mod witness;

use std::time::Duration;

use chipledger_domain::auth::{sign_request, SIGNATURE_HEADER};
use chipledger_domain::fingerprint::GpuUuid;
use chipledger_domain::keys::SigningKey;
use chipledger_domain::log::{AsOf, EnrolledSite, EntrySummary, InventoryGpu, LogClient, Receipt};
use chipledger_domain::merkle::Hash;
use chipledger_domain::Error as DomainError;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;

use crate::wire::{Hashes, Problem};

/// How a client proves who it is to the server.
pub enum Credential {
    /// An enrolled key (an agent's or a node's): every request is signed with it.
    Key(SigningKey),
    /// A person's token, `clt_<id>_<secret>`.
    Token(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Key(k) => write!(f, "Key({})", k.key_id().as_str()),
            Credential::Token(_) => f.write_str("Token(…)"),
        }
    }
}

/// A remote `chipledger serve`.
#[derive(Debug, Clone)]
pub struct HttpLogClient {
    base: String,
    agent: ureq::Agent,
    retries: u32,
    credential: Option<std::sync::Arc<Credential>>,
}

impl HttpLogClient {
    /// `base` is the server's URL, e.g. `http://ledger.internal:8080`.
    pub fn new(base: &str) -> HttpLogClient {
        HttpLogClient { base: base.trim_end_matches('/').to_string(), agent: agent(None), retries: 3, credential: None }
    }

    /// Trusts only the CA certificates in `pem` for `https://` (a private CA); without it the
    /// Mozilla root set is trusted.
    pub fn with_ca_certs(mut self, pem: &[u8]) -> Result<HttpLogClient, DomainError> {
        let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(pem)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c.to_owned())),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            })
            .collect::<Result<_, _>>()
            .map_err(|e| DomainError::Log(format!("the CA certificates are not PEM: {e}")))?;
        if certs.is_empty() {
            return Err(DomainError::Log("the CA file holds no PEM certificate".into()));
        }
        self.agent = agent(Some(certs));
        Ok(self)
    }

    /// Sends every request with `credential`: reads need one.
    pub fn with_credential(mut self, credential: Credential) -> HttpLogClient {
        self.credential = Some(std::sync::Arc::new(credential));
        self
    }

    /// One request, with the credential's header. `path` is what the server sees (the base URL
    /// must not add a path of its own when requests are signed).
    fn send(&self, method: &str, path: &str, body: &[u8]) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        let url = self.url(path);
        let auth: Option<(&str, String)> = match self.credential.as_deref() {
            None => None,
            Some(Credential::Token(t)) => Some(("authorization", format!("Bearer {t}"))),
            Some(Credential::Key(k)) => {
                let now = time::OffsetDateTime::now_utc().unix_timestamp();
                // A fresh nonce: a retry is a new request, never a replay the server refuses.
                let mut nonce = [0u8; 16];
                rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
                Some((SIGNATURE_HEADER, sign_request(k, method, path, now, nonce, body)))
            }
        };
        if method == "POST" {
            let mut req = self.agent.post(&url).header("content-type", "application/json");
            if let Some((name, value)) = &auth {
                req = req.header(*name, value);
            }
            req.send(body)
        } else {
            let mut req = self.agent.get(&url);
            if let Some((name, value)) = &auth {
                req = req.header(*name, value);
            }
            req.call()
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends with retries on transport errors and 503; maps statuses to domain errors.
    fn call<T: DeserializeOwned>(
        &self,
        send: &dyn Fn() -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
        url: &str,
    ) -> Result<T, DomainError> {
        self.call_with(send, url, |_| ()).map(|(t, ())| t)
    }

    /// [`HttpLogClient::call`], also reading what `headers` takes from a successful answer.
    fn call_with<T: DeserializeOwned, H>(
        &self,
        send: &dyn Fn() -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
        url: &str,
        headers: impl Fn(&ureq::http::HeaderMap) -> H,
    ) -> Result<(T, H), DomainError> {
        let mut delay = Duration::from_millis(200);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match send() {
                Ok(mut resp) => {
                    let status = resp.status().as_u16();
                    let body = resp
                        .body_mut()
                        .with_config()
                        .limit(MAX_ANSWER_BYTES)
                        .read_to_vec()
                        .map_err(|e| DomainError::Log(format!("{url}: reading the answer: {e}")))?;
                    if (200..300).contains(&status) {
                        let value = serde_json::from_slice(&body).map_err(|e| {
                            DomainError::Log(format!(
                                "{url}: the server's answer is not what a chipledger server sends: {e}"
                            ))
                        })?;
                        return Ok((value, headers(resp.headers())));
                    }
                    let message = serde_json::from_slice::<Problem>(&body)
                        .map(|p| p.error)
                        .unwrap_or_else(|_| String::from_utf8_lossy(&body).chars().take(200).collect());
                    match status {
                        503 if attempt <= self.retries => {}
                        400 | 413 | 422 => return Err(DomainError::LogRejected(format!("{url}: {message}"))),
                        404 => return Err(DomainError::Log(format!("{url}: not found: {message}"))),
                        _ => return Err(DomainError::Log(format!("{url}: HTTP {status}: {message}"))),
                    }
                }
                Err(e) if attempt <= self.retries => {
                    tracing::debug!(%url, error = %e, attempt, "retrying");
                }
                Err(e) => return Err(DomainError::Log(format!("{url}: {e}"))),
            }
            std::thread::sleep(delay);
            delay *= 2;
        }
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, DomainError> {
        let url = self.url(path);
        self.call(&|| self.send("GET", path, b""), &url)
    }
}

impl HttpLogClient {
    /// The log's keys as a reader pinning `pinned` follows them: the published rotation records
    /// (`GET /log-keys`, public), each signed by the key it rotates from, proven in the latest
    /// checkpoint, which the followed keys open.
    pub fn follow_log_keys(
        &self,
        pinned: &chipledger_domain::keys::VerifierKey,
    ) -> Result<(chipledger_domain::rotation::LogKeys, chipledger_domain::note::VerifiedCheckpoint), DomainError> {
        let body: crate::wire::LogKeys = self.get("/log-keys")?;
        let announcements: Vec<chipledger_domain::rotation::Announcement<'_>> = body
            .rotations
            .iter()
            .map(|r| chipledger_domain::rotation::Announcement {
                index: r.index,
                envelope: r.envelope.as_bytes(),
                inclusion_proof: &r.inclusion_proof,
            })
            .collect();
        chipledger_domain::rotation::follow_log(pinned.clone(), &announcements, body.checkpoint.as_bytes())
    }
}

impl LogClient for HttpLogClient {
    fn submit(&self, envelopes: &[Vec<u8>]) -> Result<Vec<Receipt>, DomainError> {
        // A JSON array whose elements are the envelopes' exact bytes.
        let mut body = Vec::with_capacity(envelopes.iter().map(|e| e.len() + 1).sum::<usize>() + 2);
        body.push(b'[');
        for (i, e) in envelopes.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(e);
        }
        body.push(b']');
        let url = self.url("/api/v1/entries");
        self.call(&|| self.send("POST", "/api/v1/entries", &body), &url)
    }

    fn checkpoint(&self) -> Result<String, DomainError> {
        let url = self.url("/checkpoint");
        let mut resp = self.send("GET", "/checkpoint", b"").map_err(|e| DomainError::Log(format!("{url}: {e}")))?;
        if resp.status().as_u16() != 200 {
            let status = resp.status().as_u16();
            let body = resp.body_mut().read_to_string().unwrap_or_default();
            let message = serde_json::from_str::<Problem>(&body).map(|p| p.error).unwrap_or(body);
            return Err(DomainError::Log(format!("{url}: HTTP {status}: {message}")));
        }
        resp.body_mut().read_to_string().map_err(|e| DomainError::Log(format!("{url}: {e}")))
    }

    fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, DomainError> {
        self.get::<Hashes>(&format!("/api/v1/proof/inclusion?index={index}&size={size}")).map(|h| h.hashes)
    }

    fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, DomainError> {
        self.get::<Hashes>(&format!("/api/v1/proof/consistency?old={old}&new={new}")).map(|h| h.hashes)
    }

    fn inventory(&self, as_of: AsOf) -> Result<Vec<InventoryGpu>, DomainError> {
        let q = match as_of {
            AsOf::Latest => String::new(),
            AsOf::Size(n) => format!("?size={n}"),
            AsOf::Time(t) => format!(
                "?time={}",
                t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default().replace('+', "%2B")
            ),
        };
        self.get(&format!("/api/v1/inventory{q}"))
    }

    fn history(&self, uuid: &GpuUuid, latest: Option<usize>) -> Result<Vec<EntrySummary>, DomainError> {
        if let Some(n) = latest {
            return self.get(&format!("/api/v1/gpus/{uuid}/history?latest={n}"));
        }
        // The whole history, page by page: each page but the last names the next.
        let mut all = Vec::new();
        let mut after: Option<u64> = None;
        let mut pages = 0u64;
        loop {
            let path = match after {
                None => format!("/api/v1/gpus/{uuid}/history"),
                Some(a) => format!("/api/v1/gpus/{uuid}/history?after={a}"),
            };
            let url = self.url(&path);
            let (page, next): (Vec<EntrySummary>, Option<u64>) =
                self.call_with(&|| self.send("GET", &path, b""), &url, next_after)?;
            // Each page lies past the cursor that asked for it and up to the one it names.
            if page.iter().any(|e| after.is_some_and(|a| e.index <= a) || next.is_some_and(|n| e.index > n)) {
                return Err(DomainError::Log(format!("{url}: a page holds entries outside its range")));
            }
            all.extend(page);
            pages += 1;
            if pages > MAX_PAGES {
                return Err(DomainError::Log(format!("{url}: more than {MAX_PAGES} pages of one history")));
            }
            match next {
                None => return Ok(all),
                // The cursor only moves forward: a server cannot keep a reader in a loop.
                Some(n) if after.is_none_or(|a| n > a) => after = Some(n),
                Some(n) => {
                    return Err(DomainError::Log(format!("{url}: the next page (after {n}) does not move forward")))
                }
            }
        }
    }

    fn entry(&self, index: u64) -> Result<EntrySummary, DomainError> {
        self.get(&format!("/api/v1/entries/{index}"))
    }

    fn inventory_by_serial(&self, serial: &str) -> Result<Vec<InventoryGpu>, DomainError> {
        self.get(&format!("/api/v1/inventory?serial={}", query_value(serial)))
    }

    fn acquisitions(&self, serial: &str) -> Result<Vec<EntrySummary>, DomainError> {
        self.get(&format!("/api/v1/acquisitions?serial={}", query_value(serial)))
    }

    fn location_proofs(&self, host: Option<&str>, since: OffsetDateTime) -> Result<Vec<EntrySummary>, DomainError> {
        let since = since.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        let mut path = format!("/api/v1/location-proofs?since={}", query_value(&since));
        if let Some(h) = host {
            path.push_str(&format!("&host={}", query_value(h)));
        }
        let found: Vec<EntrySummary> = self.get(&path)?;
        if found.len() as u64 > chipledger_domain::log::MAX_LOCATION_PROOFS {
            return Err(DomainError::Log(format!("{}: more location proofs than any answer holds", self.url(&path))));
        }
        Ok(found)
    }

    fn sites(&self) -> Result<Vec<EnrolledSite>, DomainError> {
        self.get("/api/v1/sites")
    }
}

/// The most pages of one history a client follows (a billion entries at the server's page size).
const MAX_PAGES: u64 = 1_000_000;

/// The largest answer read: a page of a history (8 MiB of envelopes, escaped in JSON) fits.
const MAX_ANSWER_BYTES: u64 = 32 << 20;

/// The `after` cursor of a `Link: <…?after=N>; rel="next"` header, if the answer has one.
fn next_after(headers: &ureq::http::HeaderMap) -> Option<u64> {
    headers.get_all("link").iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).find_map(|link| {
        let (target, params) = link.trim().split_once(';')?;
        if !params.split(';').any(|p| p.trim() == "rel=\"next\"") {
            return None;
        }
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        target.rsplit_once("after=")?.1.parse().ok()
    })
}

/// A blocking HTTP(S) agent: 5 s to connect, 30 s per request, statuses answered as values.
fn agent(roots: Option<Vec<ureq::tls::Certificate<'static>>>) -> ureq::Agent {
    let mut tls = ureq::tls::TlsConfig::builder();
    if let Some(roots) = roots {
        tls = tls.root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(roots)));
    }
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .timeout_connect(Some(Duration::from_secs(5)))
        .http_status_as_error(false)
        .tls_config(tls.build())
        .build()
        .into()
}

/// Percent-encodes a query value.
fn query_value(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
