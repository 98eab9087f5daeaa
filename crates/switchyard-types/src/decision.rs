//! What each stage of the request path decides, named as data.

use std::time::Duration;

use serde::Serialize;

/// The route name used when no task of a router fits the request; the
/// router's fallback models serve it.
pub const OTHER_ROUTE: &str = "other";

/// The classifier's verdict for one request against one router.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteDecision {
    /// The router the client named (`router:<name>`).
    pub router: String,
    /// The task chosen, or [`OTHER_ROUTE`].
    pub route: String,
    /// A score for every task of the router, in declared order; higher is a
    /// better fit. The scale belongs to the classifier that produced it.
    pub scores: Vec<(String, f32)>,
    /// Which classifier decided (`lexical`, later the learned ones).
    pub classifier: String,
    /// Time spent deciding, for metrics and `/v1/route`'s `decision_ms`.
    #[serde(skip)]
    pub elapsed: Duration,
}

impl RouteDecision {
    pub fn is_other(&self) -> bool {
        self.route == OTHER_ROUTE
    }
}

/// Whether a session pin took part in this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AffinityStatus {
    /// The request carried a session key and its pin was reused.
    Hit,
    /// The request carried a session key with no live pin; one is written.
    Miss,
    /// The request carried no session key.
    None,
}

impl AffinityStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AffinityStatus::Hit => "hit",
            AffinityStatus::Miss => "miss",
            AffinityStatus::None => "none",
        }
    }
}

/// Models in the order dispatch must try them: the task's candidates ranked
/// by its policy, then the router's fallback models, then models cooling
/// down after repeated failures.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RankedCandidates {
    /// Model ids, best first; no duplicates.
    pub models: Vec<String>,
    /// Index in `models` past the task's own healthy candidates, where the
    /// fallback pool starts (== len when none).
    pub fallback_from: usize,
    /// Of `models`, those cooling down; they come last.
    pub cooling: Vec<String>,
    /// Models left out by the routing budget (a pinned session may not move
    /// to them).
    pub over_budget: Vec<String>,
}

/// Token counts reported by the upstream that served a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// The cost of one response, at the prices in force when it finished.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Cost {
    pub usd: f64,
    /// What the same tokens would have cost on the configured baseline
    /// model (`None` without one).
    pub baseline_usd: Option<f64>,
}

impl Cost {
    /// Baseline minus actual: positive when routing saved money.
    pub fn savings_usd(&self) -> Option<f64> {
        self.baseline_usd.map(|baseline| baseline - self.usd)
    }
}

/// Why one attempt at one model did not serve the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AttemptFailure {
    /// The upstream answered with an HTTP error status.
    Status { status: u16 },
    /// No connection could be made.
    Connect,
    /// A timeout (connect, first byte or total) expired.
    Timeout { phase: String },
    /// The stream broke or the body could not be read.
    Broken { detail: String },
    /// The model cannot be tried (its provider is unavailable).
    Unavailable { detail: String },
}

impl std::fmt::Display for AttemptFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttemptFailure::Status { status } => write!(f, "HTTP {status}"),
            AttemptFailure::Connect => write!(f, "connection failed"),
            AttemptFailure::Timeout { phase } => write!(f, "{phase} timeout"),
            AttemptFailure::Broken { detail } => write!(f, "broken response: {detail}"),
            AttemptFailure::Unavailable { detail } => write!(f, "unavailable: {detail}"),
        }
    }
}

/// One model tried during dispatch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attempt {
    pub model: String,
    pub failure: AttemptFailure,
}

/// How a request ended, as the metrics collector sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Served by the first-ranked model.
    Success,
    /// Served, but only after failing over to a later model.
    FailedOver,
    /// Every model failed; the client saw a 502.
    AllFailed,
    /// The upstream refused the request itself (a 4xx that retrying can't fix).
    ClientError,
    /// The stream broke after bytes had reached the client.
    StreamBroken,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::FailedOver => "failed_over",
            Outcome::AllFailed => "all_failed",
            Outcome::ClientError => "client_error",
            Outcome::StreamBroken => "stream_broken",
        }
    }
}

/// Everything the metrics collector learns from one finished request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DispatchOutcome {
    /// `None` when the client named a model directly.
    pub router: Option<String>,
    /// Task name, [`OTHER_ROUTE`], or `direct` for a model named directly.
    pub route: String,
    /// The model that answered, if any did.
    pub model: Option<String>,
    pub outcome: Outcome,
    /// Whether the serving model came from the fallback pool.
    pub served_by_fallback: bool,
    /// Models that failed before the one that served (or all, on 502).
    pub attempts: Vec<Attempt>,
    pub usage: Option<Usage>,
    /// What the usage cost at the price in force, and at the baseline's.
    pub cost: Option<Cost>,
    /// Time to first byte of the serving upstream's body.
    #[serde(skip)]
    pub ttft: Option<Duration>,
    /// Time from dispatch start to the end of the response.
    #[serde(skip)]
    pub total: Duration,
}

/// One line of the decision log: what was decided for a request and how
/// it ended. The prompt appears only as a hash and, unless turned off, a
/// short preview.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct DecisionRecord {
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    /// The same instant, milliseconds since the Unix epoch (for `since`).
    pub unix_ms: u64,
    /// `None` when the client named a model directly.
    pub router: Option<String>,
    /// Task name, `other`, or `(direct)`.
    pub route: String,
    /// The model that answered, if any did.
    pub model: Option<String>,
    /// success, failed_over, all_failed, client_error, stream_broken.
    pub outcome: String,
    /// The classifier's score per task (empty on an affinity hit).
    pub scores: Vec<(String, f32)>,
    pub classifier: Option<String>,
    /// hit, miss or none.
    pub affinity: String,
    /// Whether the answering model came from the router's fallback pool.
    pub fallback: bool,
    /// Models that failed before the one that answered.
    pub failed: Vec<String>,
    /// Affinity + classification + ranking, milliseconds.
    pub decision_ms: f64,
    pub ttft_ms: Option<f64>,
    /// Dispatch start to the end of the response, milliseconds.
    pub latency_ms: f64,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub cost_usd: Option<f64>,
    /// Baseline cost minus cost, with `signals.baseline_model`.
    pub savings_usd: Option<f64>,
    /// SHA-256 (hex) of the routed user message.
    pub prompt_sha256: String,
    /// Its first characters (`decisions.preview_chars`; absent when 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<String>,
}
