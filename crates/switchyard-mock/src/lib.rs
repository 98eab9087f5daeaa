//! A fake upstream speaking the OpenAI, Anthropic and Gemini APIs.
//!
//! Switchyard's tests need an upstream whose answers, timing and failures they
//! control, and the router ships a built-in "demo" upstream so it can be tried
//! without API keys. Both are this crate: an axum server that answers, with
//! deterministic text and real token counts, in JSON and SSE:
//! - `POST /v1/chat/completions` (OpenAI);
//! - `POST /v1/messages` (Anthropic Messages, named SSE events);
//! - `POST /v1beta/models/{model}:generateContent` and
//!   `:streamGenerateContent?alt=sse` (Gemini; also under `/v1/`).
//!
//! In every shape, a request that declares tools and ends with a user turn
//! gets a call of its first tool, and one that ends with a tool result gets
//! text naming it (see `shapes`). Each can be told per model to fail with a
//! status (in its API's error shape), hang, or cut the connection mid-answer.
//!
//! Besides the OpenAI surface it serves a small control API: `GET /mock/counters`,
//! `GET /mock/requests`, and `PUT`/`DELETE /mock/failures/{model}`.

mod completion;
mod server;
mod shapes;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use server::{Shared, lock};

/// How the mock behaves; see the field docs.
#[derive(Debug, Clone)]
pub struct MockConfig {
    /// Delay before the first byte: the whole JSON answer, or the first SSE chunk.
    pub ttft: Duration,
    /// Pace of SSE word chunks after the first; `0.0` or less sends them at once.
    pub tokens_per_sec: f64,
    /// Put into answers (`[label]` prefix, `system_fingerprint`) so a user can
    /// tell a mock answer from a real one.
    pub label: Option<String>,
    /// Failures to inject, keyed by the model name the client requested.
    pub failures: HashMap<String, Failure>,
    /// Completion length in words when the request sets no `max_tokens`.
    pub completion_words: usize,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            ttft: Duration::ZERO,
            tokens_per_sec: 0.0,
            label: None,
            failures: HashMap::new(),
            completion_words: 12,
        }
    }
}

/// A failure injected into every chat completion request for one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Answer with this HTTP status and an OpenAI-shaped error body; a 429
    /// also carries `retry-after: 1`.
    Status(u16),
    /// Accept the request and never answer, until the client gives up or the
    /// server shuts down.
    Hang,
    /// Streaming: send this many word chunks, then cut the connection without
    /// `[DONE]`. Non-streaming: send 200 and half of the JSON body, then cut.
    DropAfter(usize),
}

impl FromStr for Failure {
    type Err = String;

    /// Parses `500`/`429` (any status 400-599), `hang`, `drop` (one chunk)
    /// and `drop:N`.
    fn from_str(spec: &str) -> Result<Self, String> {
        let spec = spec.trim();
        if spec == "hang" {
            return Ok(Self::Hang);
        }
        if spec == "drop" {
            return Ok(Self::DropAfter(1));
        }
        if let Some(count) = spec.strip_prefix("drop:") {
            return count
                .parse()
                .map(Self::DropAfter)
                .map_err(|_| format!("invalid failure `{spec}`: `drop:N` needs a chunk count N"));
        }
        match spec.parse::<u16>() {
            Ok(status) if (400..=599).contains(&status) => Ok(Self::Status(status)),
            Ok(_) => Err(format!("invalid failure `{spec}`: status must be 400-599")),
            Err(_) => Err(format!(
                "unknown failure `{spec}`: expected an HTTP status (e.g. 500), `hang`, `drop` or `drop:N`"
            )),
        }
    }
}

impl fmt::Display for Failure {
    /// The same syntax `from_str` accepts.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status(status) => write!(f, "{status}"),
            Self::Hang => f.write_str("hang"),
            Self::DropAfter(chunks) => write!(f, "drop:{chunks}"),
        }
    }
}

/// One chat completion request as the mock received it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RecordedRequest {
    /// The requested model.
    pub model: String,
    /// The whole JSON body.
    pub body: serde_json::Value,
    /// The `authorization` header, so tests can check which key was forwarded.
    pub authorization: Option<String>,
    pub stream: bool,
}

/// Handle to a running mock server.
///
/// Dropping the handle leaves the server running until the tokio runtime
/// stops; call [`MockServer::shutdown`] to stop it earlier.
#[derive(Debug)]
pub struct MockServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<std::io::Result<()>>,
}

impl MockServer {
    /// Binds `addr` (port 0 picks a free port) and serves in a spawned task.
    pub async fn start(addr: SocketAddr, config: MockConfig) -> std::io::Result<MockServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(config));
        let app = server::router(Arc::clone(&shared));
        let stop = shared.shutdown.clone();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        });
        tracing::debug!(%addr, "mock upstream started");
        Ok(MockServer { addr, shared, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The OpenAI base URL, `http://{addr}/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Sets (`Some`) or clears (`None`) the failure injected for `model`;
    /// applies to requests that arrive afterwards.
    pub fn set_failure(&self, model: &str, failure: Option<Failure>) {
        self.shared.set_failure(model, failure);
    }

    /// Chat completion requests received for `model`, failed ones included.
    pub fn requests(&self, model: &str) -> u64 {
        lock(&self.shared.by_model).get(model).copied().unwrap_or(0)
    }

    /// Chat completion requests received for all models. Bodies rejected as
    /// malformed name no model and are not counted.
    pub fn total_requests(&self) -> u64 {
        self.shared.total.load(Ordering::Relaxed)
    }

    /// The most recent requests (up to 100), oldest first.
    pub fn recorded(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.recorded).iter().cloned().collect()
    }

    /// Stops accepting, releases hanging requests and cuts running streams,
    /// then waits for the server task to finish.
    pub async fn shutdown(self) {
        self.shared.shutdown.cancel();
        match self.task.await {
            Ok(Ok(())) => tracing::debug!(addr = %self.addr, "mock upstream stopped"),
            Ok(Err(error)) => tracing::warn!(%error, "mock upstream stopped with an error"),
            Err(error) => tracing::warn!(%error, "mock upstream task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_specs_parse_and_round_trip() {
        assert_eq!("500".parse(), Ok(Failure::Status(500)));
        assert_eq!("429".parse(), Ok(Failure::Status(429)));
        assert_eq!("hang".parse(), Ok(Failure::Hang));
        assert_eq!("drop".parse(), Ok(Failure::DropAfter(1)));
        assert_eq!("drop:3".parse(), Ok(Failure::DropAfter(3)));
        for failure in [Failure::Status(503), Failure::Hang, Failure::DropAfter(2)] {
            assert_eq!(failure.to_string().parse(), Ok(failure));
        }
        for bad in ["200", "drop:x", "explode", ""] {
            assert!(bad.parse::<Failure>().is_err(), "{bad} should not parse");
        }
    }
}
