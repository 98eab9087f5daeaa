//! Observability and live signals: what happened to every request, and
//! what ranking should know about the models.
//!
//! Sits beside the request path: ingress reports each routing decision and
//! each finished dispatch to the `MetricsCollector` actor (fire and forget,
//! never on the client's critical path). The collector keeps Prometheus
//! counters and histograms, and publishes the [`Signals`] snapshot the
//! ranker reads on every decision: the prices in force (static, or polled
//! from a pricing URL), time to first token (measured here, or polled from
//! Prometheus), and the models cooling down after repeated failures.
//!
//! # Layout
//! - [`registry`]: the metric families and how an event updates them.
//! - [`latency`]: decaying TTFT estimate and percentiles per model.
//! - [`health`]: failures in a window → cooldown → probe.
//! - [`pricing`]: the pricing URL's shapes, matching, and its poller.
//! - [`prometheus`]: the PromQL latency source and its poller.
//! - `poll`: the refresh loop and the key-safe GET both sources use.
//! - [`actor`]: the `MetricsCollector` actor, single writer of all of it.
//! - [`decisions`]: the decision log's bounded ring of JSONL files, and
//!   [`decision_log`], the `DecisionLog` actor that owns it.
//!
//! [`Signals`]: switchyard_types::Signals

pub mod actor;
pub mod decision_log;
pub mod decisions;
pub mod health;
pub mod latency;
mod poll;
pub mod pricing;
pub mod prometheus;
pub mod registry;

pub use actor::{MetricsArgs, MetricsCollector, MetricsMsg, PRICING, PROMETHEUS, initial_signals, render};
pub use decision_log::{DecisionLog, DecisionLogArgs, DecisionLogMsg, query_decisions};
pub use decisions::{DecisionQuery, DecisionRing};
pub use latency::LatencyTracker;
pub use pricing::{PriceUpdate, parse_prices};
pub use registry::{Admission, ClusterGauges, METRICS_CONTENT_TYPE, Metrics, REFUSAL_REASONS};

/// Why metrics or a live signal could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("the metrics collector is not running: {0}")]
    Unavailable(String),
    #[error("could not encode metrics: {0}")]
    Encode(#[from] std::fmt::Error),
    #[error("fetch failed: {0}")]
    Fetch(String),
    #[error("pricing document refused: {0}")]
    Catalogue(String),
    #[error("Prometheus query failed: {0}")]
    Prometheus(String),
    #[error("decision log: {0}")]
    DecisionLog(String),
}
