//! Live signals end to end: prices polled from a pricing URL, cooldowns of
//! failing models, cost and savings accounting, and the routing budget of
//! pinned sessions.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "a failed unwrap is a failed test")]

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchyard_mock::{Failure, MockConfig};
use switchyard_tests::{PriceServer, STANDARD_CONFIG, Sandbox, ask, eventually, sample};

/// Routes to `debugging` (cheapest of [pricey, cheap, mid]; fallbacks
/// [spare, mid]).
const DEBUG: &str = "My program crashes with an exception and a stack trace";

/// The standard config with `extra` appended (a `signals:` section) and the
/// affinity section replaced by `affinity`.
fn config(affinity: &str, extra: &str) -> String {
    assert!(STANDARD_CONFIG.contains(AFFINITY), "the standard config's affinity section moved");
    format!("{}{extra}", STANDARD_CONFIG.replace(AFFINITY, affinity))
}

const AFFINITY: &str = "affinity:\n  ttl_secs: 600\n";

const PRICES: &str = r#"{"as_of": "2026-11-01", "prices": {
    "cheap": {"input": 0.1, "output": 0.4},
    "mid": {"input": 1, "output": 2},
    "pricey": {"input": 10, "output": 30}}}"#;

async fn routed_model(sandbox: &Sandbox) -> String {
    sandbox.route(&ask("router:eng", DEBUG), None).await["model"].as_str().unwrap().to_owned()
}

fn model_entry<'a>(models: &'a Value, id: &str) -> &'a Value {
    models["data"].as_array().unwrap().iter().find(|m| m["id"] == id).unwrap()
}

#[tokio::test]
async fn a_price_change_on_the_pricing_url_shows_in_route_within_one_refresh() {
    let prices = PriceServer::start(PRICES).await;
    let refresh = Duration::from_secs(1);
    let yaml = config(
        AFFINITY,
        &format!("signals:\n  pricing: {{ url: \"{}\", refresh_secs: 1 }}\n", prices.url()),
    );
    let sandbox = Sandbox::start_with(&yaml, MockConfig::default()).await;
    eventually("the first fetch to be in force", Duration::from_secs(10), || async {
        let models = sandbox.get_json("/v1/models").await;
        model_entry(&models, "cheap")["switchyard"]["prices_as_of"] == "2026-11-01"
    })
    .await;
    assert_eq!(routed_model(&sandbox).await, "cheap");

    // `pricey` becomes the cheapest at the source.
    prices.set(200, &PRICES.replace(r#""input": 10, "output": 30"#, r#""input": 0.01, "output": 0.01"#));
    let changed = Instant::now();
    eventually("the new price to rank pricey first", Duration::from_secs(10), || async {
        routed_model(&sandbox).await == "pricey"
    })
    .await;
    let shown_after = changed.elapsed();
    println!("price change shown in /v1/route after {shown_after:?} (refresh interval {refresh:?})");
    // One interval, plus the fetch, the collector's turn and this test's
    // own polling, on a shared 2-core machine running other suites at once.
    assert!(shown_after <= refresh + Duration::from_secs(1), "{shown_after:?}");
    let route = sandbox.route(&ask("router:eng", DEBUG), None).await;
    assert_eq!(route["price"], json!({"input_per_million": 0.01, "output_per_million": 0.01}));
    let models = sandbox.get_json("/v1/models").await;
    let pricey = &model_entry(&models, "pricey")["switchyard"];
    assert_eq!(pricey["price"]["input_per_million"], 0.01);
    assert_eq!(pricey["price_source"], format!("http://{}/prices", prices.addr));
    let metrics = sandbox.metrics().await;
    assert_eq!(sample(&metrics, r#"switchyard_model_price_usd{model="pricey",unit="input"}"#), Some(0.01));
    assert!(sample(&metrics, r#"switchyard_signal_refreshes_total{source="pricing",result="ok"}"#).unwrap() >= 2.0);

    // A failed fetch and a document that prices nothing keep the last good
    // prices, and say so in a metric.
    prices.set(500, "upstream trouble");
    sandbox
        .metrics_eventually("a failed refresh", |m| {
            sample(m, r#"switchyard_signal_refreshes_total{source="pricing",result="error"}"#).is_some()
        })
        .await;
    assert_eq!(routed_model(&sandbox).await, "pricey");
    prices.set(200, r#"{"prices": {"someone-else": {"input": 1, "output": 1}}}"#);
    sandbox
        .metrics_eventually("a refused document", |m| {
            sample(m, r#"switchyard_signal_refreshes_total{source="pricing",result="error"}"#) >= Some(2.0)
        })
        .await;
    assert_eq!(routed_model(&sandbox).await, "pricey");

    // The models.dev catalogue: `cheap` by its upstream name
    // (provider/model), `pricey` by its bare id under its own provider.
    prices.set(
        200,
        r#"{"vendor": {"id": "vendor", "models": {"cheap-v1": {"id": "cheap-v1", "cost": {"input": 0.001, "output": 0.001}}}},
            "fast": {"id": "fast", "models": {"pricey": {"id": "pricey", "cost": {"input": 50, "output": 50}}}}}"#,
    );
    eventually("the models.dev prices to rank cheap first", Duration::from_secs(10), || async {
        routed_model(&sandbox).await == "cheap"
    })
    .await;
    let route = sandbox.route(&ask("router:eng", DEBUG), None).await;
    assert_eq!(route["candidates"], json!(["cheap", "mid", "pricey", "spare"]));

    let metrics = sandbox.metrics().await;
    let models = sandbox.get_json("/v1/models").await.to_string();
    for text in [&metrics, &models] {
        assert!(!text.contains("SECRET"), "the pricing URL's key leaked");
    }
    assert!(prices.fetches() >= 5);
    sandbox.stop().await;
}

#[tokio::test]
async fn a_failing_model_cools_down_is_ranked_last_then_probed_again() {
    let yaml = config(
        AFFINITY,
        "signals:\n  health: { failures: 2, window_secs: 10, cooldown_secs: 1 }\n",
    );
    let sandbox = Sandbox::start_with(&yaml, MockConfig::default()).await;
    sandbox.fast.set_failure("vendor/cheap-v1", Some(Failure::Status(500)));
    for _ in 0..2 {
        let body: Value = sandbox.chat(&ask("router:eng", DEBUG), None).await.json().await.unwrap();
        assert_eq!(body["model"], "mid");
    }
    let metrics = sandbox
        .metrics_eventually("cheap cooling down", |m| sample(m, r#"switchyard_model_cooling{model="cheap"}"#) == Some(1.0))
        .await;
    assert_eq!(sample(&metrics, r#"switchyard_model_cooldowns_total{model="cheap"}"#), Some(1.0));
    let route = sandbox.route(&ask("router:eng", DEBUG), None).await;
    assert_eq!(route["candidates"], json!(["mid", "pricey", "spare", "cheap"]));
    assert_eq!(route["cooling"], json!(["cheap"]));
    let models = sandbox.get_json("/v1/models").await;
    assert_eq!(model_entry(&models, "cheap")["switchyard"]["cooling"], true);

    // While it cools, requests go straight to the next model.
    let body: Value = sandbox.chat(&ask("router:eng", DEBUG), None).await.json().await.unwrap();
    assert_eq!(body["model"], "mid");
    assert_eq!(sandbox.fast.requests("vendor/cheap-v1"), 2);

    // It recovers; once the cooldown is over the next request probes it.
    sandbox.fast.set_failure("vendor/cheap-v1", None);
    sandbox
        .metrics_eventually("the cooldown to end", |m| sample(m, r#"switchyard_model_cooling{model="cheap"}"#) == Some(0.0))
        .await;
    let body: Value = sandbox.chat(&ask("router:eng", DEBUG), None).await.json().await.unwrap();
    assert_eq!(body["model"], "cheap");
    assert_eq!(sandbox.fast.requests("vendor/cheap-v1"), 3);
    sandbox.stop().await;
}

#[tokio::test]
async fn responses_carry_their_cost_and_the_savings_against_the_baseline() {
    let yaml = config(AFFINITY, "signals:\n  baseline_model: pricey\n");
    let sandbox = Sandbox::start_with(&yaml, MockConfig::default()).await;
    let response = sandbox.chat(&ask("router:eng", DEBUG), None).await;
    assert_eq!(response.status(), 200);
    let header = |name: &str| -> f64 { response.headers()[name].to_str().unwrap().parse().unwrap() };
    let (cost, savings) = (header("x-model-router-cost-usd"), header("x-model-router-savings-usd"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["model"], "cheap");
    let prompt = body["usage"]["prompt_tokens"].as_f64().unwrap();
    let completion = body["usage"]["completion_tokens"].as_f64().unwrap();
    assert!(prompt > 0.0 && completion > 0.0, "{body}");
    // cheap: 0.1 in + 0.4 out per million; pricey (baseline): 10 + 30.
    let expected = (prompt * 0.1 + completion * 0.4) / 1e6;
    let baseline = (prompt * 10.0 + completion * 30.0) / 1e6;
    assert!((cost - expected).abs() < 1e-8, "{cost} vs {expected}");
    assert!((savings - (baseline - expected)).abs() < 1e-8, "{savings}");

    let labels = r#"{router="eng",route="debugging",model="cheap"}"#;
    let metrics = sandbox
        .metrics_eventually("the cost", |m| m.contains("switchyard_cost_usd_total{router="))
        .await;
    let counted = sample(&metrics, &format!("switchyard_cost_usd_total{labels}")).unwrap();
    assert!((counted - expected).abs() < 1e-12, "{counted}");
    let counted = sample(&metrics, &format!("switchyard_baseline_cost_usd_total{labels}")).unwrap();
    assert!((counted - baseline).abs() < 1e-12, "{counted}");
    let counted = sample(&metrics, &format!("switchyard_savings_usd{labels}")).unwrap();
    assert!((counted - (baseline - expected)).abs() < 1e-12, "{counted}");

    // The serving model's latency, measured here, shows in /v1/models.
    let models = sandbox.get_json("/v1/models").await;
    let latency = &model_entry(&models, "cheap")["switchyard"]["latency"];
    assert_eq!(latency["samples"], 1, "{latency}");
    assert!(latency["ttft_ms"].as_f64().unwrap() >= 0.0 && latency["latency_p95_ms"].is_number(), "{latency}");

    let route = sandbox.route(&ask("router:eng", DEBUG), None).await;
    assert_eq!(route["savings"]["baseline_model"], "pricey");
    let fraction = route["savings"]["fraction"].as_f64().unwrap();
    assert!((fraction - (1.0 - 0.5 / 40.0)).abs() < 1e-9, "{fraction}");
    sandbox.stop().await;
}

#[tokio::test]
async fn the_routing_budget_keeps_a_pinned_session_off_pricier_models() {
    // cheap costs 0.5 per million (in + out): a budget of 7 allows up to
    // 3.5, so mid (3) and spare (2) but not pricey (40).
    let yaml = config("affinity:\n  ttl_secs: 600\n  switch_budget: 7\n", "");
    let sandbox = Sandbox::start_with(&yaml, MockConfig::default()).await;
    let body: Value = sandbox.chat(&ask("router:eng", DEBUG), Some("s1")).await.json().await.unwrap();
    assert_eq!(body["model"], "cheap");
    let route = sandbox.route(&ask("router:eng", "and now?"), Some("s1")).await;
    assert_eq!(route["affinity"], "hit");
    assert_eq!(route["candidates"], json!(["cheap", "mid", "spare"]));
    assert_eq!(route["over_budget"], json!(["pricey"]));
    // A session without a pin is not limited.
    let fresh = sandbox.route(&ask("router:eng", DEBUG), Some("s2")).await;
    assert_eq!(fresh["candidates"], json!(["cheap", "mid", "pricey", "spare"]));

    sandbox.fast.set_failure("vendor/cheap-v1", Some(Failure::Status(503)));
    sandbox.fast.set_failure("mid", Some(Failure::Status(503)));
    let body: Value = sandbox.chat(&ask("router:eng", "still broken"), Some("s1")).await.json().await.unwrap();
    assert_eq!(body["model"], "spare");
    assert_eq!(sandbox.fast.requests("pricey"), 0, "over the budget: never tried");
    sandbox.stop().await;
}
