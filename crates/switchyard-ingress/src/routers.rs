//! `/v1/routers`: routers created and changed through the admin API.
//!
//! A change is validated here as strictly as the config file's routers,
//! then written through the raft log, so every node serves the same
//! routers; each node validates it again against its own models when it
//! applies it. A handler answers once this node serves the change.
//!
//! Routers of the config file are listed with `"source": "config"`. A PUT
//! on one stores an override (`"source": "api"`), and DELETE removes the
//! override, which brings the file's definition back.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use switchyard_config::raw::RawRouter;
use switchyard_config::{Router, SelectionPolicy};

use crate::error::IngressError;
use crate::http::check_admin;
use crate::pipeline::Pipeline;

type AppState = Arc<Pipeline>;

/// How long a handler waits for this node to apply a committed change.
pub const APPLY_DEADLINE: Duration = Duration::from_secs(10);

fn policy_name(policy: SelectionPolicy) -> &'static str {
    match policy {
        SelectionPolicy::Cheapest => "cheapest",
        SelectionPolicy::Fastest => "fastest",
        SelectionPolicy::Manual => "manual",
    }
}

/// A router as the API shows it: the file's shape, plus where it comes from.
fn router_json(router: &Router, stored: Option<&switchyard_cluster::StoredRouter>) -> Value {
    json!({
        "object": "router",
        "name": router.name,
        "description": router.description,
        "source": if stored.is_some() { "api" } else { "config" },
        "version": stored.map(|stored| stored.version),
        "updated_at": stored.map(|stored| stored.updated_at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())),
        "tasks": router.tasks.iter().map(|task| json!({
            "name": task.name,
            "description": task.description,
            "models": task.models,
            "selection_policy": policy_name(task.policy),
        })).collect::<Vec<_>>(),
        "fallback_models": router.fallback_models,
        "route_on_user_only": router.route_on_user_only,
    })
}

/// `GET /v1/routers` (admin): every router in force on this node.
pub async fn list(
    State(pipeline): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
) -> Result<Json<Value>, IngressError> {
    check_admin(pipeline.admin.as_ref(), &headers, peer)?;
    let config = pipeline.config.load();
    let stored = pipeline.cluster.routers();
    Ok(Json(json!({
        "object": "list",
        "data": config.routers.iter().map(|router| router_json(router, stored.routers.get(&router.name))).collect::<Vec<_>>(),
        "version": stored.version,
    })))
}

/// `GET /v1/routers/{name}` (admin).
pub async fn get(
    State(pipeline): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<Value>, IngressError> {
    check_admin(pipeline.admin.as_ref(), &headers, peer)?;
    let config = pipeline.config.load();
    let router = config.router(&name).ok_or_else(|| IngressError::UnknownRouter(name.clone()))?;
    Ok(Json(router_json(router, pipeline.cluster.routers().routers.get(&name))))
}

/// The body as a router definition; `name` comes from the path when given
/// there, and must agree with the body's if both say one.
fn definition(body: Result<Bytes, BytesRejection>, path_name: Option<&str>) -> Result<RawRouter, IngressError> {
    let bytes = body.map_err(|rejection| IngressError::Body(rejection.body_text()))?;
    let mut value: Value = serde_json::from_slice(&bytes)
        .map_err(|err| IngressError::BadAdminRequest(format!("the body is not JSON: {err}")))?;
    let object = value.as_object_mut().ok_or_else(|| {
        IngressError::BadAdminRequest("expected a router object: {\"name\", \"tasks\": [...], \"fallback_models\": [...]}".to_owned())
    })?;
    if let Some(path_name) = path_name {
        match object.get("name").and_then(Value::as_str) {
            Some(body_name) if body_name != path_name => {
                return Err(IngressError::BadAdminRequest(format!(
                    "the body names the router `{body_name}` but the path `{path_name}`"
                )));
            }
            _ => {
                object.insert("name".to_owned(), Value::String(path_name.to_owned()));
            }
        }
    }
    serde_json::from_value(value).map_err(|err| IngressError::BadAdminRequest(format!("not a router definition: {err}")))
}

/// Validates and stores a definition; answers once this node serves it.
async fn store(pipeline: &Pipeline, raw: RawRouter, create: bool) -> Result<Value, IngressError> {
    let config = pipeline.config.load_full();
    let router = config.validate_router(&raw).map_err(IngressError::InvalidRouter)?;
    if create && config.router(&router.name).is_some() {
        return Err(IngressError::RouterExists(router.name));
    }
    // The validated definition is what the log keeps (canonical JSON).
    let text = serde_json::to_string(&raw).map_err(|err| IngressError::BadAdminRequest(err.to_string()))?;
    let version = pipeline
        .cluster
        .put_router(&router.name, text, create)
        .await?
        .ok_or_else(|| IngressError::RouterExists(router.name.clone()))?;
    wait_applied(pipeline, version).await?;
    let stored = pipeline.cluster.routers();
    let config = pipeline.config.load();
    let served = config.router(&router.name).unwrap_or(&router);
    Ok(router_json(served, stored.routers.get(&router.name)))
}

/// Waits until this node serves the routers of `version` or later.
async fn wait_applied(pipeline: &Pipeline, version: u64) -> Result<(), IngressError> {
    let mut applied = pipeline.routers_applied.clone();
    tokio::time::timeout(APPLY_DEADLINE, applied.wait_for(|applied| *applied >= version))
        .await
        .map_err(|_| IngressError::RouterNotApplied(APPLY_DEADLINE.as_secs()))?
        .map_err(|_| IngressError::RouterNotApplied(APPLY_DEADLINE.as_secs()))?;
    Ok(())
}

/// `POST /v1/routers` (admin): creates a router; 409 if the name is taken.
pub async fn create(
    State(pipeline): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), IngressError> {
    check_admin(pipeline.admin.as_ref(), &headers, peer)?;
    let raw = definition(body, None)?;
    Ok((StatusCode::CREATED, Json(store(&pipeline, raw, true).await?)))
}

/// `PUT /v1/routers/{name}` (admin): creates or replaces a router.
pub async fn replace(
    State(pipeline): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, IngressError> {
    check_admin(pipeline.admin.as_ref(), &headers, peer)?;
    let raw = definition(body, Some(&name))?;
    Ok(Json(store(&pipeline, raw, false).await?))
}

/// `DELETE /v1/routers/{name}` (admin): removes a router made through the
/// API (or the API's override of a file router).
pub async fn delete(
    State(pipeline): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<Value>, IngressError> {
    check_admin(pipeline.admin.as_ref(), &headers, peer)?;
    let config = pipeline.config.load_full();
    if !pipeline.cluster.routers().routers.contains_key(&name) {
        return Err(if config.is_file_router(&name) {
            IngressError::RouterInConfigFile(name)
        } else {
            IngressError::UnknownRouter(name)
        });
    }
    // None: deleted by someone else between the check and the write.
    let version = pipeline
        .cluster
        .delete_router(&name)
        .await?
        .ok_or_else(|| IngressError::UnknownRouter(name.clone()))?;
    wait_applied(&pipeline, version).await?;
    Ok(Json(json!({
        "object": "router.deleted",
        "name": name,
        "deleted": true,
        // A file router of the same name is in force again.
        "restored_from_config": config.is_file_router(&name),
        "at": SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
    })))
}
