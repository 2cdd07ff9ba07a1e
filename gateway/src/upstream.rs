//! Upstream mode: the node in front of an OpenAI-compatible engine (vLLM, SGLang, llama.cpp's
//! server) running on the placed GPUs. Requests go through as sent; responses come back with the
//! node's id as `id` and `system_fingerprint` (each streamed event rewritten as it passes), so the
//! bytes the client receives are the bytes the receipt's digest is over.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::openai::ApiError;
use crate::Error;

/// The most bytes of one upstream response (non-streamed) or one streamed event.
pub const MAX_UPSTREAM_BODY: usize = 16 << 20;
pub const MAX_EVENT_BYTES: usize = 1 << 20;
/// The longest a stream may go without a byte from the engine.
pub const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);
/// How long the engine may take to start answering (queueing and prefill included).
pub const HEAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// An upstream engine.
#[derive(Debug, Clone)]
pub struct Upstream {
    client: Client<HttpConnector, Full<Bytes>>,
    completions: hyper::Uri,
    pub base: String,
}

impl Upstream {
    /// `base` is the engine's address, e.g. `http://127.0.0.1:8000` (plain HTTP: the engine runs
    /// on the node or beside it, not across the internet).
    pub fn new(base: &str) -> Result<Upstream, Error> {
        let trimmed = base.trim_end_matches('/');
        let trimmed = trimmed.strip_suffix("/v1").unwrap_or(trimmed);
        if !trimmed.starts_with("http://") {
            return Err(Error::Start(format!(
                "--upstream {base}: give the engine's plain-HTTP address on this node, e.g. http://127.0.0.1:8000"
            )));
        }
        let completions: hyper::Uri = format!("{trimmed}/v1/chat/completions")
            .parse()
            .map_err(|e| Error::Start(format!("--upstream {base}: {e}")))?;
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(64).build(http);
        Ok(Upstream { client, completions, base: trimmed.to_string() })
    }

    /// Sends a chat completion request; an answer other than 200 becomes the client's error.
    pub async fn send(&self, body: Bytes) -> Result<hyper::Response<Incoming>, ApiError> {
        let req = hyper::Request::post(self.completions.clone())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|e| {
                ApiError::engine(hyper::StatusCode::BAD_GATEWAY, format!("building the upstream request: {e}"))
            })?;
        let unreachable = || ApiError::unavailable("upstream_unreachable", "the upstream engine does not answer", 5);
        // Its answer's head must come within the limit (a stream's body may take longer).
        let resp = tokio::time::timeout(HEAD_TIMEOUT, self.client.request(req))
            .await
            .map_err(|_| unreachable())?
            .map_err(|_| unreachable())?;
        if resp.status() == hyper::StatusCode::OK {
            return Ok(resp);
        }
        let status = resp.status();
        let body = Limited::new(resp.into_body(), 64 * 1024).collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let message = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.pointer("/error/message").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned());
        // The engine's own words reach the client only for its refusals of the request (a 4xx);
        // a failure's (tracebacks, paths, addresses) stay in the node's log.
        if status.is_client_error() {
            let mut err =
                ApiError::engine(status, format!("the engine refused the request ({}): {message}", status.as_u16()));
            err.kind = "invalid_request_error";
            err.code = "upstream_refused";
            return Err(err);
        }
        tracing::warn!(status = status.as_u16(), message = %message, "the upstream engine failed");
        Err(ApiError::engine(
            hyper::StatusCode::BAD_GATEWAY,
            format!("the upstream engine failed on this request ({})", status.as_u16()),
        ))
    }
}

/// Reads a whole (non-streamed) upstream body, bounded.
pub async fn read_body(resp: hyper::Response<Incoming>) -> Result<Bytes, ApiError> {
    Limited::new(resp.into_body(), MAX_UPSTREAM_BODY)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|e| ApiError::engine(hyper::StatusCode::BAD_GATEWAY, format!("reading the upstream response: {e}")))
}

/// Gives a response object (or stream chunk) the node's id; returns its `usage` if it has one.
pub fn rewrite(v: &mut Value, id: &str, model: &str) -> Option<(u64, u64)> {
    if let Some(o) = v.as_object_mut() {
        o.insert("id".into(), Value::String(id.to_string()));
        o.insert("system_fingerprint".into(), Value::String(id.to_string()));
        o.insert("model".into(), Value::String(model.to_string()));
    }
    let u = v.get("usage")?;
    Some((u.get("prompt_tokens")?.as_u64()?, u.get("completion_tokens")?.as_u64()?))
}

/// Splits a server-sent event stream into its events' `data` fields.
#[derive(Debug, Default)]
pub struct SseSplitter {
    buf: Vec<u8>,
    /// How far `buf` was searched for an event's end (each byte is looked at once).
    scanned: usize,
}

impl SseSplitter {
    /// Feeds bytes; returns the data of each event completed by them.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<String>, ApiError> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            let from = self.scanned.saturating_sub(3);
            let Some((at, len)) = find_blank_line(&self.buf[from..]).map(|(a, l)| (a + from, l)) else {
                self.scanned = self.buf.len();
                break;
            };
            self.scanned = 0;
            let event: Vec<u8> = self.buf.drain(..at + len).collect();
            let text = String::from_utf8_lossy(&event[..at]);
            let mut data = String::new();
            for line in text.lines() {
                if let Some(d) = line.strip_prefix("data:") {
                    if !data.is_empty() {
                        data.push('\n');
                    }
                    data.push_str(d.strip_prefix(' ').unwrap_or(d));
                }
            }
            if !data.is_empty() {
                out.push(data);
            }
        }
        if self.buf.len() > MAX_EVENT_BYTES {
            return Err(ApiError::engine(hyper::StatusCode::BAD_GATEWAY, "an upstream event is larger than 1 MiB"));
        }
        Ok(out)
    }
}

fn find_blank_line(b: &[u8]) -> Option<(usize, usize)> {
    let lf = b.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let crlf = b.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(c)) => Some(if a.0 <= c.0 { a } else { c }),
        (a, c) => a.or(c),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn events_split_across_reads_and_line_endings_come_out_whole() {
        let mut s = SseSplitter::default();
        assert!(s.push(b"data: {\"a\":").unwrap().is_empty());
        assert_eq!(s.push(b"1}\n\n: ping\n\ndata: [DONE]\r\n\r\n").unwrap(), vec!["{\"a\":1}", "[DONE]"]);
        assert!(s.push(&vec![b'x'; MAX_EVENT_BYTES + 1]).is_err());
    }

    #[test]
    fn rewriting_sets_the_nodes_id_and_reads_usage() {
        let mut v: Value = serde_json::json!({"id":"up","usage":{"prompt_tokens":3,"completion_tokens":4}});
        assert_eq!(rewrite(&mut v, "chatcmpl-x", "m"), Some((3, 4)));
        assert_eq!(v["id"], "chatcmpl-x");
        assert_eq!(v["system_fingerprint"], "chatcmpl-x");
    }
}
