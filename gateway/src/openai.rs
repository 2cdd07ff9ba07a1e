//! The OpenAI chat-completions wire format, as far as the node speaks it: the request (parsed
//! with bounds), the response and its stream chunks, and errors in OpenAI's shape.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};

/// Bounds on a request.
pub const MAX_BODY_BYTES: usize = 1 << 20;
pub const MAX_MESSAGES: usize = 256;
pub const MAX_CONTENT_BYTES: usize = 256 * 1024;

/// A chat completion request: the fields the node reads (any other field is passed to an
/// upstream engine as sent, and ignored by the built-in one).
#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    #[serde(default)]
    pub model: Option<String>,
    pub messages: Vec<Message>,
    #[serde(default)]
    pub stream: bool,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub max_tokens: Option<u64>,
    #[serde(default)]
    pub max_completion_tokens: Option<u64>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default)]
    pub n: Option<u64>,
}

#[derive(Debug, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Debug, Deserialize)]
pub struct Message {
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
}

/// A message's content: a string, or parts of which only text is read.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize)]
pub struct Part {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: Option<String>,
}

impl ChatRequest {
    /// Parses and checks a request body; the error is the message for a 400.
    pub fn parse(body: &[u8]) -> Result<ChatRequest, ApiError> {
        let req: ChatRequest = serde_json::from_slice(body)
            .map_err(|e| ApiError::invalid(format!("the request body is not a chat completion request: {e}"), None))?;
        if req.messages.is_empty() {
            return Err(ApiError::invalid("messages must not be empty", Some("messages")));
        }
        if req.messages.len() > MAX_MESSAGES {
            return Err(ApiError::invalid(format!("at most {MAX_MESSAGES} messages"), Some("messages")));
        }
        let mut total = 0usize;
        for m in &req.messages {
            if !matches!(m.role.as_str(), "system" | "developer" | "user" | "assistant" | "tool") {
                return Err(ApiError::invalid(format!("unknown message role {:?}", m.role), Some("messages")));
            }
            total += m.text()?.len();
        }
        if total > MAX_CONTENT_BYTES {
            return Err(ApiError::invalid(
                format!("the messages hold {total} bytes of text; at most {MAX_CONTENT_BYTES}"),
                Some("messages"),
            ));
        }
        if req.n.is_some_and(|n| n != 1) {
            return Err(ApiError::invalid("only n = 1 is served", Some("n")));
        }
        if let Some(t) = req.temperature {
            if !(0.0..=2.0).contains(&t) {
                return Err(ApiError::invalid("temperature must be between 0 and 2", Some("temperature")));
            }
        }
        if let Some(p) = req.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(ApiError::invalid("top_p must be in (0, 1]", Some("top_p")));
            }
        }
        if req.max_tokens() == Some(0) {
            return Err(ApiError::invalid("max_tokens must be at least 1", Some("max_tokens")));
        }
        Ok(req)
    }

    pub fn max_tokens(&self) -> Option<u64> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    pub fn include_usage(&self) -> bool {
        self.stream_options.as_ref().is_some_and(|o| o.include_usage)
    }
}

impl Message {
    /// The message's text (parts other than text are refused).
    pub fn text(&self) -> Result<String, ApiError> {
        match &self.content {
            None => Ok(String::new()),
            Some(Content::Text(t)) => Ok(t.clone()),
            Some(Content::Parts(parts)) => {
                let mut out = String::new();
                for p in parts {
                    if p.kind != "text" {
                        return Err(ApiError::invalid(
                            format!("content part type {:?} is not served (text only)", p.kind),
                            Some("messages"),
                        ));
                    }
                    out.push_str(p.text.as_deref().unwrap_or_default());
                }
                Ok(out)
            }
        }
    }
}

/// An error in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub code: &'static str,
    pub message: String,
    pub param: Option<&'static str>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn invalid(message: impl Into<String>, param: Option<&'static str>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            code: "invalid_request",
            message: message.into(),
            param,
            retry_after: None,
        }
    }

    /// Nothing qualifies (the gate), or provenance cannot be recorded: 503, retry later.
    pub fn unavailable(code: &'static str, message: impl Into<String>, retry_after: u64) -> ApiError {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            kind: "service_unavailable",
            code,
            message: message.into(),
            param: None,
            retry_after: Some(retry_after),
        }
    }

    /// The queue is full: 429, retry shortly.
    pub fn busy(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            kind: "rate_limit_error",
            code: "queue_full",
            message: message.into(),
            param: None,
            retry_after: Some(1),
        }
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            kind: "invalid_request_error",
            code: "not_found",
            message: message.into(),
            param: None,
            retry_after: None,
        }
    }

    pub fn unauthorized() -> ApiError {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            kind: "invalid_request_error",
            code: "invalid_api_key",
            message: "a valid API key is required (Authorization: Bearer …)".into(),
            param: None,
            retry_after: None,
        }
    }

    /// The engine failed: 500 (or 502 for an upstream engine), without internals.
    pub fn engine(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            kind: "server_error",
            code: "engine_error",
            message: message.into(),
            param: None,
            retry_after: None,
        }
    }

    pub fn body(&self) -> Value {
        json!({ "error": { "message": self.message, "type": self.kind, "param": self.param, "code": self.code } })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body())).into_response();
        if let Some(s) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                r.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
            }
        }
        r
    }
}

/// `finish_reason` for how generation stopped.
pub fn finish_reason(stop: chipledger_inference::runner::Stop) -> &'static str {
    use chipledger_inference::runner::Stop;
    match stop {
        Stop::EndOfSequence | Stop::Cancelled => "stop",
        Stop::MaxTokens | Stop::ContextFull => "length",
    }
}

/// A complete (non-streamed) response.
#[derive(Debug)]
pub struct Completion<'a> {
    pub id: &'a str,
    pub created: i64,
    pub model: &'a str,
    pub answer: &'a str,
    pub thinking: &'a str,
    pub finish_reason: &'a str,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl Completion<'_> {
    pub fn to_json(&self) -> Value {
        let mut message = json!({ "role": "assistant", "content": self.answer });
        if !self.thinking.is_empty() {
            message["reasoning_content"] = json!(self.thinking);
        }
        json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": self.id,
            "choices": [{ "index": 0, "message": message, "logprobs": null, "finish_reason": self.finish_reason }],
            "usage": usage(self.prompt_tokens, self.completion_tokens),
        })
    }
}

pub fn usage(prompt: u64, completion: u64) -> Value {
    json!({ "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion })
}

/// One streamed chunk, as an SSE event (`data: {…}\n\n`).
pub fn chunk_event(
    id: &str,
    created: i64,
    model: &str,
    delta: Value,
    finish: Option<&str>,
    usage: Option<Value>,
) -> String {
    let choices = if delta.is_null() {
        json!([])
    } else {
        json!([{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }])
    };
    let mut c = json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": id,
        "choices": choices,
    });
    if let Some(u) = usage {
        c["usage"] = u;
    }
    format!("data: {c}\n\n")
}

pub const DONE_EVENT: &str = "data: [DONE]\n\n";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn requests_outside_the_bounds_get_an_invalid_request_error_naming_the_field() {
        let err = |body: &str| ChatRequest::parse(body.as_bytes()).unwrap_err();
        assert_eq!(err("{").code, "invalid_request");
        assert_eq!(err(r#"{"messages":[]}"#).param, Some("messages"));
        assert_eq!(err(r#"{"messages":[{"role":"wizard","content":"x"}]}"#).param, Some("messages"));
        assert_eq!(err(r#"{"messages":[{"role":"user","content":"x"}],"n":2}"#).param, Some("n"));
        assert_eq!(err(r#"{"messages":[{"role":"user","content":"x"}],"temperature":3}"#).param, Some("temperature"));
        assert_eq!(err(r#"{"messages":[{"role":"user","content":"x"}],"max_tokens":0}"#).param, Some("max_tokens"));
        let image = r#"{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}"#;
        assert!(err(image).message.contains("image_url"));
        let big = format!(r#"{{"messages":[{{"role":"user","content":"{}"}}]}}"#, "a".repeat(MAX_CONTENT_BYTES + 1));
        assert!(err(&big).message.contains("bytes of text"));
        let ok = ChatRequest::parse(
            br#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"stream":true,"stream_options":{"include_usage":true},"max_completion_tokens":5,"unknown":1}"#,
        )
        .unwrap();
        assert!(ok.stream && ok.include_usage());
        assert_eq!(ok.max_tokens(), Some(5));
        assert_eq!(ok.messages[0].text().unwrap(), "hi");
    }
}
