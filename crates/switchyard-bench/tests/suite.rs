//! The suite end to end against two local servers: a baseline that answers
//! at once and a "proxy" that waits 5 ms first. The added-budget search
//! finds no rate within +1 ms for it, and every rate up to its own highest
//! within +50 ms.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

use std::time::Duration;

use axum::Router;
use axum::routing::post;
use switchyard_bench::suite::{self, SuiteFile, SuiteParams};

async fn server(delay: Duration) -> String {
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move || async move {
            tokio::time::sleep(delay).await;
            "{}"
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/chat/completions", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_added_budget_search_measures_both_targets_at_each_rate() {
    let direct = server(Duration::ZERO).await;
    let slow = server(Duration::from_millis(5)).await;
    let file: SuiteFile = serde_json::from_value(serde_json::json!({
        "baseline": "direct",
        "targets": [
            {"name": "direct", "label": "direct", "url": direct, "start_rate": 40, "body": {"x": 1}},
            {"name": "slow", "label": "slow proxy", "url": slow, "start_rate": 40, "body": {"x": 1}}
        ]
    }))
    .unwrap();
    let params = |budget: &str| SuiteParams {
        rounds: 1,
        p99_budget_ms: 500.0,
        step: Duration::from_millis(300),
        warmup: Duration::from_millis(50),
        connections: 8,
        timeout: Duration::from_secs(2),
        bisections: 1,
        // Every search ends at this cap: the test is about the search, not
        // about how fast this machine is.
        max_rate: 80.0,
        rates: vec!["40".parse().unwrap()],
        added_budgets: vec![budget.parse().unwrap()],
    };

    let tight = suite::run(&file, &params("slow:1")).await.unwrap();
    assert_eq!(tight.max_rate["slow"], [80.0]);
    assert_eq!(tight.within_added, [vec![0.0]], "5 ms is not within +1 ms:\n{}", tight.table);
    // Every rate tried was measured on both, back to back.
    let budget_steps: Vec<(&str, f64)> = tight
        .steps
        .iter()
        .filter(|s| s.phase == "added-budget")
        .map(|s| (s.target.as_str(), s.report.target_rate))
        .collect();
    assert!(!budget_steps.is_empty());
    for pair in budget_steps.chunks(2) {
        assert_eq!(pair[0].0, "direct");
        assert_eq!(pair[1].0, "slow");
        assert_eq!(pair[0].1, pair[1].1);
    }
    assert!(tight.table.contains("slow within +1 ms p99 of the baseline up to 0 req/s"), "{}", tight.table);

    let loose = suite::run(&file, &params("slow:50")).await.unwrap();
    assert_eq!(loose.within_added, [vec![80.0]], "{}", loose.table);
    assert!(loose.table.contains("up to 80 req/s (median; rounds 80): 100% of its own max"), "{}", loose.table);
}
