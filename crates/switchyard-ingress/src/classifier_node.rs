//! The HTTP side of a classifier-only node: health, readiness, metrics
//! and its worker pool. It serves no public API (its workers are reached
//! over gRPC by the ingress nodes); those paths answer 421.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, put};
use ractor::ActorRef;
use serde_json::{Value, json};
use switchyard_classifier::ClassifierPool;
use switchyard_metrics::MetricsMsg;
use tokio::sync::watch;

use crate::error::IngressError;
use crate::http::check_admin;

/// What a classifier node's HTTP handlers read.
#[derive(Debug)]
pub struct ClassifierNode {
    pub pool: ClassifierPool,
    /// `moe`, `embedding` or `lexical`.
    pub kind: &'static str,
    /// This node's gRPC address, as registered.
    pub addr: String,
    pub metrics: ActorRef<MetricsMsg>,
    pub admin: Option<switchyard_config::KeyHash>,
    /// How many cluster nodes took its last registration.
    pub registered: watch::Receiver<usize>,
}

type AppState = Arc<ClassifierNode>;

pub fn router(node: Arc<ClassifierNode>) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/classifier", get(status))
        .route("/v1/classifier/workers", put(resize))
        .route("/v1/chat/completions", any(not_ingress))
        .route("/v1/messages", any(not_ingress))
        .route("/v1/route", any(not_ingress))
        .route("/v1/models", any(not_ingress))
        .fallback(|uri: axum::http::Uri| async move { IngressError::NotFound(uri.path().to_owned()) })
        .with_state(node)
}

async fn not_ingress() -> IngressError {
    IngressError::NotIngress("classifier".to_owned())
}

async fn healthz(State(node): State<AppState>) -> Json<Value> {
    Json(json!({ "status": "ok", "roles": ["classifier"], "addr": node.addr }))
}

/// Ready once at least one cluster node took its registration: from then
/// on ingress nodes send it work.
async fn readyz(State(node): State<AppState>) -> (StatusCode, Json<Value>) {
    let registered = *node.registered.borrow();
    let ready = registered > 0;
    (
        if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE },
        Json(json!({ "ready": ready, "registered_with": registered })),
    )
}

async fn metrics(State(node): State<AppState>) -> Result<Response, IngressError> {
    let text = switchyard_metrics::render(&node.metrics).await?;
    Ok((
        [(header::CONTENT_TYPE, HeaderValue::from_static(switchyard_metrics::METRICS_CONTENT_TYPE))],
        text,
    )
        .into_response())
}

async fn status_json(node: &ClassifierNode) -> Result<Value, IngressError> {
    let size = switchyard_classifier::pool_size(&node.pool).await?;
    Ok(json!({
        "kind": node.kind,
        "workers": size.workers,
        "busy": size.busy,
        "idle": size.idle,
        "max_workers": switchyard_classifier::MAX_WORKERS,
        "addr": node.addr,
        "registered_with": *node.registered.borrow(),
    }))
}

/// `GET /v1/classifier` (admin).
async fn status(
    State(node): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
) -> Result<Json<Value>, IngressError> {
    check_admin(node.admin.as_ref(), &headers, peer)?;
    Ok(Json(status_json(&node).await?))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Resize {
    workers: usize,
}

/// `PUT /v1/classifier/workers` (admin): the new size is announced with
/// the next registration, so ingress nodes weigh this node by it.
async fn resize(
    State(node): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, IngressError> {
    check_admin(node.admin.as_ref(), &headers, peer)?;
    let bytes = body.map_err(|rejection| IngressError::Body(rejection.body_text()))?;
    let request: Resize = serde_json::from_slice(&bytes)
        .map_err(|err| IngressError::BadAdminRequest(format!("expected {{\"workers\": N}}: {err}")))?;
    switchyard_classifier::resize_pool(&node.pool, request.workers)?;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let status = status_json(&node).await?;
        if status["workers"] == json!(request.workers) || tokio::time::Instant::now() >= deadline {
            return Ok(Json(status));
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
