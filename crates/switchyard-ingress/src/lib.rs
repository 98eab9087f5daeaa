//! The ingress stage: the OpenAI-compatible HTTP front door.
//!
//! First stage of the request path. Each request is parsed and validated,
//! then walks the pipeline: affinity (is the session pinned?) → classifier
//! (which task?) → ranker (which models, in what order?) → dispatch (first
//! model that serves), with the metrics collector told of every decision and
//! outcome.
//!
//! # Layout
//! - [`admission`]: the public API's door: client keys, rate limits,
//!   load shedding, body size and time limits.
//! - [`pipeline`]: the stages composed for one request, as plain async code.
//! - [`http`]: the axum routes and handlers.
//! - [`routers`]: `/v1/routers`, routers made through the admin API.
//! - [`classifier_node`]: the few routes of a classifier-only node.
//! - [`error`]: the one place errors become HTTP statuses and OpenAI-shaped
//!   bodies.
//! - [`actor`]: the `Ingress` actor, owning the HTTP server's lifecycle
//!   (bind, serve, drain on shutdown).

pub mod actor;
pub mod admission;
pub mod classifier_node;
pub mod error;
pub mod http;
pub mod pipeline;
pub mod routers;

pub use actor::{IngressActor, IngressArgs, IngressMsg};
pub use error::IngressError;
pub use pipeline::Pipeline;

/// Header a client sets to pin a session to one model.
pub const AFFINITY_HEADER: &str = "x-model-affinity";
/// Response header naming the route (task name or `other`).
pub const ROUTE_HEADER: &str = "x-model-router-selected-route";
/// Response header naming the router that decided.
pub const ROUTER_HEADER: &str = "x-model-router-router";
/// Response header saying whether a session pin was used (`hit`/`miss`).
pub const AFFINITY_STATUS_HEADER: &str = "x-model-router-affinity";
/// Response header present (`true`) when a built-in demo upstream answered.
pub const DEMO_HEADER: &str = "x-model-router-demo";
/// Response header with the cost in USD of a non-streaming response, from
/// its usage at the prices in force (a stream's usage is known only at its
/// end, after the headers: it is counted in the metrics).
pub const COST_HEADER: &str = "x-model-router-cost-usd";
/// Response header with what the same tokens would have cost on the
/// configured baseline model minus the cost (with `signals.baseline_model`).
pub const SAVINGS_HEADER: &str = "x-model-router-savings-usd";
