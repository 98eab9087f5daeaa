//! The decision log: every decision (served, failed, or a `/v1/route` dry
//! run) lands in the on-disk ring and comes back from `GET /v1/decisions`
//! as JSON lines, filtered by route, router, model and time, with the
//! prompt only as a hash and a short preview (none when turned off).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "a failed unwrap is a failed test")]

use serde_json::Value;
use switchyard_mock::MockConfig;
use switchyard_tests::{STANDARD_CONFIG, Sandbox, ask};

async fn lines(sandbox: &Sandbox, query: &str) -> Vec<Value> {
    let response = sandbox.client.get(sandbox.url(&format!("/v1/decisions{query}"))).send().await.unwrap();
    assert_eq!(response.status(), 200, "{query}");
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let text = response.text().await.unwrap();
    text.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

#[tokio::test]
async fn decisions_are_logged_and_pulled_back_by_route_and_time() {
    let sandbox = Sandbox::start().await;
    let secret = "My service crashes with a NullPointerException in the payment handler, full stack trace attached below";
    for _ in 0..3 {
        assert_eq!(sandbox.chat(&ask("router:eng", secret), None).await.status(), 200);
    }
    for text in ["What will the weather be like in Lisbon tomorrow?", "Recommend a good novel for a long flight"] {
        let response = sandbox.chat(&ask("router:eng", text), None).await;
        assert_eq!(response.headers()["x-model-router-selected-route"], "other");
    }
    sandbox.route(&ask("router:eng", "Review this pull request diff please"), None).await;
    // A direct model request is logged too, with route `(direct)`.
    assert_eq!(sandbox.chat(&ask("cheap", "hello"), None).await.status(), 200);

    let all = lines(&sandbox, "").await;
    assert_eq!(all.len(), 7, "{all:#?}");
    let first = &all[0];
    assert_eq!(first["router"], "eng");
    assert_eq!(first["route"], "debugging");
    assert_eq!(first["model"], "cheap", "debugging is `cheapest`");
    assert_eq!(first["outcome"], "success");
    assert_eq!(first["affinity"], "none");
    assert_eq!(first["classifier"], "lexical");
    assert!(first["scores"].as_array().unwrap().len() == 3);
    assert!(first["cost_usd"].as_f64().unwrap() > 0.0);
    assert!(first["prompt_tokens"].as_u64().unwrap() > 0);
    assert!(first["latency_ms"].as_f64().unwrap() > 0.0);
    assert!(first["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(first["prompt_sha256"].as_str().unwrap().len(), 64);
    // The preview is short; the whole prompt is never stored.
    let preview = first["preview"].as_str().unwrap();
    assert!(preview.starts_with("My service crashes") && preview.ends_with('…'), "{preview}");
    assert!(preview.chars().count() <= 81);
    let dry = all.iter().find(|line| line["outcome"] == "dry_run").unwrap();
    assert_eq!(dry["route"], "code_review");
    assert!(all.iter().any(|line| line["route"] == "(direct)" && line["router"].is_null()));

    // The rows that fell through to `other`, for the spreadsheet.
    let other = lines(&sandbox, "?route=other").await;
    assert_eq!(other.len(), 2);
    assert!(other.iter().all(|line| line["fallback"] == true), "{other:#?}");
    // `since`, as Unix seconds or RFC 3339, keeps what was decided from then on.
    let cut = other[0]["unix_ms"].as_u64().unwrap();
    let expected = all.iter().filter(|line| line["unix_ms"].as_u64().unwrap() >= cut).count();
    assert!(expected >= 4 && expected < all.len(), "{expected}");
    let since = cut as f64 / 1000.0;
    assert_eq!(lines(&sandbox, &format!("?since={since}")).await.len(), expected);
    let rfc3339 = other[0]["time"].as_str().unwrap();
    let in_router = all.iter().filter(|line| line["unix_ms"].as_u64().unwrap() >= cut && line["router"] == "eng").count();
    assert_eq!(lines(&sandbox, &format!("?since={rfc3339}&router=eng")).await.len(), in_router);
    assert_eq!(lines(&sandbox, "?model=cheap&limit=2").await.len(), 2);
    for bad in ["?since=yesterday", "?limit=0", "?colour=blue"] {
        let response = sandbox.client.get(sandbox.url(&format!("/v1/decisions{bad}"))).send().await.unwrap();
        assert_eq!(response.status(), 400, "{bad}");
        let body: Value = response.json().await.unwrap();
        assert!(body["error"]["message"].is_string());
    }
    sandbox.stop().await;
}

#[tokio::test]
async fn previews_can_be_turned_off_and_the_log_can_be_off() {
    let template = format!("{STANDARD_CONFIG}decisions:\n  preview_chars: 0\n");
    let sandbox = Sandbox::start_with(&template, MockConfig::default()).await;
    sandbox.chat(&ask("router:eng", "a secret about my database schema"), None).await;
    let line: Value = serde_json::from_str(
        sandbox.client.get(sandbox.url("/v1/decisions")).send().await.unwrap().text().await.unwrap().trim(),
    )
    .unwrap();
    assert!(line.get("preview").is_none(), "{line}");
    assert!(!line.to_string().contains("secret"));
    sandbox.stop().await;

    let template = format!("{STANDARD_CONFIG}decisions:\n  enabled: false\n");
    let sandbox = Sandbox::start_with(&template, MockConfig::default()).await;
    let response = sandbox.client.get(sandbox.url("/v1/decisions")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    sandbox.stop().await;
}
