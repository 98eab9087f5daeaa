//! Wire protocols: translations between OpenAI chat completions — the shape
//! every stage of Switchyard speaks inside — and the other APIs at its two
//! edges.
//!
//! Beside the request path, used at both ends of it:
//! - dispatch, to talk to upstreams of kind `anthropic` (Messages API) and
//!   `gemini` (generateContent), requests out and responses (JSON and SSE)
//!   back;
//! - ingress, to accept Anthropic-shaped `POST /v1/messages` and answer in
//!   that shape whatever served it.
//!
//! Everything here is a pure function or a small state machine over
//! `serde_json::Value`s: no I/O, tested on literal documents. Streams are
//! translated event by event; each state machine is fed upstream events and
//! returns the events to emit, so nothing is buffered beyond one event.
//!
//! # Layout
//! - [`anthropic`]: OpenAI ⇄ Anthropic Messages, both directions.
//! - [`gemini`]: OpenAI → Gemini requests, Gemini → OpenAI responses.

pub mod anthropic;
pub mod gemini;

use serde_json::Value;

/// Why a request could not be translated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A field is missing or has the wrong shape; `param` names it.
    #[error("`{param}` {message}")]
    Invalid { param: String, message: String },
}

impl ProtocolError {
    pub(crate) fn invalid(param: impl Into<String>, message: impl Into<String>) -> ProtocolError {
        ProtocolError::Invalid {
            param: param.into(),
            message: message.into(),
        }
    }

    /// The request parameter the error is about.
    pub fn param(&self) -> &str {
        match self {
            ProtocolError::Invalid { param, .. } => param,
        }
    }
}

/// The text of an OpenAI `content` (a string, or parts whose `text` parts
/// are joined), or of an Anthropic one (a string or `text` blocks).
pub fn text_of(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// OpenAI `usage` from input and output token counts. The counts come
/// from upstreams: a total past `u64::MAX` saturates instead of
/// overflowing (a panic with overflow checks on; found by fuzzing).
pub(crate) fn openai_usage(input: u64, output: u64) -> Value {
    serde_json::json!({
        "prompt_tokens": input,
        "completion_tokens": output,
        "total_tokens": input.saturating_add(output),
    })
}

/// An OpenAI streaming chunk.
pub(crate) fn openai_chunk(id: &str, model: &str, created: u64, delta: Value, finish_reason: Option<&str>) -> Value {
    serde_json::json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    })
}

/// Seconds since the Unix epoch, for `created`.
pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}
