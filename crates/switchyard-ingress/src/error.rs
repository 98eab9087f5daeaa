//! The one place where errors become HTTP responses.
//!
//! Every error a client can see is rendered here as an OpenAI-shaped body,
//! `{"error": {"message", "type", "code", "param"}}`, with the status that
//! tells the client whether to fix its request or retry. Messages name
//! models, routes and causes; they never carry keys or upstream URLs.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use switchyard_affinity::AffinityError;
use switchyard_classifier::ClassifierError;
use switchyard_cluster::ClusterError;
use switchyard_metrics::MetricsError;
use switchyard_ranker::RankerError;
use switchyard_types::{Attempt, RequestError};

#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    #[error(transparent)]
    BadRequest(#[from] RequestError),
    #[error(transparent)]
    Protocol(#[from] switchyard_protocol::ProtocolError),
    #[error("the request body exceeds the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("cannot read the request body: {0}")]
    Body(String),
    #[error("the model `{0}` does not exist; use a model id or alias from GET /v1/models, or `router:<name>`")]
    UnknownModel(String),
    #[error("the router `{0}` does not exist; GET /v1/models lists the routers")]
    UnknownRouter(String),
    #[error("X-Model-Affinity must be 1 to 256 visible ASCII characters")]
    BadAffinityHeader,
    #[error("no model for this request is available: {0}")]
    NoCandidates(String),
    #[error("all {count} candidate models failed: {summary}", count = attempts.len(), summary = summarize(attempts))]
    AllFailed { attempts: Vec<Attempt> },
    #[error("the upstream for model `{model}` refused the request with HTTP {status}")]
    UpstreamRejected {
        model: String,
        status: u16,
        body: Value,
    },
    #[error("no route: {0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error(transparent)]
    Classifier(#[from] ClassifierError),
    #[error(transparent)]
    Ranker(#[from] RankerError),
    #[error(transparent)]
    Affinity(#[from] AffinityError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("cluster admin: {0}")]
    BadAdminRequest(String),
    #[error("{0}")]
    InvalidRouter(switchyard_config::ConfigError),
    #[error("a router named `{0}` exists already; PUT /v1/routers/{0} replaces it")]
    RouterExists(String),
    #[error("the router `{0}` is defined in the config file; change the file to remove it (a PUT stores an override, which DELETE removes)")]
    RouterInConfigFile(String),
    #[error("the router change was committed but this node has not applied it within {0} s; it will")]
    RouterNotApplied(u64),
    #[error("this node does not serve the public API (roles: {0}); send requests to an ingress node")]
    NotIngress(String),
    #[error("the admin and cluster endpoints need `Authorization: Bearer <admin key>` (auth.admin_key_sha256 or auth.admin_key_env), or a loopback caller when no admin key is set")]
    AdminForbidden,
    #[error("this router needs an API key: send `Authorization: Bearer <key>` (or `x-api-key: <key>`)")]
    MissingKey,
    #[error("the API key is not valid")]
    InvalidKey,
    #[error("rate limit of key `{key}` reached ({per_minute} requests per minute); retry after {retry_after} s")]
    RateLimited { key: String, per_minute: u32, retry_after: u64 },
    #[error("the router is at its limit of {limit} concurrent requests; retry shortly")]
    Overloaded { limit: usize },
    #[error("the request body did not arrive within {secs} s")]
    BodyTimeout { secs: f64 },
    #[error("Content-Type `{0}` is not accepted: send the body as application/json")]
    UnsupportedMediaType(String),
}

fn summarize(attempts: &[Attempt]) -> String {
    attempts
        .iter()
        .map(|attempt| format!("{} ({})", attempt.model, attempt.failure))
        .collect::<Vec<_>>()
        .join(", ")
}

impl IngressError {
    fn status(&self) -> StatusCode {
        match self {
            IngressError::BadRequest(_)
            | IngressError::Protocol(_)
            | IngressError::Body(_)
            | IngressError::BadAffinityHeader => StatusCode::BAD_REQUEST,
            IngressError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            IngressError::UnknownModel(_)
            | IngressError::UnknownRouter(_)
            | IngressError::NotFound(_) => StatusCode::NOT_FOUND,
            IngressError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            IngressError::NoCandidates(_) => StatusCode::SERVICE_UNAVAILABLE,
            IngressError::AllFailed { .. } => StatusCode::BAD_GATEWAY,
            IngressError::UpstreamRejected { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST)
            }
            IngressError::Classifier(ClassifierError::UnknownRouter(_))
            | IngressError::Ranker(RankerError::UnknownRouter(_)) => StatusCode::NOT_FOUND,
            IngressError::Classifier(ClassifierError::WorkerCount(_)) => StatusCode::BAD_REQUEST,
            IngressError::Classifier(_)
            | IngressError::Ranker(_)
            | IngressError::Affinity(_)
            | IngressError::Metrics(_) => StatusCode::INTERNAL_SERVER_ERROR,
            IngressError::BadAdminRequest(_) | IngressError::InvalidRouter(_) => StatusCode::BAD_REQUEST,
            IngressError::RouterExists(_) | IngressError::RouterInConfigFile(_) => StatusCode::CONFLICT,
            IngressError::RouterNotApplied(_) => StatusCode::GATEWAY_TIMEOUT,
            IngressError::NotIngress(_) => StatusCode::MISDIRECTED_REQUEST,
            IngressError::AdminForbidden => StatusCode::FORBIDDEN,
            IngressError::MissingKey | IngressError::InvalidKey => StatusCode::UNAUTHORIZED,
            IngressError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            IngressError::Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
            IngressError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            IngressError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IngressError::Cluster(ClusterError::UnknownNode(_)) => StatusCode::NOT_FOUND,
            IngressError::Cluster(ClusterError::NoLeader) => StatusCode::SERVICE_UNAVAILABLE,
            IngressError::Cluster(ClusterError::Config(_)) => StatusCode::BAD_REQUEST,
            IngressError::Cluster(ClusterError::Peer(_) | ClusterError::Raft(_)) => StatusCode::BAD_GATEWAY,
            IngressError::Cluster(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn kind_and_code(&self) -> (&'static str, &'static str) {
        match self {
            IngressError::BadRequest(_) | IngressError::Protocol(_) => ("invalid_request_error", "invalid_request"),
            IngressError::Body(_) => ("invalid_request_error", "invalid_body"),
            IngressError::BadAffinityHeader => ("invalid_request_error", "invalid_affinity_header"),
            IngressError::TooLarge { .. } => ("invalid_request_error", "request_too_large"),
            IngressError::UnknownModel(_) => ("invalid_request_error", "model_not_found"),
            IngressError::UnknownRouter(_)
            | IngressError::Classifier(ClassifierError::UnknownRouter(_))
            | IngressError::Ranker(RankerError::UnknownRouter(_)) => {
                ("invalid_request_error", "router_not_found")
            }
            IngressError::NotFound(_) => ("invalid_request_error", "not_found"),
            IngressError::Classifier(ClassifierError::WorkerCount(_)) => ("invalid_request_error", "invalid_admin_request"),
            IngressError::MethodNotAllowed => ("invalid_request_error", "method_not_allowed"),
            IngressError::NoCandidates(_) => ("upstream_error", "no_available_models"),
            IngressError::AllFailed { .. } => ("upstream_error", "all_models_failed"),
            IngressError::UpstreamRejected { .. } => ("invalid_request_error", "upstream_rejected"),
            IngressError::Classifier(_)
            | IngressError::Ranker(_)
            | IngressError::Affinity(_)
            | IngressError::Metrics(_) => ("server_error", "internal_error"),
            IngressError::BadAdminRequest(_) => ("invalid_request_error", "invalid_admin_request"),
            IngressError::InvalidRouter(_) => ("invalid_request_error", "invalid_router"),
            IngressError::RouterExists(_) => ("invalid_request_error", "router_exists"),
            IngressError::RouterInConfigFile(_) => ("invalid_request_error", "router_in_config_file"),
            IngressError::RouterNotApplied(_) => ("server_error", "router_not_applied"),
            IngressError::NotIngress(_) => ("invalid_request_error", "not_an_ingress_node"),
            IngressError::AdminForbidden => ("permission_error", "admin_forbidden"),
            IngressError::MissingKey => ("invalid_request_error", "missing_api_key"),
            IngressError::InvalidKey => ("invalid_request_error", "invalid_api_key"),
            IngressError::RateLimited { .. } => ("rate_limit_error", "rate_limit_exceeded"),
            IngressError::Overloaded { .. } => ("server_error", "overloaded"),
            IngressError::BodyTimeout { .. } => ("invalid_request_error", "body_timeout"),
            IngressError::UnsupportedMediaType(_) => ("invalid_request_error", "unsupported_media_type"),
            IngressError::Cluster(ClusterError::UnknownNode(_)) => ("invalid_request_error", "node_not_found"),
            IngressError::Cluster(ClusterError::NoLeader) => ("server_error", "no_cluster_leader"),
            IngressError::Cluster(_) => ("server_error", "cluster_error"),
        }
    }

    /// The OpenAI-shaped body for this error.
    pub fn body(&self) -> Value {
        if let IngressError::UpstreamRejected { body, .. } = self {
            // The upstream's own error tells the client what to fix.
            return body.clone();
        }
        let (kind, code) = self.kind_and_code();
        let param = match self {
            IngressError::BadRequest(err) => err.param().map(str::to_owned),
            IngressError::Protocol(err) => Some(err.param().to_owned()),
            IngressError::UnknownModel(_) | IngressError::UnknownRouter(_) => {
                Some("model".to_owned())
            }
            IngressError::BadAffinityHeader => Some("X-Model-Affinity".to_owned()),
            IngressError::InvalidRouter(switchyard_config::ConfigError::Invalid { place, .. }) => Some(place.clone()),
            _ => None,
        };
        let mut error = json!({
            "message": self.to_string(),
            "type": kind,
            "code": code,
            "param": param,
        });
        if let (IngressError::AllFailed { attempts }, Some(object)) = (self, error.as_object_mut()) {
            object.insert(
                "attempts".to_owned(),
                Value::Array(
                    attempts
                        .iter()
                        .map(|attempt| {
                            json!({
                                "model": attempt.model,
                                "error": attempt.failure.to_string(),
                                "status": match attempt.failure {
                                    switchyard_types::AttemptFailure::Status { status } => Some(status),
                                    _ => None,
                                },
                            })
                        })
                        .collect(),
                ),
            );
        }
        json!({ "error": error })
    }
}

impl IngressError {
    /// Headers that tell a client how to recover: when to retry, how to
    /// authenticate.
    fn headers(&self) -> Vec<(axum::http::HeaderName, axum::http::HeaderValue)> {
        use axum::http::{HeaderValue, header};
        match self {
            IngressError::RateLimited { retry_after, .. } => {
                vec![(header::RETRY_AFTER, HeaderValue::from(*retry_after))]
            }
            IngressError::Overloaded { .. } => vec![(header::RETRY_AFTER, HeaderValue::from_static("1"))],
            IngressError::MissingKey | IngressError::InvalidKey => {
                vec![(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))]
            }
            _ => Vec::new(),
        }
    }

    /// The error as `POST /v1/messages` answers it: Anthropic's envelope
    /// (`{"type": "error", "error": {"type", "message"}}`, with Anthropic's
    /// error type names) that still carries the OpenAI fields (`code`,
    /// `param`), so either SDK reads it.
    pub fn into_anthropic_response(self) -> Response {
        let status = self.status();
        let anthropic_type = match status.as_u16() {
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            503 | 529 => "overloaded_error",
            400..=499 => "invalid_request_error",
            _ => "api_error",
        };
        let mut body = self.body();
        if let Some(error) = body.get_mut("error").and_then(Value::as_object_mut) {
            error.insert("type".to_owned(), json!(anthropic_type));
            if !error.contains_key("message") {
                error.insert("message".to_owned(), json!(self.to_string()));
            }
        }
        if let Some(object) = body.as_object_mut() {
            object.insert("type".to_owned(), json!("error"));
        }
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), error = %self, "request failed");
        }
        let mut response = (status, axum::Json(body)).into_response();
        response.headers_mut().extend(self.headers());
        response
    }
}

impl IntoResponse for IngressError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), error = %self, "request failed");
        } else {
            tracing::debug!(status = status.as_u16(), error = %self, "request refused");
        }
        let mut response = (status, axum::Json(self.body())).into_response();
        response.headers_mut().extend(self.headers());
        response
    }
}

#[cfg(test)]
mod tests {
    use switchyard_types::AttemptFailure;

    use super::*;

    #[test]
    fn all_failed_lists_every_attempt() {
        let err = IngressError::AllFailed {
            attempts: vec![
                Attempt {
                    model: "a".to_owned(),
                    failure: AttemptFailure::Status { status: 500 },
                },
                Attempt {
                    model: "b".to_owned(),
                    failure: AttemptFailure::Connect,
                },
            ],
        };
        assert_eq!(err.status(), StatusCode::BAD_GATEWAY);
        let body = err.body();
        assert_eq!(body["error"]["code"], "all_models_failed");
        assert_eq!(body["error"]["attempts"][0]["status"], 500);
        assert_eq!(body["error"]["attempts"][1]["error"], "connection failed");
        assert!(body["error"]["message"].as_str().unwrap().contains("a (HTTP 500), b (connection failed)"));
    }
}
