//! Who may call a node: client keys on the public API (hashed at rest,
//! from the file or the environment), per-key rate limits (429 with
//! `Retry-After`), the separate admin key, and the provider keys that must
//! never reach a client, a log line, a metric or the decision log.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests: a failed unwrap is a failed test")]

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use switchyard_config::KeyHash;
use switchyard_mock::MockConfig;
use switchyard_tests::{STANDARD_CONFIG, Sandbox, TEST_KEY, ask, eventually, sample};

const KEY_A: &str = "sk-client-a-0123456789abcdef";
const KEY_B: &str = "sk-client-b-0123456789abcdef";
const ADMIN: &str = "admin-key-0123456789abcdef";

fn config() -> String {
    let hash_a = KeyHash::of(KEY_A).to_hex();
    format!(
        "{STANDARD_CONFIG}auth:\n  keys:\n    - {{ name: team-a, sha256: {hash_a}, rate_limit: {{ requests_per_minute: 2, burst: 3 }} }}\n    - {{ name: team-b, key_env: KEY_B }}\n  admin_key_env: ADMIN_KEY\n"
    )
}

async fn sandbox() -> Sandbox {
    Sandbox::start_with_env(&config(), MockConfig::default(), &[("KEY_B", KEY_B), ("ADMIN_KEY", ADMIN)]).await
}

async fn chat_with(sandbox: &Sandbox, key: Option<&str>, body: &Value) -> reqwest::Response {
    let mut request = sandbox.client.post(sandbox.url("/v1/chat/completions")).json(body);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().await.unwrap()
}

async fn error_code(response: reqwest::Response) -> String {
    let body: Value = response.json().await.unwrap();
    for field in ["message", "type", "code"] {
        assert!(body["error"][field].is_string(), "OpenAI-shaped error: {body}");
    }
    body["error"]["code"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_public_api_needs_a_known_client_key() {
    let sandbox = sandbox().await;
    let body = ask("router:eng", "fix this stack trace");

    let missing = chat_with(&sandbox, None, &body).await;
    assert_eq!(missing.status(), 401);
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    assert_eq!(error_code(missing).await, "missing_api_key");

    let wrong = chat_with(&sandbox, Some("sk-client-z-0123456789abcdef"), &body).await;
    assert_eq!(wrong.status(), 401);
    assert_eq!(error_code(wrong).await, "invalid_api_key");

    // The key from the environment and the hashed one from the file.
    assert_eq!(chat_with(&sandbox, Some(KEY_B), &body).await.status(), 200);
    assert_eq!(chat_with(&sandbox, Some(KEY_A), &body).await.status(), 200);

    // Anthropic clients send `x-api-key`, and get Anthropic-shaped errors.
    let messages = json!({"model": "router:eng", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]});
    let anthropic = sandbox
        .client
        .post(sandbox.url("/v1/messages"))
        .header("x-api-key", KEY_B)
        .json(&messages)
        .send()
        .await
        .unwrap();
    assert_eq!(anthropic.status(), 200);
    let refused = sandbox.client.post(sandbox.url("/v1/messages")).json(&messages).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    let refused: Value = refused.json().await.unwrap();
    assert_eq!(refused["type"], "error");
    assert_eq!(refused["error"]["type"], "authentication_error");

    // Every public path is behind the key; probes and metrics are not.
    for path in ["/v1/models"] {
        let response = sandbox.client.get(sandbox.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 401, "{path}");
        let response = sandbox.client.get(sandbox.url(path)).bearer_auth(KEY_B).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    let route = sandbox.client.post(sandbox.url("/v1/route")).json(&body).send().await.unwrap();
    assert_eq!(route.status(), 401);
    for path in ["/healthz", "/readyz", "/metrics"] {
        let response = sandbox.client.get(sandbox.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }

    let metrics = sandbox
        .metrics_eventually("refusals and per-key counts", |m| {
            sample(m, "switchyard_key_requests_total{key=\"team-b\"}").is_some_and(|n| n >= 3.0)
        })
        .await;
    assert!(sample(&metrics, "switchyard_refused_total{reason=\"missing_key\"}").unwrap() >= 3.0, "{metrics}");
    assert!(sample(&metrics, "switchyard_refused_total{reason=\"invalid_key\"}").unwrap() >= 1.0);
    assert!(!metrics.contains(KEY_A) && !metrics.contains(KEY_B), "no key in the metrics");
    sandbox.stop().await;
}

#[tokio::test]
async fn a_key_over_its_rate_limit_gets_429_with_retry_after() {
    let sandbox = sandbox().await;
    let body = ask("cheap", "hello");
    // team-a: a burst of 3, then 2 a minute (one every 30 s).
    for turn in 0..3 {
        assert_eq!(chat_with(&sandbox, Some(KEY_A), &body).await.status(), 200, "turn {turn} is within the burst");
    }
    let limited = chat_with(&sandbox, Some(KEY_A), &body).await;
    assert_eq!(limited.status(), 429);
    let retry_after: u64 = limited.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry_after), "retry after {retry_after} s");
    let error: Value = limited.json().await.unwrap();
    assert_eq!(error["error"]["code"], "rate_limit_exceeded");
    assert_eq!(error["error"]["type"], "rate_limit_error");
    assert!(error["error"]["message"].as_str().unwrap().contains("team-a"), "{error}");
    assert!(!error.to_string().contains(KEY_A));
    // Limits are per key: team-b (no limit) is not slowed by team-a.
    for _ in 0..5 {
        assert_eq!(chat_with(&sandbox, Some(KEY_B), &body).await.status(), 200);
    }
    sandbox
        .metrics_eventually("a rate-limited refusal", |m| {
            sample(m, "switchyard_refused_total{reason=\"rate_limited\"}").is_some_and(|n| n >= 1.0)
        })
        .await;
    sandbox.stop().await;
}

#[tokio::test]
async fn admin_and_cluster_endpoints_take_only_the_admin_key() {
    let sandbox = sandbox().await;
    for path in ["/v1/cluster", "/v1/classifier", "/v1/routers", "/v1/decisions"] {
        // Loopback is not enough once an admin key is set.
        let bare = sandbox.client.get(sandbox.url(path)).send().await.unwrap();
        assert_eq!(bare.status(), 403, "{path}");
        assert_eq!(error_code(bare).await, "admin_forbidden");
        let client_key = sandbox.client.get(sandbox.url(path)).bearer_auth(KEY_B).send().await.unwrap();
        assert_eq!(client_key.status(), 403, "{path}: a client key is no admin key");
        let admin = sandbox.client.get(sandbox.url(path)).bearer_auth(ADMIN).send().await.unwrap();
        assert_eq!(admin.status(), 200, "{path}");
    }
    // And the admin key is no client key.
    let admin_on_public = chat_with(&sandbox, Some(ADMIN), &ask("cheap", "hi")).await;
    assert_eq!(admin_on_public.status(), 401);
    sandbox.stop().await;
}

/// A log sink for the node's tracing output (the node runs in this process).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An upstream that refuses every request and echoes the credentials it
/// got, as some providers do ("Incorrect API key provided: sk-...").
async fn echoing_upstream() -> String {
    use axum::http::HeaderMap;
    let app = axum::Router::new().route(
        "/chat/completions",
        axum::routing::post(|headers: HeaderMap| async move {
            let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
            (
                axum::http::StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": {"message": format!("Incorrect API key provided: {auth}"), "type": "invalid_request_error", "code": "invalid_api_key"}})),
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test]
async fn provider_keys_never_reach_clients_logs_metrics_or_the_decision_log() {
    let logs = Logs::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let echo = echoing_upstream().await;
    let template = STANDARD_CONFIG.replace(
        "models:\n",
        &format!("  - {{ name: echo, kind: openai, base_url: \"{echo}\", api_key_env: TEST_PROVIDER_KEY }}\nmodels:\n  - {{ id: echoed, provider: echo, price: {{ input: 1, output: 1 }} }}\n"),
    );
    let sandbox = Sandbox::start_with_env(&template, MockConfig::default(), &[]).await;
    let mut seen = Vec::new();

    // The upstream's refusal reaches the client, without the key.
    let refused = sandbox.chat(&ask("echoed", "hi"), None).await;
    assert_eq!(refused.status(), 400);
    let text = refused.text().await.unwrap();
    assert!(text.contains("Incorrect API key provided"), "{text}");
    seen.push(("the refusal", text));
    // Routed, streamed, failed over, and dry-run requests.
    for body in [
        ask("router:eng", "why does this panic: index out of bounds"),
        json!({"model": "router:eng", "stream": true, "messages": [{"role": "user", "content": "SQL index for this query"}]}),
    ] {
        let response = sandbox.chat(&body, Some("session-1")).await;
        assert_eq!(response.status(), 200);
        seen.push(("a routed answer", response.text().await.unwrap()));
        let route = sandbox.client.post(sandbox.url("/v1/route")).json(&body).send().await.unwrap();
        seen.push(("/v1/route", route.text().await.unwrap()));
    }
    for path in ["/v1/models", "/v1/cluster", "/v1/classifier", "/v1/routers", "/healthz", "/dashboard"] {
        let response = sandbox.client.get(sandbox.url(path)).send().await.unwrap();
        seen.push((path, response.text().await.unwrap()));
    }
    eventually("the decision log holds the requests", std::time::Duration::from_secs(10), || async {
        let response = sandbox.client.get(sandbox.url("/v1/decisions")).send().await.unwrap();
        response.text().await.unwrap().lines().count() >= 3
    })
    .await;
    let decisions = sandbox.client.get(sandbox.url("/v1/decisions")).send().await.unwrap();
    seen.push(("/v1/decisions", decisions.text().await.unwrap()));
    seen.push(("/metrics", sandbox.metrics().await));
    sandbox.stop().await;
    seen.push(("the node's logs", String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned()));

    assert!(seen.last().is_some_and(|(_, logs)| logs.contains("echoed")), "the log sink caught the node's logs");
    for (place, text) in seen {
        assert!(!text.contains(TEST_KEY), "the provider key leaked into {place}: {text}");
        assert!(!text.contains("SECRET-0123456789"), "part of the provider key leaked into {place}");
    }
}

const CLUSTER_SECRET: &str = "cluster-secret-0123456789abcdef";

/// A classifier-only node registering with `seed`, presenting `secret`.
fn classifier_node(seed: &str, dir: &std::path::Path, secret: &str) -> switchyard_config::Config {
    let yaml = STANDARD_CONFIG
        .replace("{fast}", "http://127.0.0.1:9/v1")
        .replace("{slow}", "http://127.0.0.1:9/v1")
        .replace("{data_dir}", &dir.display().to_string())
        .replace("  workers: 2\n", "  workers: 2\n  remote: { register_every_ms: 100 }\n");
    let yaml = format!("{yaml}cluster:\n  roles: [classifier]\n  seeds: [\"{seed}\"]\nauth:\n  cluster_secret_env: CLUSTER_SECRET\n");
    let env = std::collections::HashMap::from([
        ("TEST_PROVIDER_KEY".to_owned(), TEST_KEY.to_owned()),
        ("CLUSTER_SECRET".to_owned(), secret.to_owned()),
    ]);
    switchyard_config::Config::from_yaml(&yaml, &env).unwrap()
}

#[tokio::test]
async fn internal_grpc_services_refuse_peers_without_the_cluster_secret() {
    use switchyard_classifier::remote::proto;
    let template = format!("{STANDARD_CONFIG}cluster:\n  roles: [ingress, voter]\nauth:\n  cluster_secret_env: CLUSTER_SECRET\n").replace(
        "  workers: 2\n",
        "  workers: 2\n  remote: { timeout_ms: 300, fallback: lexical, register_every_ms: 100 }\n",
    );
    let sandbox = Sandbox::start_with_env(&template, MockConfig::default(), &[("CLUSTER_SECRET", CLUSTER_SECRET)]).await;
    let grpc = sandbox.node.raft_addr().to_owned();
    let registration = || proto::Registration {
        addr: "127.0.0.1:9".to_owned(),
        workers: 1,
        busy: 0,
        classifier: "lexical".to_owned(),
        ttl_ms: 1_000,
    };
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc}")).unwrap().connect().await.unwrap();
    let mut client = proto::registry_client::RegistryClient::new(channel);

    // A stranger: no secret, then a wrong one.
    let bare = client.register(registration()).await.unwrap_err();
    assert_eq!(bare.code(), tonic::Code::Unauthenticated);
    let mut wrong = tonic::Request::new(registration());
    wrong.metadata_mut().insert("x-switchyard-cluster-secret", "not-the-secret-0123456789".parse().unwrap());
    assert_eq!(client.register(wrong).await.unwrap_err().code(), tonic::Code::Unauthenticated);
    assert!(!bare.message().contains(CLUSTER_SECRET));

    // A peer with the secret is heard; a node with the wrong secret never
    // registers, and the node with the right one serves decisions.
    let (good_dir, bad_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let stranger = switchyard_node::start_node(classifier_node(&grpc, bad_dir.path(), "some-other-secret-0123456789")).await.unwrap();
    let peer = switchyard_node::start_node(classifier_node(&grpc, good_dir.path(), CLUSTER_SECRET)).await.unwrap();
    let peer_addr = peer.raft_addr().to_owned();
    eventually("the classifier node with the secret registers", std::time::Duration::from_secs(10), || async {
        sandbox.get_json("/v1/classifier").await["remote"]
            .as_array()
            .is_some_and(|remote| remote.iter().any(|node| node["addr"] == peer_addr.as_str()))
    })
    .await;
    let remote = sandbox.get_json("/v1/classifier").await["remote"].clone();
    assert!(
        !remote.as_array().unwrap().iter().any(|node| node["addr"] == stranger.raft_addr()),
        "the node without the secret is not registered: {remote}"
    );
    let response = sandbox.chat(&ask("router:eng", "My app crashes with a NullPointerException"), None).await;
    assert_eq!(response.status(), 200);
    sandbox
        .metrics_eventually("a decision made on the classifier node", |m| {
            sample(m, "switchyard_classify_seconds_count{target=\"remote\"}").is_some_and(|n| n >= 1.0)
        })
        .await;
    assert!(peer.shutdown().await && stranger.shutdown().await);
    sandbox.stop().await;
}
