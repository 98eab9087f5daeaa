//! Dispatch: failover through the ranked models, then the fallbacks.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "a failed unwrap is a failed test")]

use serde_json::Value;
use switchyard_mock::Failure;
use switchyard_tests::{Sandbox, TEST_KEY, ask, sample};

/// Routes to `debugging`: ranked [cheap, mid, pricey], fallbacks [spare].
const DEBUG: &str = "My program crashes with an exception and a stack trace";

#[tokio::test]
async fn failover_walks_the_chain_then_the_fallback_pool() {
    let sandbox = Sandbox::start().await;
    sandbox.fast.set_failure("vendor/cheap-v1", Some(Failure::Status(500)));
    sandbox.fast.set_failure("mid", Some(Failure::Status(429)));
    sandbox.fast.set_failure("pricey", Some(Failure::Hang));
    let response = sandbox.chat(&ask("router:eng", DEBUG), None).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["model"], "spare");
    for upstream in ["vendor/cheap-v1", "mid", "pricey", "spare"] {
        assert_eq!(sandbox.fast.requests(upstream), 1, "{upstream} tried once");
    }
    let metrics = sandbox
        .metrics_eventually("the served request", |m| m.contains("outcome=\"failed_over\""))
        .await;
    assert_eq!(
        sample(&metrics, r#"switchyard_requests_total{router="eng",route="debugging",model="spare",outcome="failed_over"}"#),
        Some(1.0)
    );
    assert_eq!(sample(&metrics, r#"switchyard_upstream_errors_total{model="cheap",status="500"}"#), Some(1.0));
    assert_eq!(sample(&metrics, r#"switchyard_upstream_errors_total{model="mid",status="429"}"#), Some(1.0));
    assert_eq!(sample(&metrics, r#"switchyard_upstream_errors_total{model="pricey",status="timeout"}"#), Some(1.0));
    assert_eq!(
        sample(&metrics, r#"switchyard_fallback_served_total{router="eng",route="debugging",model="spare"}"#),
        Some(1.0)
    );
    sandbox.stop().await;
}

#[tokio::test]
async fn all_models_failing_gives_502_listing_each_attempt_and_no_key() {
    let sandbox = Sandbox::start().await;
    for upstream in ["vendor/cheap-v1", "mid", "pricey", "spare"] {
        sandbox.fast.set_failure(upstream, Some(Failure::Status(503)));
    }
    let response = sandbox.chat(&ask("router:eng", DEBUG), None).await;
    assert_eq!(response.status(), 502);
    let text = response.text().await.unwrap();
    assert!(!text.contains(TEST_KEY), "the key leaked: {text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"]["type"], "upstream_error");
    assert_eq!(body["error"]["code"], "all_models_failed");
    let attempts = body["error"]["attempts"].as_array().unwrap();
    let models: Vec<&str> = attempts.iter().map(|a| a["model"].as_str().unwrap()).collect();
    assert_eq!(models, ["cheap", "mid", "pricey", "spare"]);
    assert!(attempts.iter().all(|a| a["status"] == 503));
    let metrics = sandbox
        .metrics_eventually("the failed request", |m| m.contains("all_failed"))
        .await;
    assert!(!metrics.contains(TEST_KEY));
    sandbox.stop().await;
}

#[tokio::test]
async fn a_request_error_from_upstream_goes_straight_back() {
    let sandbox = Sandbox::start().await;
    sandbox.fast.set_failure("vendor/cheap-v1", Some(Failure::Status(400)));
    let response = sandbox.chat(&ask("router:eng", DEBUG), None).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["message"].is_string());
    assert_eq!(sandbox.fast.requests("mid"), 0, "a 400 is not retried elsewhere");
    sandbox.stop().await;
}

#[tokio::test]
async fn connection_refused_fails_over() {
    // A provider on a port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/v1", closed.local_addr().unwrap());
    drop(closed);
    let template = switchyard_tests::STANDARD_CONFIG.replace(
        r#"{ name: slow, kind: openai, base_url: "{slow}" }"#,
        &format!(r#"{{ name: slow, kind: openai, base_url: "{dead}" }}"#),
    );
    let sandbox = Sandbox::start_with(&template, Default::default()).await;
    let response = sandbox
        .chat(&ask("router:eng", "Write a SQL query with an index on the database schema"), None)
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["model"], "cheap", "sluggish's provider refuses connections");
    let metrics = sandbox
        .metrics_eventually("the connect error", |m| m.contains("status=\"connect\""))
        .await;
    assert_eq!(sample(&metrics, r#"switchyard_upstream_errors_total{model="sluggish",status="connect"}"#), Some(1.0));
    sandbox.stop().await;
}
