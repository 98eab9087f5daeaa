//! The Anthropic Messages and Gemini generateContent shapes (JSON and SSE),
//! and tool calls in all three APIs.
//!
//! Each request is read into a [`Turn`] by a parser of its own shape (kept
//! independent of the router's translations, so tests of those
//! translations test something), answered by the same deterministic words
//! as OpenAI requests, and rendered in the request's shape:
//!
//! - a request that declares tools and ends with a user turn is answered
//!   with a call of its first tool (`{"city": "Paris"}` when that tool has a
//!   `city` parameter, `{}` otherwise);
//! - a request ending with a tool result is answered with text naming it;
//! - a Gemini model whose name contains `blocked` answers with a blocked
//!   prompt (`promptFeedback.blockReason: SAFETY`, no candidates).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::completion::ChatRequest;
use crate::server::{Shared, cut_body};
use crate::{Failure, RecordedRequest};

/// What the mock needs to know about a request, whatever its shape.
#[derive(Debug, Default)]
pub(crate) struct Turn {
    /// Tool names, each with whether its parameters have a `city`.
    pub tools: Vec<(String, bool)>,
    /// The text of the tool result that ends the conversation, if it does.
    pub tool_result: Option<String>,
    /// The last message is the user's (or a tool result), not the assistant's.
    pub ends_with_user: bool,
}

/// What the mock answers.
pub(crate) enum Answer {
    Text(Vec<String>),
    Call { id: String, name: String, args: Value },
}

impl Turn {
    pub fn answer(&self, shared: &Shared, request: &ChatRequest) -> Answer {
        if let Some(result) = &self.tool_result {
            let short: String = result.chars().take(80).collect();
            let prefix = shared.label().map_or_else(String::new, |label| format!("[{label}] "));
            let text = format!("{prefix}tool result received: {short}");
            return Answer::Text(text.split_whitespace().map(str::to_owned).collect());
        }
        match self.tools.first() {
            Some((name, has_city)) if self.ends_with_user => Answer::Call {
                id: shared.next_id(),
                name: name.clone(),
                args: if *has_city { json!({"city": "Paris"}) } else { json!({}) },
            },
            _ => Answer::Text(request.completion_words(shared.label(), shared.completion_words())),
        }
    }
}

/// Text with words rejoined as the non-streaming content has them.
fn joined(words: &[String]) -> String {
    words.join(" ")
}

/// Each word with its separating space, as streamed deltas.
fn deltas(words: &[String]) -> Vec<String> {
    words
        .iter()
        .enumerate()
        .map(|(i, word)| if i + 1 < words.len() { format!("{word} ") } else { word.clone() })
        .collect()
}

fn words_of(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// Concatenated text of a string or an array of `text` blocks/parts.
fn text_of(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|item| item.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

fn has_city(schema: Option<&Value>) -> bool {
    schema.and_then(|schema| schema.pointer("/properties/city")).is_some()
}

// ---------------------------------------------------------------------------
// OpenAI tool calls.
// ---------------------------------------------------------------------------

/// The tools and the last turn of an OpenAI chat request.
pub(crate) fn openai_turn(body: &Value) -> Turn {
    let tools = body
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|tool| {
            let function = tool.get("function")?;
            Some((function.get("name")?.as_str()?.to_owned(), has_city(function.get("parameters"))))
        })
        .collect();
    let last = body.get("messages").and_then(Value::as_array).and_then(|m| m.last());
    let role = last.and_then(|m| m.get("role")).and_then(Value::as_str);
    Turn {
        tools,
        tool_result: (role == Some("tool")).then(|| text_of(last.and_then(|m| m.get("content")))),
        ends_with_user: matches!(role, Some("user" | "tool")),
    }
}

/// An OpenAI answer carrying a tool call, JSON or as SSE chunks.
pub(crate) fn openai_call_json(base: Value, id: &str, name: &str, args: &Value, usage: Value) -> Value {
    let mut value = base;
    value["choices"] = json!([{
        "index": 0,
        "message": {"role": "assistant", "content": null, "tool_calls": [
            {"id": id, "type": "function", "function": {"name": name, "arguments": args.to_string()}}
        ]},
        "finish_reason": "tool_calls",
    }]);
    value["usage"] = usage;
    value
}

/// The argument string split in two, as real streams fragment it.
pub(crate) fn fragments(args: &Value) -> [String; 2] {
    let text = args.to_string();
    let middle = text.char_indices().nth(text.chars().count() / 2).map_or(text.len(), |(i, _)| i);
    [text[..middle].to_owned(), text[middle..].to_owned()]
}

// ---------------------------------------------------------------------------
// Shared plumbing: errors, SSE bodies.
// ---------------------------------------------------------------------------

fn anthropic_error(status: StatusCode, message: &str) -> Response {
    let kind = match status.as_u16() {
        401 => "authentication_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    };
    (status, Json(json!({"type": "error", "error": {"type": kind, "message": message}}))).into_response()
}

fn gemini_error(status: StatusCode, message: &str) -> Response {
    let kind = match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        401 | 403 => "UNAUTHENTICATED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        _ => "INTERNAL",
    };
    (status, Json(json!({"error": {"code": status.as_u16(), "message": message, "status": kind}}))).into_response()
}

/// Frames sent by a producer task; an `Err` item cuts the connection.
type Frames = mpsc::Sender<io::Result<Bytes>>;

/// Sends one SSE frame; false when the client is gone.
async fn send(tx: &Frames, event: Option<&str>, data: &Value) -> bool {
    let text = match event {
        Some(event) => format!("event: {event}\ndata: {data}\n\n"),
        None => format!("data: {data}\n\n"),
    };
    tx.send(Ok(Bytes::from(text))).await.is_ok()
}

async fn cut(tx: &Frames) {
    let _ = tx.send(Err(io::Error::other("mock: stream cut"))).await;
}

/// An SSE response fed by `produce`, run as its own task.
fn sse<F, Fut>(produce: F) -> Response
where
    F: FnOnce(Frames) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(produce(tx));
    let body = cut_body(futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }));
    ([(CONTENT_TYPE, "text/event-stream"), (CACHE_CONTROL, "no-cache")], body).into_response()
}

/// Pause between streamed words (none when unpaced).
fn pace(shared: &Shared) -> Option<Duration> {
    (shared.tokens_per_sec() > 0.0).then(|| Duration::from_secs_f64(1.0 / shared.tokens_per_sec()))
}

/// The failure to inject, recorded with the request; `Some(response)` when
/// the failure answers at once.
async fn injected(
    shared: &Shared,
    recorded: RecordedRequest,
    error: fn(StatusCode, &str) -> Response,
) -> (Option<Response>, Option<usize>) {
    let model = recorded.model.clone();
    match shared.record(recorded) {
        Some(Failure::Status(status)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (Some(error(status, &format!("mock: injected {status} for {model}"))), None)
        }
        Some(Failure::Hang) => {
            shared.shutdown.cancelled().await;
            (Some(error(StatusCode::SERVICE_UNAVAILABLE, "mock: server shutting down")), None)
        }
        Some(Failure::DropAfter(chunks)) => (None, Some(chunks)),
        None => (None, None),
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|value| value.to_str().ok()).map(str::to_owned)
}

// ---------------------------------------------------------------------------
// Anthropic Messages.
// ---------------------------------------------------------------------------

fn anthropic_turn(body: &Value) -> (u64, String, Turn) {
    let messages = body.get("messages").and_then(Value::as_array).cloned().unwrap_or_default();
    let system = text_of(body.get("system"));
    let mut prompt = words_of(&system) + u64::from(!system.is_empty());
    let mut last_user_text = String::new();
    for message in &messages {
        let content = message.get("content");
        prompt += words_of(&text_of(content)) + 1;
        if message.get("role").and_then(Value::as_str) == Some("user") {
            let text = text_of(content);
            if !text.is_empty() {
                last_user_text = text;
            }
        }
    }
    let last = messages.last();
    let tool_result = last
        .and_then(|m| m.get("content"))
        .and_then(Value::as_array)
        .and_then(|blocks| blocks.iter().find(|b| b.get("type").and_then(Value::as_str) == Some("tool_result")))
        .map(|block| text_of(block.get("content")));
    let tools = body
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|tool| Some((tool.get("name")?.as_str()?.to_owned(), has_city(tool.get("input_schema")))))
        .collect();
    let turn = Turn {
        tools,
        tool_result,
        ends_with_user: last.and_then(|m| m.get("role")).and_then(Value::as_str) == Some("user"),
    };
    (prompt, last_user_text, turn)
}

pub(crate) async fn anthropic_messages(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return anthropic_error(StatusCode::BAD_REQUEST, "body is not JSON");
    };
    let Some(model) = body.get("model").and_then(Value::as_str).map(str::to_owned) else {
        return anthropic_error(StatusCode::BAD_REQUEST, "model: Field required");
    };
    let Some(max_tokens) = body.get("max_tokens").and_then(Value::as_u64) else {
        return anthropic_error(StatusCode::BAD_REQUEST, "max_tokens: Field required");
    };
    if body.get("messages").and_then(Value::as_array).is_none_or(Vec::is_empty) {
        return anthropic_error(StatusCode::BAD_REQUEST, "messages: at least one message is required");
    }
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let (prompt_tokens, last_user_text, turn) = anthropic_turn(&body);
    let request = ChatRequest {
        model: model.clone(),
        stream,
        include_usage: true,
        max_words: Some(usize::try_from(max_tokens).unwrap_or(usize::MAX).min(4096)),
        prompt_tokens,
        last_user_text,
    };
    let recorded = RecordedRequest {
        model: model.clone(),
        body: body.clone(),
        authorization: header(&headers, "x-api-key"),
        stream,
    };
    let (failed, drop_after) = injected(&shared, recorded, anthropic_error).await;
    if let Some(response) = failed {
        return response;
    }
    let answer = turn.answer(&shared, &request);
    let id = format!("msg_mock_{}", shared.next_id());
    if !stream {
        shared.pause(shared.ttft()).await;
        if drop_after.is_some() {
            return anthropic_error(StatusCode::INTERNAL_SERVER_ERROR, "mock: injected drop");
        }
        let (content, stop, output) = match &answer {
            Answer::Text(words) => (json!([{"type": "text", "text": joined(words)}]), "end_turn", words.len() as u64),
            Answer::Call { id, name, args } => (json!([{"type": "tool_use", "id": id, "name": name, "input": args}]), "tool_use", 8),
        };
        return Json(json!({
            "id": id, "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": stop, "stop_sequence": null,
            "usage": {"input_tokens": prompt_tokens, "output_tokens": output},
        }))
        .into_response();
    }
    let shared = Arc::clone(&shared);
    sse(move |tx| async move {
        shared.pause(shared.ttft()).await;
        let start = json!({"type": "message_start", "message": {
            "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": prompt_tokens, "output_tokens": 1}}});
        if !send(&tx, Some("message_start"), &start).await {
            return;
        }
        let (stop, output) = match &answer {
            Answer::Text(words) => {
                let block = json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}});
                if !send(&tx, Some("content_block_start"), &block).await || !send(&tx, Some("ping"), &json!({"type": "ping"})).await {
                    return;
                }
                for (i, delta) in deltas(words).into_iter().enumerate() {
                    if drop_after.is_some_and(|limit| i >= limit) {
                        return cut(&tx).await;
                    }
                    if i > 0 && let Some(pace) = pace(&shared) {
                        shared.pause(pace).await;
                    }
                    let event = json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": delta}});
                    if !send(&tx, Some("content_block_delta"), &event).await {
                        return;
                    }
                }
                ("end_turn", words.len() as u64)
            }
            Answer::Call { id, name, args } => {
                let block = json!({"type": "content_block_start", "index": 0,
                    "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}});
                if !send(&tx, Some("content_block_start"), &block).await {
                    return;
                }
                for partial in fragments(args) {
                    let event = json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": partial}});
                    if !send(&tx, Some("content_block_delta"), &event).await {
                        return;
                    }
                }
                ("tool_use", 8)
            }
        };
        let events = [
            ("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
            ("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": output}})),
            ("message_stop", json!({"type": "message_stop"})),
        ];
        for (name, event) in events {
            if !send(&tx, Some(name), &event).await {
                return;
            }
        }
    })
}

// ---------------------------------------------------------------------------
// Gemini generateContent.
// ---------------------------------------------------------------------------

fn gemini_turn(body: &Value) -> (u64, String, Turn) {
    let contents = body.get("contents").and_then(Value::as_array).cloned().unwrap_or_default();
    let system = text_of(body.pointer("/systemInstruction/parts"));
    let mut prompt = words_of(&system) + u64::from(!system.is_empty());
    let mut last_user_text = String::new();
    for content in &contents {
        let text = text_of(content.get("parts"));
        prompt += words_of(&text) + 1;
        if content.get("role").and_then(Value::as_str) != Some("model") && !text.is_empty() {
            last_user_text = text;
        }
    }
    let last = contents.last();
    let tool_result = last
        .and_then(|c| c.get("parts"))
        .and_then(Value::as_array)
        .and_then(|parts| parts.iter().find_map(|part| part.get("functionResponse")))
        .map(|response| {
            let result = response.get("response").cloned().unwrap_or(Value::Null);
            result.get("content").and_then(Value::as_str).map_or_else(|| result.to_string(), str::to_owned)
        });
    let tools = body
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|tool| tool.get("functionDeclarations").and_then(Value::as_array))
        .flatten()
        .filter_map(|f| Some((f.get("name")?.as_str()?.to_owned(), has_city(f.get("parameters")))))
        .collect();
    let turn = Turn {
        tools,
        tool_result,
        ends_with_user: last.and_then(|c| c.get("role")).and_then(Value::as_str) != Some("model"),
    };
    (prompt, last_user_text, turn)
}

fn gemini_usage(prompt: u64, output: u64) -> Value {
    json!({"promptTokenCount": prompt, "candidatesTokenCount": output, "totalTokenCount": prompt + output})
}

fn gemini_chunk(model: &str, parts: Value, finish: Option<&str>, usage: Option<Value>) -> Value {
    let mut candidate = json!({"content": {"role": "model", "parts": parts}, "index": 0});
    if let Some(finish) = finish {
        candidate["finishReason"] = json!(finish);
    }
    let mut chunk = json!({"candidates": [candidate], "modelVersion": model});
    if let Some(usage) = usage {
        chunk["usageMetadata"] = usage;
    }
    chunk
}

#[derive(serde::Deserialize)]
pub(crate) struct GeminiQuery {
    alt: Option<String>,
}

/// `POST /v1beta/models/{model}:generateContent` (and `/v1/...`), or
/// `:streamGenerateContent?alt=sse`.
pub(crate) async fn gemini(
    State(shared): State<Arc<Shared>>,
    Path(target): Path<String>,
    Query(query): Query<GeminiQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some((model, method)) = target.rsplit_once(':').map(|(m, f)| (m.to_owned(), f.to_owned())) else {
        return gemini_error(StatusCode::NOT_FOUND, "expected models/{model}:generateContent");
    };
    let stream = match method.as_str() {
        "generateContent" => false,
        "streamGenerateContent" if query.alt.as_deref() == Some("sse") => true,
        "streamGenerateContent" => return gemini_error(StatusCode::BAD_REQUEST, "the mock streams with alt=sse only"),
        _ => return gemini_error(StatusCode::NOT_FOUND, &format!("unknown method {method}")),
    };
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return gemini_error(StatusCode::BAD_REQUEST, "body is not JSON");
    };
    if body.get("contents").and_then(Value::as_array).is_none_or(Vec::is_empty) {
        return gemini_error(StatusCode::BAD_REQUEST, "contents is not specified");
    }
    let (prompt_tokens, last_user_text, turn) = gemini_turn(&body);
    let max_words = body.pointer("/generationConfig/maxOutputTokens").and_then(Value::as_u64);
    let request = ChatRequest {
        model: model.clone(),
        stream,
        include_usage: true,
        max_words: max_words.map(|n| usize::try_from(n).unwrap_or(usize::MAX).min(4096)),
        prompt_tokens,
        last_user_text,
    };
    let recorded = RecordedRequest {
        model: model.clone(),
        body: body.clone(),
        authorization: header(&headers, "x-goog-api-key"),
        stream,
    };
    let (failed, drop_after) = injected(&shared, recorded, gemini_error).await;
    if let Some(response) = failed {
        return response;
    }
    let blocked = model.contains("blocked");
    let answer = turn.answer(&shared, &request);
    if !stream {
        shared.pause(shared.ttft()).await;
        if blocked {
            return Json(json!({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": gemini_usage(prompt_tokens, 0), "modelVersion": model})).into_response();
        }
        let (parts, output) = match &answer {
            Answer::Text(words) => (json!([{"text": joined(words)}]), words.len() as u64),
            Answer::Call { name, args, .. } => (json!([{"functionCall": {"name": name, "args": args}}]), 8),
        };
        return Json(gemini_chunk(&model, parts, Some("STOP"), Some(gemini_usage(prompt_tokens, output)))).into_response();
    }
    let shared = Arc::clone(&shared);
    sse(move |tx| async move {
        shared.pause(shared.ttft()).await;
        if blocked {
            let chunk = json!({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": gemini_usage(prompt_tokens, 0), "modelVersion": model});
            send(&tx, None, &chunk).await;
            return;
        }
        match &answer {
            Answer::Text(words) => {
                let pieces = deltas(words);
                let last = pieces.len().saturating_sub(1);
                for (i, piece) in pieces.into_iter().enumerate() {
                    if drop_after.is_some_and(|limit| i >= limit) {
                        return cut(&tx).await;
                    }
                    if i > 0 && let Some(pace) = pace(&shared) {
                        shared.pause(pace).await;
                    }
                    let end = i == last;
                    let chunk = gemini_chunk(
                        &model,
                        json!([{"text": piece}]),
                        end.then_some("STOP"),
                        end.then(|| gemini_usage(prompt_tokens, words.len() as u64)),
                    );
                    if !send(&tx, None, &chunk).await {
                        return;
                    }
                }
            }
            Answer::Call { name, args, .. } => {
                let chunk = gemini_chunk(
                    &model,
                    json!([{"functionCall": {"name": name, "args": args}}]),
                    Some("STOP"),
                    Some(gemini_usage(prompt_tokens, 8)),
                );
                send(&tx, None, &chunk).await;
            }
        }
    })
}
