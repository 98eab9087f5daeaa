//! The HTTP surface: bad input, models, health, metrics.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "a failed unwrap is a failed test")]

use serde_json::{Value, json};
use switchyard_tests::{Sandbox, TEST_KEY, ask, sample};

async fn expect_error(response: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.unwrap();
    let error = &body["error"];
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert!(error["type"].is_string(), "{body}");
    assert_eq!(error["code"], code, "{body}");
    body
}

#[tokio::test]
async fn bad_input_gets_openai_shaped_errors() {
    let sandbox = Sandbox::start().await;
    let post = |body: &'static str| {
        sandbox
            .client
            .post(sandbox.url("/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    expect_error(post("{not json").await.unwrap(), 400, "invalid_request").await;
    let body = expect_error(post(r#"{"model":"router:eng"}"#).await.unwrap(), 400, "invalid_request").await;
    assert_eq!(body["error"]["param"], "messages");
    expect_error(post(r#"{"model":"router:eng","messages":[]}"#).await.unwrap(), 400, "invalid_request").await;
    let body = expect_error(
        post(r#"{"model":"router:eng","messages":[{"role":"wizard","content":"hi"}]}"#).await.unwrap(),
        400,
        "invalid_request",
    )
    .await;
    assert_eq!(body["error"]["param"], "messages[0].role");
    expect_error(sandbox.chat(&ask("router:nope", "hi"), None).await, 404, "router_not_found").await;
    expect_error(sandbox.chat(&ask("gpt-99", "hi"), None).await, 404, "model_not_found").await;
    let huge = ask("router:eng", &"word ".repeat(20_000));
    expect_error(sandbox.chat(&huge, None).await, 413, "request_too_large").await;
    let bad_session = sandbox
        .client
        .post(sandbox.url("/v1/chat/completions"))
        .header("X-Model-Affinity", "x".repeat(300))
        .json(&ask("router:eng", "hi"))
        .send()
        .await
        .unwrap();
    expect_error(bad_session, 400, "invalid_affinity_header").await;
    let route = sandbox
        .client
        .post(sandbox.url("/v1/route"))
        .body("[]")
        .send()
        .await
        .unwrap();
    expect_error(route, 400, "invalid_request").await;
    let missing = sandbox.client.get(sandbox.url("/v2/nothing")).send().await.unwrap();
    expect_error(missing, 404, "not_found").await;
    let wrong_method = sandbox.client.get(sandbox.url("/v1/chat/completions")).send().await.unwrap();
    expect_error(wrong_method, 405, "method_not_allowed").await;
    // Nothing bad reached an upstream, and the node still serves.
    assert_eq!(sandbox.fast.total_requests(), 0);
    assert_eq!(sandbox.chat(&ask("router:eng", "hello"), None).await.status(), 200);
    sandbox.stop().await;
}

#[tokio::test]
async fn models_lists_routers_and_models_with_prices() {
    let sandbox = Sandbox::start().await;
    let models = sandbox.get_json("/v1/models").await;
    assert_eq!(models["object"], "list");
    let data = models["data"].as_array().unwrap();
    let router = data.iter().find(|m| m["id"] == "router:eng").unwrap();
    assert_eq!(router["switchyard"]["kind"], "router");
    let tasks: Vec<&str> = router["switchyard"]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(tasks, ["debugging", "code_review", "databases", "other"]);
    let cheap = data.iter().find(|m| m["id"] == "cheap").unwrap();
    assert_eq!(cheap["owned_by"], "fast");
    assert_eq!(cheap["switchyard"]["price"], json!({"input_per_million": 0.1, "output_per_million": 0.4}));
    assert_eq!(cheap["switchyard"]["aliases"], json!(["cheapo"]));
    let hourly = data.iter().find(|m| m["id"] == "hourly").unwrap();
    assert_eq!(hourly["switchyard"]["price"], json!({"hourly": 4.0}));
    let health = sandbox.get_json("/healthz").await;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["demo"], false);
    sandbox.stop().await;
}

#[tokio::test]
async fn metrics_count_requests_tokens_cost_and_latency() {
    let sandbox = Sandbox::start().await;
    let question = ask("router:eng", "My program crashes with an exception and a stack trace");
    for _ in 0..3 {
        let answer: Value = sandbox.chat(&question, None).await.json().await.unwrap();
        assert_eq!(answer["model"], "cheap");
    }
    let metrics = sandbox
        .metrics_eventually("three requests", |m| {
            sample(m, r#"switchyard_requests_total{router="eng",route="debugging",model="cheap",outcome="success"}"#) == Some(3.0)
        })
        .await;
    let input = sample(&metrics, r#"switchyard_tokens_total{model="cheap",direction="input"}"#).unwrap();
    let output = sample(&metrics, r#"switchyard_tokens_total{model="cheap",direction="output"}"#).unwrap();
    assert_eq!(output, 36.0, "12 words per answer");
    assert!(input > 0.0);
    let cost = sample(&metrics, r#"switchyard_cost_usd_total{router="eng",route="debugging",model="cheap"}"#).unwrap();
    let expected = (input * 0.1 + output * 0.4) / 1e6;
    assert!((cost - expected).abs() < 1e-12, "cost {cost} expected {expected}");
    assert_eq!(sample(&metrics, r#"switchyard_ttft_seconds_count{model="cheap"}"#), Some(3.0));
    assert_eq!(sample(&metrics, r#"switchyard_request_duration_seconds_count{model="cheap"}"#), Some(3.0));
    assert_eq!(sample(&metrics, r#"switchyard_route_decisions_total{router="eng",route="debugging"}"#), Some(3.0));
    assert_eq!(sample(&metrics, r#"switchyard_task_match_total{router="eng",matched="true"}"#), Some(3.0));
    assert!(!metrics.contains(TEST_KEY));
    sandbox.stop().await;
}

#[tokio::test]
async fn the_classifier_pool_resizes_while_it_serves() {
    let sandbox = Sandbox::start().await;
    let status = sandbox.get_json("/v1/classifier").await;
    assert_eq!((status["kind"].as_str(), status["workers"].as_u64()), (Some("lexical"), Some(2)), "{status}");
    let question = ask("router:eng", "My program crashes with an exception and a stack trace");
    for workers in [5, 1] {
        let response = sandbox
            .client
            .put(sandbox.url("/v1/classifier/workers"))
            .json(&serde_json::json!({ "workers": workers }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let resized: Value = response.json().await.unwrap();
        assert_eq!(resized["workers"], workers, "{resized}");
        assert_eq!(sandbox.get_json("/v1/classifier").await["workers"], workers);
        // Requests keep being classified and served.
        let answer: Value = sandbox.chat(&question, None).await.json().await.unwrap();
        assert_eq!(answer["model"], "cheap");
    }
    for bad in [r#"{"workers": 0}"#, r#"{"workers": 100000}"#, r#"{"threads": 2}"#, "nope"] {
        let response = sandbox
            .client
            .put(sandbox.url("/v1/classifier/workers"))
            .header("content-type", "application/json")
            .body(bad)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{bad}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_admin_request", "{bad}: {body}");
    }
    assert_eq!(sandbox.get_json("/v1/classifier").await["workers"], 1);
    sandbox.stop().await;
}
