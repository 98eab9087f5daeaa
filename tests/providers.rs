//! Every provider kind end to end: OpenAI, Anthropic and Gemini upstreams
//! answered in the OpenAI shape (JSON and SSE), failover across kinds,
//! `POST /v1/messages` in the Anthropic shape whatever served it, and agent
//! loops without a session header keeping one model.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "a failed unwrap is a failed test")]

use serde_json::{Value, json};
use switchyard_mock::{Failure, MockConfig};
use switchyard_tests::{PROVIDERS_CONFIG, Sandbox, TEST_KEY, ask, sse_events};

const CRASH: &str = "My program crashes with an exception and a stack trace";
const SQL: &str = "Write SQL queries and indexes for this database schema";
const WEATHER: &str = "What is the weather forecast in Paris today?";

async fn start() -> Sandbox {
    Sandbox::start_with(PROVIDERS_CONFIG, MockConfig::default()).await
}

fn streamed(body: &Value) -> Value {
    let mut body = body.clone();
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    body
}

/// The text and the model of an OpenAI SSE answer; checks it ends with `[DONE]`.
fn read_stream(events: &[String]) -> (String, String, Option<Value>) {
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{events:?}");
    let mut text = String::new();
    let mut model = String::new();
    let mut usage = None;
    for event in &events[..events.len() - 1] {
        let chunk: Value = serde_json::from_str(event).unwrap();
        assert!(chunk.get("error").is_none(), "{chunk}");
        model = chunk["model"].as_str().unwrap_or_default().to_owned();
        if let Some(piece) = chunk.pointer("/choices/0/delta/content").and_then(Value::as_str) {
            text.push_str(piece);
        }
        if chunk.get("usage").is_some_and(|u| !u.is_null()) {
            usage = Some(chunk["usage"].clone());
        }
    }
    (text, model, usage)
}

#[tokio::test]
async fn every_kind_answers_in_the_openai_shape_json_and_stream() {
    let sandbox = start().await;
    for (question, model, upstream) in [(CRASH, "claude", "claude-up"), (SQL, "gpt", "gpt-up"), (WEATHER, "gem", "gem-up")] {
        let response = sandbox.chat(&ask("router:eng", question), None).await;
        assert_eq!(response.status(), 200, "{model}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["object"], "chat.completion");
        assert_eq!(body["model"], model);
        assert!(!body["choices"][0]["message"]["content"].as_str().unwrap().is_empty(), "{body}");
        assert_eq!(body["choices"][0]["finish_reason"], "stop");
        assert!(body["usage"]["completion_tokens"].as_u64().unwrap() > 0, "{body}");
        assert_eq!(sandbox.fast.requests(upstream), 1, "{upstream}");

        let response = sandbox.chat(&streamed(&ask("router:eng", question)), None).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let (events, error) = sse_events(response).await;
        assert_eq!(error, None);
        let (text, served, usage) = read_stream(&events);
        assert_eq!(served, model);
        assert!(!text.is_empty(), "{model}: {events:?}");
        assert!(usage.unwrap()["completion_tokens"].as_u64().unwrap() > 0);
    }
    let metrics = sandbox.metrics().await;
    assert!(!metrics.contains(TEST_KEY));
    sandbox.stop().await;
}

#[tokio::test]
async fn failover_crosses_kinds_before_the_first_byte() {
    let sandbox = start().await;
    // Anthropic overloaded: the OpenAI model serves, JSON and stream.
    sandbox.fast.set_failure("claude-up", Some(Failure::Status(529)));
    let body: Value = sandbox.chat(&ask("router:eng", CRASH), None).await.json().await.unwrap();
    assert_eq!(body["model"], "gpt");
    let (events, _) = sse_events(sandbox.chat(&streamed(&ask("router:eng", CRASH)), None).await).await;
    assert_eq!(read_stream(&events).1, "gpt");
    // OpenAI down: the Anthropic model serves `databases`.
    sandbox.fast.set_failure("claude-up", None);
    sandbox.fast.set_failure("gpt-up", Some(Failure::Status(503)));
    let body: Value = sandbox.chat(&ask("router:eng", SQL), None).await.json().await.unwrap();
    assert_eq!(body["model"], "claude");
    // Gemini rate-limited: `weather` falls over to gpt... which is down, so
    // the client sees the 502 listing both.
    sandbox.fast.set_failure("gem-up", Some(Failure::Status(429)));
    let response = sandbox.chat(&ask("router:eng", WEATHER), None).await;
    assert_eq!(response.status(), 502);
    let body: Value = response.json().await.unwrap();
    let tried: Vec<&str> = body["error"]["attempts"].as_array().unwrap().iter().map(|a| a["model"].as_str().unwrap()).collect();
    assert_eq!(tried, ["gem", "gpt"]);
    sandbox.stop().await;
}

async fn messages(sandbox: &Sandbox, body: &Value) -> reqwest::Response {
    sandbox
        .client
        .post(sandbox.url("/v1/messages"))
        .header("anthropic-version", "2023-06-01")
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn messages_are_answered_in_the_anthropic_shape_whatever_served_them() {
    let sandbox = start().await;
    for (question, model) in [(CRASH, "claude"), (SQL, "gpt"), (WEATHER, "gem")] {
        let body = json!({"model": "router:eng", "max_tokens": 100, "messages": [{"role": "user", "content": question}]});
        let response = messages(&sandbox, &body).await;
        assert_eq!(response.status(), 200);
        assert!(response.headers().contains_key("x-model-router-selected-route"));
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["type"], "message", "{answer}");
        assert_eq!(answer["model"], model);
        assert_eq!(answer["content"][0]["type"], "text");
        assert_eq!(answer["stop_reason"], "end_turn");
        assert!(answer["usage"]["output_tokens"].as_u64().unwrap() > 0);

        let mut stream = body.clone();
        stream["stream"] = json!(true);
        let response = messages(&sandbox, &stream).await;
        assert_eq!(response.status(), 200);
        let text = response.text().await.unwrap();
        let names: Vec<&str> = text.lines().filter_map(|line| line.strip_prefix("event: ")).collect();
        assert_eq!(names.first(), Some(&"message_start"), "{text}");
        assert_eq!(&names[names.len() - 2..], ["message_delta", "message_stop"], "{text}");
        assert!(names.contains(&"content_block_delta"));
        assert!(text.contains(&format!("\"model\":\"{model}\"")), "{text}");
        assert!(text.contains("\"output_tokens\":") && text.contains("\"stop_reason\":\"end_turn\""), "{text}");
    }
    // Errors in Anthropic's envelope, with the OpenAI fields kept.
    let response = messages(&sandbox, &json!({"model": "router:eng", "messages": [{"role": "user", "content": "x"}]})).await;
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert_eq!(error["error"]["param"], "max_tokens");
    let response = messages(&sandbox, &json!({"model": "router:nope", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})).await;
    assert_eq!(response.status(), 404);
    let error: Value = response.json().await.unwrap();
    assert_eq!((error["error"]["type"].as_str(), error["error"]["code"].as_str()), (Some("not_found_error"), Some("router_not_found")));
    sandbox.stop().await;
}

#[tokio::test]
async fn tools_pass_through_and_an_agent_without_a_session_header_keeps_its_model() {
    let sandbox = start().await;
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let question = json!({"role": "user", "content": WEATHER});
    // First step: the Gemini model calls the tool; the router gives the
    // header-less request an implicit session (it declares tools).
    let response = sandbox.chat(&json!({"model": "router:eng", "messages": [question], "tools": tools}), None).await;
    assert_eq!(response.headers()["x-model-router-affinity"], "miss");
    let first: Value = response.json().await.unwrap();
    assert_eq!(first["model"], "gem");
    let call = &first["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(serde_json::from_str::<Value>(call["function"]["arguments"].as_str().unwrap()).unwrap(), json!({"city": "Paris"}));
    // Second step: the tool result. Same implicit session (same system
    // prompt, tool names and first user message): a pin hit, same model,
    // and the route of the user's turn.
    let messages = json!([question, first["choices"][0]["message"], {"role": "tool", "tool_call_id": call["id"], "content": "sunny"}]);
    let response = sandbox.chat(&json!({"model": "router:eng", "messages": messages, "tools": tools}), None).await;
    assert_eq!(response.headers()["x-model-router-affinity"], "hit");
    assert_eq!(response.headers()["x-model-router-selected-route"], "weather");
    let second: Value = response.json().await.unwrap();
    assert_eq!(second["model"], "gem");
    assert!(second["choices"][0]["message"]["content"].as_str().unwrap().contains("tool result received"), "{second}");
    // A plain chat request (no tools) gets no implicit session by default.
    let response = sandbox.chat(&ask("router:eng", CRASH), None).await;
    assert!(response.headers().get("x-model-router-affinity").is_none());

    // Anthropic tool use through `/v1/messages`, served by the OpenAI model.
    let body = json!({"model": "gpt", "max_tokens": 100,
        "tools": [{"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
        "messages": [{"role": "user", "content": "Weather in Paris?"}]});
    let answer: Value = sandbox.client.post(sandbox.url("/v1/messages")).json(&body).send().await.unwrap().json().await.unwrap();
    assert_eq!(answer["stop_reason"], "tool_use", "{answer}");
    assert_eq!(answer["content"][0]["type"], "tool_use");
    assert_eq!(answer["content"][0]["input"], json!({"city": "Paris"}));
    sandbox.stop().await;
}
