//! Shared state, routes, the OpenAI handler, and the plumbing every API shape
//! uses: failure injection, cut bodies, paced SSE.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::future::Future;
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
use crate::shapes::{self, Answer, deltas, fragments};
use crate::{Failure, MockConfig, RecordedRequest, anthropic, gemini};

/// How many requests `/mock/requests` remembers; enough for any test, small
/// enough that a long-running demo upstream does not grow without bound.
const RECORD_LIMIT: usize = 100;

#[derive(Debug)]
pub(crate) struct Shared {
    ttft: Duration,
    tokens_per_sec: f64,
    label: Option<String>,
    completion_words: usize,
    /// Each model's injected failure, with the requests it has seen since
    /// it was set (what `Failure::Every` counts).
    failures: Mutex<HashMap<String, (Failure, u64)>>,
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
            failures: Mutex::new(
                config
                    .failures
                    .into_iter()
                    .map(|(model, failure)| (model, (failure, 0)))
                    .collect(),
            ),
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
                failures.insert(model.to_owned(), (failure, 0));
            }
            None => {
                tracing::info!(model, "failure injection cleared");
                failures.remove(model);
            }
        }
    }

    /// Counts and remembers a request; returns the failure to inject, if any.
    fn record(&self, request: RecordedRequest) -> Option<Failure> {
        self.total.fetch_add(1, Ordering::Relaxed);
        *lock(&self.by_model)
            .entry(request.model.clone())
            .or_default() += 1;
        let failure = lock(&self.failures)
            .get_mut(&request.model)
            .and_then(|(failure, seen)| {
                *seen += 1;
                failure.on_request(*seen)
            });
        let mut recorded = lock(&self.recorded);
        if recorded.len() == RECORD_LIMIT {
            recorded.pop_front();
        }
        recorded.push_back(request);
        failure
    }

    /// Records a request and applies its model's injected failure: `Err` is
    /// the response to send instead of an answer (an error in the API's
    /// shape, built by `error`, or, for a hang, whatever ends it); `Ok` says
    /// whether to cut the answer after that many pieces.
    pub(crate) async fn admit(
        &self,
        request: RecordedRequest,
        error: fn(StatusCode, &str) -> Response,
    ) -> Result<Option<usize>, Response> {
        let model = request.model.clone();
        let failure = self.record(request);
        tracing::debug!(%model, ?failure, "request");
        match failure {
            None => Ok(None),
            Some(Failure::DropAfter(pieces)) => Ok(Some(pieces)),
            // `record` resolves an intermittent failure to its inner one.
            Some(Failure::Every(..)) => Ok(None),
            Some(Failure::Status(status)) => {
                let status =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                Err(error(
                    status,
                    &format!("mock: injected {status} for {model}"),
                ))
            }
            Some(Failure::Hang) => {
                self.shutdown.cancelled().await;
                Err(error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "mock: server shutting down",
                ))
            }
        }
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

    /// The pause between streamed pieces; `None` when unpaced.
    pub(crate) fn pace(&self) -> Option<Duration> {
        (self.tokens_per_sec > 0.0).then(|| Duration::from_secs_f64(1.0 / self.tokens_per_sec))
    }

    /// A fresh number for ids (`chatcmpl-mock-N`, `msg_mock_N`, `call_mock_N`).
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn envelope(&self, model: &str) -> Envelope {
        Envelope {
            id: format!("chatcmpl-mock-{}", self.next_id()),
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
        // A zero sleep still waits for the timer's next 1 ms tick: skipped,
        // so a zero-ttft mock answers at once (benchmarks subtract it).
        if delay.is_zero() {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = self.shutdown.cancelled() => {}
        }
    }
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/messages", post(anthropic::messages))
        // `{model}:generateContent` is one segment; the handler splits it.
        .route("/v1/models/{*target}", post(gemini::generate))
        .route("/v1beta/models/{*target}", post(gemini::generate))
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

/// A request body as JSON, or the 400 (in the API's error shape, built by
/// `error`) for a body that is not. Parsed by hand rather than with axum's
/// `Json`, whose rejection is plain text.
pub(crate) fn json_body(body: &[u8], error: fn(StatusCode, &str) -> Response) -> Result<Value, Box<Response>> {
    serde_json::from_slice(body)
        .map_err(|cause| Box::new(error(StatusCode::BAD_REQUEST, &format!("body is not JSON: {cause}"))))
}

/// A header's value, when it is present and text.
pub(crate) fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// Names the requested model in `x-mock-model`, so a test behind a router can
/// see what reached the upstream.
pub(crate) fn with_model(mut response: Response, model: &str) -> Response {
    if let Ok(model) = HeaderValue::from_str(model) {
        response.headers_mut().insert("x-mock-model", model);
    }
    response
}

/// Adds `retry-after: 1` to a 429, as the real APIs do.
pub(crate) fn retry_after(mut response: Response) -> Response {
    if response.status() == StatusCode::TOO_MANY_REQUESTS {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
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
    retry_after((status, Json(body)).into_response())
}

async fn chat_completions(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = match json_body(&body, error_response) {
        Ok(body) => body,
        Err(response) => return *response,
    };
    let request = match ChatRequest::parse(&body) {
        Ok(request) => request,
        Err(message) => return error_response(StatusCode::BAD_REQUEST, &message),
    };
    let turn = shapes::openai_turn(&body);
    let recorded = RecordedRequest {
        model: request.model.clone(),
        api: "openai",
        body,
        authorization: header(&headers, AUTHORIZATION.as_str()),
        api_key: None,
        stream: request.stream,
    };
    let model = request.model.clone();
    let response = match shared.admit(recorded, error_response).await {
        Err(response) => response,
        Ok(drop_after) => {
            let answer = turn.answer(&shared, &request);
            let envelope = shared.envelope(&request.model);
            if request.stream {
                let producer = Arc::clone(&shared);
                sse(&shared, move |events| {
                    openai_stream(producer, request, envelope, answer, drop_after, events)
                })
            } else {
                shared.pause(shared.ttft).await;
                let body = match &answer {
                    Answer::Text(words) => envelope
                        .completion(&words.join(" "), usage(request.prompt_tokens, words.len())),
                    Answer::Call { id, name, args } => envelope.tool_call(
                        &format!("call_mock_{id}"),
                        name,
                        args,
                        usage(request.prompt_tokens, answer.tokens()),
                    ),
                };
                json_answer(&body, drop_after)
            }
        }
    };
    with_model(response, &model)
}

/// The OpenAI SSE answer: a role chunk (carrying the call's id and name for
/// a tool call), one chunk per word or argument fragment, a finish chunk, a
/// usage chunk when asked for, `[DONE]`.
async fn openai_stream(
    shared: Arc<Shared>,
    request: ChatRequest,
    envelope: Envelope,
    answer: Answer,
    drop_after: Option<usize>,
    mut events: SseSender,
) -> Result<(), Closed> {
    let include_usage = request.include_usage;
    events.pause(shared.ttft).await?;
    let finish = match &answer {
        Answer::Text(words) => {
            let role = json!({"role": "assistant", "content": ""});
            events
                .send(&envelope.chunk(role, None, include_usage))
                .await?;
            events
                .send_pieces(&deltas(words), drop_after, shared.pace(), |_, piece| {
                    let delta = json!({"content": piece});
                    frame(None, &envelope.chunk(delta, None, include_usage))
                })
                .await?;
            "stop"
        }
        Answer::Call { id, name, args } => {
            let open = json!({"role": "assistant", "content": null, "tool_calls": [{
                "index": 0, "id": format!("call_mock_{id}"), "type": "function",
                "function": {"name": name, "arguments": ""},
            }]});
            events
                .send(&envelope.chunk(open, None, include_usage))
                .await?;
            events
                .send_pieces(&fragments(args), drop_after, shared.pace(), |_, piece| {
                    let delta =
                        json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]});
                    frame(None, &envelope.chunk(delta, None, include_usage))
                })
                .await?;
            "tool_calls"
        }
    };
    events
        .send(&envelope.chunk(json!({}), Some(finish), include_usage))
        .await?;
    if include_usage {
        let usage = usage(request.prompt_tokens, answer.tokens());
        events.send(&envelope.usage_chunk(usage)).await?;
    }
    events
        .send_raw(Bytes::from_static(b"data: [DONE]\n\n"))
        .await
}

/// A non-streaming answer: the JSON, or with a drop injected a 200 whose
/// body stops half way and then errors, which makes hyper close the
/// connection: the client sees a broken body, not a clean short one.
pub(crate) fn json_answer(body: &Value, drop_after: Option<usize>) -> Response {
    if drop_after.is_none() {
        return Json(body).into_response();
    }
    let full = body.to_string().into_bytes();
    let half = Bytes::copy_from_slice(&full[..full.len() / 2]);
    let parts: [io::Result<Bytes>; 2] = [Ok(half), Err(io::Error::other("mock: injected drop"))];
    let body = cut_body(futures_util::stream::iter(parts));
    ([(CONTENT_TYPE, "application/json")], body).into_response()
}

/// A body whose error item cuts the connection only after the data before it
/// reached the client. Hyper flushes buffered data when the body is not ready
/// but discards it when the body fails, so the error waits one scheduler turn.
fn cut_body<S>(items: S) -> Body
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

/// An SSE answer produced by a spawned task, event by event, so pacing and
/// drops happen on the wire rather than in a buffered body. When `produce`
/// gives up (the client left, the server is stopping, or a drop was
/// injected) the connection is cut, so the client cannot mistake a cut
/// stream for a finished one.
pub(crate) fn sse<F, Fut>(shared: &Shared, produce: F) -> Response
where
    F: FnOnce(SseSender) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), Closed>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(16);
    let cutter = tx.clone();
    let events = SseSender {
        tx,
        shutdown: shared.shutdown.clone(),
    };
    tokio::spawn(async move {
        if let Err(Closed) = produce(events).await {
            // Nobody may be listening any more, which is fine.
            let _ = cutter.send(Err(io::Error::other("mock: stream cut"))).await;
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

/// One SSE frame, named (Anthropic) or not (OpenAI, Gemini).
pub(crate) fn frame(event: Option<&str>, data: &Value) -> Bytes {
    Bytes::from(match event {
        Some(event) => format!("event: {event}\ndata: {data}\n\n"),
        None => format!("data: {data}\n\n"),
    })
}

/// The stream cannot go on: the client left, the server is stopping, or a
/// drop was injected.
pub(crate) struct Closed;

pub(crate) struct SseSender {
    tx: mpsc::Sender<io::Result<Bytes>>,
    shutdown: CancellationToken,
}

impl SseSender {
    pub(crate) async fn send(&mut self, event: &Value) -> Result<(), Closed> {
        self.send_raw(frame(None, event)).await
    }

    pub(crate) async fn send_event(&mut self, name: &str, event: &Value) -> Result<(), Closed> {
        self.send_raw(frame(Some(name), event)).await
    }

    pub(crate) async fn send_raw(&mut self, bytes: Bytes) -> Result<(), Closed> {
        if self.shutdown.is_cancelled() {
            return Err(Closed);
        }
        self.tx.send(Ok(bytes)).await.map_err(|_| Closed)
    }

    /// Sends one frame per piece (word or argument fragment), `pace` apart.
    /// With `drop_after`, sends that many (or all, if fewer) and gives up.
    pub(crate) async fn send_pieces(
        &mut self,
        pieces: &[String],
        drop_after: Option<usize>,
        pace: Option<Duration>,
        mut frame: impl FnMut(usize, &str) -> Bytes,
    ) -> Result<(), Closed> {
        let sent = drop_after.map_or(pieces.len(), |limit| limit.min(pieces.len()));
        for (index, piece) in pieces[..sent].iter().enumerate() {
            if index > 0
                && let Some(pace) = pace
            {
                self.pause(pace).await?;
            }
            self.send_raw(frame(index, piece)).await?;
        }
        match drop_after {
            Some(_) => Err(Closed),
            None => Ok(()),
        }
    }

    /// Waits, but gives up early when the client hangs up or the server stops,
    /// so neither waits on a stream nobody will read.
    pub(crate) async fn pause(&mut self, delay: Duration) -> Result<(), Closed> {
        if delay.is_zero() {
            return if self.tx.is_closed() || self.shutdown.is_cancelled() { Err(Closed) } else { Ok(()) };
        }
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
