//! `compare` against a real node in process with a fake upstream: each
//! prompt goes routed and to the baseline over HTTP, as a client sends it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests: a failed unwrap is a failed test"
)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use switchyard_config::Config;
use switchyard_eval::compare::{CSV_HEADER, CompareError, CompareOptions, compare, read_prompts};
use switchyard_mock::{MockConfig, MockServer};
use switchyard_node::{NodeHandle, start_node};

const TEST_KEY: &str = "sk-test-SECRET-0123456789";

/// The `eng` router of the end-to-end suites' standard config, with stable
/// policies only (`fastest` would change its pick as the run measures
/// latency). Prices: cheap 0.1+0.4, mid 1+2, pricey 10+30, spare 1+1.
const CONFIG: &str = r#"
server:
  listen: 127.0.0.1:0
  data_dir: "{data_dir}"
  shutdown_grace_secs: 10
demo: off
providers:
  - { name: fast, kind: openai, base_url: "{fast}", api_key_env: TEST_PROVIDER_KEY }
models:
  - { id: cheap, provider: fast, upstream: vendor/cheap-v1, price: { input: 0.1, output: 0.4 } }
  - { id: mid, provider: fast, price: { input: 1, output: 2 } }
  - { id: pricey, provider: fast, price: { input: 10, output: 30 } }
  - { id: spare, provider: fast, price: { input: 1, output: 1 } }
routers:
  - name: eng
    tasks:
      - name: debugging
        description: Bugs, errors, exceptions, stack traces and crashes - diagnosis and fixes
        models: [pricey, cheap, mid]
        selection_policy: cheapest
      - name: code_review
        description: Code review of a diff or pull request
        models: [mid, pricey, cheap]
        selection_policy: manual
      - name: databases
        description: SQL queries, database schemas and indexes
        models: [spare, cheap]
        selection_policy: manual
    fallback_models: [spare, mid]
classifier:
  kind: lexical
  workers: 2
dispatch:
  connect_timeout_ms: 500
  first_byte_timeout_ms: 1500
  total_timeout_ms: 10000
"#;

/// Lines in the shared format; `routes` is there as in real datasets and
/// ignored by `compare`. The id with a comma and a quote exercises CSV quoting.
const PROMPTS: [(&str, &str, &str); 4] = [
    (
        "dbg-1",
        "debugging",
        "My app crashes with a NullPointerException, here is the stack trace",
    ),
    (
        "review,\"2\"",
        "code_review",
        "Please do a code review of this pull request diff",
    ),
    (
        "sql-3",
        "databases",
        "Which indexes should this SQL query use on my database schema?",
    ),
    (
        "dbg-4",
        "debugging",
        "Diagnosis please: these errors and exceptions appear after a crash",
    ),
];

struct Sandbox {
    node: NodeHandle,
    upstream: MockServer,
    _data_dir: tempfile::TempDir,
}

async fn start() -> Sandbox {
    let upstream = MockServer::start(SocketAddr::from(([127, 0, 0, 1], 0)), MockConfig::default())
        .await
        .unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let yaml = CONFIG
        .replace("{fast}", &upstream.base_url())
        .replace("{data_dir}", &data_dir.path().display().to_string());
    let env = HashMap::from([("TEST_PROVIDER_KEY".to_owned(), TEST_KEY.to_owned())]);
    let node = start_node(Config::from_yaml(&yaml, &env).unwrap())
        .await
        .unwrap();
    Sandbox {
        node,
        upstream,
        _data_dir: data_dir,
    }
}

fn write_dataset(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("prompts.jsonl");
    let routes = json!([
        {"name": "debugging", "description": "bugs"},
        {"name": "code_review", "description": "reviews"},
        {"name": "databases", "description": "sql"},
    ]);
    let lines: Vec<String> = PROMPTS
        .iter()
        .map(|(id, expected, text)| {
            json!({
                "id": id,
                "routes": routes,
                "messages": [{"role": "user", "content": text}],
                "expected": expected,
            })
            .to_string()
        })
        .collect();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

fn options(node: &NodeHandle, baseline: &str) -> CompareOptions {
    CompareOptions {
        node: node.base_url(),
        concurrency: 2,
        timeout: Duration::from_secs(20),
        ..CompareOptions::new("eng", baseline)
    }
}

/// A CSV reader for the test's own check (RFC 4180 quoting).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(
        field.is_empty() && record.is_empty(),
        "CSV ends without a newline"
    );
    records
}

#[tokio::test]
async fn routed_and_baseline_side_by_side() {
    let sandbox = start().await;
    let dir = tempfile::tempdir().unwrap();
    let dataset = write_dataset(dir.path());

    let comparison = compare(&dataset, &options(&sandbox.node, "pricey"))
        .await
        .unwrap();
    let summary = comparison.summary_table();
    println!("{summary}\n{}", comparison.prompt_table());

    assert_eq!(comparison.rows.len(), PROMPTS.len());
    let client = reqwest::Client::new();
    for (row, (id, expected, text)) in comparison.rows.iter().zip(PROMPTS) {
        assert_eq!(row.id, id, "rows keep the dataset's order");
        assert!(!row.failed(), "{row:?}");
        // What the node says it would do for the same messages.
        let decision: Value = client
            .post(format!("{}/v1/route", sandbox.node.base_url()))
            .json(&json!({"model": "router:eng", "messages": [{"role": "user", "content": text}]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            row.routed.route.as_deref(),
            decision["route"].as_str(),
            "{id}"
        );
        assert_eq!(
            row.routed.route.as_deref(),
            Some(expected),
            "{id}: {decision}"
        );
        assert_eq!(
            row.routed.model.as_deref(),
            decision["model"].as_str(),
            "{id}"
        );
        assert_eq!(row.baseline.model.as_deref(), Some("pricey"));
        assert_eq!(
            row.baseline.route, None,
            "a model named directly has no route"
        );

        let routed_cost = row.routed.cost_usd.unwrap();
        let baseline_cost = row.baseline.cost_usd.unwrap();
        assert!(routed_cost > 0.0, "{row:?}");
        assert!(baseline_cost > routed_cost, "pricey costs more: {row:?}");
        assert!((row.saving_usd.unwrap() - (baseline_cost - routed_cost)).abs() < 1e-12);
        assert!(row.routed.prompt_tokens.unwrap() > 0);
        assert!(row.routed.completion_tokens.unwrap() > 0);
        assert_eq!(row.routed.prompt_tokens, row.baseline.prompt_tokens);
        assert!(row.routed.latency_ms > 0.0 && row.baseline.latency_ms > 0.0);
    }

    let totals = &comparison.totals;
    assert_eq!((totals.prompts, totals.failures, totals.paired), (4, 0, 4));
    let routed_sum: f64 = comparison
        .rows
        .iter()
        .map(|r| r.routed.cost_usd.unwrap())
        .sum();
    let baseline_sum: f64 = comparison
        .rows
        .iter()
        .map(|r| r.baseline.cost_usd.unwrap())
        .sum();
    assert!((totals.routed.cost_usd - routed_sum).abs() < 1e-12);
    assert!((totals.saving_usd - (baseline_sum - routed_sum)).abs() < 1e-12);
    assert!(totals.saving_fraction.unwrap() > 0.5, "{summary}");
    assert_eq!(totals.routes.get("debugging"), Some(&2));
    assert_eq!(totals.models.get("cheap"), Some(&2));
    assert_eq!(totals.models.get("mid"), Some(&1));
    assert_eq!(totals.models.get("spare"), Some(&1));
    let accuracy = totals.route_accuracy.unwrap();
    assert_eq!((accuracy.correct, accuracy.checked), (4, 4));
    assert!(summary.contains("route accuracy: 4/4"), "{summary}");
    assert!(summary.contains("debugging"), "{summary}");

    let mut csv = Vec::new();
    comparison.write_csv(&mut csv).unwrap();
    let records = parse_csv(&String::from_utf8(csv).unwrap());
    assert_eq!(records.len(), 1 + PROMPTS.len());
    assert_eq!(records[0], CSV_HEADER);
    let column = |name: &str| CSV_HEADER.iter().position(|c| *c == name).unwrap();
    for (record, row) in records[1..].iter().zip(&comparison.rows) {
        assert_eq!(record.len(), CSV_HEADER.len());
        assert_eq!(record[column("id")], row.id);
        assert_eq!(
            record[column("routed_model")],
            row.routed.model.clone().unwrap()
        );
        assert_eq!(record[column("baseline_status")], "200");
        let saving: f64 = record[column("saving_usd")].parse().unwrap();
        assert!((saving - row.saving_usd.unwrap()).abs() < 1e-8);
    }

    let json = comparison.to_json();
    assert_eq!(json["rows"].as_array().unwrap().len(), PROMPTS.len());
    assert_eq!(json["totals"]["paired"], 4);

    // Every call reached the upstream: two per prompt, one of them pricey.
    assert_eq!(sandbox.upstream.total_requests(), 8);
    assert_eq!(sandbox.upstream.requests("pricey"), 4);

    sandbox.node.shutdown().await;
    sandbox.upstream.shutdown().await;
}

#[tokio::test]
async fn a_failing_baseline_is_reported_per_row() {
    let sandbox = start().await;
    let dir = tempfile::tempdir().unwrap();
    let dataset = write_dataset(dir.path());

    let mut options = options(&sandbox.node, "no-such-model");
    options.limit = Some(3);
    options.api_key = Some("sk-client-key-0000".to_owned());
    let comparison = compare(&dataset, &options).await.unwrap();

    assert_eq!(comparison.rows.len(), 3, "--limit");
    for row in &comparison.rows {
        assert!(row.routed.succeeded(), "{row:?}");
        assert!(row.routed.cost_usd.is_some());
        assert_eq!(row.baseline.status, Some(404));
        let error = row.baseline.error.as_deref().unwrap();
        assert!(error.starts_with("404 model_not_found"), "{error}");
        assert_eq!(row.saving_usd, None);
    }
    let totals = &comparison.totals;
    assert_eq!(
        (
            totals.failures,
            totals.baseline.failures,
            totals.routed.failures
        ),
        (3, 3, 0)
    );
    assert_eq!(totals.paired, 0);
    assert_eq!(totals.saving_fraction, None);

    let mut csv = Vec::new();
    comparison.write_csv(&mut csv).unwrap();
    let text = String::from_utf8(csv).unwrap();
    let records = parse_csv(&text);
    assert_eq!(records.len(), 4);
    let error_column = CSV_HEADER
        .iter()
        .position(|c| *c == "baseline_error")
        .unwrap();
    assert!(records[1][error_column].starts_with("404 model_not_found"));

    let everything = format!(
        "{text}{}{}{}{options:?}",
        comparison.summary_table(),
        comparison.prompt_table(),
        comparison.to_json()
    );
    assert!(!everything.contains("sk-client-key"), "the API key leaked");
    assert!(!everything.contains(TEST_KEY), "the provider key leaked");
    assert_eq!(
        sandbox.upstream.total_requests(),
        3,
        "the unknown model never reaches an upstream"
    );

    sandbox.node.shutdown().await;
    sandbox.upstream.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_node_is_one_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let dir = tempfile::tempdir().unwrap();
    let dataset = write_dataset(dir.path());
    let options = CompareOptions {
        node: format!("http://{addr}"),
        ..CompareOptions::new("eng", "pricey")
    };
    let err = compare(&dataset, &options).await.unwrap_err();
    assert!(matches!(err, CompareError::Unreachable { .. }), "{err}");
    assert_eq!(read_prompts(&dataset, Some(2)).unwrap().len(), 2);
}
