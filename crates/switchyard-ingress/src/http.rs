//! The HTTP surface: routes, handlers, and the translation between HTTP
//! and the pipeline.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Map, Value, json};
use switchyard_config::Price;
use switchyard_dispatch::{DispatchFailure, Served, ServedBody};
use switchyard_types::{ChatRequest, DispatchOutcome, OTHER_ROUTE, Outcome, RequestError};

use crate::error::IngressError;
use crate::pipeline::{Pipeline, Plan};
use crate::{
    AFFINITY_HEADER, AFFINITY_STATUS_HEADER, COST_HEADER, DEMO_HEADER, ROUTE_HEADER, ROUTER_HEADER, SAVINGS_HEADER,
};

/// Longest session id accepted in `X-Model-Affinity`.
const MAX_SESSION_LEN: usize = 256;

type AppState = Arc<Pipeline>;

/// Every route the node serves. A node without the `ingress` role answers
/// the public API with 421 (send it to an ingress node) and serves the rest.
pub fn router(pipeline: Arc<Pipeline>) -> Router {
    let config = pipeline.config.load();
    let body_limit = config.server.max_body_bytes;
    let public = if pipeline.ingress {
        let door = Arc::new(crate::admission::Door::new(
            &config.auth,
            &config.limits,
            body_limit,
            pipeline.metrics.clone(),
        ));
        Router::new()
            .route("/v1/chat/completions", post(chat_completions))
            .route("/v1/messages", post(messages))
            .route("/v1/route", post(route_only))
            .route("/v1/models", get(list_models))
            .route_layer(axum::middleware::from_fn_with_state(door, crate::admission::admit))
    } else {
        Router::new()
            .route("/v1/chat/completions", axum::routing::any(not_ingress))
            .route("/v1/messages", axum::routing::any(not_ingress))
            .route("/v1/route", axum::routing::any(not_ingress))
            .route("/v1/models", axum::routing::any(not_ingress))
    };
    public
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/decisions", get(decisions))
        .route("/dashboard", get(dashboard))
        .route("/v1/routers", get(crate::routers::list).post(crate::routers::create))
        .route(
            "/v1/routers/{name}",
            get(crate::routers::get)
                .put(crate::routers::replace)
                .delete(crate::routers::delete),
        )
        .route("/v1/classifier", get(classifier_status))
        .route("/v1/classifier/workers", axum::routing::put(classifier_resize))
        .route("/v1/cluster", get(cluster_status))
        .route("/v1/cluster/nodes", post(cluster_add))
        .route("/v1/cluster/nodes/{id}", axum::routing::delete(cluster_remove))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(pipeline)
}

/// The dashboard page: one self-contained file, compiled in.
const DASHBOARD_HTML: &str = include_str!("dashboard.html");

/// `GET /dashboard`: a live view of this node's metrics and recent
/// decisions. The page loads nothing from elsewhere; its policy says so.
async fn dashboard() -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:",
                ),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        DASHBOARD_HTML,
    )
        .into_response()
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionParams {
    router: Option<String>,
    route: Option<String>,
    model: Option<String>,
    /// Unix seconds (fractions allowed) or RFC 3339 (`2026-11-27T10:00:00Z`).
    since: Option<String>,
    limit: Option<usize>,
}

/// The most lines one `GET /v1/decisions` returns.
const DECISIONS_LIMIT: usize = 100_000;

fn since_ms(since: &str) -> Result<u64, IngressError> {
    if let Ok(seconds) = since.parse::<f64>()
        && seconds.is_finite()
        && seconds >= 0.0
    {
        // Rounded: 1795742353.648 is 1795742353647.9999 ms in floating point.
        return Ok((seconds * 1000.0).round() as u64);
    }
    humantime::parse_rfc3339_weak(since)
        .ok()
        .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|since| since.as_millis() as u64)
        .ok_or_else(|| {
            IngressError::BadAdminRequest(format!(
                "`since` must be Unix seconds or an RFC 3339 time like 2026-11-27T10:00:00Z, not `{since}`"
            ))
        })
}

/// `GET /v1/decisions?route=other&since=...` (admin): the decision log as
/// JSON lines, oldest first (`limit`: the most recent N, 1000 by default).
async fn decisions(
    State(pipeline): State<AppState>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    query: Result<axum::extract::Query<DecisionParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, IngressError> {
    check_admin(pipeline.admin.as_ref(), &headers, peer)?;
    let axum::extract::Query(params) = query.map_err(|rejection| IngressError::BadAdminRequest(rejection.body_text()))?;
    let log = pipeline
        .decisions
        .as_ref()
        .ok_or_else(|| IngressError::NotFound("the decision log is off (decisions.enabled: false)".to_owned()))?;
    let limit = params.limit.unwrap_or(1_000);
    if !(1..=DECISIONS_LIMIT).contains(&limit) {
        return Err(IngressError::BadAdminRequest(format!("`limit` must be 1 to {DECISIONS_LIMIT}")));
    }
    let query = switchyard_metrics::DecisionQuery {
        since_ms: params.since.as_deref().map(since_ms).transpose()?,
        router: params.router,
        route: params.route,
        model: params.model,
        limit: Some(limit),
    };
    let lines = switchyard_metrics::query_decisions(log, query).await?;
    let mut body = lines.join("\n");
    if !body.is_empty() {
        body.push('\n');
    }
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"))], body).into_response())
}

async fn not_ingress(State(pipeline): State<AppState>) -> IngressError {
    IngressError::NotIngress(pipeline.config.load().cluster.roles.names().join(", "))
}

/// `GET /readyz`: 200 once the node can serve (its cluster knows a leader,
/// so pins and routers can be written), 503 otherwise. For load balancers
/// and Kubernetes readiness probes; `/healthz` only says the process runs.
async fn readyz(State(pipeline): State<AppState>) -> (StatusCode, Json<Value>) {
    let status = pipeline.cluster.status();
    let ready = status.leader.is_some();
    (
        if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE },
        Json(json!({
            "ready": ready,
            "leader": status.leader,
            "role": status.role,
            "roles": pipeline.config.load().cluster.roles.names(),
        })),
    )
}

async fn not_found(uri: axum::http::Uri) -> IngressError {
    IngressError::NotFound(uri.path().to_owned())
}

async fn method_not_allowed() -> IngressError {
    IngressError::MethodNotAllowed
}

/// The request body's bytes, or the error for a body that could not be read.
fn read_body(pipeline: &Pipeline, body: Result<Bytes, BytesRejection>) -> Result<Bytes, IngressError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            IngressError::TooLarge {
                limit: pipeline.config.load().server.max_body_bytes,
            }
        } else {
            IngressError::Body(rejection.body_text())
        }
    })
}

/// Refuses a body declared as something other than JSON. Lenient where
/// clients are: no type, `text/plain`, and the form type `curl -d` sends
/// by default are read as JSON too; multipart, XML, binary are not.
fn check_content_type(headers: &HeaderMap) -> Result<(), IngressError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let text = value.to_str().unwrap_or("").trim().to_ascii_lowercase();
    let essence = text.split(';').next().unwrap_or("").trim();
    let json_like = essence == "application/json"
        || essence.ends_with("+json")
        || essence == "text/plain"
        || essence == "application/x-www-form-urlencoded";
    if json_like {
        Ok(())
    } else {
        Err(IngressError::UnsupportedMediaType(
            String::from_utf8_lossy(value.as_bytes()).chars().take(100).collect(),
        ))
    }
}

/// Reads and validates a chat request body.
fn parse_body(
    pipeline: &Pipeline,
    body: Result<Bytes, BytesRejection>,
) -> Result<ChatRequest, IngressError> {
    within_limits(pipeline, ChatRequest::from_json(&read_body(pipeline, body)?)?)
}

/// Refuses a request with more messages than `limits.max_messages`.
fn within_limits(pipeline: &Pipeline, request: ChatRequest) -> Result<ChatRequest, IngressError> {
    let max = pipeline.config.load().limits.max_messages;
    if request.messages.len() > max {
        return Err(IngressError::BadRequest(RequestError::Invalid {
            param: "messages".to_owned(),
            message: format!(
                "has {} messages; this router accepts at most {max} (limits.max_messages)",
                request.messages.len()
            ),
        }));
    }
    Ok(request)
}

/// Reads an Anthropic Messages request and turns it into the router's
/// (OpenAI) shape. A stream asks for usage, which the translation back
/// needs for its final `message_delta`.
fn parse_messages_body(pipeline: &Pipeline, body: Result<Bytes, BytesRejection>) -> Result<ChatRequest, IngressError> {
    let bytes = read_body(pipeline, body)?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|err| {
        IngressError::BadRequest(RequestError::Malformed(format!("request body is not valid JSON: {err}")))
    })?;
    let mut openai = switchyard_protocol::anthropic::request_to_openai(&value)?;
    if openai.get("stream") == Some(&Value::Bool(true)) {
        openai["stream_options"] = json!({"include_usage": true});
    }
    let bytes = serde_json::to_vec(&openai)
        .map_err(|err| IngressError::BadRequest(RequestError::Malformed(err.to_string())))?;
    within_limits(pipeline, ChatRequest::from_json(&bytes)?)
}

/// The session id from `X-Model-Affinity`, if any.
fn session(headers: &HeaderMap) -> Result<Option<String>, IngressError> {
    let Some(value) = headers.get(AFFINITY_HEADER) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| IngressError::BadAffinityHeader)?
        .trim();
    if text.is_empty() || text.len() > MAX_SESSION_LEN {
        return Err(IngressError::BadAffinityHeader);
    }
    Ok(Some(text.to_owned()))
}

/// Which API the client spoke: the answer goes back in the same shape,
/// whatever kind of upstream served it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    OpenAi,
    Anthropic,
}

async fn chat_completions(
    State(pipeline): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, IngressError> {
    check_content_type(&headers)?;
    let request = parse_body(&pipeline, body)?;
    serve(&pipeline, &request, session(&headers)?, Api::OpenAi).await
}

/// `POST /v1/messages`: the Anthropic Messages API, routed like chat
/// completions and answered in the Anthropic shape (errors included).
async fn messages(State(pipeline): State<AppState>, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    let served = async {
        check_content_type(&headers)?;
        let request = parse_messages_body(&pipeline, body)?;
        serve(&pipeline, &request, session(&headers)?, Api::Anthropic).await
    };
    served.await.unwrap_or_else(IngressError::into_anthropic_response)
}

/// Plans, dispatches and answers one request.
async fn serve(pipeline: &Arc<Pipeline>, request: &ChatRequest, session: Option<String>, api: Api) -> Result<Response, IngressError> {
    let plan = pipeline.plan(request, session).await?;
    let dispatched = pipeline
        .dispatcher
        .dispatch(request, &plan.candidates)
        .await;
    match dispatched {
        Ok(served) => Ok(respond(pipeline, &plan, served, api).await),
        Err(failure) => {
            let (attempts, outcome, error) = match failure {
                DispatchFailure::AllFailed { attempts } => (
                    attempts.clone(),
                    Outcome::AllFailed,
                    IngressError::AllFailed { attempts },
                ),
                DispatchFailure::Rejected {
                    model,
                    status,
                    body,
                    attempts,
                } => (
                    attempts,
                    Outcome::ClientError,
                    IngressError::UpstreamRejected {
                        model,
                        status,
                        body,
                    },
                ),
            };
            pipeline.report(&plan, DispatchOutcome {
                router: plan.router().map(str::to_owned),
                route: plan.route.clone(),
                model: None,
                outcome,
                served_by_fallback: false,
                attempts,
                usage: None,
                cost: None,
                ttft: None,
                total: plan.decision_time,
            });
            Err(error)
        }
    }
}

/// The `data:` payload of one SSE frame as the relay sends it.
fn sse_data(frame: &[u8]) -> String {
    String::from_utf8_lossy(frame)
        .lines()
        .filter_map(|line| line.strip_prefix("data: ").or_else(|| line.strip_prefix("data:")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The relay's OpenAI chunks as Anthropic Messages events, chunk by chunk.
fn anthropic_events(
    body: tokio::sync::mpsc::Receiver<Result<Bytes, std::convert::Infallible>>,
    model: &str,
) -> impl futures_util::Stream<Item = Result<Bytes, std::convert::Infallible>> + use<> {
    let translator = switchyard_protocol::anthropic::StreamFromOpenAi::new(model);
    futures_util::stream::unfold((body, translator), |(mut body, mut translator)| async move {
        loop {
            let Ok(frame) = body.recv().await?;
            let events = translator.chunk(&sse_data(&frame));
            if events.is_empty() {
                continue;
            }
            let text: String = events
                .iter()
                .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
                .collect();
            return Some((Ok(Bytes::from(text)), (body, translator)));
        }
    })
}

/// Builds the client's response from a served upstream response.
async fn respond(pipeline: &Arc<Pipeline>, plan: &Plan, served: Served, api: Api) -> Response {
    pipeline.pin(plan, &served.model).await;
    let outcome = if served.attempts.is_empty() {
        Outcome::Success
    } else {
        Outcome::FailedOver
    };
    let report = DispatchOutcome {
        router: plan.router().map(str::to_owned),
        route: plan.route.clone(),
        model: Some(served.model.clone()),
        outcome,
        served_by_fallback: plan.is_fallback_model(&pipeline.config.load(), &served.model),
        attempts: served.attempts,
        usage: None,
        cost: None,
        ttft: Some(served.ttft),
        total: served.ttft,
    };
    let config = pipeline.config.load();
    let baseline = config.signals.baseline_model.as_deref();
    let mut cost = None;
    let mut response = match served.body {
        ServedBody::Json {
            value,
            usage,
            total,
        } => {
            cost = usage.and_then(|usage| pipeline.signals.load().cost(&served.model, usage, baseline));
            pipeline.report(plan, DispatchOutcome {
                usage,
                cost,
                total,
                ..report
            });
            match api {
                Api::OpenAi => Json(value).into_response(),
                Api::Anthropic => Json(switchyard_protocol::anthropic::response_from_openai(&value, &served.model)).into_response(),
            }
        }
        ServedBody::Stream(relay) => {
            let reporter = Arc::clone(pipeline);
            let plan = plan.clone();
            let model = served.model.clone();
            let baseline = baseline.map(str::to_owned);
            tokio::spawn(async move {
                // Sent once the stream ends, however it ends.
                if let Ok(summary) = relay.summary.await {
                    let outcome = if summary.broken.is_some() {
                        Outcome::StreamBroken
                    } else {
                        report.outcome
                    };
                    let cost = summary
                        .usage
                        .and_then(|usage| reporter.signals.load().cost(&model, usage, baseline.as_deref()));
                    reporter.report(&plan, DispatchOutcome {
                        usage: summary.usage,
                        cost,
                        total: summary.total,
                        outcome,
                        ..report
                    });
                }
            });
            let body = match api {
                Api::OpenAi => Body::from_stream(futures_util::stream::unfold(relay.body, |mut receiver| async move {
                    receiver.recv().await.map(|item| (item, receiver))
                })),
                Api::Anthropic => Body::from_stream(anthropic_events(relay.body, &served.model)),
            };
            let mut response = Response::new(body);
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            response
        }
    };
    let headers = response.headers_mut();
    if let Some(cost) = cost {
        if let Ok(value) = HeaderValue::from_str(&usd(cost.usd)) {
            headers.insert(COST_HEADER, value);
        }
        if let Some(Ok(value)) = cost.savings_usd().map(|savings| HeaderValue::from_str(&usd(savings))) {
            headers.insert(SAVINGS_HEADER, value);
        }
    }
    decorate(headers, pipeline, plan, Some(&served.model));
    response
}

/// USD with enough places for a one-token response on a cheap model.
fn usd(value: f64) -> String {
    format!("{value:.8}")
}

/// Adds the router's response headers.
fn decorate(headers: &mut HeaderMap, pipeline: &Pipeline, plan: &Plan, model: Option<&str>) {
    if let Some(router) = plan.router() {
        if let Ok(value) = HeaderValue::from_str(&plan.route) {
            headers.insert(ROUTE_HEADER, value);
        }
        if let Ok(value) = HeaderValue::from_str(router) {
            headers.insert(ROUTER_HEADER, value);
        }
    }
    if plan.session.is_some() {
        headers.insert(
            AFFINITY_STATUS_HEADER,
            HeaderValue::from_static(plan.affinity.as_str()),
        );
    }
    let config = pipeline.config.load();
    let demo = model
        .and_then(|id| config.model(id))
        .and_then(|m| config.provider(&m.provider))
        .is_some_and(|provider| provider.demo);
    if demo {
        headers.insert(DEMO_HEADER, HeaderValue::from_static("true"));
    }
}

/// `POST /v1/route`: the decision alone, no upstream call.
async fn route_only(
    State(pipeline): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, IngressError> {
    check_content_type(&headers)?;
    let request = parse_body(&pipeline, body)?;
    let plan = pipeline.plan(&request, session(&headers)?).await?;
    pipeline.log_dry_run(&plan);
    let scores: Map<String, Value> = plan
        .decision
        .iter()
        .flat_map(|decision| decision.scores.iter())
        .map(|(route, score)| (route.clone(), json!(score)))
        .collect();
    let signals = pipeline.signals.load();
    let model = plan.candidates.models.first();
    let price = model.and_then(|id| signals.price(id));
    let config = pipeline.config.load();
    let baseline = config.signals.baseline_model.as_deref();
    // What the chosen model saves against the baseline, per token: the
    // request's own cost is known only once it has been served.
    let savings = baseline.and_then(|baseline| {
        let base = signals.price(baseline)?;
        let (per_million, base_per_million) = (price?.per_million()?, base.per_million()?);
        Some(json!({
            "baseline_model": baseline,
            "baseline_price": price_json(&base),
            "fraction": if base_per_million > 0.0 { 1.0 - per_million / base_per_million } else { 0.0 },
        }))
    });
    let body = json!({
        "router": plan.router(),
        "route": plan.router().map(|_| plan.route.clone()),
        "model": model,
        "candidates": plan.candidates.models,
        "fallback_from": plan.candidates.fallback_from,
        "cooling": plan.candidates.cooling,
        "over_budget": plan.candidates.over_budget,
        "price": price.as_ref().map(price_json),
        "prices_as_of": signals.price_origin.as_of,
        "savings": savings,
        "scores": scores,
        "classifier": plan.decision.as_ref().map(|d| d.classifier.clone()),
        "affinity": plan.affinity.as_str(),
        "shed": plan.shed,
        "decision_ms": plan.decision_time.as_secs_f64() * 1000.0,
    });
    let mut response = Json(body).into_response();
    decorate(response.headers_mut(), &pipeline, &plan, None);
    Ok(response)
}

fn price_json(price: &Price) -> Value {
    match price {
        Price::PerToken { input, output } => json!({
            "input_per_million": input,
            "output_per_million": output,
        }),
        Price::Hourly { usd_per_hour } => json!({ "hourly": usd_per_hour }),
    }
}

/// `GET /v1/models`: routers first (what clients are meant to call), then
/// every model with its provider, price and availability.
async fn list_models(State(pipeline): State<AppState>) -> Json<Value> {
    let config = pipeline.config.load();
    let signals = pipeline.signals.load();
    let now = std::time::Instant::now();
    let routers = config.routers.iter().map(|router| {
        json!({
            "id": format!("router:{}", router.name),
            "object": "model",
            "created": 0,
            "owned_by": "switchyard",
            "switchyard": {
                "kind": "router",
                "description": router.description,
                "tasks": router.tasks.iter().map(|task| json!({
                    "name": task.name,
                    "description": task.description,
                    "models": task.models,
                    "selection_policy": task.policy.as_str(),
                })).chain(std::iter::once(json!({
                    "name": OTHER_ROUTE,
                    "description": "Requests no task fits; served by the fallback models",
                    "models": router.fallback_models,
                }))).collect::<Vec<_>>(),
                "fallback_models": router.fallback_models,
            }
        })
    });
    let models = config.models.iter().map(|model| {
        let provider = config.provider(&model.provider);
        let demo = provider.is_some_and(|p| p.demo);
        json!({
            "id": model.id,
            "object": "model",
            "created": 0,
            "owned_by": if demo { "demo" } else { model.provider.as_str() },
            "switchyard": {
                "kind": "model",
                "provider": model.provider,
                "upstream": model.upstream,
                "aliases": model.aliases,
                "price": price_json(&signals.price(&model.id).unwrap_or(model.price)),
                "price_source": signals.price_origin.source,
                "prices_as_of": signals.price_origin.as_of,
                "prices_refreshed_at": signals.price_origin.refreshed_at,
                "latency": signals.latency.get(&model.id),
                "cooling": signals.cooling(&model.id, now),
                "available": provider.is_some_and(|p| p.available || p.demo),
                "demo": demo,
            }
        })
    });
    Json(json!({
        "object": "list",
        "data": routers.chain(models).collect::<Vec<_>>(),
    }))
}

async fn metrics(State(pipeline): State<AppState>) -> Result<Response, IngressError> {
    let text = switchyard_metrics::render(&pipeline.metrics).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(switchyard_metrics::METRICS_CONTENT_TYPE),
        )],
        text,
    )
        .into_response())
}

/// This node's classifier: its kind and the pool's workers.
async fn classifier_json(pipeline: &Pipeline) -> Result<Value, IngressError> {
    let size = switchyard_classifier::pool_size(pipeline.classifier.pool()).await?;
    let indexes = pipeline.classifier.indexes().load();
    Ok(json!({
        "kind": indexes.classifier().name(),
        "workers": size.workers,
        "busy": size.busy,
        "idle": size.idle,
        "max_workers": switchyard_classifier::MAX_WORKERS,
        // Whether these workers take a share of the traffic, or only
        // answer when no classifier node can (no `classifier` role).
        "in_spread": pipeline.classifier.local_in_spread(),
        "remote": pipeline.classifier.registry().status(std::time::Instant::now()),
    }))
}

/// `GET /v1/classifier` (admin): the classifier kind and the worker pool's size.
async fn classifier_status(
    State(pipeline): State<AppState>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
) -> Result<Json<Value>, IngressError> {
    check_admin(pipeline.admin.as_ref(), &headers, peer)?;
    Ok(Json(classifier_json(&pipeline).await?))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Resize {
    workers: usize,
}

/// `PUT /v1/classifier/workers` `{"workers": N}` (admin): resizes this
/// node's classifier pool while it serves; answers once the pool has the
/// new size (surplus workers finish their current decision first).
async fn classifier_resize(
    State(pipeline): State<AppState>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, IngressError> {
    let request: Resize = admin_request(&pipeline, &headers, peer, body, r#"{"workers": N}"#)?;
    pipeline.classifier.resize(request.workers)?;
    // The factory applies the resize asynchronously; wait (bounded) until
    // it shows, so the answer reports the new pool.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let status = classifier_json(&pipeline).await?;
        if status["workers"] == json!(request.workers) || tokio::time::Instant::now() >= deadline {
            return Ok(Json(status));
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// `GET /v1/cluster` (admin): this node's view of the cluster; it names
/// internal addresses, so it is for operators.
async fn cluster_status(
    State(pipeline): State<AppState>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
) -> Result<Json<switchyard_cluster::ClusterStatus>, IngressError> {
    check_admin(pipeline.admin.as_ref(), &headers, peer)?;
    Ok(Json(pipeline.cluster.status()))
}

/// The admin and cluster endpoints are for operators: the admin key when
/// one is configured, otherwise callers on this machine only.
pub(crate) fn check_admin(
    admin: Option<&switchyard_config::KeyHash>,
    headers: &HeaderMap,
    peer: std::net::SocketAddr,
) -> Result<(), IngressError> {
    match admin {
        Some(admin) => {
            // Hashes compared in full: timing says nothing of the key.
            let matches = crate::admission::bearer_token(headers)
                .is_some_and(|presented| admin.matches(&switchyard_config::KeyHash::of(presented)));
            if matches { Ok(()) } else { Err(IngressError::AdminForbidden) }
        }
        None if peer.ip().is_loopback() => Ok(()),
        None => Err(IngressError::AdminForbidden),
    }
}

/// An admin call's JSON body, once the caller is allowed: `expected`
/// shows the shape in the error when the body does not parse.
fn admin_request<T: serde::de::DeserializeOwned>(
    pipeline: &Pipeline,
    headers: &HeaderMap,
    peer: std::net::SocketAddr,
    body: Result<Bytes, BytesRejection>,
    expected: &str,
) -> Result<T, IngressError> {
    check_admin(pipeline.admin.as_ref(), headers, peer)?;
    let bytes = body.map_err(|rejection| IngressError::Body(rejection.body_text()))?;
    serde_json::from_slice(&bytes).map_err(|err| IngressError::BadAdminRequest(format!("expected {expected}: {err}")))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AddNode {
    id: u64,
    raft_addr: String,
    http_addr: String,
}

/// `POST /v1/cluster/nodes` `{"id", "raft_addr", "http_addr"}`: adds a node
/// as a learner, then, once it has caught up, as a voter.
async fn cluster_add(
    State(pipeline): State<AppState>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<switchyard_cluster::ClusterStatus>, IngressError> {
    let request: AddNode =
        admin_request(&pipeline, &headers, peer, body, r#"{"id", "raft_addr", "http_addr"}"#)?;
    if request.id == 0 || !request.raft_addr.contains(':') || !request.http_addr.contains(':') {
        return Err(IngressError::BadAdminRequest(
            "`id` must be > 0 and `raft_addr`, `http_addr` host:port addresses".to_owned(),
        ));
    }
    let status = pipeline
        .cluster
        .add_node(
            request.id,
            switchyard_cluster::Member {
                raft_addr: request.raft_addr,
                http_addr: request.http_addr,
            },
        )
        .await?;
    Ok(Json(status))
}

/// `DELETE /v1/cluster/nodes/{id}`: removes a node from the cluster.
async fn cluster_remove(
    State(pipeline): State<AppState>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<switchyard_cluster::ClusterStatus>, IngressError> {
    check_admin(pipeline.admin.as_ref(), &headers, peer)?;
    let id: u64 = id
        .parse()
        .map_err(|_| IngressError::BadAdminRequest(format!("`{id}` is not a node id")))?;
    Ok(Json(pipeline.cluster.remove_node(id).await?))
}

async fn healthz(State(pipeline): State<AppState>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "demo": pipeline.config.load().demo_active(),
        "routers": pipeline.config.load().routers.len(),
        "models": pipeline.config.load().models.len(),
    }))
}
