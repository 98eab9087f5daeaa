//! OpenAI chat completions → Gemini `generateContent` and back.
//!
//! - [`request_from_openai`]: `system`/`developer` → `systemInstruction`;
//!   user/assistant → `contents` with roles `user`/`model`; `tool_calls` →
//!   `functionCall` parts; `tool` messages → `functionResponse` parts (named
//!   after the call they answer); `tools` → `functionDeclarations` (JSON
//!   Schema keywords Gemini refuses are dropped); `tool_choice` →
//!   `toolConfig`; sampling fields → `generationConfig`.
//! - [`response_to_openai`] and [`StreamToOpenAi`]: candidates' text and
//!   `functionCall` parts → content and `tool_calls`; `finishReason` STOP →
//!   `stop` (`tool_calls` when functions were called), MAX_TOKENS →
//!   `length`, safety and recitation blocks (and a blocked prompt) →
//!   `content_filter`; `usageMetadata` → usage.
//!
//! The model is named in the URL (`models/{model}:generateContent`), not in
//! the body. A Gemini stream (`alt=sse`) has no end marker: the stream's end
//! is the message's end ([`StreamToOpenAi::finish`]).

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use crate::{now_secs, openai_chunk, openai_usage, text_of};

/// JSON Schema keywords the Gemini API refuses in function parameters.
const UNSUPPORTED_SCHEMA_KEYS: [&str; 4] = ["$schema", "additionalProperties", "$id", "strict"];

fn clean_schema(schema: &Value) -> Value {
    match schema {
        Value::Object(object) => Value::Object(
            object
                .iter()
                .filter(|(key, _)| !UNSUPPORTED_SCHEMA_KEYS.contains(&key.as_str()))
                .map(|(key, value)| (key.clone(), clean_schema(value)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(clean_schema).collect()),
        other => other.clone(),
    }
}

fn image_part(url: &str) -> Value {
    if let Some(rest) = url.strip_prefix("data:")
        && let Some((mime, data)) = rest.split_once(";base64,")
    {
        return json!({"inlineData": {"mimeType": mime, "data": data}});
    }
    let mime = if url.ends_with(".png") { "image/png" } else { "image/jpeg" };
    json!({"fileData": {"mimeType": mime, "fileUri": url}})
}

fn parts_from_openai(content: &Value) -> Vec<Value> {
    match content {
        Value::String(text) if !text.is_empty() => vec![json!({"text": text})],
        Value::Array(parts) => parts
            .iter()
            .filter_map(|part| match part.get("type").and_then(Value::as_str) {
                Some("text") => Some(json!({"text": part.get("text").cloned().unwrap_or_else(|| json!(""))})),
                Some("image_url") => part.pointer("/image_url/url").and_then(Value::as_str).map(image_part),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn push_content(contents: &mut Vec<Value>, role: &str, parts: Vec<Value>) {
    if parts.is_empty() {
        return;
    }
    if let Some(last) = contents.last_mut()
        && last.get("role").and_then(Value::as_str) == Some(role)
        && let Some(existing) = last.get_mut("parts").and_then(Value::as_array_mut)
    {
        existing.extend(parts);
        return;
    }
    contents.push(json!({"role": role, "parts": parts}));
}

/// An OpenAI chat request as a `generateContent` body.
pub fn request_from_openai(body: &Value) -> Value {
    let mut system = Vec::new();
    let mut contents = Vec::new();
    // Tool-call id → function name: a `functionResponse` is matched by name.
    let mut call_names: HashMap<String, String> = HashMap::new();
    for message in body.get("messages").and_then(Value::as_array).into_iter().flatten() {
        let content = message.get("content").unwrap_or(&Value::Null);
        match message.get("role").and_then(Value::as_str).unwrap_or("user") {
            "system" | "developer" => system.push(text_of(content)),
            "assistant" => {
                let mut parts = parts_from_openai(content);
                for call in message.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                    let name = call.pointer("/function/name").and_then(Value::as_str).unwrap_or_default();
                    if let Some(id) = call.get("id").and_then(Value::as_str) {
                        call_names.insert(id.to_owned(), name.to_owned());
                    }
                    let arguments = call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("{}");
                    let args = serde_json::from_str::<Value>(arguments).unwrap_or_else(|_| json!({}));
                    parts.push(json!({"functionCall": {"name": name, "args": args}}));
                }
                push_content(&mut contents, "model", parts);
            }
            "tool" | "function" => {
                let id = message.get("tool_call_id").and_then(Value::as_str).unwrap_or_default();
                let name = call_names
                    .get(id)
                    .cloned()
                    .or_else(|| message.get("name").and_then(Value::as_str).map(str::to_owned))
                    .unwrap_or_default();
                let text = text_of(content);
                let response = match serde_json::from_str::<Value>(&text) {
                    Ok(object @ Value::Object(_)) => object,
                    _ => json!({"content": text}),
                };
                push_content(&mut contents, "user", vec![json!({"functionResponse": {"name": name, "response": response}})]);
            }
            _ => push_content(&mut contents, "user", parts_from_openai(content)),
        }
    }
    let mut out = Map::new();
    out.insert("contents".to_owned(), Value::Array(contents));
    if !system.is_empty() {
        out.insert("systemInstruction".to_owned(), json!({"parts": [{"text": system.join("\n\n")}]}));
    }
    let mut generation = Map::new();
    for (from, to) in [("temperature", "temperature"), ("top_p", "topP"), ("seed", "seed")] {
        if let Some(value) = body.get(from).filter(|value| !value.is_null()) {
            generation.insert(to.to_owned(), value.clone());
        }
    }
    if let Some(max) = body.get("max_completion_tokens").or_else(|| body.get("max_tokens")).filter(|v| !v.is_null()) {
        generation.insert("maxOutputTokens".to_owned(), max.clone());
    }
    match body.get("stop") {
        Some(Value::String(stop)) => {
            generation.insert("stopSequences".to_owned(), json!([stop]));
        }
        Some(Value::Array(stops)) => {
            generation.insert("stopSequences".to_owned(), Value::Array(stops.clone()));
        }
        _ => {}
    }
    if !generation.is_empty() {
        out.insert("generationConfig".to_owned(), Value::Object(generation));
    }
    if let Some(tools) = body.get("tools").and_then(Value::as_array) {
        let declarations: Vec<Value> = tools
            .iter()
            .filter_map(|tool| tool.get("function"))
            .map(|function| {
                let mut declaration = Map::new();
                for key in ["name", "description"] {
                    if let Some(value) = function.get(key) {
                        declaration.insert(key.to_owned(), value.clone());
                    }
                }
                if let Some(parameters) = function.get("parameters") {
                    declaration.insert("parameters".to_owned(), clean_schema(parameters));
                }
                Value::Object(declaration)
            })
            .collect();
        if !declarations.is_empty() {
            out.insert("tools".to_owned(), json!([{"functionDeclarations": declarations}]));
        }
    }
    let config = match body.get("tool_choice") {
        Some(Value::String(kind)) => match kind.as_str() {
            "none" => Some(json!({"mode": "NONE"})),
            "required" => Some(json!({"mode": "ANY"})),
            _ => Some(json!({"mode": "AUTO"})),
        },
        Some(choice) => choice
            .pointer("/function/name")
            .map(|name| json!({"mode": "ANY", "allowedFunctionNames": [name]})),
        None => None,
    };
    if let Some(config) = config {
        out.insert("toolConfig".to_owned(), json!({"functionCallingConfig": config}));
    }
    Value::Object(out)
}

fn finish_reason(reason: &str, called: bool) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => "content_filter",
        _ if called => "tool_calls",
        _ => "stop",
    }
}

fn usage_of(body: &Value) -> Option<(u64, u64)> {
    let usage = body.get("usageMetadata")?;
    let count = |key: &str| usage.get(key).and_then(Value::as_u64).unwrap_or(0);
    // Saturating: the counts are the upstream's (found by fuzzing).
    Some((count("promptTokenCount"), count("candidatesTokenCount").saturating_add(count("thoughtsTokenCount"))))
}

/// Text and function calls of the first candidate.
fn read_parts(body: &Value) -> (String, Vec<(String, Value)>) {
    let mut text = String::new();
    let mut calls = Vec::new();
    for part in body.pointer("/candidates/0/content/parts").and_then(Value::as_array).into_iter().flatten() {
        // Thought summaries are the model's reasoning, not its answer.
        if part.get("thought") == Some(&Value::Bool(true)) {
            continue;
        }
        if let Some(piece) = part.get("text").and_then(Value::as_str) {
            text.push_str(piece);
        }
        if let Some(call) = part.get("functionCall") {
            let name = call.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
            calls.push((name, call.get("args").cloned().unwrap_or_else(|| json!({}))));
        }
    }
    (text, calls)
}

/// A `generateContent` response as an OpenAI chat completion.
pub fn response_to_openai(body: &Value, model: &str) -> Value {
    let (text, calls) = read_parts(body);
    let blocked = body.pointer("/promptFeedback/blockReason").is_some() && body.pointer("/candidates/0").is_none();
    let reason = body.pointer("/candidates/0/finishReason").and_then(Value::as_str).unwrap_or("STOP");
    let finish = if blocked { "content_filter" } else { finish_reason(reason, !calls.is_empty()) };
    let tool_calls: Vec<Value> = calls
        .iter()
        .enumerate()
        .map(|(i, (name, args))| {
            json!({"id": format!("call_{i}"), "type": "function", "function": {"name": name, "arguments": args.to_string()}})
        })
        .collect();
    let mut message = json!({
        "role": "assistant",
        "content": if text.is_empty() && !tool_calls.is_empty() { Value::Null } else { json!(text) },
    });
    if !tool_calls.is_empty() {
        message["tool_calls"] = Value::Array(tool_calls);
    }
    let (input, output) = usage_of(body).unwrap_or((0, 0));
    let id = body.get("responseId").and_then(Value::as_str).unwrap_or("gemini");
    json!({
        "id": format!("chatcmpl-{id}"),
        "object": "chat.completion",
        "created": now_secs(),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": openai_usage(input, output),
    })
}

/// Translates `streamGenerateContent?alt=sse` chunks into OpenAI chunks.
#[derive(Debug)]
pub struct StreamToOpenAi {
    id: String,
    model: String,
    created: u64,
    started: bool,
    calls: u64,
    finished: bool,
    usage: (u64, u64),
}

impl StreamToOpenAi {
    pub fn new(model: &str) -> StreamToOpenAi {
        StreamToOpenAi {
            id: "chatcmpl-gemini".to_owned(),
            model: model.to_owned(),
            created: now_secs(),
            started: false,
            calls: 0,
            finished: false,
            usage: (0, 0),
        }
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> String {
        openai_chunk(&self.id, &self.model, self.created, delta, finish).to_string()
    }

    /// One `data:` payload → the OpenAI chunks to send. An error payload
    /// becomes an OpenAI `{"error": ...}`.
    pub fn chunk_data(&mut self, data: &str) -> Vec<String> {
        let Ok(value) = serde_json::from_str::<Value>(data) else {
            return Vec::new();
        };
        if let Some(error) = value.get("error") {
            return vec![json!({"error": {
                "message": error.get("message").cloned().unwrap_or_else(|| json!("upstream stream error")),
                "type": error.get("status").cloned().unwrap_or_else(|| json!("api_error")),
            }})
            .to_string()];
        }
        let mut out = Vec::new();
        if !self.started {
            self.started = true;
            if let Some(id) = value.get("responseId").and_then(Value::as_str) {
                self.id = format!("chatcmpl-{id}");
            }
            out.push(self.chunk(json!({"role": "assistant", "content": ""}), None));
        }
        if let Some(usage) = usage_of(&value) {
            self.usage = usage;
        }
        let (text, calls) = read_parts(&value);
        if !text.is_empty() {
            out.push(self.chunk(json!({"content": text}), None));
        }
        for (name, args) in calls {
            let index = self.calls;
            self.calls += 1;
            out.push(self.chunk(
                json!({"tool_calls": [{"index": index, "id": format!("call_{index}"), "type": "function", "function": {"name": name, "arguments": args.to_string()}}]}),
                None,
            ));
        }
        let blocked = value.pointer("/promptFeedback/blockReason").is_some() && value.pointer("/candidates/0").is_none();
        let reason = value.pointer("/candidates/0/finishReason").and_then(Value::as_str);
        if !self.finished && (blocked || reason.is_some()) {
            self.finished = true;
            let finish = if blocked { "content_filter" } else { finish_reason(reason.unwrap_or("STOP"), self.calls > 0) };
            out.push(self.chunk(json!({}), Some(finish)));
        }
        out
    }

    /// The upstream stream ended: the finish reason if none came, the usage
    /// chunk, and `[DONE]`.
    pub fn finish(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.started {
            self.started = true;
            out.push(self.chunk(json!({"role": "assistant", "content": ""}), None));
        }
        if !self.finished {
            self.finished = true;
            out.push(self.chunk(json!({}), Some(if self.calls > 0 { "tool_calls" } else { "stop" })));
        }
        out.push(
            json!({
                "id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [], "usage": openai_usage(self.usage.0, self.usage.1),
            })
            .to_string(),
        );
        out.push("[DONE]".to_owned());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_openai_request_becomes_generate_content() {
        let body = json!({
            "model": "router:x", "max_tokens": 50, "temperature": 0.1, "stop": ["END"], "tool_choice": "auto",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "call_7", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "call_7", "content": "sunny"},
            ],
            "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object", "additionalProperties": false, "properties": {"city": {"type": "string"}}}}}],
        });
        let out = request_from_openai(&body);
        assert_eq!(out["systemInstruction"]["parts"][0]["text"], "Be brief.");
        let contents = out["contents"].as_array().unwrap();
        assert_eq!(contents[0], json!({"role": "user", "parts": [{"text": "Weather in Paris?"}]}));
        assert_eq!(contents[1]["parts"][0]["functionCall"], json!({"name": "weather", "args": {"city": "Paris"}}));
        assert_eq!(contents[2]["parts"][0]["functionResponse"], json!({"name": "weather", "response": {"content": "sunny"}}));
        assert_eq!(out["generationConfig"], json!({"temperature": 0.1, "maxOutputTokens": 50, "stopSequences": ["END"]}));
        let declaration = &out["tools"][0]["functionDeclarations"][0];
        assert!(declaration["parameters"].get("additionalProperties").is_none());
        assert_eq!(out["toolConfig"]["functionCallingConfig"]["mode"], "AUTO");
    }

    #[test]
    fn responses_calls_blocks_and_usage_become_openai() {
        let body = json!({
            "candidates": [{"content": {"role": "model", "parts": [{"functionCall": {"name": "weather", "args": {"city": "Paris"}}}]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 3},
        });
        let out = response_to_openai(&body, "gemini-2.5-flash");
        assert_eq!(out["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(out["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"], "{\"city\":\"Paris\"}");
        assert_eq!(out["usage"]["total_tokens"], 11);
        let blocked = json!({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 4}});
        let out = response_to_openai(&blocked, "g");
        assert_eq!(out["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(out["choices"][0]["message"]["content"], "");
        let long = json!({"candidates": [{"content": {"parts": [{"text": "a"}, {"text": "b"}]}, "finishReason": "MAX_TOKENS"}]});
        let out = response_to_openai(&long, "g");
        assert_eq!((out["choices"][0]["message"]["content"].as_str(), out["choices"][0]["finish_reason"].as_str()), (Some("ab"), Some("length")));
    }

    #[test]
    fn a_stream_ends_with_usage_and_done_when_the_upstream_closes() {
        let mut stream = StreamToOpenAi::new("g");
        let mut out = stream.chunk_data(r#"{"candidates":[{"content":{"parts":[{"text":"Hel"}]}}],"responseId":"r1"}"#);
        out.extend(stream.chunk_data(r#"{"candidates":[{"content":{"parts":[{"text":"lo"}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":2}}"#));
        out.extend(stream.finish());
        let chunks: Vec<Value> = out.iter().filter(|d| *d != "[DONE]").map(|d| serde_json::from_str(d).unwrap()).collect();
        assert_eq!(out.last().unwrap(), "[DONE]");
        assert_eq!(chunks[0]["id"], "chatcmpl-r1");
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "Hel");
        assert_eq!(chunks[2]["choices"][0]["delta"]["content"], "lo");
        assert_eq!(chunks[3]["choices"][0]["finish_reason"], "stop");
        assert_eq!(chunks[4]["usage"]["prompt_tokens"], 5);
        assert_eq!(chunks.len(), 5);
    }

    #[test]
    fn token_counts_at_the_u64_limit_saturate_instead_of_overflowing() {
        // Fuzzing finding: these sums panicked with overflow checks on.
        let body = json!({
            "candidates": [{"content": {"parts": [{"text": "ok"}]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": u64::MAX, "candidatesTokenCount": u64::MAX, "thoughtsTokenCount": 1},
        });
        let out = response_to_openai(&body, "g");
        assert_eq!(out["usage"]["completion_tokens"], u64::MAX);
        assert_eq!(out["usage"]["total_tokens"], u64::MAX);
        let mut stream = StreamToOpenAi::new("g");
        stream.chunk_data(&body.to_string());
        let usage: Value = serde_json::from_str(&stream.finish()[0]).unwrap();
        assert_eq!(usage["usage"]["total_tokens"], u64::MAX);
    }
}
