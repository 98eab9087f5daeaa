//! `/v1/routers`: routers created, changed and deleted through the admin
//! API, served at once, refused as strictly as the config file, guarded by
//! the admin token, and replicated through raft to every node of a
//! three-node cluster (which keeps them across a restart).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "a failed unwrap is a failed test")]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use switchyard_config::Config;
use switchyard_mock::{MockConfig, MockServer};
use switchyard_node::start_node;
use switchyard_tests::{STANDARD_CONFIG, Sandbox, TEST_KEY, ask, eventually};

fn support_router() -> Value {
    json!({
        "name": "support",
        "description": "Customer support",
        "tasks": [
            {"name": "refunds", "description": "Refunds, returns and getting money back for an order", "models": ["mid"]},
            {"name": "shipping", "description": "Shipping, delivery and tracking a parcel", "models": ["cheap"], "selection_policy": "cheapest"}
        ],
        "fallback_models": ["spare"]
    })
}

async fn send(sandbox: &Sandbox, method: reqwest::Method, path: &str, body: Option<&Value>, token: Option<&str>) -> (u16, Value) {
    let mut request = sandbox.client.request(method, sandbox.url(path));
    if let Some(body) = body {
        request = request.json(body);
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn routers_are_created_changed_and_deleted_through_the_api() {
    // The admin token is read from the same variable as the provider key.
    let template = format!("{STANDARD_CONFIG}cluster:\n  admin_token_env: TEST_PROVIDER_KEY\n");
    let sandbox = Sandbox::start_with(&template, MockConfig::default()).await;
    let token = Some(TEST_KEY);
    let post = reqwest::Method::POST;
    let put = reqwest::Method::PUT;
    let delete = reqwest::Method::DELETE;
    let get = reqwest::Method::GET;

    // Without the token (even from loopback) nothing is shown or changed.
    let (status, body) = send(&sandbox, get.clone(), "/v1/routers", None, None).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "admin_forbidden");
    let (status, _) = send(&sandbox, post.clone(), "/v1/routers", Some(&support_router()), Some("wrong")).await;
    assert_eq!(status, 403);

    let (status, list) = send(&sandbox, get.clone(), "/v1/routers", None, token).await;
    assert_eq!(status, 200);
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(list["data"][0]["name"], "eng");
    assert_eq!(list["data"][0]["source"], "config");

    // Create: served as soon as the answer comes.
    let (status, created) = send(&sandbox, post.clone(), "/v1/routers", Some(&support_router()), token).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["source"], "api");
    assert!(created["version"].as_u64().unwrap() > 0);
    assert_eq!(created["tasks"][1]["selection_policy"], "cheapest");
    let response = sandbox.chat(&ask("router:support", "I want my money back for this order, how do refunds work?"), None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-model-router-selected-route"], "refunds");
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["model"], "mid");
    let models = sandbox.get_json("/v1/models").await;
    assert!(models["data"].as_array().unwrap().iter().any(|m| m["id"] == "router:support"));

    // Taken names, bad definitions: refused with the place of the fault.
    let (status, body) = send(&sandbox, post.clone(), "/v1/routers", Some(&support_router()), token).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("router_exists")));
    let mut eng = support_router();
    eng["name"] = json!("eng");
    let (status, _) = send(&sandbox, post.clone(), "/v1/routers", Some(&eng), token).await;
    assert_eq!(status, 409, "the file's router name is taken too");
    let mut bad = support_router();
    bad["name"] = json!("bad");
    bad["tasks"][0]["models"] = json!(["no-such-model"]);
    let (status, body) = send(&sandbox, post.clone(), "/v1/routers", Some(&bad), token).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_router");
    assert_eq!(body["error"]["param"], "router.tasks[0].models[0]");
    assert!(body["error"]["message"].as_str().unwrap().contains("no-such-model"));
    for (fault, value) in [
        ("tasks", json!([])),
        ("fallback_models", json!([])),
        ("colour", json!("blue")),
    ] {
        let mut bad = support_router();
        bad["name"] = json!("bad");
        bad[fault] = value;
        let (status, body) = send(&sandbox, post.clone(), "/v1/routers", Some(&bad), token).await;
        assert_eq!(status, 400, "{fault}: {body}");
        assert!(body["error"]["message"].is_string());
    }
    let mut other = support_router();
    other["tasks"][0]["name"] = json!("other");
    other["name"] = json!("bad");
    let (status, _) = send(&sandbox, post.clone(), "/v1/routers", Some(&other), token).await;
    assert_eq!(status, 400, "`other` is reserved");
    let (status, body) = send(&sandbox, put.clone(), "/v1/routers/x", Some(&support_router()), token).await;
    assert_eq!(status, 400, "path and body disagree: {body}");
    let (status, list) = send(&sandbox, get.clone(), "/v1/routers", None, token).await;
    assert_eq!(status, 200);
    assert_eq!(list["data"].as_array().unwrap().len(), 2, "no refused router was stored: {list}");

    // Replace: the new models serve at once.
    let mut changed = support_router();
    changed["tasks"][0]["models"] = json!(["pricey"]);
    changed.as_object_mut().unwrap().remove("name");
    let (status, replaced) = send(&sandbox, put.clone(), "/v1/routers/support", Some(&changed), token).await;
    assert_eq!(status, 200, "{replaced}");
    assert!(replaced["version"].as_u64() > created["version"].as_u64());
    let answer: Value = sandbox.chat(&ask("router:support", "refund my order please, money back"), None).await.json().await.unwrap();
    assert_eq!(answer["model"], "pricey");

    // Override a file router, then remove the override.
    let mut narrow = support_router();
    narrow["name"] = json!("eng");
    let (status, _) = send(&sandbox, put.clone(), "/v1/routers/eng", Some(&narrow), token).await;
    assert_eq!(status, 200);
    let (_, eng) = send(&sandbox, get.clone(), "/v1/routers/eng", None, token).await;
    assert_eq!(eng["source"], "api");
    assert_eq!(eng["tasks"][0]["name"], "refunds");
    let (status, deleted) = send(&sandbox, delete.clone(), "/v1/routers/eng", None, token).await;
    assert_eq!(status, 200);
    assert_eq!(deleted["restored_from_config"], true);
    let (_, eng) = send(&sandbox, get.clone(), "/v1/routers/eng", None, token).await;
    assert_eq!(eng["source"], "config");
    assert_eq!(eng["tasks"][0]["name"], "debugging");
    let (status, body) = send(&sandbox, delete.clone(), "/v1/routers/eng", None, token).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("router_in_config_file")));

    // Delete: gone at once.
    let (status, _) = send(&sandbox, delete.clone(), "/v1/routers/support", None, token).await;
    assert_eq!(status, 200);
    let response = sandbox.chat(&ask("router:support", "refund"), None).await;
    assert_eq!(response.status(), 404);
    let (status, body) = send(&sandbox, delete.clone(), "/v1/routers/support", None, token).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("router_not_found")));
    sandbox.stop().await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Three in-process nodes on their own ports, one raft group.
fn cluster_configs(upstream: &str, dir: &std::path::Path) -> Vec<String> {
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let peers: String = ports
        .iter()
        .enumerate()
        .map(|(i, (http, raft))| format!("    - {{ id: {}, raft: \"127.0.0.1:{raft}\", http: \"127.0.0.1:{http}\" }}\n", i + 1))
        .collect();
    ports
        .iter()
        .enumerate()
        .map(|(i, (http, raft))| {
            let base = STANDARD_CONFIG
                .replace("{fast}", upstream)
                .replace("{slow}", upstream)
                .replace("listen: 127.0.0.1:0", &format!("listen: 127.0.0.1:{http}"))
                .replace("{data_dir}", &dir.join(format!("node-{}", i + 1)).display().to_string());
            format!(
                "{base}cluster:\n  node_id: {}\n  listen: 127.0.0.1:{raft}\n  heartbeat_ms: 50\n  election_timeout_min_ms: 300\n  election_timeout_max_ms: 600\n  peers:\n{peers}",
                i + 1
            )
        })
        .collect()
}

#[tokio::test]
async fn routers_replicate_to_every_node_and_survive_a_restart() {
    let upstream = MockServer::start(SocketAddr::from(([127, 0, 0, 1], 0)), MockConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env = HashMap::from([("TEST_PROVIDER_KEY".to_owned(), TEST_KEY.to_owned())]);
    let configs = cluster_configs(&upstream.base_url(), dir.path());
    let mut nodes = Vec::new();
    for yaml in &configs {
        nodes.push(start_node(Config::from_yaml(yaml, &env).unwrap()).await.unwrap());
    }
    let client = reqwest::Client::new();
    eventually("the three nodes agree on a leader", Duration::from_secs(20), || {
        let statuses: Vec<_> = nodes.iter().map(|node| node.cluster_status().unwrap().leader).collect();
        async move { statuses[0].is_some() && statuses.iter().all(|leader| *leader == statuses[0]) }
    })
    .await;

    // Created through node 3 (a follower or the leader: either forwards).
    let created = client
        .post(format!("{}/v1/routers", nodes[2].base_url()))
        .json(&support_router())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    for node in &nodes {
        let url = format!("{}/v1/chat/completions", node.base_url());
        let client = client.clone();
        eventually("every node serves the new router", Duration::from_secs(10), || {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let response = client.post(&url).json(&ask("router:support", "where is my parcel? tracking delivery")).send().await.unwrap();
                response.status() == 200 && response.headers()["x-model-router-selected-route"] == "shipping"
            }
        })
        .await;
    }

    // Every node restarts; the router comes back from the log.
    for node in nodes.drain(..) {
        node.shutdown().await;
    }
    for yaml in &configs {
        nodes.push(start_node(Config::from_yaml(yaml, &env).unwrap()).await.unwrap());
    }
    for node in &nodes {
        let url = format!("{}/v1/routers/support", node.base_url());
        let client = client.clone();
        eventually("the router is back after the restart", Duration::from_secs(20), || {
            let (client, url) = (client.clone(), url.clone());
            async move { client.get(&url).send().await.is_ok_and(|response| response.status() == 200) }
        })
        .await;
    }
    let answer: Value = client
        .post(format!("{}/v1/chat/completions", nodes[0].base_url()))
        .json(&ask("router:support", "I want a refund, money back"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["model"], "mid");
    for node in nodes {
        node.shutdown().await;
    }
    upstream.shutdown().await;
}
