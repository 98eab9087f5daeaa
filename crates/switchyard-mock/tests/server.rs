//! End-to-end tests over real HTTP: what a router talking to the mock sees.

// Marks the helpers below as test code too, so clippy.toml's
// allow-unwrap-in-tests covers them and not only the `#[tokio::test]` fns.
#![cfg(test)]

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use switchyard_mock::{Failure, MockConfig, MockServer};

async fn start(config: MockConfig) -> MockServer {
    MockServer::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap()
}

fn chat(model: &str, extra: Value) -> Value {
    let mut body = json!({
        "model": model,
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": [{"type": "text", "text": "hello there world"}]},
        ],
    });
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    body
}

async fn post(server: &MockServer, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/chat/completions", server.base_url()))
        .bearer_auth("sk-test")
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Polls a condition instead of sleeping a guessed amount.
async fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The `data:` payloads of an SSE body.
fn sse_data(text: &str) -> Vec<&str> {
    text.split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
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

#[tokio::test]
async fn json_answer_has_model_and_real_usage() {
    let config = MockConfig {
        label: Some("demo".into()),
        ..MockConfig::default()
    };
    let server = start(config).await;

    let response = post(&server, &chat("gpt-x", json!({"max_tokens": 5}))).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-mock-model"], "gpt-x");
    let body: Value = response.json().await.unwrap();
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-mock-"));
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "gpt-x");
    assert_eq!(body["system_fingerprint"], "demo");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "[demo] gpt-x says: hello there"
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    // Prompt: (3 words + 1) + (3 words + 1); completion: 5 words.
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 8, "completion_tokens": 5, "total_tokens": 13})
    );

    let recorded = server.recorded();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].authorization.as_deref(), Some("Bearer sk-test"));
    assert!(!recorded[0].stream);
    assert_eq!(server.requests("gpt-x"), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn stream_with_usage_sends_chunks_usage_and_done() {
    let config = MockConfig {
        completion_words: 4,
        tokens_per_sec: 1000.0,
        ..MockConfig::default()
    };
    let server = start(config).await;

    let body = chat(
        "m",
        json!({"stream": true, "stream_options": {"include_usage": true}}),
    );
    let response = post(&server, &body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = response.text().await.unwrap();
    let data = sse_data(&text);
    assert_eq!(data.last(), Some(&"[DONE]"));

    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    // Role, four words, finish, usage.
    assert_eq!(chunks.len(), 7);
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    let content: String = chunks[1..5]
        .iter()
        .map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(content, "m says: hello there");
    assert_eq!(chunks[5]["choices"][0]["finish_reason"], "stop");
    assert!(
        chunks[..6]
            .iter()
            .all(|c| c["usage"].is_null() && c.get("usage").is_some())
    );
    assert_eq!(chunks[6]["choices"], json!([]));
    assert_eq!(
        chunks[6]["usage"],
        json!({"prompt_tokens": 8, "completion_tokens": 4, "total_tokens": 12})
    );
    server.shutdown().await;
}

#[tokio::test]
async fn injected_statuses_are_openai_errors() {
    let mut config = MockConfig::default();
    config
        .failures
        .insert("broken".into(), Failure::Status(500));
    config.failures.insert("busy".into(), Failure::Status(429));
    let server = start(config).await;

    let response = post(&server, &chat("broken", json!({}))).await;
    assert_eq!(response.status(), 500);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "server_error");
    assert!(body["error"]["message"].is_string());

    let response = post(&server, &chat("busy", json!({"stream": true}))).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");

    assert_eq!(server.requests("broken"), 1);
    assert_eq!(server.requests("busy"), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn drop_after_cuts_the_stream_before_done() {
    let mut config = MockConfig::default();
    config
        .failures
        .insert("flaky".into(), Failure::DropAfter(2));
    let server = start(config).await;

    let response = post(&server, &chat("flaky", json!({"stream": true}))).await;
    assert_eq!(response.status(), 200);
    let text = read_until_error(response).await;
    let data = sse_data(&text);
    assert_eq!(data.len(), 3, "role chunk and two words, got {text}");
    assert!(!text.contains("[DONE]"));

    // Non-streaming: a 200 whose JSON never completes.
    let response = post(&server, &chat("flaky", json!({}))).await;
    assert_eq!(response.status(), 200);
    let text = read_until_error(response).await;
    assert!(
        text.starts_with("{\"") && serde_json::from_str::<Value>(&text).is_err(),
        "{text}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn failures_change_at_run_time() {
    let server = start(MockConfig::default()).await;
    assert_eq!(post(&server, &chat("m", json!({}))).await.status(), 200);
    server.set_failure("m", Some(Failure::Status(503)));
    assert_eq!(post(&server, &chat("m", json!({}))).await.status(), 503);
    server.set_failure("m", None);
    assert_eq!(post(&server, &chat("m", json!({}))).await.status(), 200);

    // Over HTTP, with a model name containing `/`.
    let client = reqwest::Client::new();
    let url = format!("http://{}/mock/failures/openai/gpt-oss-120b", server.addr());
    let set = client
        .put(&url)
        .json(&json!({"failure": "429"}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 204);
    assert_eq!(
        post(&server, &chat("openai/gpt-oss-120b", json!({})))
            .await
            .status(),
        429
    );
    let bad = client
        .put(&url)
        .json(&json!({"failure": "explode"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(client.delete(&url).send().await.unwrap().status(), 204);
    assert_eq!(
        post(&server, &chat("openai/gpt-oss-120b", json!({})))
            .await
            .status(),
        200
    );
    server.shutdown().await;
}

#[tokio::test]
async fn counters_endpoint_counts_by_model() {
    let server = start(MockConfig::default()).await;
    server.set_failure("b", Some(Failure::Status(500)));
    post(&server, &chat("a", json!({}))).await;
    post(&server, &chat("a", json!({"stream": true}))).await;
    post(&server, &chat("b", json!({}))).await;
    // Malformed: no model to count it under.
    let malformed = post(&server, &json!({"model": "a", "messages": []})).await;
    assert_eq!(malformed.status(), 400);
    assert!(malformed.json::<Value>().await.unwrap()["error"]["message"].is_string());

    let url = format!("http://{}/mock/counters", server.addr());
    let counters: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    assert_eq!(counters, json!({"total": 3, "by_model": {"a": 2, "b": 1}}));
    assert_eq!(server.total_requests(), 3);

    let models: Value = reqwest::get(format!("{}/models", server.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a", "b"]);

    let url = format!("http://{}/mock/requests", server.addr());
    let recorded: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    assert_eq!(recorded.as_array().unwrap().len(), 3);
    assert_eq!(recorded[1]["stream"], true);
    server.shutdown().await;
}

#[tokio::test]
async fn hang_holds_until_timeout_and_shutdown_releases_it() {
    let server = start(MockConfig::default()).await;
    server.set_failure("stuck", Some(Failure::Hang));

    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let error = impatient
        .post(format!("{}/chat/completions", server.base_url()))
        .json(&chat("stuck", json!({})))
        .send()
        .await
        .unwrap_err();
    assert!(error.is_timeout(), "{error}");

    // A patient client is still waiting when the server stops.
    let url = format!("{}/chat/completions", server.base_url());
    let patient = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .json(&chat("stuck", json!({})))
            .send()
            .await
    });
    wait_until("the second request to arrive", || {
        server.requests("stuck") == 2
    })
    .await;

    tokio::time::timeout(Duration::from_secs(5), server.shutdown())
        .await
        .expect("shutdown should not wait for hanging requests");
    let answer = tokio::time::timeout(Duration::from_secs(5), patient)
        .await
        .unwrap()
        .unwrap();
    // Released with a 503, or cut by the closing server: either way, not stuck.
    if let Ok(response) = answer {
        assert_eq!(response.status(), 503);
    }
}

#[tokio::test]
async fn intermittent_failures_hit_every_nth_request_and_restart_when_set() {
    let server = start(MockConfig::default()).await;
    let client = reqwest::Client::new();
    let url = format!("http://{}/mock/failures/flaky", server.addr());
    let set = client.put(&url).json(&json!({"failure": "500@3"})).send().await.unwrap();
    assert_eq!(set.status(), 204);
    let mut statuses = Vec::new();
    for _ in 0..7 {
        statuses.push(post(&server, &chat("flaky", json!({}))).await.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 500, 200, 200, 500, 200]);

    // Setting a failure restarts its count; a 429 keeps its retry-after.
    server.set_failure("flaky", Some("429@2".parse().unwrap()));
    assert_eq!(post(&server, &chat("flaky", json!({}))).await.status(), 200);
    let limited = post(&server, &chat("flaky", json!({}))).await;
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "1");

    // Every other stream is cut after two words; the others end with [DONE].
    server.set_failure("flaky", Some("drop:2@2".parse().unwrap()));
    let whole = post(&server, &chat("flaky", json!({"stream": true}))).await;
    assert!(whole.text().await.unwrap().ends_with("data: [DONE]\n\n"));
    let cut = read_until_error(post(&server, &chat("flaky", json!({"stream": true}))).await).await;
    assert_eq!(sse_data(&cut).len(), 3, "role chunk and two words, got {cut}");
    assert!(!cut.contains("[DONE]"));

    let bad = client.put(&url).json(&json!({"failure": "500@0"})).send().await.unwrap();
    assert_eq!(bad.status(), 400);
    server.shutdown().await;
}
