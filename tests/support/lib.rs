//! Test support: a node and its fake upstreams on 127.0.0.1, started the
//! same way the binary starts them (`switchyard_node::start_node`).
//!
//! Suites build a [`Sandbox`] from a YAML template whose `{fast}` and
//! `{slow}` placeholders become the base URLs of two fake upstreams (one
//! answering at once, one after a delay), then talk to the node over HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test support: a failed unwrap is a failed test")]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use switchyard_config::Config;
use switchyard_mock::{MockConfig, MockServer};
use switchyard_node::{NodeHandle, start_node};

/// The key the test provider reads from its environment; it must reach the
/// upstream and never a client, a log line or a metric.
pub const TEST_KEY: &str = "sk-test-SECRET-0123456789";

/// Time to first token of the slow upstream.
pub const SLOW_TTFT: Duration = Duration::from_millis(250);

/// A config with every selection policy, a fallback pool and aliases.
/// Prices: cheap 0.1+0.4, mid 1+2, pricey 10+30, spare 1+1, hourly by the hour.
pub const STANDARD_CONFIG: &str = r#"
server:
  listen: 127.0.0.1:0
  data_dir: "{data_dir}"
  max_body_bytes: 65536
  shutdown_grace_secs: 10
demo: off
providers:
  - { name: fast, kind: openai, base_url: "{fast}", api_key_env: TEST_PROVIDER_KEY }
  - { name: slow, kind: openai, base_url: "{slow}" }
models:
  - { id: cheap, provider: fast, upstream: vendor/cheap-v1, price: { input: 0.1, output: 0.4 }, aliases: [cheapo] }
  - { id: mid, provider: fast, price: { input: 1, output: 2 } }
  - { id: pricey, provider: fast, price: { input: 10, output: 30 } }
  - { id: spare, provider: fast, price: { input: 1, output: 1 } }
  - { id: hourly, provider: fast, price: { hourly: 4.0 } }
  - { id: sluggish, provider: slow, price: { input: 0.2, output: 0.2 } }
routers:
  - name: eng
    tasks:
      - name: debugging
        description: Bugs, errors, exceptions, stack traces and crashes - diagnosis and fixes
        models: [pricey, cheap, mid]
        selection_policy: cheapest
      - name: code_review
        description: Code review of a diff or pull request
        models: [pricey, mid, cheap]
        selection_policy: manual
      - name: databases
        description: SQL queries, database schemas and indexes
        models: [sluggish, cheap, hourly]
        selection_policy: fastest
    fallback_models: [spare, mid]
classifier:
  kind: lexical
  workers: 2
affinity:
  ttl_secs: 600
dispatch:
  connect_timeout_ms: 500
  first_byte_timeout_ms: 1500
  total_timeout_ms: 10000
"#;

/// A running node with its two fake upstreams.
#[derive(Debug)]
pub struct Sandbox {
    pub node: NodeHandle,
    pub fast: MockServer,
    pub slow: MockServer,
    pub client: reqwest::Client,
    _data_dir: tempfile::TempDir,
}

impl Sandbox {
    pub async fn start() -> Sandbox {
        Sandbox::start_with(STANDARD_CONFIG, MockConfig::default()).await
    }

    /// Starts the upstreams, then a node from `template`.
    pub async fn start_with(template: &str, fast_config: MockConfig) -> Sandbox {
        Sandbox::start_with_env(template, fast_config, &[]).await
    }

    /// As [`Sandbox::start_with`], with more environment variables for the
    /// config (keys named by `*_env` settings).
    pub async fn start_with_env(template: &str, fast_config: MockConfig, extra_env: &[(&str, &str)]) -> Sandbox {
        let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        let fast = MockServer::start(any_port, fast_config).await.unwrap();
        let slow = MockServer::start(
            any_port,
            MockConfig {
                ttft: SLOW_TTFT,
                ..MockConfig::default()
            },
        )
        .await
        .unwrap();
        let data_dir = tempfile::tempdir().unwrap();
        let yaml = template
            .replace("{fast}", &fast.base_url())
            .replace("{slow}", &slow.base_url())
            .replace("{data_dir}", &data_dir.path().display().to_string());
        let mut env = HashMap::from([("TEST_PROVIDER_KEY".to_owned(), TEST_KEY.to_owned())]);
        env.extend(extra_env.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())));
        let config = Config::from_yaml(&yaml, &env).unwrap();
        let node = start_node(config).await.unwrap();
        Sandbox {
            node,
            fast,
            slow,
            client: reqwest::Client::new(),
            _data_dir: data_dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.node.base_url(), path)
    }

    /// POSTs a chat completion, with a session header when given.
    pub async fn chat(&self, body: &Value, session: Option<&str>) -> reqwest::Response {
        let mut request = self.client.post(self.url("/v1/chat/completions")).json(body);
        if let Some(session) = session {
            request = request.header("X-Model-Affinity", session);
        }
        request.send().await.unwrap()
    }

    /// POSTs to `/v1/route` and returns the decision.
    pub async fn route(&self, body: &Value, session: Option<&str>) -> Value {
        let mut request = self.client.post(self.url("/v1/route")).json(body);
        if let Some(session) = session {
            request = request.header("X-Model-Affinity", session);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// GETs `path` and returns its JSON body, checking for a 200.
    pub async fn get_json(&self, path: &str) -> Value {
        get_json(&self.client, &self.url(path)).await
    }

    pub async fn metrics(&self) -> String {
        let response = self.client.get(self.url("/metrics")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.text().await.unwrap()
    }

    /// Waits until the metrics text satisfies `check`.
    pub async fn metrics_eventually(&self, what: &str, check: impl Fn(&str) -> bool) -> String {
        let mut last = String::new();
        for _ in 0..200 {
            last = self.metrics().await;
            if check(&last) {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("metrics never showed {what}; last scrape:\n{last}");
    }

    pub async fn stop(self) {
        assert!(self.node.shutdown().await, "node did not drain in time");
        self.fast.shutdown().await;
        self.slow.shutdown().await;
    }
}

/// GETs `url` and returns its JSON body, checking for a 200.
pub async fn get_json(client: &reqwest::Client, url: &str) -> Value {
    let response = client.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200, "GET {url}");
    response.json().await.unwrap()
}

/// A chat request body: `router:<name>` or a model id, one user message.
pub fn ask(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

/// The value of a sample line `name{labels} value` in a metrics scrape.
pub fn sample(metrics: &str, name_and_labels: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(name_and_labels)?;
        rest.trim().parse().ok()
    })
}

/// Polls `check` until it holds (every 20 ms, up to `timeout`).
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("condition never held: {what}");
}

/// Reads an SSE body into its `data:` payloads; a transport error ends the
/// list with `Err(..)`.
pub async fn sse_events(response: reqwest::Response) -> (Vec<String>, Option<String>) {
    use futures_util::StreamExt;
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    let mut error = None;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => buffer.push_str(&String::from_utf8_lossy(&bytes)),
            Err(err) => {
                error = Some(err.to_string());
                break;
            }
        }
    }
    let events = buffer
        .split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|line| line.strip_prefix("data: "))
                .collect();
            (!data.is_empty()).then(|| data.join("\n"))
        })
        .collect();
    (events, error)
}

/// A pricing URL whose answer a test changes: `GET /prices` returns the
/// current status and body.
#[derive(Debug)]
pub struct PriceServer {
    pub addr: SocketAddr,
    state: std::sync::Arc<std::sync::Mutex<(u16, String)>>,
    fetches: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl PriceServer {
    pub async fn start(body: &str) -> PriceServer {
        use axum::extract::State;
        use axum::http::StatusCode;
        type Shared = (std::sync::Arc<std::sync::Mutex<(u16, String)>>, std::sync::Arc<std::sync::atomic::AtomicUsize>);
        let state = std::sync::Arc::new(std::sync::Mutex::new((200, body.to_owned())));
        let fetches = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let app = axum::Router::new()
            .route(
                "/prices",
                axum::routing::get(|State((state, fetches)): State<Shared>| async move {
                    fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let (status, body) = state.lock().unwrap().clone();
                    (StatusCode::from_u16(status).unwrap(), body)
                }),
            )
            .with_state((state.clone(), fetches.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        PriceServer {
            addr,
            state,
            fetches,
            task,
        }
    }

    /// The URL with a query string standing for a key, which must never
    /// show in logs, `/v1/models` or metrics.
    pub fn url(&self) -> String {
        format!("http://{}/prices?key=sk-pricing-SECRET", self.addr)
    }

    pub fn set(&self, status: u16, body: &str) {
        *self.state.lock().unwrap() = (status, body.to_owned());
    }

    pub fn fetches(&self) -> usize {
        self.fetches.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for PriceServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One provider of each kind (OpenAI, Anthropic, Gemini), all served by the
/// `{fast}` fake upstream, which speaks the three APIs. Routes: `debugging`
/// → claude (Anthropic) then gpt; `databases` → gpt (OpenAI) then claude;
/// `weather` → gem (Gemini) then gpt; fallback gpt.
pub const PROVIDERS_CONFIG: &str = r#"
server:
  listen: 127.0.0.1:0
  data_dir: "{data_dir}"
demo: off
providers:
  - { name: oa, kind: openai, base_url: "{fast}", api_key_env: TEST_PROVIDER_KEY }
  - { name: an, kind: anthropic, base_url: "{fast}", api_key_env: TEST_PROVIDER_KEY }
  - { name: gg, kind: gemini, base_url: "{fast}", api_key_env: TEST_PROVIDER_KEY }
models:
  - { id: gpt, provider: oa, upstream: gpt-up, price: { input: 1, output: 2 } }
  - { id: claude, provider: an, upstream: claude-up, price: { input: 3, output: 15 } }
  - { id: gem, provider: gg, upstream: gem-up, price: { input: 0.3, output: 2.5 } }
routers:
  - name: eng
    tasks:
      - { name: debugging, description: "Bugs, errors, exceptions, stack traces and crashes", models: [claude, gpt] }
      - { name: databases, description: "SQL queries, database schemas and indexes", models: [gpt, claude] }
      - { name: weather, description: "Weather forecast, temperature and rain for a city", models: [gem, gpt] }
    fallback_models: [gpt]
classifier: { kind: lexical, workers: 1 }
"#;
