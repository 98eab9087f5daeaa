//! Session pinning with `X-Model-Affinity`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "a failed unwrap is a failed test")]

use serde_json::Value;
use switchyard_mock::Failure;
use switchyard_tests::{Sandbox, ask, sample};

const DEBUG: &str = "My program crashes with an exception and a stack trace";
const REVIEW: &str = "Please do a code review of this pull request diff";

#[tokio::test]
async fn later_turns_keep_the_first_turns_model_and_skip_the_classifier() {
    let sandbox = Sandbox::start().await;
    let first = sandbox.chat(&ask("router:eng", DEBUG), Some("agent-1")).await;
    assert_eq!(first.headers()["x-model-router-affinity"], "miss");
    assert_eq!(first.headers()["x-model-router-selected-route"], "debugging");
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["model"], "cheap");

    // A turn that alone would route to code_review (manual: pricey first).
    let second = sandbox.chat(&ask("router:eng", REVIEW), Some("agent-1")).await;
    assert_eq!(second.headers()["x-model-router-affinity"], "hit");
    assert_eq!(second.headers()["x-model-router-selected-route"], "debugging");
    let second: Value = second.json().await.unwrap();
    assert_eq!(second["model"], "cheap");

    // Another session is routed on its own.
    let other: Value = sandbox
        .chat(&ask("router:eng", REVIEW), Some("agent-2"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(other["model"], "pricey");

    let decision = sandbox.route(&ask("router:eng", REVIEW), Some("agent-1")).await;
    assert_eq!(decision["affinity"], "hit");
    assert_eq!(decision["model"], "cheap");

    let metrics = sandbox
        .metrics_eventually("affinity hits", |m| m.contains("result=\"hit\""))
        .await;
    assert_eq!(sample(&metrics, r#"switchyard_affinity_lookups_total{router="eng",result="hit"}"#), Some(2.0));
    assert_eq!(sample(&metrics, r#"switchyard_affinity_lookups_total{router="eng",result="miss"}"#), Some(2.0));
    // Two classifications only: the two first turns.
    assert_eq!(sample(&metrics, r#"switchyard_classifier_decision_seconds_count{classifier="lexical"}"#), Some(2.0));
    sandbox.stop().await;
}

#[tokio::test]
async fn pin_moves_to_the_model_that_served_after_a_failover() {
    let sandbox = Sandbox::start().await;
    let first: Value = sandbox
        .chat(&ask("router:eng", DEBUG), Some("s"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["model"], "cheap");

    sandbox.fast.set_failure("vendor/cheap-v1", Some(Failure::Status(500)));
    let second = sandbox.chat(&ask("router:eng", "and now?"), Some("s")).await;
    assert_eq!(second.headers()["x-model-router-affinity"], "hit");
    let second: Value = second.json().await.unwrap();
    assert_eq!(second["model"], "mid", "failed over along the ranking");

    // The pin followed the model that served, even once cheap recovers.
    sandbox.fast.set_failure("vendor/cheap-v1", None);
    let third: Value = sandbox
        .chat(&ask("router:eng", "thanks, one more"), Some("s"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(third["model"], "mid");
    sandbox.stop().await;
}

#[tokio::test]
async fn sessions_are_pinned_per_router_and_without_a_header_nothing_is_pinned() {
    let sandbox = Sandbox::start().await;
    let response = sandbox.chat(&ask("router:eng", DEBUG), None).await;
    assert!(response.headers().get("x-model-router-affinity").is_none());
    let decision = sandbox.route(&ask("router:eng", REVIEW), None).await;
    assert_eq!(decision["affinity"], "none");
    assert_eq!(decision["route"], "code_review");
    // A pin is written only when a model has served: /v1/route writes none.
    let decision = sandbox.route(&ask("router:eng", REVIEW), Some("fresh")).await;
    assert_eq!(decision["affinity"], "miss");
    let decision = sandbox.route(&ask("router:eng", DEBUG), Some("fresh")).await;
    assert_eq!(decision["affinity"], "miss");
    assert_eq!(decision["route"], "debugging");
    sandbox.stop().await;
}
