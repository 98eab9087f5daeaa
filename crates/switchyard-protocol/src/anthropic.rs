//! OpenAI chat completions ⇄ Anthropic Messages API, both directions.
//!
//! - Upstream side (dispatch to a `kind: anthropic` provider):
//!   [`request_from_openai`], [`response_to_openai`], [`StreamToOpenAi`].
//! - Client side (ingress `POST /v1/messages`): [`request_to_openai`],
//!   [`response_from_openai`], [`StreamFromOpenAi`].
//!
//! What maps to what: `system`/`developer` messages ⇄ `system`; `tool_calls`
//! ⇄ `tool_use` blocks (arguments as a JSON string ⇄ `input` as an object);
//! `tool` messages ⇄ `tool_result` blocks in a user turn; `image_url` parts
//! ⇄ `image` blocks (data URLs as base64 sources); `stop` ⇄
//! `stop_sequences`; `tool_choice` auto/required/none/a function ⇄
//! auto/any/none/tool; stop reasons `end_turn`, `stop_sequence` ⇄ `stop`,
//! `max_tokens` ⇄ `length`, `tool_use` ⇄ `tool_calls`, `refusal` ⇄
//! `content_filter`; usage input/output tokens (cache reads and writes
//! counted as input) ⇄ prompt/completion tokens.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use crate::{ProtocolError, now_secs, openai_chunk, openai_usage, text_of};

/// `max_tokens` is required by the Messages API; OpenAI clients often omit
/// it. 4096 is within every current Claude model's output limit.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;
/// The API version header value sent upstream.
pub const API_VERSION: &str = "2023-06-01";

fn finish_from_stop(stop: &str) -> &'static str {
    match stop {
        "max_tokens" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    }
}

fn stop_from_finish(finish: &str) -> &'static str {
    match finish {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

/// An OpenAI `image_url` part as an Anthropic `image` block.
fn image_block(url: &str) -> Value {
    if let Some(rest) = url.strip_prefix("data:")
        && let Some((media_type, data)) = rest.split_once(";base64,")
    {
        return json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}});
    }
    json!({"type": "image", "source": {"type": "url", "url": url}})
}

/// OpenAI `content` (string or parts) as Anthropic blocks.
fn blocks_from_openai(content: &Value) -> Vec<Value> {
    match content {
        Value::String(text) if !text.is_empty() => vec![json!({"type": "text", "text": text})],
        Value::Array(parts) => parts
            .iter()
            .filter_map(|part| match part.get("type").and_then(Value::as_str) {
                Some("text") => Some(json!({"type": "text", "text": part.get("text").cloned().unwrap_or(Value::Null)})),
                Some("image_url") => part
                    .pointer("/image_url/url")
                    .and_then(Value::as_str)
                    .map(image_block),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Appends `blocks` as a `role` turn, merged into the previous turn when it
/// has the same role (the Messages API wants user and assistant to alternate).
fn push_turn(messages: &mut Vec<Value>, role: &str, blocks: Vec<Value>) {
    if blocks.is_empty() {
        return;
    }
    if let Some(last) = messages.last_mut()
        && last.get("role").and_then(Value::as_str) == Some(role)
        && let Some(content) = last.get_mut("content").and_then(Value::as_array_mut)
    {
        content.extend(blocks);
        return;
    }
    messages.push(json!({"role": role, "content": blocks}));
}

fn copy(from: &Value, to: &mut Map<String, Value>, key: &str, as_key: &str) {
    if let Some(value) = from.get(key).filter(|value| !value.is_null()) {
        to.insert(as_key.to_owned(), value.clone());
    }
}

/// An OpenAI chat request as a Messages API request for `upstream_model`.
pub fn request_from_openai(body: &Value, upstream_model: &str) -> Value {
    let mut system = Vec::new();
    let mut messages = Vec::new();
    for message in body.get("messages").and_then(Value::as_array).into_iter().flatten() {
        let content = message.get("content").unwrap_or(&Value::Null);
        match message.get("role").and_then(Value::as_str).unwrap_or("user") {
            "system" | "developer" => system.push(text_of(content)),
            "assistant" => {
                let mut blocks = blocks_from_openai(content);
                blocks.extend(tool_use_blocks(message));
                push_turn(&mut messages, "assistant", blocks);
            }
            "tool" | "function" => {
                let block = json!({
                    "type": "tool_result",
                    "tool_use_id": message.get("tool_call_id").cloned().unwrap_or(Value::Null),
                    "content": text_of(content),
                });
                push_turn(&mut messages, "user", vec![block]);
            }
            _ => push_turn(&mut messages, "user", blocks_from_openai(content)),
        }
    }
    let mut out = Map::new();
    out.insert("model".to_owned(), json!(upstream_model));
    out.insert("messages".to_owned(), Value::Array(messages));
    let max_tokens = body
        .get("max_completion_tokens")
        .or_else(|| body.get("max_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_MAX_TOKENS);
    out.insert("max_tokens".to_owned(), json!(max_tokens));
    if !system.is_empty() {
        out.insert("system".to_owned(), json!(system.join("\n\n")));
    }
    copy(body, &mut out, "temperature", "temperature");
    copy(body, &mut out, "top_p", "top_p");
    copy(body, &mut out, "stream", "stream");
    match body.get("stop") {
        Some(Value::String(stop)) => {
            out.insert("stop_sequences".to_owned(), json!([stop]));
        }
        Some(Value::Array(stops)) => {
            out.insert("stop_sequences".to_owned(), Value::Array(stops.clone()));
        }
        _ => {}
    }
    if let Some(tools) = body.get("tools").and_then(Value::as_array) {
        let tools: Vec<Value> = tools
            .iter()
            .filter_map(|tool| tool.get("function"))
            .map(|function| {
                let mut tool = Map::new();
                copy(function, &mut tool, "name", "name");
                copy(function, &mut tool, "description", "description");
                let schema = function.get("parameters").cloned().unwrap_or_else(|| json!({"type": "object"}));
                tool.insert("input_schema".to_owned(), schema);
                Value::Object(tool)
            })
            .collect();
        out.insert("tools".to_owned(), Value::Array(tools));
    }
    let mut choice = match body.get("tool_choice") {
        Some(Value::String(kind)) => match kind.as_str() {
            "none" => Some(json!({"type": "none"})),
            "required" => Some(json!({"type": "any"})),
            _ => Some(json!({"type": "auto"})),
        },
        Some(choice) => choice
            .pointer("/function/name")
            .map(|name| json!({"type": "tool", "name": name})),
        None => None,
    };
    if body.get("parallel_tool_calls") == Some(&Value::Bool(false)) && out.contains_key("tools") {
        let choice = choice.get_or_insert_with(|| json!({"type": "auto"}));
        if let Some(object) = choice.as_object_mut() {
            object.insert("disable_parallel_tool_use".to_owned(), Value::Bool(true));
        }
    }
    if let Some(choice) = choice {
        out.insert("tool_choice".to_owned(), choice);
    }
    if let Some(user) = body.get("user").and_then(Value::as_str) {
        out.insert("metadata".to_owned(), json!({"user_id": user}));
    }
    Value::Object(out)
}

/// Input tokens as OpenAI counts them: cache reads and writes included
/// (saturating: the counts are the upstream's, see [`openai_usage`]).
fn input_tokens(usage: &Value) -> u64 {
    ["input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"]
        .iter()
        .filter_map(|key| usage.get(key).and_then(Value::as_u64))
        .fold(0, u64::saturating_add)
}

/// Anthropic assistant content blocks as an OpenAI assistant message: the
/// text blocks joined, `tool_use` blocks as `tool_calls` (content `null`
/// when there is only a call, as OpenAI sends it).
fn assistant_from_blocks(blocks: &[Value]) -> Value {
    let of_type = |kind: &'static str| blocks.iter().filter(move |block| block.get("type").and_then(Value::as_str) == Some(kind));
    let text: String = of_type("text").filter_map(|block| block.get("text").and_then(Value::as_str)).collect();
    let calls: Vec<Value> = of_type("tool_use")
        .map(|block| {
            json!({
                "id": block.get("id").cloned().unwrap_or(Value::Null),
                "type": "function",
                "function": {
                    "name": block.get("name").cloned().unwrap_or(Value::Null),
                    "arguments": block.get("input").map_or_else(|| "{}".to_owned(), Value::to_string),
                },
            })
        })
        .collect();
    let mut message = json!({
        "role": "assistant",
        "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) },
    });
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    message
}

/// An OpenAI message's `tool_calls` as Anthropic `tool_use` blocks (the
/// arguments string parsed back into an `input` object).
fn tool_use_blocks(message: &Value) -> impl Iterator<Item = Value> + '_ {
    message.get("tool_calls").and_then(Value::as_array).into_iter().flatten().map(|call| {
        let arguments = call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("{}");
        json!({
            "type": "tool_use",
            "id": call.get("id").cloned().unwrap_or(Value::Null),
            "name": call.pointer("/function/name").cloned().unwrap_or(Value::Null),
            "input": serde_json::from_str::<Value>(arguments).unwrap_or_else(|_| json!({})),
        })
    })
}

/// A Messages API response as an OpenAI chat completion answered by `model`.
pub fn response_to_openai(body: &Value, model: &str) -> Value {
    let blocks = body.get("content").and_then(Value::as_array).cloned().unwrap_or_default();
    let message = assistant_from_blocks(&blocks);
    let stop = body.get("stop_reason").and_then(Value::as_str).unwrap_or("end_turn");
    let usage = body.get("usage").unwrap_or(&Value::Null);
    json!({
        "id": body.get("id").cloned().unwrap_or_else(|| json!("chatcmpl-anthropic")),
        "object": "chat.completion",
        "created": now_secs(),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_from_stop(stop)}],
        "usage": openai_usage(input_tokens(usage), usage.get("output_tokens").and_then(Value::as_u64).unwrap_or(0)),
    })
}

/// Translates a Messages API event stream into OpenAI chunks, event by
/// event. The last chunk before `[DONE]` carries only usage (as OpenAI
/// sends with `stream_options.include_usage`; dispatch drops it when the
/// client did not ask).
#[derive(Debug)]
pub struct StreamToOpenAi {
    id: String,
    model: String,
    created: u64,
    input_tokens: u64,
    output_tokens: u64,
    /// Anthropic content-block index → OpenAI tool-call index.
    tool_index: HashMap<u64, u64>,
    finish: Option<&'static str>,
    done: bool,
}

impl StreamToOpenAi {
    pub fn new(model: &str) -> StreamToOpenAi {
        StreamToOpenAi {
            id: "chatcmpl-anthropic".to_owned(),
            model: model.to_owned(),
            created: now_secs(),
            input_tokens: 0,
            output_tokens: 0,
            tool_index: HashMap::new(),
            finish: None,
            done: false,
        }
    }

    /// Whether `message_stop` has been seen (the stream is complete).
    pub fn is_done(&self) -> bool {
        self.done
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> String {
        openai_chunk(&self.id, &self.model, self.created, delta, finish).to_string()
    }

    /// One upstream event (`event:` name and `data:`) → the OpenAI chunks to
    /// send (`[DONE]` after `message_stop`). An `error` event becomes an
    /// OpenAI `{"error": ...}` payload.
    pub fn event(&mut self, name: &str, data: &str) -> Vec<String> {
        let Ok(value) = serde_json::from_str::<Value>(data) else {
            return Vec::new();
        };
        let kind = value.get("type").and_then(Value::as_str).unwrap_or(name);
        match kind {
            "message_start" => {
                if let Some(id) = value.pointer("/message/id").and_then(Value::as_str) {
                    id.clone_into(&mut self.id);
                }
                if let Some(usage) = value.pointer("/message/usage") {
                    self.input_tokens = input_tokens(usage);
                    self.output_tokens = usage.get("output_tokens").and_then(Value::as_u64).unwrap_or(0);
                }
                vec![self.chunk(json!({"role": "assistant", "content": ""}), None)]
            }
            "content_block_start" => {
                let block = value.get("content_block").unwrap_or(&Value::Null);
                match block.get("type").and_then(Value::as_str) {
                    Some("tool_use") => {
                        let next = self.tool_index.len() as u64;
                        let index = value.get("index").and_then(Value::as_u64).unwrap_or(next);
                        self.tool_index.insert(index, next);
                        vec![self.chunk(
                            json!({"tool_calls": [{
                                "index": next,
                                "id": block.get("id").cloned().unwrap_or(Value::Null),
                                "type": "function",
                                "function": {"name": block.get("name").cloned().unwrap_or(Value::Null), "arguments": ""},
                            }]}),
                            None,
                        )]
                    }
                    Some("text") => match block.get("text").and_then(Value::as_str) {
                        Some(text) if !text.is_empty() => vec![self.chunk(json!({"content": text}), None)],
                        _ => Vec::new(),
                    },
                    _ => Vec::new(),
                }
            }
            "content_block_delta" => {
                let delta = value.get("delta").unwrap_or(&Value::Null);
                match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => {
                        let text = delta.get("text").cloned().unwrap_or_else(|| json!(""));
                        vec![self.chunk(json!({"content": text}), None)]
                    }
                    Some("input_json_delta") => {
                        let block = value.get("index").and_then(Value::as_u64).unwrap_or(0);
                        let index = self.tool_index.get(&block).copied().unwrap_or(0);
                        let partial = delta.get("partial_json").cloned().unwrap_or_else(|| json!(""));
                        vec![self.chunk(json!({"tool_calls": [{"index": index, "function": {"arguments": partial}}]}), None)]
                    }
                    _ => Vec::new(),
                }
            }
            "message_delta" => {
                if let Some(output) = value.pointer("/usage/output_tokens").and_then(Value::as_u64) {
                    self.output_tokens = output;
                }
                match value.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    Some(stop) => {
                        let finish = finish_from_stop(stop);
                        self.finish = Some(finish);
                        vec![self.chunk(json!({}), Some(finish))]
                    }
                    None => Vec::new(),
                }
            }
            "message_stop" => {
                self.done = true;
                let mut out = Vec::new();
                if self.finish.is_none() {
                    out.push(self.chunk(json!({}), Some("stop")));
                }
                out.push(
                    json!({
                        "id": self.id,
                        "object": "chat.completion.chunk",
                        "created": self.created,
                        "model": self.model,
                        "choices": [],
                        "usage": openai_usage(self.input_tokens, self.output_tokens),
                    })
                    .to_string(),
                );
                out.push("[DONE]".to_owned());
                out
            }
            "error" => {
                let error = value.get("error").cloned().unwrap_or(value);
                vec![json!({"error": {
                    "message": error.get("message").cloned().unwrap_or_else(|| json!("upstream stream error")),
                    "type": error.get("type").cloned().unwrap_or_else(|| json!("api_error")),
                }})
                .to_string()]
            }
            _ => Vec::new(),
        }
    }
}

// ---------------------------------------------------------------------------
// Client side: `POST /v1/messages`.
// ---------------------------------------------------------------------------

/// An Anthropic image block as an OpenAI `image_url` part.
fn image_part(block: &Value) -> Option<Value> {
    let source = block.get("source")?;
    let url = match source.get("type").and_then(Value::as_str) {
        Some("base64") => format!(
            "data:{};base64,{}",
            source.get("media_type").and_then(Value::as_str).unwrap_or("image/png"),
            source.get("data").and_then(Value::as_str).unwrap_or("")
        ),
        Some("url") => source.get("url").and_then(Value::as_str)?.to_owned(),
        _ => return None,
    };
    Some(json!({"type": "image_url", "image_url": {"url": url}}))
}

/// A `/v1/messages` request as an OpenAI chat request (the router's shape).
pub fn request_to_openai(body: &Value) -> Result<Value, ProtocolError> {
    let object = body.as_object().ok_or_else(|| ProtocolError::invalid("body", "must be a JSON object"))?;
    let model = object
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| ProtocolError::invalid("model", "is required (a string)"))?;
    let max_tokens = object
        .get("max_tokens")
        .and_then(Value::as_u64)
        .ok_or_else(|| ProtocolError::invalid("max_tokens", "is required (a positive integer)"))?;
    let turns = object
        .get("messages")
        .and_then(Value::as_array)
        .filter(|messages| !messages.is_empty())
        .ok_or_else(|| ProtocolError::invalid("messages", "is required (a non-empty array)"))?;
    let mut messages = Vec::new();
    match object.get("system") {
        None | Some(Value::Null) => {}
        Some(system @ (Value::String(_) | Value::Array(_))) => {
            messages.push(json!({"role": "system", "content": text_of(system)}));
        }
        Some(_) => return Err(ProtocolError::invalid("system", "must be a string or an array of text blocks")),
    }
    for (i, turn) in turns.iter().enumerate() {
        let role = turn.get("role").and_then(Value::as_str);
        let content = turn.get("content").unwrap_or(&Value::Null);
        match (role, content) {
            (Some(role @ ("user" | "assistant")), Value::String(text)) => {
                messages.push(json!({"role": role, "content": text}));
            }
            (Some("user"), Value::Array(blocks)) => {
                let mut parts = Vec::new();
                for block in blocks {
                    match block.get("type").and_then(Value::as_str) {
                        Some("tool_result") => {
                            let result = block.get("content").map(text_of).unwrap_or_default();
                            let is_error = block.get("is_error").and_then(Value::as_bool).unwrap_or(false);
                            messages.push(json!({
                                "role": "tool",
                                "tool_call_id": block.get("tool_use_id").cloned().unwrap_or(Value::Null),
                                "content": if is_error { format!("[error] {result}") } else { result },
                            }));
                        }
                        Some("text") => parts.push(json!({"type": "text", "text": block.get("text").cloned().unwrap_or_else(|| json!(""))})),
                        Some("image") => parts.extend(image_part(block)),
                        _ => {}
                    }
                }
                if !parts.is_empty() {
                    // One text part reads as plain content (what classifiers see best).
                    let content = match parts.as_slice() {
                        [only] if only.get("type").and_then(Value::as_str) == Some("text") => only["text"].clone(),
                        _ => Value::Array(parts),
                    };
                    messages.push(json!({"role": "user", "content": content}));
                }
            }
            (Some("assistant"), Value::Array(blocks)) => messages.push(assistant_from_blocks(blocks)),
            (Some("user" | "assistant"), _) => {
                return Err(ProtocolError::invalid(format!("messages[{i}].content"), "must be a string or an array of content blocks"));
            }
            _ => return Err(ProtocolError::invalid(format!("messages[{i}].role"), "must be `user` or `assistant`")),
        }
    }
    let mut out = Map::new();
    out.insert("model".to_owned(), json!(model));
    out.insert("messages".to_owned(), Value::Array(messages));
    out.insert("max_tokens".to_owned(), json!(max_tokens));
    copy(body, &mut out, "temperature", "temperature");
    copy(body, &mut out, "top_p", "top_p");
    copy(body, &mut out, "stream", "stream");
    copy(body, &mut out, "stop_sequences", "stop");
    if let Some(user) = body.pointer("/metadata/user_id") {
        out.insert("user".to_owned(), user.clone());
    }
    if let Some(tools) = body.get("tools").and_then(Value::as_array) {
        let tools: Vec<Value> = tools
            .iter()
            .filter(|tool| tool.get("input_schema").is_some())
            .map(|tool| {
                let mut function = Map::new();
                copy(tool, &mut function, "name", "name");
                copy(tool, &mut function, "description", "description");
                copy(tool, &mut function, "input_schema", "parameters");
                json!({"type": "function", "function": function})
            })
            .collect();
        if !tools.is_empty() {
            out.insert("tools".to_owned(), Value::Array(tools));
        }
    }
    if let Some(choice) = body.get("tool_choice") {
        let mapped = match choice.get("type").and_then(Value::as_str) {
            Some("any") => json!("required"),
            Some("none") => json!("none"),
            Some("tool") => json!({"type": "function", "function": {"name": choice.get("name").cloned().unwrap_or(Value::Null)}}),
            _ => json!("auto"),
        };
        out.insert("tool_choice".to_owned(), mapped);
        if choice.get("disable_parallel_tool_use") == Some(&Value::Bool(true)) {
            out.insert("parallel_tool_calls".to_owned(), Value::Bool(false));
        }
    }
    Ok(Value::Object(out))
}

/// `msg_…` id for a message answered from an OpenAI-shaped response.
fn message_id(openai_id: Option<&str>) -> String {
    match openai_id {
        Some(id) if id.starts_with("msg_") => id.to_owned(),
        Some(id) => format!("msg_{id}"),
        None => "msg_switchyard".to_owned(),
    }
}

/// An OpenAI chat completion as a Messages API response.
pub fn response_from_openai(body: &Value, model: &str) -> Value {
    let message = body.pointer("/choices/0/message").unwrap_or(&Value::Null);
    let mut content = Vec::new();
    let text = message.get("content").map(text_of).unwrap_or_default();
    if !text.is_empty() {
        content.push(json!({"type": "text", "text": text}));
    }
    content.extend(tool_use_blocks(message));
    let finish = body.pointer("/choices/0/finish_reason").and_then(Value::as_str).unwrap_or("stop");
    let usage = body.get("usage").unwrap_or(&Value::Null);
    json!({
        "id": message_id(body.get("id").and_then(Value::as_str)),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_from_finish(finish),
        "stop_sequence": null,
        "usage": {
            "input_tokens": usage.get("prompt_tokens").and_then(Value::as_u64).unwrap_or(0),
            "output_tokens": usage.get("completion_tokens").and_then(Value::as_u64).unwrap_or(0),
        },
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Text,
    /// A tool call, by its OpenAI index.
    Tool(u64),
}

/// Translates OpenAI chunks into Messages API events (`event:` name and
/// `data:`), chunk by chunk.
#[derive(Debug)]
pub struct StreamFromOpenAi {
    model: String,
    started: bool,
    open: Option<(u64, Block)>,
    next_block: u64,
    stop_reason: &'static str,
    input_tokens: u64,
    output_tokens: u64,
    finished: bool,
}

impl StreamFromOpenAi {
    pub fn new(model: &str) -> StreamFromOpenAi {
        StreamFromOpenAi {
            model: model.to_owned(),
            started: false,
            open: None,
            next_block: 0,
            stop_reason: "end_turn",
            input_tokens: 0,
            output_tokens: 0,
            finished: false,
        }
    }

    fn start(&mut self, id: Option<&str>, out: &mut Vec<(String, String)>) {
        if self.started {
            return;
        }
        self.started = true;
        let message = json!({
            "type": "message_start",
            "message": {
                "id": message_id(id), "type": "message", "role": "assistant", "model": self.model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            },
        });
        out.push(("message_start".to_owned(), message.to_string()));
    }

    fn close(&mut self, out: &mut Vec<(String, String)>) {
        if let Some((index, _)) = self.open.take() {
            out.push(("content_block_stop".to_owned(), json!({"type": "content_block_stop", "index": index}).to_string()));
        }
    }

    fn open_block(&mut self, block: Block, content_block: Value, out: &mut Vec<(String, String)>) -> u64 {
        self.close(out);
        let index = self.next_block;
        self.next_block += 1;
        self.open = Some((index, block));
        out.push((
            "content_block_start".to_owned(),
            json!({"type": "content_block_start", "index": index, "content_block": content_block}).to_string(),
        ));
        index
    }

    /// One OpenAI SSE `data:` payload → the events to send. `[DONE]` ends
    /// the message.
    pub fn chunk(&mut self, data: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.finished {
            return out;
        }
        if data.trim() == "[DONE]" {
            return self.finish();
        }
        let Ok(value) = serde_json::from_str::<Value>(data) else {
            return out;
        };
        if let Some(error) = value.get("error") {
            out.push((
                "error".to_owned(),
                json!({"type": "error", "error": {
                    "type": "api_error",
                    "message": error.get("message").cloned().unwrap_or_else(|| json!("the upstream stream failed")),
                }})
                .to_string(),
            ));
            return out;
        }
        self.start(value.get("id").and_then(Value::as_str), &mut out);
        if let Some(usage) = value.get("usage").filter(|usage| !usage.is_null()) {
            self.input_tokens = usage.get("prompt_tokens").and_then(Value::as_u64).unwrap_or(self.input_tokens);
            self.output_tokens = usage.get("completion_tokens").and_then(Value::as_u64).unwrap_or(self.output_tokens);
        }
        let Some(choice) = value.pointer("/choices/0") else {
            return out;
        };
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        if let Some(text) = delta.get("content").and_then(Value::as_str).filter(|text| !text.is_empty()) {
            let index = match self.open {
                Some((index, Block::Text)) => index,
                _ => self.open_block(Block::Text, json!({"type": "text", "text": ""}), &mut out),
            };
            out.push((
                "content_block_delta".to_owned(),
                json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}}).to_string(),
            ));
        }
        for call in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
            let tool = call.get("index").and_then(Value::as_u64).unwrap_or(0);
            let index = match self.open {
                Some((index, Block::Tool(open))) if open == tool && call.get("id").is_none() => index,
                _ => {
                    let block = json!({
                        "type": "tool_use",
                        "id": call.get("id").cloned().unwrap_or(Value::Null),
                        "name": call.pointer("/function/name").cloned().unwrap_or(Value::Null),
                        "input": {},
                    });
                    self.open_block(Block::Tool(tool), block, &mut out)
                }
            };
            if let Some(arguments) = call.pointer("/function/arguments").and_then(Value::as_str).filter(|a| !a.is_empty()) {
                out.push((
                    "content_block_delta".to_owned(),
                    json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": arguments}}).to_string(),
                ));
            }
        }
        if let Some(finish) = choice.get("finish_reason").and_then(Value::as_str) {
            self.stop_reason = stop_from_finish(finish);
        }
        out
    }

    /// Ends the message: closes the open block, then `message_delta` (stop
    /// reason, usage) and `message_stop`.
    pub fn finish(&mut self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.finished {
            return out;
        }
        self.finished = true;
        self.start(None, &mut out);
        self.close(&mut out);
        out.push((
            "message_delta".to_owned(),
            json!({
                "type": "message_delta",
                "delta": {"stop_reason": self.stop_reason, "stop_sequence": null},
                "usage": {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens},
            })
            .to_string(),
        ));
        out.push(("message_stop".to_owned(), json!({"type": "message_stop"}).to_string()));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_openai_request_becomes_a_messages_request() {
        let body = json!({
            "model": "router:eng", "max_tokens": 300, "temperature": 0.2, "stop": "END", "stream": true,
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Weather?"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
                {"role": "user", "content": "thanks"},
            ],
            "tools": [{"type": "function", "function": {"name": "weather", "description": "Weather by city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
            "tool_choice": "required",
        });
        let out = request_from_openai(&body, "claude-sonnet-4-5");
        assert_eq!(out["model"], "claude-sonnet-4-5");
        assert_eq!(out["system"], "Be brief.");
        assert_eq!(out["max_tokens"], 300);
        assert_eq!(out["stop_sequences"], json!(["END"]));
        assert_eq!(out["stream"], true);
        let messages = out["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 3, "tool result and the next user turn merge: {messages:?}");
        assert_eq!(messages[0]["content"][1]["source"], json!({"type": "base64", "media_type": "image/png", "data": "AAAA"}));
        assert_eq!(messages[1]["content"][0], json!({"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris"}}));
        assert_eq!(messages[2]["content"][0], json!({"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"}));
        assert_eq!(messages[2]["content"][1], json!({"type": "text", "text": "thanks"}));
        assert_eq!(out["tools"][0]["input_schema"]["properties"]["city"]["type"], "string");
        assert_eq!(out["tool_choice"], json!({"type": "any"}));
        let plain = request_from_openai(&json!({"messages": [{"role": "user", "content": "hi"}]}), "m");
        assert_eq!(plain["max_tokens"], DEFAULT_MAX_TOKENS);
    }

    #[test]
    fn a_messages_response_becomes_a_chat_completion() {
        let body = json!({
            "id": "msg_1", "type": "message", "role": "assistant",
            "content": [{"type": "text", "text": "Let me check."}, {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}}],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 10, "cache_read_input_tokens": 5, "output_tokens": 7},
        });
        let out = response_to_openai(&body, "claude");
        assert_eq!(out["model"], "claude");
        assert_eq!(out["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(out["choices"][0]["message"]["content"], "Let me check.");
        assert_eq!(out["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"], "{\"city\":\"Paris\"}");
        assert_eq!(out["usage"], json!({"prompt_tokens": 15, "completion_tokens": 7, "total_tokens": 22}));
    }

    #[test]
    fn a_messages_stream_becomes_openai_chunks() {
        let mut stream = StreamToOpenAi::new("claude");
        let events = [
            ("message_start", r#"{"type":"message_start","message":{"id":"msg_9","usage":{"input_tokens":12,"output_tokens":1}}}"#),
            ("content_block_start", r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#),
            ("ping", r#"{"type":"ping"}"#),
            ("content_block_delta", r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#),
            ("content_block_stop", r#"{"type":"content_block_stop","index":0}"#),
            ("content_block_start", r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_2","name":"weather","input":{}}}"#),
            ("content_block_delta", r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\":"}}"#),
            ("content_block_delta", r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"\"Paris\"}"}}"#),
            ("message_delta", r#"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":9}}"#),
            ("message_stop", r#"{"type":"message_stop"}"#),
        ];
        let out: Vec<String> = events.iter().flat_map(|(name, data)| stream.event(name, data)).collect();
        let chunks: Vec<Value> = out.iter().filter(|d| *d != "[DONE]").map(|d| serde_json::from_str(d).unwrap()).collect();
        assert_eq!(out.last().unwrap(), "[DONE]");
        assert!(stream.is_done());
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(chunks[0]["id"], "msg_9");
        assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "Hi");
        assert_eq!(chunks[2]["choices"][0]["delta"]["tool_calls"][0]["id"], "toolu_2");
        let arguments: String = chunks[3..5]
            .iter()
            .map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str().unwrap())
            .collect();
        assert_eq!(arguments, "{\"city\":\"Paris\"}");
        assert_eq!(chunks[5]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(chunks[6]["usage"], json!({"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}));
        assert_eq!(chunks[6]["choices"], json!([]));
    }

    #[test]
    fn a_messages_request_from_a_client_becomes_an_openai_request() {
        let body = json!({
            "model": "router:eng", "max_tokens": 100, "system": [{"type": "text", "text": "You are terse."}],
            "stop_sequences": ["X"], "stream": false, "metadata": {"user_id": "u1"},
            "messages": [
                {"role": "user", "content": "weather in Paris?"},
                {"role": "assistant", "content": [{"type": "text", "text": "Checking."}, {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "sunny"}]}, {"type": "text", "text": "and tomorrow?"}]},
            ],
            "tools": [{"name": "weather", "description": "d", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "tool", "name": "weather", "disable_parallel_tool_use": true},
        });
        let out = request_to_openai(&body).unwrap();
        let messages = out["messages"].as_array().unwrap();
        assert_eq!(messages[0], json!({"role": "system", "content": "You are terse."}));
        assert_eq!(messages[2]["tool_calls"][0]["function"], json!({"name": "weather", "arguments": "{\"city\":\"Paris\"}"}));
        assert_eq!(messages[3], json!({"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"}));
        assert_eq!(messages[4], json!({"role": "user", "content": "and tomorrow?"}));
        assert_eq!(out["stop"], json!(["X"]));
        assert_eq!(out["user"], "u1");
        assert_eq!(out["tools"][0]["function"]["parameters"], json!({"type": "object"}));
        assert_eq!(out["tool_choice"]["function"]["name"], "weather");
        assert_eq!(out["parallel_tool_calls"], false);
    }

    #[test]
    fn bad_messages_requests_name_the_field() {
        for (body, param) in [
            (json!([]), "body"),
            (json!({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}), "model"),
            (json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}), "max_tokens"),
            (json!({"model": "m", "max_tokens": 5, "messages": []}), "messages"),
            (json!({"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}), "messages[0].role"),
            (json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": 3}]}), "messages[0].content"),
        ] {
            assert_eq!(request_to_openai(&body).unwrap_err().param(), param, "{body}");
        }
    }

    #[test]
    fn openai_answers_go_back_in_the_messages_shape() {
        let body = json!({
            "id": "chatcmpl-1", "model": "gpt",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]}, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
        });
        let out = response_from_openai(&body, "gpt");
        assert_eq!(out["id"], "msg_chatcmpl-1");
        assert_eq!(out["stop_reason"], "tool_use");
        assert_eq!(out["content"], json!([{"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris"}}]));
        assert_eq!(out["usage"], json!({"input_tokens": 3, "output_tokens": 4}));

        let mut stream = StreamFromOpenAi::new("gpt");
        let chunks = [
            r#"{"id":"c1","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
            r#"{"id":"c1","choices":[{"index":0,"delta":{"content":"Hel"}}]}"#,
            r#"{"id":"c1","choices":[{"index":0,"delta":{"content":"lo"}}]}"#,
            r#"{"id":"c1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"weather","arguments":""}}]}}]}"#,
            r#"{"id":"c1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]}}]}"#,
            r#"{"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
            r#"{"id":"c1","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":6}}"#,
            "[DONE]",
        ];
        let events: Vec<(String, String)> = chunks.iter().flat_map(|c| stream.chunk(c)).collect();
        let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(
            names,
            [
                "message_start", "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
                "content_block_start", "content_block_delta", "content_block_stop", "message_delta", "message_stop"
            ]
        );
        let delta: Value = serde_json::from_str(&events[8].1).unwrap();
        assert_eq!(delta["delta"]["stop_reason"], "tool_use");
        assert_eq!(delta["usage"]["output_tokens"], 6);
        let tool: Value = serde_json::from_str(&events[5].1).unwrap();
        assert_eq!(tool["index"], 1);
        assert_eq!(tool["content_block"]["name"], "weather");
        assert!(stream.finish().is_empty(), "finishing twice emits nothing");
    }

    #[test]
    fn token_counts_at_the_u64_limit_saturate_instead_of_overflowing() {
        // Fuzzing finding: these sums panicked with overflow checks on.
        let usage = json!({"input_tokens": u64::MAX, "cache_read_input_tokens": 1, "output_tokens": u64::MAX});
        let out = response_to_openai(&json!({"content": [], "usage": usage}), "c");
        assert_eq!(out["usage"]["prompt_tokens"], u64::MAX);
        assert_eq!(out["usage"]["total_tokens"], u64::MAX);
        let mut stream = StreamToOpenAi::new("c");
        stream.event("message_start", &json!({"type": "message_start", "message": {"usage": usage}}).to_string());
        let out = stream.event("message_stop", r#"{"type":"message_stop"}"#);
        let usage: Value = serde_json::from_str(&out[out.len() - 2]).unwrap();
        assert_eq!(usage["usage"]["total_tokens"], u64::MAX);
    }
}
