//! Classifier nodes: a node with only the `classifier` role registers with
//! an ingress node, which then sends it every classification (the ingress
//! node has no `classifier` role), routers made through the API included
//! (the route set travels with the request). When the classifier node
//! goes away, or one hangs, requests are classified locally by the
//! fallback classifier: none fails, and the metrics say why.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "a failed unwrap is a failed test")]

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};
use switchyard_classifier::remote::proto;
use switchyard_config::Config;
use switchyard_mock::MockConfig;
use switchyard_node::start_node;
use switchyard_tests::{STANDARD_CONFIG, Sandbox, TEST_KEY, ask, eventually, sample};

/// The ingress node: no `classifier` role; BM25 is its fallback.
fn ingress_template() -> String {
    format!(
        "{STANDARD_CONFIG}cluster:\n  roles: [ingress, voter]\n"
    )
    .replace(
        "classifier:\n  kind: lexical\n  workers: 2\n",
        "classifier:\n  kind: lexical\n  workers: 2\n  remote: { timeout_ms: 300, fallback: lexical, register_every_ms: 100 }\n",
    )
}

fn classifier_node_config(seed: &str, dir: &std::path::Path) -> Config {
    let yaml = STANDARD_CONFIG
        .replace("{fast}", "http://127.0.0.1:9/v1")
        .replace("{slow}", "http://127.0.0.1:9/v1")
        .replace("{data_dir}", &dir.display().to_string())
        .replace(
            "classifier:\n  kind: lexical\n  workers: 2\n",
            "classifier:\n  kind: lexical\n  workers: 3\n  remote: { register_every_ms: 100 }\n",
        );
    let yaml = format!("{yaml}cluster:\n  roles: [classifier]\n  seeds: [\"{seed}\"]\n");
    let env = HashMap::from([("TEST_PROVIDER_KEY".to_owned(), TEST_KEY.to_owned())]);
    Config::from_yaml(&yaml, &env).unwrap()
}

fn count(metrics: &str, target: &str) -> f64 {
    sample(metrics, &format!("switchyard_classify_seconds_count{{target=\"{target}\"}}")).unwrap_or(0.0)
}

fn fallbacks(metrics: &str, reason: &str) -> f64 {
    sample(metrics, &format!("switchyard_classifier_fallbacks_total{{reason=\"{reason}\"}}")).unwrap_or(0.0)
}

async fn debugging_turn(sandbox: &Sandbox) {
    let response = sandbox
        .chat(&ask("router:eng", "My app crashes with a NullPointerException, here is the stack trace"), None)
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-model-router-selected-route"], "debugging");
}

#[tokio::test]
async fn ingress_spreads_over_classifier_nodes_and_falls_back_locally() {
    let sandbox = Sandbox::start_with(&ingress_template(), MockConfig::default()).await;
    let classifier = sandbox.get_json("/v1/classifier").await;
    assert_eq!(classifier["in_spread"], false, "{classifier}");
    assert_eq!(classifier["kind"], "lexical");

    // No classifier node yet: the fallback classifier answers.
    debugging_turn(&sandbox).await;
    let metrics = sandbox.metrics().await;
    assert_eq!(fallbacks(&metrics, "no_classifier"), 1.0, "{metrics}");

    // A classifier node registers through the ingress node's gRPC address.
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(classifier_node_config(sandbox.node.raft_addr(), dir.path())).await.unwrap();
    let node_url = node.base_url();
    eventually("the ingress node knows the classifier node", Duration::from_secs(10), || async {
        sandbox.get_json("/v1/classifier").await["remote"].as_array().is_some_and(|remote| {
            remote.len() == 1 && remote[0]["workers"] == 3 && remote[0]["addr"] == node.raft_addr()
        })
    })
    .await;
    let ready = sandbox.client.get(format!("{node_url}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let refused = sandbox.client.post(format!("{node_url}/v1/chat/completions")).json(&ask("router:eng", "hi")).send().await.unwrap();
    assert_eq!(refused.status(), 421, "a classifier node serves no public API");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_an_ingress_node");

    // Every decision now runs there, concurrent ones included.
    let before = count(&sandbox.metrics().await, "remote");
    let turns: Vec<_> = (0..12).map(|_| debugging_turn(&sandbox)).collect();
    futures_util::future::join_all(turns).await;
    let metrics = sandbox.metrics().await;
    assert_eq!(count(&metrics, "remote") - before, 12.0, "{metrics}");
    assert_eq!(fallbacks(&metrics, "timeout") + fallbacks(&metrics, "error"), 0.0);
    assert_eq!(sample(&metrics, "switchyard_classifier_nodes").unwrap(), 1.0);

    // A router made through the API is classified there too: its route
    // set travels with the request.
    let created = sandbox
        .client
        .post(sandbox.url("/v1/routers"))
        .json(&json!({
            "name": "support",
            "tasks": [
                {"name": "refunds", "description": "Refunds, returns and getting money back for an order", "models": ["mid"]},
                {"name": "shipping", "description": "Shipping, delivery and tracking a parcel", "models": ["cheap"]}
            ],
            "fallback_models": ["spare"]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let response = sandbox.chat(&ask("router:support", "where is my parcel? the delivery tracking says nothing"), None).await;
    assert_eq!(response.headers()["x-model-router-selected-route"], "shipping");
    assert_eq!(count(&sandbox.metrics().await, "remote") - before, 13.0);

    // The classifier node stops: requests go on, classified locally.
    assert!(node.shutdown().await);
    for _ in 0..3 {
        debugging_turn(&sandbox).await;
    }
    eventually("the stopped node expires", Duration::from_secs(5), || async {
        sandbox.get_json("/v1/classifier").await["remote"].as_array().is_some_and(Vec::is_empty)
    })
    .await;

    // A node that registers and never answers: one request waits out the
    // timeout, then the node is skipped; none fails.
    let hanging = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hanging_addr = hanging.local_addr().unwrap().to_string();
    let _held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = hanging.accept().await {
            held.push(socket);
        }
    });
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", sandbox.node.raft_addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let reply = proto::registry_client::RegistryClient::new(channel)
        .register(proto::Registration {
            addr: hanging_addr.clone(),
            workers: 8,
            busy: 0,
            classifier: "moe".to_owned(),
            ttl_ms: 60_000,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!reply.nodes.is_empty(), "the registry names the cluster's nodes");
    let started = std::time::Instant::now();
    for _ in 0..3 {
        debugging_turn(&sandbox).await;
    }
    let metrics = sandbox.metrics().await;
    assert_eq!(fallbacks(&metrics, "timeout"), 1.0, "{metrics}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    let status = sandbox.get_json("/v1/classifier").await;
    assert_eq!(status["remote"][0]["down"], true, "{status}");
    sandbox.stop().await;
}
