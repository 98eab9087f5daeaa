//! Shared state, routes and the request handlers.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use futures_util::{Stream, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::completion::{ChatRequest, Envelope, usage};
use crate::shapes::{self, Answer};
use crate::{Failure, MockConfig, RecordedRequest};

/// How many requests `/mock/requests` remembers; enough for any test, small
/// enough that a long-running demo upstream does not grow without bound.
const RECORD_LIMIT: usize = 100;

#[derive(Debug)]
pub(crate) struct Shared {
    ttft: Duration,
    tokens_per_sec: f64,
    label: Option<String>,
    completion_words: usize,
    failures: Mutex<HashMap<String, Failure>>,
    pub by_model: Mutex<BTreeMap<String, u64>>,
    pub total: AtomicU64,
    pub recorded: Mutex<VecDeque<RecordedRequest>>,
    next_id: AtomicU64,
    /// Cancelled by `MockServer::shutdown`; releases hangs and ends streams.
    pub shutdown: CancellationToken,
}

/// Locks ignoring poison: every critical section leaves the maps consistent,
/// so a panic elsewhere must not turn into a panic here.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub fn new(config: MockConfig) -> Self {
        Self {
            ttft: config.ttft,
            tokens_per_sec: config.tokens_per_sec,
            label: config.label,
            completion_words: config.completion_words,
            failures: Mutex::new(config.failures),
            by_model: Mutex::default(),
            total: AtomicU64::new(0),
            recorded: Mutex::default(),
            next_id: AtomicU64::new(1),
            shutdown: CancellationToken::new(),
        }
    }

    pub fn set_failure(&self, model: &str, failure: Option<Failure>) {
        let mut failures = lock(&self.failures);
        match failure {
            Some(failure) => {
                tracing::info!(model, %failure, "failure injection set");
                failures.insert(model.to_owned(), failure);
            }
            None => {
                tracing::info!(model, "failure injection cleared");
                failures.remove(model);
            }
        }
    }

    /// Counts and remembers a request; returns the failure to inject, if any.
    pub(crate) fn record(&self, request: RecordedRequest) -> Option<Failure> {
        self.total.fetch_add(1, Ordering::Relaxed);
        *lock(&self.by_model)
            .entry(request.model.clone())
            .or_default() += 1;
        let failure = lock(&self.failures).get(&request.model).cloned();
        let mut recorded = lock(&self.recorded);
        if recorded.len() == RECORD_LIMIT {
            recorded.pop_front();
        }
        recorded.push_back(request);
        failure
    }

    pub(crate) fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }

    pub(crate) fn completion_words(&self) -> usize {
        self.completion_words
    }

    pub(crate) fn ttft(&self) -> Duration {
        self.ttft
    }

    pub(crate) fn tokens_per_sec(&self) -> f64 {
        self.tokens_per_sec
    }

    /// A fresh number for ids (`msg_mock_N`, `call_mock_N`).
    pub(crate) fn next_id(&self) -> String {
        self.next_id.fetch_add(1, Ordering::Relaxed).to_string()
    }

    fn envelope(&self, model: &str) -> Envelope {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        Envelope {
            id: format!("chatcmpl-mock-{id}"),
            created: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_secs()),
            model: model.to_owned(),
            fingerprint: self.label.clone(),
        }
    }

    /// Waits `delay`, cut short by shutdown: a stopping server should not be
    /// held up by an artificial delay, and the answer is still worth giving.
    pub(crate) async fn pause(&self, delay: Duration) {
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = self.shutdown.cancelled() => {}
        }
    }
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/messages", post(shapes::anthropic_messages))
        // `{model}:generateContent` is one segment; the handler splits it.
        .route("/v1/models/{*target}", post(shapes::gemini))
        .route("/v1beta/models/{*target}", post(shapes::gemini))
        .route("/v1/models", get(list_models))
        .route("/mock/counters", get(counters))
        .route("/mock/requests", get(recorded_requests))
        // A wildcard because model names such as `openai/gpt-oss-120b` contain `/`.
        .route(
            "/mock/failures/{*model}",
            put(set_failure).delete(clear_failure),
        )
        .fallback(|| async { error_response(StatusCode::NOT_FOUND, "no such route on the mock") })
        .with_state(shared)
}

/// An OpenAI-shaped error, so clients exercise their real error parsing.
fn error_response(status: StatusCode, message: &str) -> Response {
    let (kind, code) = match status.as_u16() {
        401 => ("authentication_error", "invalid_api_key"),
        404 => ("not_found_error", "not_found"),
        429 => ("rate_limit_error", "rate_limit_exceeded"),
        400..=499 => ("invalid_request_error", "invalid_request"),
        _ => ("server_error", "server_error"),
    };
    let body = json!({"error": {"message": message, "type": kind, "code": code}});
    let mut response = (status, Json(body)).into_response();
    if status == StatusCode::TOO_MANY_REQUESTS {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

async fn chat_completions(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Parsed by hand rather than with `Json` so that malformed bodies get an
    // OpenAI-shaped 400 instead of axum's plain-text rejection.
    let body: Value = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(error) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                &format!("body is not JSON: {error}"),
            );
        }
    };
    let request = match ChatRequest::parse(&body) {
        Ok(request) => request,
        Err(message) => return error_response(StatusCode::BAD_REQUEST, &message),
    };
    let turn = shapes::openai_turn(&body);
    let failure = shared.record(RecordedRequest {
        model: request.model.clone(),
        body,
        authorization: headers
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned),
        stream: request.stream,
    });
    tracing::debug!(model = %request.model, stream = request.stream, ?failure, "chat completion");

    let model_header = HeaderValue::from_str(&request.model).ok();
    let mut response = match failure {
        Some(Failure::Status(status)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            error_response(
                status,
                &format!("mock: injected {status} for {}", request.model),
            )
        }
        Some(Failure::Hang) => {
            shared.shutdown.cancelled().await;
            error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "mock: server shutting down",
            )
        }
        Some(Failure::DropAfter(chunks)) if request.stream => stream(shared, request, Some(chunks)),
        Some(Failure::DropAfter(_)) => truncated_json(&shared, &request).await,
        None if turn.tool_result.is_some() || (turn.ends_with_user && !turn.tools.is_empty()) => {
            let answer = turn.answer(&shared, &request);
            tool_turn(shared, &request, answer).await
        }
        None if request.stream => stream(shared, request, None),
        None => json_completion(&shared, &request).await,
    };
    if let Some(model) = model_header {
        response.headers_mut().insert("x-mock-model", model);
    }
    response
}

/// An answer decided by the request's tools: a tool call, or the text
/// acknowledging a tool result; JSON or SSE.
async fn tool_turn(shared: Arc<Shared>, request: &ChatRequest, answer: Answer) -> Response {
    let envelope = shared.envelope(&request.model);
    let (id, name, args) = match answer {
        Answer::Text(words) => {
            if !request.stream {
                shared.pause(shared.ttft).await;
                return Json(envelope.completion(&words.join(" "), usage(request.prompt_tokens, words.len()))).into_response();
            }
            let (tx, rx) = mpsc::channel(16);
            let mut events = SseSender { tx, shutdown: shared.shutdown.clone() };
            let include_usage = request.include_usage;
            let prompt_tokens = request.prompt_tokens;
            tokio::spawn(async move {
                let _ = async {
                    events.pause(shared.ttft).await?;
                    events.send(&envelope.chunk(json!({"role": "assistant", "content": ""}), None, include_usage)).await?;
                    events.send(&envelope.chunk(json!({"content": words.join(" ")}), None, include_usage)).await?;
                    events.send(&envelope.chunk(json!({}), Some("stop"), include_usage)).await?;
                    if include_usage {
                        events.send(&envelope.usage_chunk(usage(prompt_tokens, words.len()))).await?;
                    }
                    events.send_raw(Bytes::from_static(b"data: [DONE]\n\n")).await
                }
                .await;
            });
            return sse_body(rx);
        }
        Answer::Call { id, name, args } => (format!("call_mock_{id}"), name, args),
    };
    shared.pause(shared.ttft).await;
    let call_usage = usage(request.prompt_tokens, 8);
    if !request.stream {
        let base = json!({"id": envelope.id, "object": "chat.completion", "created": envelope.created, "model": envelope.model});
        return Json(shapes::openai_call_json(base, &id, &name, &args, call_usage)).into_response();
    }
    let (tx, rx) = mpsc::channel(16);
    let mut events = SseSender { tx, shutdown: shared.shutdown.clone() };
    let include_usage = request.include_usage;
    tokio::spawn(async move {
        let _ = async {
            let open = json!({"role": "assistant", "content": null,
                "tool_calls": [{"index": 0, "id": id, "type": "function", "function": {"name": name, "arguments": ""}}]});
            events.send(&envelope.chunk(open, None, include_usage)).await?;
            for fragment in shapes::fragments(&args) {
                let delta = json!({"tool_calls": [{"index": 0, "function": {"arguments": fragment}}]});
                events.send(&envelope.chunk(delta, None, include_usage)).await?;
            }
            events.send(&envelope.chunk(json!({}), Some("tool_calls"), include_usage)).await?;
            if include_usage {
                events.send(&envelope.usage_chunk(call_usage)).await?;
            }
            events.send_raw(Bytes::from_static(b"data: [DONE]\n\n")).await
        }
        .await;
    });
    sse_body(rx)
}

fn sse_body(rx: mpsc::Receiver<io::Result<Bytes>>) -> Response {
    let body = cut_body(futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }));
    ([(CONTENT_TYPE, "text/event-stream"), (CACHE_CONTROL, "no-cache")], body).into_response()
}

/// The full non-streaming answer, serialised.
fn completion_body(shared: &Shared, request: &ChatRequest) -> Value {
    let words = request.completion_words(shared.label.as_deref(), shared.completion_words);
    shared
        .envelope(&request.model)
        .completion(&words.join(" "), usage(request.prompt_tokens, words.len()))
}

async fn json_completion(shared: &Shared, request: &ChatRequest) -> Response {
    shared.pause(shared.ttft).await;
    Json(completion_body(shared, request)).into_response()
}

/// A 200 whose body stops half way and then errors, which makes hyper close
/// the connection: the client sees a broken body, not a clean short one.
async fn truncated_json(shared: &Shared, request: &ChatRequest) -> Response {
    shared.pause(shared.ttft).await;
    let full = completion_body(shared, request).to_string().into_bytes();
    let half = Bytes::copy_from_slice(&full[..full.len() / 2]);
    let parts: [io::Result<Bytes>; 2] = [Ok(half), Err(io::Error::other("mock: injected drop"))];
    let body = cut_body(futures_util::stream::iter(parts));
    ([(CONTENT_TYPE, "application/json")], body).into_response()
}

/// A body whose error item cuts the connection only after the data before it
/// reached the client. Hyper flushes buffered data when the body is not ready
/// but discards it when the body fails, so the error waits one scheduler turn.
pub(crate) fn cut_body<S>(items: S) -> Body
where
    S: Stream<Item = io::Result<Bytes>> + Send + 'static,
{
    Body::from_stream(items.then(|item| async move {
        if item.is_err() {
            tokio::task::yield_now().await;
        }
        item
    }))
}

/// An SSE answer produced by a spawned task, chunk by chunk, so pacing and
/// drops happen on the wire rather than in a buffered body.
fn stream(shared: Arc<Shared>, request: ChatRequest, drop_after: Option<usize>) -> Response {
    let (tx, rx) = mpsc::channel(16);
    let mut events = SseSender {
        tx,
        shutdown: shared.shutdown.clone(),
    };
    tokio::spawn(async move {
        if let Err(Closed) = produce_stream(&shared, &request, drop_after, &mut events).await {
            // An error item makes hyper abort the connection, so the client
            // cannot mistake a cut stream for a finished one. Nobody may be
            // listening any more, which is fine.
            let _ = events
                .tx
                .send(Err(io::Error::other("mock: stream cut")))
                .await;
        }
    });
    let body = cut_body(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    (
        [
            (CONTENT_TYPE, "text/event-stream"),
            (CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn produce_stream(
    shared: &Shared,
    request: &ChatRequest,
    drop_after: Option<usize>,
    events: &mut SseSender,
) -> Result<(), Closed> {
    let envelope = shared.envelope(&request.model);
    let words = request.completion_words(shared.label.as_deref(), shared.completion_words);
    let pace =
        (shared.tokens_per_sec > 0.0).then(|| Duration::from_secs_f64(1.0 / shared.tokens_per_sec));
    let include_usage = request.include_usage;

    events.pause(shared.ttft).await?;
    let role = json!({"role": "assistant", "content": ""});
    events
        .send(&envelope.chunk(role, None, include_usage))
        .await?;

    let sent = drop_after.map_or(words.len(), |chunks| chunks.min(words.len()));
    for (index, word) in words[..sent].iter().enumerate() {
        if index > 0
            && let Some(pace) = pace
        {
            events.pause(pace).await?;
        }
        // Words carry their separating space so concatenated deltas equal
        // the non-streaming content exactly.
        let content = if index + 1 < words.len() {
            format!("{word} ")
        } else {
            word.clone()
        };
        events
            .send(&envelope.chunk(json!({"content": content}), None, include_usage))
            .await?;
    }
    if drop_after.is_some() {
        return Err(Closed);
    }

    events
        .send(&envelope.chunk(json!({}), Some("stop"), include_usage))
        .await?;
    if include_usage {
        let usage = usage(request.prompt_tokens, words.len());
        events.send(&envelope.usage_chunk(usage)).await?;
    }
    events
        .send_raw(Bytes::from_static(b"data: [DONE]\n\n"))
        .await
}

/// The stream cannot go on: the client left, the server is stopping, or a
/// drop was injected.
struct Closed;

struct SseSender {
    tx: mpsc::Sender<io::Result<Bytes>>,
    shutdown: CancellationToken,
}

impl SseSender {
    async fn send(&mut self, event: &Value) -> Result<(), Closed> {
        self.send_raw(Bytes::from(format!("data: {event}\n\n")))
            .await
    }

    async fn send_raw(&mut self, bytes: Bytes) -> Result<(), Closed> {
        self.tx.send(Ok(bytes)).await.map_err(|_| Closed)
    }

    /// Waits, but gives up early when the client hangs up or the server stops,
    /// so neither waits on a stream nobody will read.
    async fn pause(&mut self, delay: Duration) -> Result<(), Closed> {
        tokio::select! {
            () = tokio::time::sleep(delay) => Ok(()),
            () = self.tx.closed() => Err(Closed),
            () = self.shutdown.cancelled() => Err(Closed),
        }
    }
}

async fn list_models(State(shared): State<Arc<Shared>>) -> Json<Value> {
    // The mock serves any model name, so it lists the ones it has heard of.
    let mut models: BTreeSet<String> = lock(&shared.by_model).keys().cloned().collect();
    models.extend(lock(&shared.failures).keys().cloned());
    let data: Vec<Value> = models
        .into_iter()
        .map(|id| json!({"id": id, "object": "model", "created": 0, "owned_by": "switchyard-mock"}))
        .collect();
    Json(json!({"object": "list", "data": data}))
}

async fn counters(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let by_model = lock(&shared.by_model).clone();
    Json(json!({"total": shared.total.load(Ordering::Relaxed), "by_model": by_model}))
}

async fn recorded_requests(State(shared): State<Arc<Shared>>) -> Json<Vec<RecordedRequest>> {
    Json(lock(&shared.recorded).iter().cloned().collect())
}

#[derive(serde::Deserialize)]
struct FailureUpdate {
    failure: String,
}

async fn set_failure(
    State(shared): State<Arc<Shared>>,
    Path(model): Path<String>,
    body: Bytes,
) -> Response {
    let parsed = serde_json::from_slice::<FailureUpdate>(&body)
        .map_err(|error| format!("expected {{\"failure\": \"SPEC\"}}: {error}"))
        .and_then(|update| update.failure.parse::<Failure>());
    match parsed {
        Ok(failure) => {
            shared.set_failure(&model, Some(failure));
            StatusCode::NO_CONTENT.into_response()
        }
        Err(message) => error_response(StatusCode::BAD_REQUEST, &message),
    }
}

async fn clear_failure(State(shared): State<Arc<Shared>>, Path(model): Path<String>) -> StatusCode {
    shared.set_failure(&model, None);
    StatusCode::NO_CONTENT
}
