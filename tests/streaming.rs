//! Streaming: SSE relayed event by event, failover before the first byte,
//! an error event when the stream breaks after it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "a failed unwrap is a failed test")]

use serde_json::{Value, json};
use switchyard_mock::{Failure, MockConfig};
use switchyard_tests::{Sandbox, ask, sample, sse_events};

fn stream(text: &str) -> Value {
    let mut body = ask("router:eng", text);
    body["stream"] = json!(true);
    body
}

const DEBUG: &str = "My program crashes with an exception and a stack trace";

#[tokio::test]
async fn stream_is_relayed_with_the_serving_model_and_counted() {
    let sandbox = Sandbox::start().await;
    let response = sandbox.chat(&stream(DEBUG), None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(response.headers()["x-model-router-selected-route"], "debugging");
    let (events, error) = sse_events(response).await;
    assert_eq!(error, None);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert!(chunks.len() > 3);
    assert!(chunks.iter().all(|c| c["model"] == "cheap"));
    // The router asked upstream for usage; the client did not, so it sees none.
    assert!(chunks.iter().all(|c| c.get("usage").is_none()));
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(text.contains("says"), "{text}");
    let sent = sandbox.fast.recorded().last().unwrap().body.clone();
    assert_eq!(sent["stream_options"]["include_usage"], true);
    let metrics = sandbox
        .metrics_eventually("tokens of the stream", |m| m.contains(r#"switchyard_tokens_total{model="cheap",direction="output"}"#))
        .await;
    assert_eq!(sample(&metrics, r#"switchyard_tokens_total{model="cheap",direction="output"}"#), Some(12.0));
    sandbox.stop().await;
}

#[tokio::test]
async fn client_that_asks_for_usage_gets_the_usage_chunk() {
    let sandbox = Sandbox::start().await;
    let mut body = stream(DEBUG);
    body["stream_options"] = json!({"include_usage": true});
    let (events, _) = sse_events(sandbox.chat(&body, None).await).await;
    let usage_chunk: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"]["completion_tokens"], 12);
    assert_eq!(usage_chunk["model"], "cheap");
    sandbox.stop().await;
}

#[tokio::test]
async fn stream_fails_over_before_the_first_byte() {
    let sandbox = Sandbox::start().await;
    sandbox.fast.set_failure("vendor/cheap-v1", Some(Failure::Status(502)));
    sandbox.fast.set_failure("mid", Some(Failure::Hang));
    let response = sandbox.chat(&stream(DEBUG), None).await;
    assert_eq!(response.status(), 200);
    let (events, error) = sse_events(response).await;
    assert_eq!(error, None);
    let chunks = &events[..events.len() - 1];
    assert!(chunks.iter().all(|e| serde_json::from_str::<Value>(e).unwrap()["model"] == "pricey"));
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    sandbox.stop().await;
}

#[tokio::test]
async fn stream_broken_midway_ends_with_an_error_event() {
    let sandbox = Sandbox::start().await;
    sandbox.fast.set_failure("vendor/cheap-v1", Some(Failure::DropAfter(3)));
    let response = sandbox.chat(&stream(DEBUG), None).await;
    assert_eq!(response.status(), 200, "the first chunk was already on its way");
    let (events, _) = sse_events(response).await;
    assert!(!events.iter().any(|e| e == "[DONE]"));
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "stream_interrupted");
    assert!(last["error"]["message"].as_str().unwrap().contains("cheap"));
    // Role chunk + 3 word chunks reached the client before the error.
    assert_eq!(events.len(), 5, "{events:?}");
    assert_eq!(sandbox.fast.requests("mid"), 0, "no failover after the first byte");
    let metrics = sandbox
        .metrics_eventually("the broken stream", |m| m.contains("stream_broken"))
        .await;
    assert_eq!(
        sample(&metrics, r#"switchyard_requests_total{router="eng",route="debugging",model="cheap",outcome="stream_broken"}"#),
        Some(1.0)
    );
    sandbox.stop().await;
}

#[tokio::test]
async fn chunks_arrive_as_the_upstream_sends_them() {
    // 20 words at 10 words/s: about two seconds in all. If the router
    // buffered, the first chunk would arrive with the last.
    let sandbox = Sandbox::start_with(
        switchyard_tests::STANDARD_CONFIG,
        MockConfig {
            tokens_per_sec: 10.0,
            completion_words: 20,
            ..MockConfig::default()
        },
    )
    .await;
    let response = sandbox.chat(&stream(DEBUG), None).await;
    use futures_util::StreamExt;
    let started = tokio::time::Instant::now();
    let mut body = response.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    let first_at = started.elapsed();
    assert!(String::from_utf8_lossy(&first).starts_with("data: "));
    while body.next().await.is_some() {}
    let total = started.elapsed();
    assert!(
        total > first_at * 4 && total.as_millis() >= 1500,
        "first chunk after {first_at:?}, end after {total:?}"
    );
    sandbox.stop().await;
}

#[tokio::test]
async fn shutdown_lets_a_stream_in_flight_finish() {
    let sandbox = Sandbox::start_with(
        switchyard_tests::STANDARD_CONFIG,
        MockConfig {
            tokens_per_sec: 20.0,
            completion_words: 20,
            ..MockConfig::default()
        },
    )
    .await;
    let response = sandbox.chat(&stream(DEBUG), None).await;
    assert_eq!(response.status(), 200);
    let reader = tokio::spawn(sse_events(response));
    let Sandbox { node, fast, slow, .. } = sandbox;
    let drained = node.shutdown().await;
    let (events, error) = reader.await.unwrap();
    assert!(drained);
    assert_eq!(error, None);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    fast.shutdown().await;
    slow.shutdown().await;
}
