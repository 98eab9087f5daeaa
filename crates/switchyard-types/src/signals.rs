//! Live signals the ranker reads on every decision: the prices in force,
//! time-to-first-token estimates, and which models are cooling down.
//!
//! The metrics collector is the only writer: it builds a new immutable
//! [`Signals`] whenever a source changes (a pricing refresh, a Prometheus
//! poll, an outcome) and swaps it in whole. Readers load it without a lock
//! (`ArcSwap`), so ranking never waits on the collector or on a refresh.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use serde::Serialize;

/// What a model costs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Price {
    /// USD per million tokens.
    PerToken { input: f64, output: f64 },
    /// USD per hour of capacity; no per-request cost.
    Hourly { usd_per_hour: f64 },
}

impl Price {
    /// USD cost of a response with these token counts; zero for hourly capacity.
    pub fn cost_usd(&self, prompt_tokens: u64, completion_tokens: u64) -> f64 {
        match *self {
            Price::PerToken { input, output } => {
                (prompt_tokens as f64 * input + completion_tokens as f64 * output) / 1_000_000.0
            }
            Price::Hourly { .. } => 0.0,
        }
    }

    /// Input + output USD per million tokens, the figure `cheapest` ranks
    /// by; `None` for hourly capacity, which has no per-token price.
    pub fn per_million(&self) -> Option<f64> {
        match *self {
            Price::PerToken { input, output } => Some(input + output),
            Price::Hourly { .. } => None,
        }
    }
}

/// Where the prices in force came from.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PriceOrigin {
    /// `config`, or the pricing URL's host and path (never its query, which
    /// may carry a key).
    pub source: String,
    /// The catalogue's own date, or the config's `prices_as_of`.
    pub as_of: Option<String>,
    /// Unix seconds of the last successful refresh (`None`: static prices).
    pub refreshed_at: Option<u64>,
}

/// Latency measured for one model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ModelLatency {
    /// The estimate `fastest` ranks by: a decaying average of this node's
    /// measurements, or the Prometheus query's value.
    #[serde(rename = "ttft_ms", serialize_with = "millis")]
    pub ttft: Duration,
    /// Percentiles over this node's recent requests (`None` from Prometheus
    /// or before the first sample).
    #[serde(rename = "ttft_p50_ms", serialize_with = "opt_millis")]
    pub ttft_p50: Option<Duration>,
    #[serde(rename = "ttft_p95_ms", serialize_with = "opt_millis")]
    pub ttft_p95: Option<Duration>,
    #[serde(rename = "latency_p50_ms", serialize_with = "opt_millis")]
    pub latency_p50: Option<Duration>,
    #[serde(rename = "latency_p95_ms", serialize_with = "opt_millis")]
    pub latency_p95: Option<Duration>,
    /// Requests measured here (0 for a Prometheus value).
    pub samples: u64,
}

fn millis<S: serde::Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(value.as_secs_f64() * 1000.0)
}

fn opt_millis<S: serde::Serializer>(value: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(value) => millis(value, serializer),
        None => serializer.serialize_none(),
    }
}

/// One immutable view of every live signal. Each part is behind its own
/// `Arc`, so a refresh of one part copies pointers, not the others' maps.
#[derive(Debug, Clone, Default)]
pub struct Signals {
    /// Price in force per model id (every configured model has one).
    pub prices: Arc<HashMap<String, Price>>,
    pub price_origin: Arc<PriceOrigin>,
    /// Per model id; models never measured are absent.
    pub latency: Arc<HashMap<String, ModelLatency>>,
    /// Models cooling down after repeated failures, and until when. An
    /// entry in the past means the cooldown is over (the model is probed).
    pub cooldowns: Arc<HashMap<String, Instant>>,
}

impl Signals {
    pub fn price(&self, model: &str) -> Option<Price> {
        self.prices.get(model).copied()
    }

    pub fn ttft(&self, model: &str) -> Option<Duration> {
        self.latency.get(model).map(|latency| latency.ttft)
    }

    /// What `usage` on `model` costs at the prices in force, and what it
    /// would have cost on `baseline`.
    pub fn cost(&self, model: &str, usage: crate::Usage, baseline: Option<&str>) -> Option<crate::Cost> {
        let at = |id: &str| self.price(id).map(|price| price.cost_usd(usage.prompt_tokens, usage.completion_tokens));
        Some(crate::Cost {
            usd: at(model)?,
            baseline_usd: baseline.and_then(at),
        })
    }

    /// True while `model` is cooling down at `now`.
    pub fn cooling(&self, model: &str, now: Instant) -> bool {
        self.cooldowns.get(model).is_some_and(|until| *until > now)
    }
}

/// The handle both sides share: the collector stores, the ranker loads.
pub type SharedSignals = Arc<ArcSwap<Signals>>;

/// A shared snapshot starting from `signals`.
pub fn shared_signals(signals: Signals) -> SharedSignals {
    Arc::new(ArcSwap::from_pointee(signals))
}
