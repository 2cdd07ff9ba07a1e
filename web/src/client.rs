//! The HTTP `LogClient`: what agents and nodes use with `--ledger http://…`. Blocking (ureq),
//! with timeouts and retries on connection failures and 503; it returns the server's receipts,
//! which callers verify against the log's key (the agent and the node both do).

use std::time::Duration;

use chipledger_domain::fingerprint::GpuUuid;
use chipledger_domain::log::{AsOf, EntrySummary, InventoryGpu, LogClient, Receipt};
use chipledger_domain::merkle::Hash;
use chipledger_domain::Error as DomainError;
use serde::de::DeserializeOwned;

use crate::api::{Hashes, Problem};

/// A remote `chipledger serve`.
#[derive(Debug, Clone)]
pub struct HttpLogClient {
    base: String,
    agent: ureq::Agent,
    retries: u32,
}

impl HttpLogClient {
    /// `base` is the server's URL, e.g. `http://ledger.internal:8080`.
    pub fn new(base: &str) -> HttpLogClient {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .timeout_connect(Some(Duration::from_secs(5)))
            .http_status_as_error(false)
            .build();
        HttpLogClient { base: base.trim_end_matches('/').to_string(), agent: config.into(), retries: 3 }
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
        let mut delay = Duration::from_millis(200);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match send() {
                Ok(mut resp) => {
                    let status = resp.status().as_u16();
                    let body = resp
                        .body_mut()
                        .read_to_vec()
                        .map_err(|e| DomainError::Log(format!("{url}: reading the answer: {e}")))?;
                    if (200..300).contains(&status) {
                        return serde_json::from_slice(&body).map_err(|e| {
                            DomainError::Log(format!(
                                "{url}: the server's answer is not what a chipledger server sends: {e}"
                            ))
                        });
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
        self.call(&|| self.agent.get(&url).call(), &url)
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
        self.call(&|| self.agent.post(&url).header("content-type", "application/json").send(&body[..]), &url)
    }

    fn checkpoint(&self) -> Result<String, DomainError> {
        let url = self.url("/checkpoint");
        let mut resp = self.agent.get(&url).call().map_err(|e| DomainError::Log(format!("{url}: {e}")))?;
        if resp.status().as_u16() != 200 {
            return Err(DomainError::Log(format!("{url}: HTTP {}", resp.status().as_u16())));
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
        let q = latest.map(|n| format!("?latest={n}")).unwrap_or_default();
        self.get(&format!("/api/v1/gpus/{uuid}/history{q}"))
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
