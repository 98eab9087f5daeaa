//! The Grafana dashboard (`cluster/deploy/grafana/switchyard-dashboard.json`)
//! stays true to the node: every metric its queries use is one a node
//! exports, and every query parses as PromQL (checked by `promtool` from the
//! Debian `prometheus` package that `tests/setup.sh` installs).
//! Families appear in the exposition once they have samples, so the test
//! first drives traffic that touches every one.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "a failed unwrap is a failed test")]

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::{Value, json};
use switchyard_mock::{Failure, MockConfig};
use switchyard_tests::{PriceServer, STANDARD_CONFIG, Sandbox, ask};

fn dashboard() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../cluster/deploy/grafana/switchyard-dashboard.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every query of every panel, with Grafana's range variables made concrete.
fn queries(dashboard: &Value) -> Vec<String> {
    dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|panel| panel["targets"].as_array().unwrap().iter())
        .map(|target| target["expr"].as_str().unwrap().replace("$__rate_interval", "5m").replace("$__range", "1h"))
        .collect()
}

/// `switchyard_…` names in a query, without the sample suffixes of
/// counters and histograms.
fn metric_names(query: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = query;
    while let Some(start) = rest.find("switchyard_") {
        let tail = &rest[start..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_total", "_bucket", "_count", "_sum"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        names.insert(base.to_owned());
        rest = &tail[end..];
    }
    names
}

#[tokio::test]
async fn every_dashboard_query_parses_and_uses_exported_metrics() {
    let dashboard = dashboard();
    let queries = queries(&dashboard);
    assert!(queries.len() >= 20, "{} queries", queries.len());

    // Traffic that gives every metric family samples (families without
    // samples are not exported): a failover and a cooldown, a fallback
    // (`other`), a pinned session, a pricing refresh, a baseline.
    let prices = PriceServer::start(r#"{"prices": {"cheap": {"input": 0.1, "output": 0.4}}}"#).await;
    let yaml = format!(
        "{STANDARD_CONFIG}signals:\n  pricing: {{ url: \"{}\", refresh_secs: 1 }}\n  health: {{ failures: 1, window_secs: 10, cooldown_secs: 30 }}\n  baseline_model: pricey\n",
        prices.url()
    );
    let sandbox = Sandbox::start_with(&yaml, MockConfig::default()).await;
    sandbox.fast.set_failure("vendor/cheap-v1", Some(Failure::Status(500)));
    let debug = ask("router:eng", "My program crashes with an exception and a stack trace");
    assert_eq!(sandbox.chat(&debug, Some("s1")).await.status(), 200);
    let unmatched = json!({"model": "router:eng", "messages": [{"role": "user", "content": "zebra giraffe"}]});
    assert_eq!(sandbox.chat(&unmatched, None).await.status(), 200);
    let exported_text = sandbox
        .metrics_eventually("every family", |m| {
            ["switchyard_signal_refreshes", "switchyard_model_cooling", "switchyard_savings_usd", "switchyard_fallback_served"]
                .iter()
                .all(|name| m.contains(&format!("# TYPE {name} ")))
        })
        .await;
    let exported: BTreeSet<String> = exported_text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    sandbox.stop().await;
    for query in &queries {
        let names = metric_names(query);
        assert!(!names.is_empty(), "a query without a switchyard metric: {query}");
        for name in names {
            assert!(exported.contains(&name), "`{name}` is not exported by a node (query: {query}); exported: {exported:?}");
        }
    }

    // Each query as a recording rule, checked by Prometheus's own parser.
    let dir = tempfile::tempdir().unwrap();
    let rules: String = queries
        .iter()
        .enumerate()
        .map(|(i, query)| format!("      - record: dashboard_query_{i}\n        expr: {}\n", serde_json::to_string(query).unwrap()))
        .collect();
    let file = dir.path().join("rules.yml");
    std::fs::write(&file, format!("groups:\n  - name: dashboard\n    rules:\n{rules}")).unwrap();
    let output = std::process::Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(&file)
        .output()
        .expect("promtool (Debian package prometheus) is missing: run tests/setup.sh");
    assert!(
        output.status.success(),
        "promtool refused a dashboard query:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
