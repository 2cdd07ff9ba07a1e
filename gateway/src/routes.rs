//! The node's HTTP API: `GET /v1/models`, `POST /v1/chat/completions` (whole or streamed as
//! server-sent events), `GET /v1/provenance/{id}` (a response's receipt), `GET /status`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chipledger_domain::merkle::Hash;
use chipledger_domain::serving::{ServedResponse, MAX_RESPONSE_ID};
use chipledger_inference::runner::{SamplingConfig, Segment, Stop};
use chipledger_inference::serving::Placed;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::sync::mpsc;

use crate::candle::{Event, Job};
use crate::openai::{self, ApiError, ChatRequest};
use crate::recorder::Lookup;
use crate::{upstream, Engine, Node};

type App = State<Arc<Node>>;

pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/provenance/{id}", get(provenance))
        .route("/status", get(status))
        .fallback(|| async {
            ApiError::not_found(
                "no such route; this node serves /v1/models, /v1/chat/completions and /v1/provenance/{id}",
            )
        })
        .method_not_allowed_fallback(|| async {
            let mut e = ApiError::not_found("this route does not take that method");
            e.status = StatusCode::METHOD_NOT_ALLOWED;
            e.code = "method_not_allowed";
            e
        })
        .layer(DefaultBodyLimit::max(openai::MAX_BODY_BYTES))
        .with_state(node)
}

fn authorized(node: &Node, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(key) = &node.api_key else { return Ok(()) };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let want = Hash::sha256(key.0.as_bytes());
    let got = Hash::sha256(given.as_bytes());
    if chipledger_domain::auth::hashes_equal(&want.0, &got.0) {
        Ok(())
    } else {
        Err(ApiError::unauthorized())
    }
}

async fn models(State(node): App, headers: HeaderMap) -> Response {
    if let Err(e) = authorized(&node, &headers) {
        return e.into_response();
    }
    Json(json!({
        "object": "list",
        "data": [{ "id": node.model_id, "object": "model", "created": node.created, "owned_by": "chipledger" }],
    }))
    .into_response()
}

async fn status(State(node): App, headers: HeaderMap) -> Response {
    if let Err(e) = authorized(&node, &headers) {
        return e.into_response();
    }
    let gate = match node.gate.admit(OffsetDateTime::now_utc()) {
        Ok(p) => json!({
            "serving": true,
            "host": p.host,
            "gpus": p.gpus.iter().map(|g| g.uuid.as_str()).collect::<Vec<_>>(),
            "policy": p.policy_name,
            "checkpoint_size": p.checkpoint_size,
            "expires_at": p.expires_at.unix_timestamp(),
        }),
        Err(why) => json!({ "serving": false, "reason": why }),
    };
    Json(json!({ "model": node.model_id, "gate": gate, "provenance": node.recorder.stats() })).into_response()
}

async fn provenance(State(node): App, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if let Err(e) = authorized(&node, &headers) {
        return e.into_response();
    }
    if id.is_empty() || id.len() > MAX_RESPONSE_ID {
        return ApiError::not_found("no response has this id").into_response();
    }
    match node.recorder.lookup(&id) {
        Lookup::Ready(r) => Json(r).into_response(),
        Lookup::Pending => {
            let mut r = (
                StatusCode::ACCEPTED,
                Json(json!({ "id": id, "status": "pending", "message": "its batch is not in the log yet" })),
            )
                .into_response();
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
        Lookup::Unknown => {
            ApiError::not_found(format!("no receipt for {id} (unknown, or older than the receipts this node keeps)"))
                .into_response()
        }
    }
}

/// A new response id: `chatcmpl-` and 24 random hex digits.
fn new_id() -> String {
    use rand_core::RngCore;
    let mut b = [0u8; 12];
    rand_core::OsRng.fill_bytes(&mut b);
    format!("chatcmpl-{}", hex::encode(b))
}

/// What one request carries from admission to its leaf.
struct Ticket {
    id: String,
    placed: Arc<Placed>,
    request_sha256: Hash,
    received_at_ms: i64,
    start: Instant,
    stream: bool,
}

impl Ticket {
    fn leaf(&self, response: Hash, queue_ms: u64, first_ms: u64, prompt: u64, completion: u64) -> ServedResponse {
        ServedResponse {
            id: self.id.clone(),
            request_sha256: self.request_sha256,
            response_sha256: response,
            model_digest: Hash([0; 32]),
            gpu_set: self.placed.gpu_set,
            stream: self.stream,
            received_at_ms: self.received_at_ms,
            queue_ms,
            first_token_ms: first_ms,
            total_ms: self.start.elapsed().as_millis() as u64,
            prompt_tokens: prompt,
            completion_tokens: completion,
        }
    }
}

fn record(node: &Node, t: &Ticket, mut leaf: ServedResponse) {
    leaf.model_digest = node.recorder.model().digest;
    node.recorder.record(&t.placed, &leaf);
}

fn with_headers(mut r: Response, id: &str, content_type: &'static str) -> Response {
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!("/v1/provenance/{id}")) {
        h.insert("x-chipledger-provenance", v);
    }
    if content_type == "text/event-stream" {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    r
}

async fn chat(
    State(node): App,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            let mut err = ApiError::invalid(
                format!("the request body is larger than {} bytes or unreadable", openai::MAX_BODY_BYTES),
                None,
            );
            err.status = e.status();
            return err.into_response();
        }
    };
    match chat_inner(node, headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn chat_inner(node: Arc<Node>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    authorized(&node, &headers)?;
    let start = Instant::now();
    let now = OffsetDateTime::now_utc();
    let req = ChatRequest::parse(&body)?;
    // One model per node: a request for another (an adapter, another engine's model) would be
    // answered by something the receipt does not name.
    if let Some(m) = req.model.as_deref().filter(|m| !m.is_empty() && *m != node.model_id) {
        let mut e = ApiError::invalid(
            format!("model {m:?} is not served here; this node serves {:?}", node.model_id),
            Some("model"),
        );
        e.code = "model_not_found";
        return Err(e);
    }
    let placed = node.gate.admit(now).map_err(|why| ApiError::unavailable("gpus_not_qualified", why, 5))?;
    node.recorder.admit().map_err(|why| ApiError::unavailable("provenance_backlog", why, 5))?;
    let ticket = Ticket {
        id: new_id(),
        placed,
        request_sha256: Hash::sha256(&body),
        received_at_ms: (now.unix_timestamp_nanos() / 1_000_000) as i64,
        start,
        stream: req.stream,
    };
    match &node.engine {
        Engine::Candle(_) => candle_chat(node.clone(), req, ticket).await,
        Engine::Upstream { upstream, slots } => {
            let permit = slots.clone().try_acquire_owned().map_err(|_| {
                ApiError::busy("the node is at its limit of requests in flight to the engine; retry shortly")
            })?;
            // The engine is asked for the node's model, whatever the client named.
            let mut forwarded: Value = serde_json::from_slice(&body)
                .map_err(|e| ApiError::invalid(format!("the request body is not JSON: {e}"), None))?;
            if let Some(o) = forwarded.as_object_mut() {
                o.insert("model".into(), Value::String(node.model_id.clone()));
            }
            let resp = upstream.send(Bytes::from(serde_json::to_vec(&forwarded).unwrap_or_default())).await?;
            if req.stream {
                upstream_stream(node.clone(), resp, ticket, permit).await
            } else {
                let bytes = upstream::read_body(resp).await?;
                drop(permit);
                let mut v: Value = serde_json::from_slice(&bytes).map_err(|_| {
                    ApiError::engine(StatusCode::BAD_GATEWAY, "the upstream engine's response is not JSON")
                })?;
                let usage = upstream::rewrite(&mut v, &ticket.id, &node.model_id).unwrap_or((0, 0));
                let out = serde_json::to_vec(&v).unwrap_or_default();
                let ms = ticket.start.elapsed().as_millis() as u64;
                record(&node, &ticket, ticket.leaf(Hash::sha256(&out), 0, ms, usage.0, usage.1));
                Ok(with_headers(Response::new(Body::from(out)), &ticket.id, "application/json"))
            }
        }
    }
}

fn sampling(req: &ChatRequest, max_context: usize) -> SamplingConfig {
    let default = SamplingConfig::default();
    SamplingConfig {
        temperature: req.temperature.unwrap_or(default.temperature),
        top_p: req.top_p.unwrap_or(default.top_p),
        seed: req.seed.unwrap_or(default.seed),
        max_tokens: req.max_tokens().map(|m| m.min(max_context as u64) as usize).unwrap_or(max_context),
    }
}

async fn candle_chat(node: Arc<Node>, req: ChatRequest, ticket: Ticket) -> Result<Response, ApiError> {
    let Engine::Candle(pool) = &node.engine else {
        return Err(ApiError::engine(StatusCode::INTERNAL_SERVER_ERROR, "no built-in engine"));
    };
    let mut texts = Vec::with_capacity(req.messages.len());
    for m in &req.messages {
        let role = if m.role == "developer" { "system" } else { m.role.as_str() };
        texts.push((role, m.text()?));
    }
    let conversation: Vec<(&str, &str)> = texts.iter().map(|(r, t)| (*r, t.as_str())).collect();
    let prompt = pool.template.apply_chat(&conversation);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let job = Job {
        prompt,
        sampling: sampling(&req, pool.max_context),
        events: tx,
        arrived: ticket.start,
        stream: req.stream,
        expires_at: ticket.placed.expires_at,
    };
    if pool.try_submit(job).is_err() {
        return Err(ApiError::busy(format!(
            "all {} engine workers are busy and the queue is full; retry shortly",
            pool.workers
        )));
    }
    if req.stream {
        // Until the first text: a refusal is still a plain error.
        let first = loop {
            match rx.recv().await {
                Some(Event::Started) => {}
                Some(Event::Refused(why)) => return Err(ApiError::invalid(why, Some("messages"))),
                Some(Event::Expired(why)) => return Err(ApiError::unavailable("gpus_not_qualified", why, 5)),
                Some(Event::Failed(why)) => return Err(engine_failed(&why)),
                Some(other) => break other,
                None => return Err(ApiError::engine(StatusCode::INTERNAL_SERVER_ERROR, "the engine stopped")),
            }
        };
        return Ok(candle_stream(node.clone(), req.include_usage(), ticket, first, rx));
    }
    match rx.recv().await {
        Some(Event::Done { prompt_tokens, completion_tokens, stop, queue_ms, first_token_ms, text }) => {
            let (thinking, answer) = text.unwrap_or_default();
            let c = openai::Completion {
                id: &ticket.id,
                created: OffsetDateTime::now_utc().unix_timestamp(),
                model: &node.model_id,
                answer: answer.trim(),
                thinking: thinking.trim(),
                finish_reason: openai::finish_reason(stop),
                prompt_tokens,
                completion_tokens,
            };
            let out = serde_json::to_vec(&c.to_json()).unwrap_or_default();
            let leaf = ticket.leaf(Hash::sha256(&out), queue_ms, first_token_ms, prompt_tokens, completion_tokens);
            record(&node, &ticket, leaf);
            Ok(with_headers(Response::new(Body::from(out)), &ticket.id, "application/json"))
        }
        Some(Event::Refused(why)) => Err(ApiError::invalid(why, Some("messages"))),
        Some(Event::Expired(why)) => Err(ApiError::unavailable("gpus_not_qualified", why, 5)),
        Some(Event::Failed(why)) => Err(engine_failed(&why)),
        Some(Event::Started | Event::Text(..)) | None => {
            Err(ApiError::engine(StatusCode::INTERNAL_SERVER_ERROR, "the engine stopped"))
        }
    }
}

/// The engine's own message goes to the node's log, not to the client.
fn engine_failed(why: &str) -> ApiError {
    tracing::warn!(error = %why, "the engine failed");
    ApiError::engine(StatusCode::INTERNAL_SERVER_ERROR, "the engine failed on this request")
}

/// The SSE body: chunks sent through a bounded channel, hashed as they go; the leaf is recorded
/// once `[DONE]` is handed to the connection.
struct Sse {
    tx: mpsc::Sender<Result<Bytes, Infallible>>,
    hash: Sha256,
}

impl Sse {
    fn new() -> (Sse, Body) {
        let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
        let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
        (Sse { tx, hash: Sha256::new() }, Body::from_stream(stream))
    }

    /// Sends an event; false when the client went away.
    async fn send(&mut self, event: String) -> bool {
        self.hash.update(event.as_bytes());
        self.tx.send(Ok(Bytes::from(event))).await.is_ok()
    }

    fn digest(self) -> Hash {
        Hash(self.hash.finalize().into())
    }
}

fn candle_stream(
    node: Arc<Node>,
    include_usage: bool,
    ticket: Ticket,
    first: Event,
    mut rx: mpsc::UnboundedReceiver<Event>,
) -> Response {
    let (mut sse, body) = Sse::new();
    let id = ticket.id.clone();
    tokio::spawn(async move {
        let created = OffsetDateTime::now_utc().unix_timestamp();
        let model = node.model_id.clone();
        let chunk = |delta: Value, finish: Option<&str>, usage: Option<Value>| {
            openai::chunk_event(&ticket.id, created, &model, delta, finish, usage)
        };
        if !sse.send(chunk(json!({ "role": "assistant", "content": "" }), None, None)).await {
            return;
        }
        let mut event = Some(first);
        loop {
            match event {
                Some(Event::Text(seg, t)) => {
                    let delta = if seg == Segment::Thinking {
                        json!({ "reasoning_content": t })
                    } else {
                        json!({ "content": t })
                    };
                    if !sse.send(chunk(delta, None, None)).await {
                        return; // the client left: the engine stops at its next token; no leaf
                    }
                }
                Some(Event::Done { prompt_tokens, completion_tokens, stop, queue_ms, first_token_ms, .. }) => {
                    if stop == Stop::Cancelled {
                        return;
                    }
                    let mut ok = sse.send(chunk(json!({}), Some(openai::finish_reason(stop)), None)).await;
                    if include_usage {
                        ok &= sse
                            .send(chunk(Value::Null, None, Some(openai::usage(prompt_tokens, completion_tokens))))
                            .await;
                    }
                    ok &= sse.send(openai::DONE_EVENT.to_string()).await;
                    if ok {
                        let leaf =
                            ticket.leaf(sse.digest(), queue_ms, first_token_ms, prompt_tokens, completion_tokens);
                        record(&node, &ticket, leaf);
                    }
                    return;
                }
                Some(Event::Failed(why)) => {
                    // Headers are gone: the stream ends with an error event, and no leaf.
                    tracing::warn!(error = %why, "the engine failed mid-stream");
                    let e = ApiError::engine(StatusCode::INTERNAL_SERVER_ERROR, "the engine failed on this request");
                    let _ = sse.send(format!("data: {}\n\n", e.body())).await;
                    return;
                }
                Some(Event::Started | Event::Refused(_) | Event::Expired(_)) => {}
                None => return,
            }
            event = rx.recv().await;
        }
    });
    with_headers(Response::new(body), &id, "text/event-stream")
}

async fn upstream_stream(
    node: Arc<Node>,
    resp: hyper::Response<hyper::body::Incoming>,
    ticket: Ticket,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Result<Response, ApiError> {
    let (mut sse, body) = Sse::new();
    let id = ticket.id.clone();
    tokio::spawn(async move {
        let _permit = permit;
        let mut upstream_body = resp.into_body();
        let mut split = upstream::SseSplitter::default();
        let mut usage = (0, 0);
        let mut first_ms = None;
        let mut failed = false;
        let broken = |what: &str| {
            tracing::warn!(id = %ticket.id, "upstream stream: {what}");
            let e = ApiError::engine(StatusCode::BAD_GATEWAY, "the upstream engine's stream broke off");
            format!("data: {}\n\n", e.body())
        };
        loop {
            // The engine's next bytes, unless the client left or the engine went quiet.
            let frame = tokio::select! {
                f = tokio::time::timeout(upstream::IDLE_TIMEOUT, upstream_body.frame()) => f,
                _ = sse.tx.closed() => return,
            };
            let frame = match frame {
                Ok(Some(Ok(frame))) => frame,
                Ok(None) => {
                    let _ = sse.send(broken("ended without [DONE]")).await;
                    return;
                }
                Ok(Some(Err(e))) => {
                    let _ = sse.send(broken(&e.to_string())).await;
                    return;
                }
                Err(_) => {
                    let _ = sse.send(broken("idle past the timeout")).await;
                    return;
                }
            };
            let Some(data) = frame.data_ref() else { continue };
            let events = match split.push(data) {
                Ok(e) => e,
                Err(_) => {
                    let _ = sse.send(broken("an event larger than the limit")).await;
                    return;
                }
            };
            for data in events {
                if data.trim() == "[DONE]" {
                    // A stream that carried an error event is no answer: it gets no receipt.
                    if sse.send(openai::DONE_EVENT.to_string()).await && !failed {
                        let first = first_ms.unwrap_or_else(|| ticket.start.elapsed().as_millis() as u64);
                        record(&node, &ticket, ticket.leaf(sse.digest(), 0, first, usage.0, usage.1));
                    }
                    return;
                }
                let Ok(mut v) = serde_json::from_str::<Value>(&data) else {
                    let _ = sse.send(broken("an event that is not JSON")).await;
                    return;
                };
                if v.get("error").is_some() {
                    failed = true;
                    tracing::warn!(id = %ticket.id, error = %v["error"], "upstream stream: an error event");
                    let e = ApiError::engine(StatusCode::BAD_GATEWAY, "the upstream engine failed on this request");
                    if !sse.send(format!("data: {}\n\n", e.body())).await {
                        return;
                    }
                    continue;
                }
                if let Some(u) = upstream::rewrite(&mut v, &ticket.id, &node.model_id) {
                    usage = u;
                }
                if first_ms.is_none() && v.pointer("/choices/0/delta").is_some_and(has_text) {
                    first_ms = Some(ticket.start.elapsed().as_millis() as u64);
                }
                if !sse.send(format!("data: {v}\n\n")).await {
                    return;
                }
            }
        }
    });
    Ok(with_headers(Response::new(body), &id, "text/event-stream"))
}

fn has_text(delta: &Value) -> bool {
    ["content", "reasoning_content"].iter().any(|k| delta.get(k).and_then(Value::as_str).is_some_and(|s| !s.is_empty()))
}
