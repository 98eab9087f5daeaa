//! Observability and live signals: what happened to every request.
//!
//! Sits beside the request path: ingress reports each routing decision and
//! each finished dispatch to the `MetricsCollector` actor (fire and forget,
//! never on the client's critical path). The collector keeps Prometheus
//! counters and histograms, and publishes the per-model time-to-first-token
//! estimate that the ranker's `fastest` policy reads.
//!
//! # Layout
//! - [`registry`]: the metric families and how an outcome updates them.
//! - [`latency`]: the decaying time-to-first-token estimate per model.
//! - [`actor`]: the `MetricsCollector` actor.

pub mod actor;
pub mod latency;
pub mod registry;

pub use actor::{MetricsArgs, MetricsCollector, MetricsMsg, render};
pub use latency::LatencyTracker;
pub use registry::{ClusterGauges, METRICS_CONTENT_TYPE, Metrics};

/// Why metrics could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("the metrics collector is not running: {0}")]
    Unavailable(String),
    #[error("could not encode metrics: {0}")]
    Encode(#[from] std::fmt::Error),
}
