//! The Anthropic and Gemini shapes, and tool calls in all three APIs, over
//! real HTTP.

// Marks the helpers below as test code too, so clippy.toml's
// allow-unwrap-in-tests covers them and not only the `#[tokio::test]` fns.
#![cfg(test)]

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use switchyard_mock::{Failure, MockConfig, MockServer};

async fn start(config: MockConfig) -> MockServer {
    MockServer::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap()
}

async fn post(url: &str, headers: &[(&str, &str)], body: &Value) -> reqwest::Response {
    let mut request = reqwest::Client::new().post(url).json(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

/// The `(event name, data)` of each SSE frame; the name is empty when the
/// frame has none.
fn events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|frame| !frame.trim().is_empty())
        .map(|frame| {
            let name = frame
                .lines()
                .find_map(|line| line.strip_prefix("event: "))
                .unwrap_or("")
                .to_owned();
            let data = frame
                .lines()
                .find_map(|line| line.strip_prefix("data: "))
                .unwrap();
            (name, serde_json::from_str(data).unwrap())
        })
        .collect()
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(name, _)| name.as_str()).collect()
}

/// The strings at `pointer` in each event's data, concatenated.
fn joined(events: &[(String, Value)], pointer: &str) -> String {
    events
        .iter()
        .filter_map(|(_, data)| data.pointer(pointer).and_then(Value::as_str))
        .collect()
}

/// Reads a body that must end in an error (a cut connection), returning the
/// text received before it.
async fn read_until_error(response: reqwest::Response) -> String {
    let mut body = response.bytes_stream();
    let mut received = Vec::new();
    loop {
        match body.next().await {
            Some(Ok(bytes)) => received.extend_from_slice(&bytes),
            Some(Err(_)) => return String::from_utf8(received).unwrap(),
            None => panic!("the body ended cleanly; expected a cut connection"),
        }
    }
}

fn weather_schema() -> Value {
    json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
}

// ---------------------------------------------------------------------------
// Anthropic Messages.
// ---------------------------------------------------------------------------

fn messages_url(mock: &MockServer) -> String {
    format!("{}/messages", mock.base_url())
}

fn ask_claude(model: &str, extra: Value) -> Value {
    let mut body = json!({
        "model": model,
        "max_tokens": 5,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hello there"}]}],
    });
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    body
}

fn claude_tools() -> Value {
    json!([
        {"name": "get_weather", "description": "Weather", "input_schema": weather_schema()},
        {"name": "other", "input_schema": {"type": "object", "properties": {}}},
    ])
}

#[tokio::test]
async fn anthropic_json_answer_usage_and_recording() {
    let mock = start(MockConfig::default()).await;
    let headers = [("x-api-key", "sk-ant"), ("anthropic-version", "2023-06-01")];
    let response = post(
        &messages_url(&mock),
        &headers,
        &ask_claude("claude-up", json!({})),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-mock-model"], "claude-up");
    let answer: Value = response.json().await.unwrap();
    assert!(
        answer["id"].as_str().unwrap().starts_with("msg_mock_"),
        "{answer}"
    );
    assert_eq!(answer["type"], "message");
    assert_eq!(answer["role"], "assistant");
    assert_eq!(answer["model"], "claude-up");
    assert_eq!(
        answer["content"],
        json!([{"type": "text", "text": "claude-up says: hello there hello"}])
    );
    assert_eq!(answer["stop_reason"], "end_turn");
    assert_eq!(answer["stop_sequence"], Value::Null);
    // Prompt: system (2 + 1) and the user message (2 + 1).
    assert_eq!(
        answer["usage"],
        json!({"input_tokens": 6, "output_tokens": 5})
    );

    // Without `anthropic-version` too; `max_tokens` above the configured
    // length only caps it.
    let body = ask_claude("claude-up", json!({"max_tokens": 4096}));
    let answer: Value = post(&messages_url(&mock), &[], &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["usage"]["output_tokens"], 12);

    let recorded = mock.recorded();
    assert_eq!(recorded.len(), 2);
    assert_eq!(recorded[0].api, "anthropic");
    assert_eq!(recorded[0].api_key.as_deref(), Some("sk-ant"));
    assert_eq!(recorded[0].authorization, None);
    assert_eq!(recorded[1].api_key, None);
    assert_eq!(mock.requests("claude-up"), 2);
    mock.shutdown().await;
}

#[tokio::test]
async fn anthropic_stream_events_in_order_with_usage() {
    let config = MockConfig {
        tokens_per_sec: 1000.0,
        ..MockConfig::default()
    };
    let mock = start(config).await;
    let body = ask_claude("claude-up", json!({"stream": true}));
    let response = post(&messages_url(&mock), &[], &body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let events = events(&response.text().await.unwrap());
    let mut expected = vec!["message_start", "content_block_start", "ping"];
    expected.extend(["content_block_delta"; 5]);
    expected.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(names(&events), expected);
    for (name, data) in &events {
        assert_eq!(data["type"], name.as_str());
    }

    let start = &events[0].1["message"];
    assert!(start["id"].as_str().unwrap().starts_with("msg_mock_"));
    assert_eq!(start["model"], "claude-up");
    assert_eq!(start["content"], json!([]));
    assert_eq!(
        start["usage"],
        json!({"input_tokens": 6, "output_tokens": 1})
    );
    assert_eq!(
        events[1].1["content_block"],
        json!({"type": "text", "text": ""})
    );
    assert!(
        events[3..8]
            .iter()
            .all(|(_, data)| data["delta"]["type"] == "text_delta")
    );
    assert_eq!(
        joined(&events, "/delta/text"),
        "claude-up says: hello there hello"
    );
    assert_eq!(
        events[9].1,
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": {"output_tokens": 5}})
    );
    assert!(mock.recorded()[0].stream);
    mock.shutdown().await;
}

#[tokio::test]
async fn anthropic_tool_use_json_and_stream() {
    let mock = start(MockConfig::default()).await;
    let body = ask_claude(
        "claude-up",
        json!({"max_tokens": 100, "tools": claude_tools()}),
    );
    let answer: Value = post(&messages_url(&mock), &[], &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["stop_reason"], "tool_use", "{answer}");
    let block = &answer["content"][0];
    assert_eq!(answer["content"].as_array().unwrap().len(), 1);
    assert_eq!(block["type"], "tool_use");
    assert!(block["id"].as_str().unwrap().starts_with("toolu_mock_"));
    assert_eq!(block["name"], "get_weather");
    assert_eq!(block["input"], json!({"city": "Paris"}));

    // The first tool has no `city`: empty arguments.
    let tools = json!([{"name": "ping", "input_schema": {"type": "object"}}]);
    let body = ask_claude("claude-up", json!({"tools": tools, "stream": true}));
    let text = post(&messages_url(&mock), &[], &body)
        .await
        .text()
        .await
        .unwrap();
    let events = events(&text);
    assert_eq!(
        names(&events)[..3],
        ["message_start", "content_block_start", "ping"]
    );
    assert_eq!(
        names(&events)[events.len() - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    let block = &events[1].1["content_block"];
    assert_eq!(
        (block["type"].as_str(), block["name"].as_str()),
        (Some("tool_use"), Some("ping"))
    );
    assert_eq!(block["input"], json!({}));
    assert!(
        events
            .iter()
            .filter(|(name, _)| name == "content_block_delta")
            .all(|(_, data)| data["delta"]["type"] == "input_json_delta")
    );
    assert_eq!(joined(&events, "/delta/partial_json"), "{}");
    assert_eq!(
        events[events.len() - 2].1["delta"]["stop_reason"],
        "tool_use"
    );
    mock.shutdown().await;
}

#[tokio::test]
async fn anthropic_tool_result_is_answered_with_text() {
    let config = MockConfig {
        label: Some("demo".into()),
        ..MockConfig::default()
    };
    let mock = start(config).await;
    let long = "x".repeat(100);
    let body = ask_claude(
        "claude-up",
        json!({"tools": claude_tools(), "messages": [
            {"role": "user", "content": "weather in Paris?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                "content": [{"type": "text", "text": format!("sunny {long}")}]}]},
        ]}),
    );
    let answer: Value = post(&messages_url(&mock), &[], &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["stop_reason"], "end_turn");
    let expected = format!("[demo] tool result received: sunny {}", &long[..74]);
    assert_eq!(answer["content"][0]["text"], expected);

    let mut stream = body.clone();
    stream["stream"] = json!(true);
    let text = post(&messages_url(&mock), &[], &stream)
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(joined(&events(&text), "/delta/text"), expected);
    mock.shutdown().await;
}

#[tokio::test]
async fn anthropic_failures_in_anthropic_shape() {
    let mock = start(MockConfig::default()).await;
    let url = messages_url(&mock);
    for (status, kind) in [
        (529, "overloaded_error"),
        (429, "rate_limit_error"),
        (400, "invalid_request_error"),
        (500, "api_error"),
        (404, "not_found_error"),
        (401, "authentication_error"),
    ] {
        mock.set_failure("claude-up", Some(Failure::Status(status)));
        let response = post(&url, &[], &ask_claude("claude-up", json!({"stream": true}))).await;
        assert_eq!(response.status(), status);
        if status == 429 {
            assert_eq!(response.headers()["retry-after"], "1");
        }
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["type"], "error");
        assert_eq!(error["error"]["type"], kind, "{status}");
        assert!(error["error"]["message"].is_string());
    }
    assert_eq!(mock.requests("claude-up"), 6);

    // Malformed: Anthropic's 400, not counted.
    let response = post(
        &url,
        &[],
        &json!({"model": "claude-up", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(response.status(), 400, "max_tokens is required");
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert_eq!(mock.requests("claude-up"), 6);

    // A drop: two text deltas, then the connection is cut.
    mock.set_failure("claude-up", Some(Failure::DropAfter(2)));
    let response = post(&url, &[], &ask_claude("claude-up", json!({"stream": true}))).await;
    assert_eq!(response.status(), 200);
    let text = read_until_error(response).await;
    let events = events(&text);
    assert_eq!(
        names(&events),
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta"
        ]
    );
    // Non-streaming: a 200 whose JSON never completes.
    let response = post(&url, &[], &ask_claude("claude-up", json!({}))).await;
    assert_eq!(response.status(), 200);
    let text = read_until_error(response).await;
    assert!(
        text.starts_with("{\"") && serde_json::from_str::<Value>(&text).is_err(),
        "{text}"
    );
    mock.shutdown().await;
}

#[tokio::test]
async fn anthropic_honours_ttft_and_shutdown_cuts_its_stream() {
    let config = MockConfig {
        ttft: Duration::from_millis(150),
        tokens_per_sec: 2.0,
        ..MockConfig::default()
    };
    let mock = start(config).await;
    let began = Instant::now();
    let response = post(
        &messages_url(&mock),
        &[],
        &ask_claude("slow", json!({"stream": true})),
    )
    .await;
    let mut body = response.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(began.elapsed() >= Duration::from_millis(150));
    assert!(String::from_utf8_lossy(&first).starts_with("event: message_start"));
    tokio::time::timeout(Duration::from_secs(5), mock.shutdown())
        .await
        .expect("shutdown should not wait for a paced stream");
    let rest = tokio::time::timeout(Duration::from_secs(5), async {
        let mut received = Vec::new();
        while let Some(item) = body.next().await {
            match item {
                Ok(bytes) => received.extend_from_slice(&bytes),
                Err(_) => return (String::from_utf8(received).unwrap(), true),
            }
        }
        (String::from_utf8(received).unwrap(), false)
    })
    .await
    .unwrap();
    assert!(!rest.0.contains("message_stop"), "{rest:?}");
    assert!(rest.1, "the stream should be cut, not ended cleanly");
}

// ---------------------------------------------------------------------------
// Gemini generateContent.
// ---------------------------------------------------------------------------

fn gemini_url(mock: &MockServer, version: &str, model: &str, method: &str) -> String {
    format!("http://{}/{version}/models/{model}:{method}", mock.addr())
}

fn ask_gemini(extra: Value) -> Value {
    let mut body = json!({
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "contents": [{"role": "user", "parts": [{"text": "hello there"}]}],
        "generationConfig": {"maxOutputTokens": 4},
    });
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    body
}

fn gemini_tools() -> Value {
    json!([{"functionDeclarations": [
        {"name": "get_weather", "description": "Weather", "parameters": weather_schema()},
        {"name": "other", "parameters": {"type": "object"}},
    ]}])
}

#[tokio::test]
async fn gemini_json_answer_on_v1_and_v1beta() {
    let mock = start(MockConfig::default()).await;
    for version in ["v1beta", "v1"] {
        let url = gemini_url(&mock, version, "gem-up", "generateContent");
        let response = post(&url, &[("x-goog-api-key", "g-key")], &ask_gemini(json!({}))).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-mock-model"], "gem-up");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(
            answer,
            json!({
                "candidates": [{
                    "content": {"role": "model", "parts": [{"text": "gem-up says: hello there"}]},
                    "finishReason": "STOP",
                    "index": 0,
                }],
                // Prompt: system (2 + 1) and the user turn (2 + 1).
                "usageMetadata": {"promptTokenCount": 6, "candidatesTokenCount": 4, "totalTokenCount": 10},
                "modelVersion": "gem-up",
            })
        );
    }
    // The key as a query parameter is recorded too.
    let url = gemini_url(&mock, "v1beta", "gem-up", "generateContent?key=q-key");
    assert_eq!(post(&url, &[], &ask_gemini(json!({}))).await.status(), 200);

    let recorded = mock.recorded();
    assert!(
        recorded
            .iter()
            .all(|r| r.api == "gemini" && r.model == "gem-up" && !r.stream)
    );
    assert_eq!(recorded[0].api_key.as_deref(), Some("g-key"));
    assert_eq!(recorded[2].api_key.as_deref(), Some("q-key"));
    assert_eq!(mock.requests("gem-up"), 3);

    // Unknown method, missing contents.
    let url = gemini_url(&mock, "v1beta", "gem-up", "countTokens");
    let response = post(&url, &[], &ask_gemini(json!({}))).await;
    assert_eq!(response.status(), 404);
    let url = gemini_url(&mock, "v1beta", "gem-up", "generateContent");
    let response = post(&url, &[], &json!({"contents": []})).await;
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["status"], "INVALID_ARGUMENT");
    assert_eq!(mock.requests("gem-up"), 3);
    mock.shutdown().await;
}

#[tokio::test]
async fn gemini_sse_ends_with_finish_reason_and_usage_and_no_done() {
    let config = MockConfig {
        tokens_per_sec: 1000.0,
        ..MockConfig::default()
    };
    let mock = start(config).await;
    let url = gemini_url(&mock, "v1beta", "gem-up", "streamGenerateContent?alt=sse");
    let response = post(&url, &[], &ask_gemini(json!({}))).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = response.text().await.unwrap();
    assert!(!text.contains("[DONE]"));
    let chunks = events(&text);
    assert_eq!(chunks.len(), 4, "one chunk per word: {text}");
    assert!(chunks.iter().all(|(name, _)| name.is_empty()));
    assert_eq!(
        joined(&chunks, "/candidates/0/content/parts/0/text"),
        "gem-up says: hello there"
    );
    for (_, chunk) in &chunks[..3] {
        assert!(
            chunk["candidates"][0].get("finishReason").is_none(),
            "{chunk}"
        );
        assert!(chunk.get("usageMetadata").is_none(), "{chunk}");
    }
    let last = &chunks[3].1;
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    assert_eq!(
        last["usageMetadata"],
        json!({"promptTokenCount": 6, "candidatesTokenCount": 4, "totalTokenCount": 10})
    );
    assert!(mock.recorded()[0].stream);

    // Without `alt=sse`: the same chunks as one JSON array.
    let url = gemini_url(&mock, "v1beta", "gem-up", "streamGenerateContent");
    let array: Value = post(&url, &[], &ask_gemini(json!({})))
        .await
        .json()
        .await
        .unwrap();
    let array = array.as_array().unwrap();
    assert_eq!(array.len(), 4);
    assert_eq!(array[3]["candidates"][0]["finishReason"], "STOP");
    mock.shutdown().await;
}

#[tokio::test]
async fn gemini_function_call_and_function_response() {
    let config = MockConfig {
        label: Some("demo".into()),
        ..MockConfig::default()
    };
    let mock = start(config).await;
    let url = gemini_url(&mock, "v1beta", "gem-up", "generateContent");
    let body = ask_gemini(json!({"tools": gemini_tools()}));
    let answer: Value = post(&url, &[], &body).await.json().await.unwrap();
    let candidate = &answer["candidates"][0];
    assert_eq!(
        candidate["content"]["parts"],
        json!([{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}])
    );
    assert_eq!(candidate["finishReason"], "STOP");
    assert!(
        answer["usageMetadata"]["candidatesTokenCount"]
            .as_u64()
            .unwrap()
            > 0
    );

    let stream_url = gemini_url(&mock, "v1beta", "gem-up", "streamGenerateContent?alt=sse");
    let chunks = events(&post(&stream_url, &[], &body).await.text().await.unwrap());
    assert_eq!(chunks.len(), 1);
    assert_eq!(
        chunks[0].1["candidates"][0]["content"]["parts"][0]["functionCall"],
        json!({"name": "get_weather", "args": {"city": "Paris"}})
    );
    assert_eq!(chunks[0].1["candidates"][0]["finishReason"], "STOP");

    let result = ask_gemini(json!({"tools": gemini_tools(), "contents": [
        {"role": "user", "parts": [{"text": "weather in Paris?"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"content": "sunny"}}}]},
    ]}));
    let answer: Value = post(&url, &[], &result).await.json().await.unwrap();
    assert_eq!(
        answer["candidates"][0]["content"]["parts"][0]["text"],
        "[demo] tool result received: sunny"
    );
    let chunks = events(&post(&stream_url, &[], &result).await.text().await.unwrap());
    assert_eq!(
        joined(&chunks, "/candidates/0/content/parts/0/text"),
        "[demo] tool result received: sunny"
    );
    mock.shutdown().await;
}

#[tokio::test]
async fn gemini_blocked_prompt_json_and_sse() {
    let mock = start(MockConfig::default()).await;
    let url = gemini_url(&mock, "v1beta", "gem-blocked", "generateContent");
    let response = post(&url, &[], &ask_gemini(json!({}))).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["promptFeedback"], json!({"blockReason": "SAFETY"}));
    assert_eq!(answer["usageMetadata"]["promptTokenCount"], 6);
    assert!(answer.get("candidates").is_none(), "{answer}");

    let url = gemini_url(
        &mock,
        "v1beta",
        "gem-blocked",
        "streamGenerateContent?alt=sse",
    );
    let chunks = events(
        &post(&url, &[], &ask_gemini(json!({})))
            .await
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].1["promptFeedback"]["blockReason"], "SAFETY");
    assert!(chunks[0].1.get("candidates").is_none());
    assert_eq!(mock.requests("gem-blocked"), 2);
    mock.shutdown().await;
}

#[tokio::test]
async fn gemini_failures_in_google_shape() {
    let mock = start(MockConfig::default()).await;
    let url = gemini_url(&mock, "v1beta", "gem-up", "streamGenerateContent?alt=sse");
    for (status, kind) in [
        (429, "RESOURCE_EXHAUSTED"),
        (400, "INVALID_ARGUMENT"),
        (503, "UNAVAILABLE"),
        (500, "INTERNAL"),
        (404, "NOT_FOUND"),
        (401, "UNAUTHENTICATED"),
    ] {
        mock.set_failure("gem-up", Some(Failure::Status(status)));
        let response = post(&url, &[], &ask_gemini(json!({}))).await;
        assert_eq!(response.status(), status);
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], status);
        assert_eq!(error["error"]["status"], kind);
        assert!(error["error"]["message"].is_string());
    }

    mock.set_failure("gem-up", Some(Failure::DropAfter(2)));
    let response = post(&url, &[], &ask_gemini(json!({}))).await;
    assert_eq!(response.status(), 200);
    let chunks = events(&read_until_error(response).await);
    assert_eq!(chunks.len(), 2);
    assert!(
        chunks
            .iter()
            .all(|(_, c)| c["candidates"][0].get("finishReason").is_none())
    );
    let url = gemini_url(&mock, "v1", "gem-up", "generateContent");
    let text = read_until_error(post(&url, &[], &ask_gemini(json!({}))).await).await;
    assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");
    assert_eq!(mock.requests("gem-up"), 8);
    mock.shutdown().await;
}

// ---------------------------------------------------------------------------
// OpenAI tool calls.
// ---------------------------------------------------------------------------

fn chat_url(mock: &MockServer) -> String {
    format!("{}/chat/completions", mock.base_url())
}

fn openai_tools() -> Value {
    json!([
        {"type": "function", "function": {"name": "get_weather", "parameters": weather_schema()}},
        {"type": "function", "function": {"name": "other", "parameters": {"type": "object"}}},
    ])
}

fn ask_gpt(extra: Value) -> Value {
    let mut body = json!({
        "model": "gpt-up",
        "tools": openai_tools(),
        "messages": [{"role": "user", "content": "weather in Paris?"}],
    });
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    body
}

#[tokio::test]
async fn openai_tool_call_json() {
    let mock = start(MockConfig::default()).await;
    let response = post(&chat_url(&mock), &[], &ask_gpt(json!({}))).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    let choice = &answer["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], Value::Null);
    let calls = choice["message"]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1);
    assert!(calls[0]["id"].as_str().unwrap().starts_with("call_mock_"));
    assert_eq!(calls[0]["type"], "function");
    assert_eq!(
        calls[0]["function"],
        json!({"name": "get_weather", "arguments": r#"{"city":"Paris"}"#})
    );
    assert_eq!(answer["object"], "chat.completion");
    assert!(answer["usage"]["completion_tokens"].as_u64().unwrap() > 0);

    // The first tool has no `city`: empty arguments.
    let tools = json!([{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]);
    let answer: Value = post(&chat_url(&mock), &[], &ask_gpt(json!({"tools": tools})))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        answer["choices"][0]["message"]["tool_calls"][0]["function"],
        json!({"name": "lookup", "arguments": "{}"})
    );
    mock.shutdown().await;
}

#[tokio::test]
async fn openai_tool_call_stream() {
    let mock = start(MockConfig::default()).await;
    let body = ask_gpt(json!({"stream": true, "stream_options": {"include_usage": true}}));
    let text = post(&chat_url(&mock), &[], &body)
        .await
        .text()
        .await
        .unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let chunks: Vec<Value> = text
        .split("\n\n")
        .filter_map(|frame| frame.strip_prefix("data: "))
        .filter(|data| *data != "[DONE]")
        .map(|data| serde_json::from_str(data).unwrap())
        .collect();
    let first = &chunks[0]["choices"][0]["delta"];
    assert_eq!(first["role"], "assistant");
    let call = &first["tool_calls"][0];
    assert_eq!(call["index"], 0);
    assert!(call["id"].as_str().unwrap().starts_with("call_mock_"));
    assert_eq!(call["type"], "function");
    assert_eq!(
        call["function"],
        json!({"name": "get_weather", "arguments": ""})
    );
    let arguments: String = chunks[1..]
        .iter()
        .filter_map(|c| {
            c.pointer("/choices/0/delta/tool_calls/0/function/arguments")
                .and_then(Value::as_str)
        })
        .collect();
    assert_eq!(arguments, r#"{"city":"Paris"}"#);
    assert!(chunks.len() >= 4, "role, fragments, finish, usage: {text}");
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "tool_calls");
    let usage = &chunks[chunks.len() - 1];
    assert_eq!(usage["choices"], json!([]));
    assert!(usage["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    mock.shutdown().await;
}

#[tokio::test]
async fn openai_tool_result_is_answered_with_text() {
    let config = MockConfig {
        label: Some("demo".into()),
        ..MockConfig::default()
    };
    let mock = start(config).await;
    let body = ask_gpt(json!({"messages": [
        {"role": "user", "content": "weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"},
    ]}));
    let answer: Value = post(&chat_url(&mock), &[], &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        answer["choices"][0]["message"]["content"],
        "[demo] tool result received: sunny, 21 C"
    );

    let mut stream = body.clone();
    stream["stream"] = json!(true);
    let text = post(&chat_url(&mock), &[], &stream)
        .await
        .text()
        .await
        .unwrap();
    let content: String = text
        .split("\n\n")
        .filter_map(|frame| frame.strip_prefix("data: "))
        .filter(|data| *data != "[DONE]")
        .filter_map(|data| {
            let chunk: Value = serde_json::from_str(data).unwrap();
            chunk["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(content, "[demo] tool result received: sunny, 21 C");

    // A request with tools whose last turn is the assistant's gets text.
    let body = ask_gpt(json!({"messages": [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello"},
    ]}));
    let answer: Value = post(&chat_url(&mock), &[], &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    assert!(answer["choices"][0]["message"]["content"].is_string());
    mock.shutdown().await;
}

#[tokio::test]
async fn openai_tool_call_stream_can_be_dropped() {
    let mock = start(MockConfig::default()).await;
    mock.set_failure("gpt-up", Some(Failure::DropAfter(1)));
    let response = post(&chat_url(&mock), &[], &ask_gpt(json!({"stream": true}))).await;
    assert_eq!(response.status(), 200);
    let text = read_until_error(response).await;
    assert!(
        !text.contains("[DONE]") && !text.contains("finish_reason\":\"tool_calls"),
        "{text}"
    );
    // The opening chunk and one argument fragment.
    assert_eq!(text.matches("data: ").count(), 2, "{text}");
    mock.shutdown().await;
}
