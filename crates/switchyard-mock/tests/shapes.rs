//! The Anthropic and Gemini shapes and tool calls, over real HTTP.

#![cfg(test)]

use serde_json::{Value, json};
use switchyard_mock::{Failure, MockConfig, MockServer};

async fn start() -> MockServer {
    MockServer::start("127.0.0.1:0".parse().unwrap(), MockConfig::default()).await.unwrap()
}

async fn post(url: String, headers: &[(&str, &str)], body: &Value) -> reqwest::Response {
    let mut request = reqwest::Client::new().post(url).json(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

fn events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|frame| !frame.trim().is_empty())
        .map(|frame| {
            let name = frame.lines().find_map(|l| l.strip_prefix("event: ")).unwrap_or("").to_owned();
            let data = frame.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
            (name, serde_json::from_str(data).unwrap())
        })
        .collect()
}

const WEATHER_TOOL: &str = r#"{"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}"#;

#[tokio::test]
async fn anthropic_messages_json_stream_tools_and_errors() {
    let mock = start().await;
    let url = format!("{}/messages", mock.base_url());
    let body = json!({"model": "claude-up", "max_tokens": 5, "system": "Be brief.", "messages": [{"role": "user", "content": "hello there"}]});
    let response = post(url.clone(), &[("x-api-key", "sk-ant")], &body).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["type"], "message");
    assert_eq!(answer["content"][0]["text"], "claude-up says: hello there hello");
    assert_eq!(answer["stop_reason"], "end_turn");
    assert_eq!(answer["usage"], json!({"input_tokens": 2 + 1 + 2 + 1, "output_tokens": 5}));
    assert_eq!(mock.requests("claude-up"), 1);

    let mut stream = body.clone();
    stream["stream"] = json!(true);
    let text = post(url.clone(), &[], &stream).await.text().await.unwrap();
    let names: Vec<String> = events(&text).into_iter().map(|(name, _)| name).collect();
    assert_eq!(names[..3], ["message_start", "content_block_start", "ping"]);
    assert_eq!(names[names.len() - 3..], ["content_block_stop", "message_delta", "message_stop"]);
    let streamed: String = events(&text)
        .iter()
        .filter_map(|(_, data)| data.pointer("/delta/text").and_then(Value::as_str).map(str::to_owned))
        .collect();
    assert_eq!(streamed, "claude-up says: hello there hello");

    let tools = json!({"model": "claude-up", "max_tokens": 50, "tools": [serde_json::from_str::<Value>(WEATHER_TOOL).unwrap()],
        "messages": [{"role": "user", "content": "weather?"}]});
    let answer: Value = post(url.clone(), &[], &tools).await.json().await.unwrap();
    assert_eq!(answer["stop_reason"], "tool_use");
    assert_eq!(answer["content"][0]["input"], json!({"city": "Paris"}));
    let id = answer["content"][0]["id"].clone();
    let mut result = tools.clone();
    result["messages"] = json!([{"role": "user", "content": "weather?"}, {"role": "assistant", "content": answer["content"]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": "sunny"}]}]);
    let answer: Value = post(url.clone(), &[], &result).await.json().await.unwrap();
    assert_eq!(answer["content"][0]["text"], "tool result received: sunny");

    let mut streamed_call = tools.clone();
    streamed_call["stream"] = json!(true);
    let text = post(url.clone(), &[], &streamed_call).await.text().await.unwrap();
    let json: String = events(&text)
        .iter()
        .filter_map(|(_, data)| data.pointer("/delta/partial_json").and_then(Value::as_str).map(str::to_owned))
        .collect();
    assert_eq!(json, r#"{"city":"Paris"}"#);

    mock.set_failure("claude-up", Some(Failure::Status(529)));
    let response = post(url.clone(), &[], &body).await;
    assert_eq!(response.status(), 529);
    let error: Value = response.json().await.unwrap();
    assert_eq!((error["type"].as_str(), error["error"]["type"].as_str()), (Some("error"), Some("overloaded_error")));
    let response = post(url, &[], &json!({"model": "m", "messages": [{"role": "user", "content": "x"}]})).await;
    assert_eq!(response.status(), 400, "max_tokens is required");
    mock.shutdown().await;
}

#[tokio::test]
async fn gemini_generate_content_json_stream_tools_and_blocks() {
    let mock = start().await;
    let body = json!({"contents": [{"role": "user", "parts": [{"text": "hello there"}]}], "generationConfig": {"maxOutputTokens": 4}});
    for prefix in ["v1", "v1beta"] {
        let url = format!("http://{}/{prefix}/models/gem-up:generateContent", mock.base_url().trim_start_matches("http://").trim_end_matches("/v1"));
        let answer: Value = post(url, &[("x-goog-api-key", "g")], &body).await.json().await.unwrap();
        assert_eq!(answer["candidates"][0]["content"]["parts"][0]["text"], "gem-up says: hello there");
        assert_eq!(answer["candidates"][0]["finishReason"], "STOP");
        assert_eq!(answer["usageMetadata"]["candidatesTokenCount"], 4);
    }
    let stream_url = format!("{}/models/gem-up:streamGenerateContent?alt=sse", mock.base_url());
    let text = post(stream_url.clone(), &[], &body).await.text().await.unwrap();
    let chunks = events(&text);
    assert!(!text.contains("[DONE]"));
    let (_, last) = chunks.last().unwrap();
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    assert_eq!(last["usageMetadata"]["promptTokenCount"], 3);
    let streamed: String = chunks.iter().map(|(_, c)| c["candidates"][0]["content"]["parts"][0]["text"].as_str().unwrap().to_owned()).collect();
    assert_eq!(streamed, "gem-up says: hello there");

    let tools = json!({"contents": [{"role": "user", "parts": [{"text": "weather?"}]}],
        "tools": [{"functionDeclarations": [{"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]}]});
    let url = format!("{}/models/gem-up:generateContent", mock.base_url());
    let answer: Value = post(url.clone(), &[], &tools).await.json().await.unwrap();
    assert_eq!(answer["candidates"][0]["content"]["parts"][0]["functionCall"], json!({"name": "get_weather", "args": {"city": "Paris"}}));
    let mut result = tools.clone();
    result["contents"] = json!([{"role": "user", "parts": [{"text": "weather?"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"content": "sunny"}}}]}]);
    let answer: Value = post(url, &[], &result).await.json().await.unwrap();
    assert_eq!(answer["candidates"][0]["content"]["parts"][0]["text"], "tool result received: sunny");

    let blocked: Value = post(format!("{}/models/gem-blocked:generateContent", mock.base_url()), &[], &body).await.json().await.unwrap();
    assert_eq!(blocked["promptFeedback"]["blockReason"], "SAFETY");
    assert!(blocked.get("candidates").is_none());

    mock.set_failure("gem-up", Some(Failure::Status(429)));
    let response = post(stream_url, &[], &body).await;
    assert_eq!(response.status(), 429);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["status"], "RESOURCE_EXHAUSTED");
    mock.shutdown().await;
}

#[tokio::test]
async fn openai_tool_calls_json_and_stream() {
    let mock = start().await;
    let url = format!("{}/chat/completions", mock.base_url());
    let tools = json!([{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}]);
    let body = json!({"model": "gpt-up", "tools": tools, "messages": [{"role": "user", "content": "find it"}]});
    let answer: Value = post(url.clone(), &[], &body).await.json().await.unwrap();
    assert_eq!(answer["choices"][0]["finish_reason"], "tool_calls");
    let call = &answer["choices"][0]["message"]["tool_calls"][0];
    assert_eq!((call["function"]["name"].as_str(), call["function"]["arguments"].as_str()), (Some("lookup"), Some("{}")));

    let mut stream = body.clone();
    stream["stream"] = json!(true);
    let text = post(url.clone(), &[], &stream).await.text().await.unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"));
    let arguments: String = text
        .split("\n\n")
        .filter_map(|frame| frame.strip_prefix("data: "))
        .filter(|data| *data != "[DONE]")
        .filter_map(|data| serde_json::from_str::<Value>(data).ok())
        .filter_map(|chunk| chunk.pointer("/choices/0/delta/tool_calls/0/function/arguments").and_then(Value::as_str).map(str::to_owned))
        .collect();
    assert_eq!(arguments, "{}");

    let result = json!({"model": "gpt-up", "tools": tools, "messages": [{"role": "user", "content": "find it"},
        {"role": "assistant", "content": null, "tool_calls": [call]}, {"role": "tool", "tool_call_id": call["id"], "content": "found: 42"}]});
    let answer: Value = post(url, &[], &result).await.json().await.unwrap();
    assert_eq!(answer["choices"][0]["message"]["content"], "tool result received: found: 42");
    mock.shutdown().await;
}
