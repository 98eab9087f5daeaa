//! A fake upstream speaking the OpenAI, Anthropic and Gemini APIs.
//!
//! Switchyard's tests need an upstream whose answers, timing and failures they
//! control, and the router ships a built-in "demo" upstream so it can be tried
//! without API keys. Both are this crate: an axum server that answers, with
//! deterministic text and real token counts, in JSON and SSE.
//!
//! # Routes
//!
//! | Route | API | Stream |
//! |---|---|---|
//! | `POST /v1/chat/completions` | OpenAI chat completions | `stream: true`: `data:` chunks, usage chunk with `stream_options.include_usage`, `[DONE]` |
//! | `POST /v1/messages` | Anthropic Messages | `stream: true`: named events `message_start` ... `message_stop` |
//! | `POST /v1beta/models/{model}:generateContent` | Gemini | no |
//! | `POST /v1beta/models/{model}:streamGenerateContent` | Gemini | `?alt=sse`: `data:` chunks, no end marker; otherwise a JSON array |
//! | `GET /v1/models` | OpenAI model list | models seen so far |
//!
//! The Gemini routes are also served under `/v1/models/...`. With
//! [`MockServer::base_url`] `http://ADDR/v1`, a client appends
//! `/chat/completions`, `/messages` or `/models/{model}:generateContent`.
//!
//! # Answers
//!
//! Text is `[label] {model} says:` and the last user text, cycled, one word
//! per token and per streamed delta. OpenAI's `max_tokens` sets its length
//! (default [`MockConfig::completion_words`]); Anthropic's `max_tokens` and
//! Gemini's `maxOutputTokens` only cap that default, as a real model stops
//! on its own well before a generous cap.
//!
//! In every shape, a request that declares tools and whose last message is
//! a plain user turn gets a call of its first tool, with arguments
//! `{"city": "Paris"}` when that tool has a `city` parameter and `{}`
//! otherwise (OpenAI `tool_calls`, Anthropic `tool_use`, Gemini
//! `functionCall`; streamed as argument fragments where the API does). A
//! request whose last message is a tool result gets the text `[label] tool
//! result received: <the result, first 80 chars>`. A Gemini model whose
//! name contains `blocked` answers with a blocked prompt.
//!
//! # Failures
//!
//! Each can be told per requested model name, whatever the API, to fail with
//! a status (in that API's error shape), hang, or cut the connection
//! mid-answer ([`Failure`]), on every request or, to make a model flaky
//! rather than dead, on every Nth one ([`Failure::Every`], `500@3`): a
//! deterministic count, restarted whenever the model's failure is set, so a
//! run is reproducible. All APIs share the request counters, the recording
//! ([`RecordedRequest`]), `ttft`, pacing and the label.
//!
//! Besides these it serves a small control API: `GET /mock/counters`,
//! `GET /mock/requests`, and `PUT`/`DELETE /mock/failures/{model}`.

mod anthropic;
mod completion;
mod gemini;
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

/// A failure injected into every request for one model, in any API shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Answer with this HTTP status and an error body in the request's API
    /// shape; a 429 also carries `retry-after: 1` (OpenAI, Anthropic) or a
    /// `RetryInfo` detail (Gemini).
    Status(u16),
    /// Accept the request and never answer, until the client gives up or the
    /// server shuts down.
    Hang,
    /// Streaming: send this many word chunks (or tool argument fragments),
    /// then cut the connection without the end (`[DONE]`, `message_stop`,
    /// Gemini's last chunk). Non-streaming: send 200 and half of the JSON
    /// body, then cut.
    DropAfter(usize),
    /// Intermittent: the Nth, 2Nth, 3Nth... request to the model (counted
    /// from when this failure was set) fails as the inner failure says; the
    /// others are answered normally. `Every(1, f)` fails like `f` always.
    /// The inner failure is never itself an `Every`.
    Every(u32, Box<Failure>),
}

impl Failure {
    /// The failure to inject into the `count`th request (1-based) since
    /// this failure was set, if any.
    pub fn on_request(&self, count: u64) -> Option<Failure> {
        match self {
            Self::Every(every, inner) => count.is_multiple_of(u64::from((*every).max(1))).then(|| (**inner).clone()),
            other => Some(other.clone()),
        }
    }
}

impl FromStr for Failure {
    type Err = String;

    /// Parses `500`/`429` (any status 400-599), `hang`, `drop` (one chunk)
    /// and `drop:N`, each optionally followed by `@N` (N >= 1): only every
    /// Nth request fails that way (`429@2`, `hang@5`, `drop:2@4`).
    fn from_str(spec: &str) -> Result<Self, String> {
        let spec = spec.trim();
        if let Some((inner, every)) = spec.rsplit_once('@') {
            let every = match every.trim().parse::<u32>() {
                Ok(every) if every >= 1 => every,
                _ => return Err(format!("invalid failure `{spec}`: `SPEC@N` needs a whole number N >= 1")),
            };
            if inner.contains('@') {
                return Err(format!("invalid failure `{spec}`: only one `@N`"));
            }
            return Ok(Self::Every(every, Box::new(inner.parse()?)));
        }
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
                "unknown failure `{spec}`: expected an HTTP status (e.g. 500), `hang`, `drop` or `drop:N`, optionally with `@N` (every Nth request)"
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
            Self::Every(every, inner) => write!(f, "{inner}@{every}"),
        }
    }
}

/// One request (any API shape) as the mock received it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RecordedRequest {
    /// The requested model.
    pub model: String,
    /// Which API it was: `openai`, `anthropic` or `gemini`.
    pub api: &'static str,
    /// The whole JSON body.
    pub body: serde_json::Value,
    /// The `authorization` header, so tests can check which key was forwarded.
    pub authorization: Option<String>,
    /// The API-key header of Anthropic (`x-api-key`) or Gemini
    /// (`x-goog-api-key`, else the `key` query parameter); `None` for OpenAI.
    pub api_key: Option<String>,
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

    /// The base URL of every API, `http://{addr}/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Sets (`Some`) or clears (`None`) the failure injected for `model`;
    /// applies to requests that arrive afterwards.
    pub fn set_failure(&self, model: &str, failure: Option<Failure>) {
        self.shared.set_failure(model, failure);
    }

    /// Requests received for `model` in any API shape, failed ones included.
    pub fn requests(&self, model: &str) -> u64 {
        lock(&self.shared.by_model).get(model).copied().unwrap_or(0)
    }

    /// Requests received for all models. Bodies rejected as malformed are
    /// not counted.
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

    #[test]
    fn intermittent_specs_parse_and_round_trip() {
        let every = |n, f| Failure::Every(n, Box::new(f));
        assert_eq!("500@3".parse(), Ok(every(3, Failure::Status(500))));
        assert_eq!("429@2".parse(), Ok(every(2, Failure::Status(429))));
        assert_eq!("hang@5".parse(), Ok(every(5, Failure::Hang)));
        assert_eq!("drop:2@4".parse(), Ok(every(4, Failure::DropAfter(2))));
        assert_eq!("drop@1".parse(), Ok(every(1, Failure::DropAfter(1))));
        assert_eq!(" 503 @ 7 ".parse(), Ok(every(7, Failure::Status(503))));
        for failure in [every(3, Failure::Status(500)), every(5, Failure::Hang), every(4, Failure::DropAfter(2))] {
            assert_eq!(failure.to_string().parse(), Ok(failure));
        }
        assert_eq!(every(4, Failure::DropAfter(2)).to_string(), "drop:2@4");
        for bad in ["500@0", "500@", "@3", "500@x", "500@-1", "500@2@3", "200@2", "explode@2"] {
            assert!(bad.parse::<Failure>().is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn every_nth_request_fails_the_rest_succeed() {
        let flaky = Failure::Every(3, Box::new(Failure::Status(500)));
        let failed: Vec<u64> = (1..=10).filter(|n| flaky.on_request(*n).is_some()).collect();
        assert_eq!(failed, [3, 6, 9]);
        assert_eq!(flaky.on_request(6), Some(Failure::Status(500)));
        let always = Failure::Every(1, Box::new(Failure::Hang));
        assert!((1..=5).all(|n| always.on_request(n) == Some(Failure::Hang)));
        assert_eq!(Failure::DropAfter(2).on_request(1), Some(Failure::DropAfter(2)));
    }
}
