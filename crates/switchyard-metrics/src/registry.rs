//! The Prometheus metric families and how each event updates them.
//!
//! Label values are router, route, model and outcome names from the config
//! and the request path: never request content, never keys.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use switchyard_config::Price;
use switchyard_types::{AffinityStatus, AttemptFailure, DispatchOutcome, RouteDecision};

type FloatCounter = Counter<f64, AtomicU64>;
type FloatGauge = Gauge<f64, AtomicU64>;

/// The content type of [`Metrics::encode`]'s output.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    router: String,
    route: String,
    model: String,
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    router: String,
    route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MatchLabels {
    router: String,
    matched: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FallbackLabels {
    router: String,
    route: String,
    model: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    model: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CostLabels {
    router: String,
    route: String,
    model: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefreshLabels {
    source: String,
    result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PriceLabels {
    model: String,
    /// `input` or `output` (USD per million tokens), or `hourly`.
    unit: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    model: String,
    direction: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    model: String,
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassifierLabels {
    classifier: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    /// `local` (this node's workers) or `remote` (a classifier node).
    target: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyLabels {
    key: String,
}

/// Why the door refused a request (`switchyard_refused_total{reason}`).
pub const REFUSAL_REASONS: &[&str] = &["missing_key", "invalid_key", "rate_limited", "overloaded", "body_timeout", "too_large"];

/// What the door did with one public API request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Refused, for one of [`REFUSAL_REASONS`].
    Refused(&'static str),
    /// Admitted under the client key of this name.
    Key(String),
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AffinityLabels {
    router: String,
    result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PinWriteLabels {
    result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MemberLabels {
    voter: String,
}

/// This node's view of the cluster, for the `cluster_*` gauges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterGauges {
    pub node_id: u64,
    pub is_leader: bool,
    /// 0 while no leader is known.
    pub leader: u64,
    pub term: u64,
    pub last_log_index: u64,
    pub last_applied: u64,
    pub voters: u64,
    pub learners: u64,
    pub pins: u64,
}

fn pin_write_histogram() -> Histogram {
    // 100 µs .. ~3.3 s: a local commit to a write that waited out an election.
    Histogram::new(exponential_buckets(0.000_1, 2.0, 16))
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 5 ms .. ~82 s: from a cached upstream's first token to a long stream.
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

fn decision_histogram() -> Histogram {
    // 50 µs .. ~1.6 s: a lexical baseline to a cold neural encoder.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

/// Every metric the node exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    decisions: Family<RouteLabels, Counter>,
    task_match: Family<MatchLabels, Counter>,
    fallback_served: Family<FallbackLabels, Counter>,
    failovers: Family<ModelLabels, Counter>,
    tokens: Family<TokenLabels, Counter>,
    cost_usd: Family<CostLabels, FloatCounter>,
    baseline_cost_usd: Family<CostLabels, FloatCounter>,
    savings_usd: Family<CostLabels, FloatGauge>,
    signal_refreshes: Family<RefreshLabels, Counter>,
    signal_last_success: Family<SourceLabels, FloatGauge>,
    model_price: Family<PriceLabels, FloatGauge>,
    ttft_estimate: Family<ModelLabels, FloatGauge>,
    cooldowns: Family<ModelLabels, Counter>,
    cooling: Family<ModelLabels, Gauge>,
    ttft: HistogramFamily<ModelLabels>,
    duration: HistogramFamily<ModelLabels>,
    decision_seconds: HistogramFamily<ClassifierLabels>,
    classify_seconds: HistogramFamily<TargetLabels>,
    classifier_fallbacks: Family<ReasonLabels, Counter>,
    classifier_nodes: Gauge,
    classifier_shed: Family<ReasonLabels, Counter>,
    refused: Family<ReasonLabels, Counter>,
    key_requests: Family<KeyLabels, Counter>,
    upstream_errors: Family<ErrorLabels, Counter>,
    affinity: Family<AffinityLabels, Counter>,
    pin_writes: Family<PinWriteLabels, Counter>,
    pin_write_seconds: Histogram,
    cluster_node_id: Gauge,
    cluster_is_leader: Gauge,
    cluster_leader: Gauge,
    cluster_term: Gauge,
    cluster_last_log_index: Gauge,
    cluster_last_applied: Gauge,
    cluster_members: Family<MemberLabels, Gauge>,
    cluster_pins: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("switchyard");
        let requests = Family::default();
        registry.register(
            "requests",
            "Chat requests finished, by router, route, serving model and outcome",
            requests.clone(),
        );
        let decisions = Family::default();
        registry.register(
            "route_decisions",
            "Classifier decisions by router and route (route=other when no task fits)",
            decisions.clone(),
        );
        let task_match = Family::default();
        registry.register(
            "task_match",
            "Classifier decisions that matched a task (matched=true) or fell to other",
            task_match.clone(),
        );
        let fallback_served = Family::default();
        registry.register(
            "fallback_served",
            "Requests served by a model of the router's fallback pool",
            fallback_served.clone(),
        );
        let failovers = Family::default();
        registry.register(
            "failovers",
            "Attempts that failed and passed the request to the next model, by failed model",
            failovers.clone(),
        );
        let tokens = Family::default();
        registry.register(
            "tokens",
            "Tokens reported by upstreams, by model and direction (input or output)",
            tokens.clone(),
        );
        let cost_usd = Family::default();
        registry.register(
            "cost_usd",
            "Cost in USD of served requests at the prices in force, by router, route and model",
            cost_usd.clone(),
        );
        let baseline_cost_usd = Family::default();
        registry.register(
            "baseline_cost_usd",
            "What the same requests' tokens would have cost on the baseline model (signals.baseline_model)",
            baseline_cost_usd.clone(),
        );
        let savings_usd = Family::default();
        registry.register(
            "savings_usd",
            "Baseline cost minus actual cost so far (negative when routing cost more than the baseline)",
            savings_usd.clone(),
        );
        let signal_refreshes = Family::default();
        registry.register(
            "signal_refreshes",
            "Refreshes of live signals by source (pricing, prometheus) and result (ok, error)",
            signal_refreshes.clone(),
        );
        let signal_last_success = Family::default();
        registry.register(
            "signal_last_success_timestamp_seconds",
            "Unix time of the last successful refresh, by source",
            signal_last_success.clone(),
        );
        let model_price = Family::default();
        registry.register(
            "model_price_usd",
            "Price in force per model: unit=input or output (USD per million tokens) or hourly (USD per hour)",
            model_price.clone(),
        );
        let ttft_estimate = Family::default();
        registry.register(
            "ttft_estimate_seconds",
            "Time to first token the fastest policy ranks by, per model",
            ttft_estimate.clone(),
        );
        let cooldowns = Family::default();
        registry.register(
            "model_cooldowns",
            "Cooldowns started: a model failed signals.health.failures times within the window",
            cooldowns.clone(),
        );
        let cooling = Family::default();
        registry.register(
            "model_cooling",
            "1 while a model is cooling down (ranked last), 0 otherwise",
            cooling.clone(),
        );
        let ttft: HistogramFamily<ModelLabels> = Family::new_with_constructor(latency_histogram);
        registry.register(
            "ttft_seconds",
            "Time to first token (first body byte) of the serving upstream, by model",
            ttft.clone(),
        );
        let duration: HistogramFamily<ModelLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "request_duration_seconds",
            "Total time from dispatch to the end of the response, by serving model",
            duration.clone(),
        );
        let decision_seconds: HistogramFamily<ClassifierLabels> =
            Family::new_with_constructor(decision_histogram);
        registry.register(
            "classifier_decision_seconds",
            "Time the classifier took to choose a route",
            decision_seconds.clone(),
        );
        let classify_seconds: HistogramFamily<TargetLabels> = Family::new_with_constructor(decision_histogram);
        registry.register(
            "classify_seconds",
            "Classification time as the ingress node sees it (queueing and network included), by where it ran",
            classify_seconds.clone(),
        );
        let classifier_fallbacks: Family<ReasonLabels, Counter> = Family::default();
        // Every reason exported from the start: a dashboard's rate() then
        // reads 0, not "no data", on a node that never fell back.
        for reason in ["timeout", "error", "overloaded", "no_classifier"] {
            let _ = classifier_fallbacks.get_or_create(&ReasonLabels { reason: reason.to_owned() });
        }
        registry.register(
            "classifier_fallbacks",
            "Requests classified locally because no classifier node answered in time (timeout, error, overloaded, no_classifier)",
            classifier_fallbacks.clone(),
        );
        let classifier_shed: Family<ReasonLabels, Counter> = Family::default();
        for reason in ["queue_full", "timeout"] {
            let _ = classifier_shed.get_or_create(&ReasonLabels { reason: reason.to_owned() });
        }
        registry.register(
            "classifier_shed",
            "Requests served by their router's fallback models without a decision, because this node's classifier queue was full or the decision took longer than limits.classify_timeout_ms",
            classifier_shed.clone(),
        );
        let refused: Family<ReasonLabels, Counter> = Family::default();
        for reason in REFUSAL_REASONS {
            let _ = refused.get_or_create(&ReasonLabels { reason: (*reason).to_owned() });
        }
        registry.register(
            "refused",
            "Public API requests refused before routing (missing_key, invalid_key, rate_limited, overloaded, body_timeout, too_large)",
            refused.clone(),
        );
        let key_requests: Family<KeyLabels, Counter> = Family::default();
        registry.register(
            "key_requests",
            "Public API requests admitted, by client key name (auth.keys)",
            key_requests.clone(),
        );
        let classifier_nodes = Gauge::default();
        registry.register(
            "classifier_nodes",
            "Classifier nodes registered with this node",
            classifier_nodes.clone(),
        );
        let upstream_errors = Family::default();
        registry.register(
            "upstream_errors",
            "Failed upstream attempts, by model and HTTP status or cause",
            upstream_errors.clone(),
        );
        let affinity = Family::default();
        registry.register(
            "affinity_lookups",
            "Session-pin lookups for requests with X-Model-Affinity (result=hit or miss)",
            affinity.clone(),
        );
        let pin_writes = Family::default();
        registry.register(
            "pin_writes",
            "Session-pin writes (result=written, existing when another turn won the race, moved after a failover, error)",
            pin_writes.clone(),
        );
        let pin_write_seconds = pin_write_histogram();
        registry.register(
            "pin_write_seconds",
            "Time to write a session pin (through the replicated log in a cluster)",
            pin_write_seconds.clone(),
        );
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let gauge = Gauge::default();
            registry.register(name, help, gauge.clone());
            gauge
        };
        let cluster_node_id = gauge(&mut registry, "cluster_node_id", "This node's cluster id");
        let cluster_is_leader = gauge(&mut registry, "cluster_is_leader", "1 while this node leads the cluster");
        let cluster_leader = gauge(&mut registry, "cluster_leader", "Id of the leader this node knows (0: none)");
        let cluster_term = gauge(&mut registry, "cluster_term", "Current raft term");
        let cluster_last_log_index = gauge(&mut registry, "cluster_last_log_index", "Index of the last raft log entry on this node");
        let cluster_last_applied = gauge(&mut registry, "cluster_last_applied", "Index of the last log entry applied to this node's pins");
        let cluster_members = Family::default();
        registry.register(
            "cluster_members",
            "Cluster members by kind (voter=true, or learners)",
            cluster_members.clone(),
        );
        let cluster_pins = gauge(&mut registry, "cluster_pins", "Session pins held by this node's state machine");
        Metrics {
            registry,
            pin_writes,
            pin_write_seconds,
            cluster_node_id,
            cluster_is_leader,
            cluster_leader,
            cluster_term,
            cluster_last_log_index,
            cluster_last_applied,
            cluster_members,
            cluster_pins,
            requests,
            decisions,
            task_match,
            fallback_served,
            failovers,
            tokens,
            cost_usd,
            baseline_cost_usd,
            savings_usd,
            signal_refreshes,
            signal_last_success,
            model_price,
            ttft_estimate,
            cooldowns,
            cooling,
            ttft,
            duration,
            decision_seconds,
            classify_seconds,
            classifier_fallbacks,
            classifier_nodes,
            classifier_shed,
            refused,
            key_requests,
            upstream_errors,
            affinity,
        }
    }

    pub fn record_decision(&self, decision: &RouteDecision) {
        self.decisions
            .get_or_create(&RouteLabels {
                router: decision.router.clone(),
                route: decision.route.clone(),
            })
            .inc();
        self.task_match
            .get_or_create(&MatchLabels {
                router: decision.router.clone(),
                matched: (!decision.is_other()).to_string(),
            })
            .inc();
        self.decision_seconds
            .get_or_create(&ClassifierLabels {
                classifier: decision.classifier.clone(),
            })
            .observe(decision.elapsed.as_secs_f64());
    }

    /// Where a classification ran, how long the ingress node waited, and
    /// why it fell back to local workers if it did.
    pub fn record_classify(&self, target: &str, fallback: Option<&str>, seconds: f64, nodes: usize) {
        self.classify_seconds
            .get_or_create(&TargetLabels {
                target: target.to_owned(),
            })
            .observe(seconds);
        if let Some(reason) = fallback {
            self.classifier_fallbacks
                .get_or_create(&ReasonLabels {
                    reason: reason.to_owned(),
                })
                .inc();
        }
        self.classifier_nodes.set(i64::try_from(nodes).unwrap_or(i64::MAX));
    }

    /// A request served by the fallback models for want of a decision.
    pub fn record_shed(&self, reason: &str) {
        self.classifier_shed
            .get_or_create(&ReasonLabels { reason: reason.to_owned() })
            .inc();
    }

    /// A request refused at the door, or admitted under a client key.
    pub fn record_admission(&self, admission: &Admission) {
        match admission {
            Admission::Refused(reason) => self
                .refused
                .get_or_create(&ReasonLabels { reason: (*reason).to_owned() })
                .inc(),
            Admission::Key(key) => self.key_requests.get_or_create(&KeyLabels { key: key.clone() }).inc(),
        };
    }

    pub fn record_affinity(&self, router: &str, status: AffinityStatus) {
        if status == AffinityStatus::None {
            return;
        }
        self.affinity
            .get_or_create(&AffinityLabels {
                router: router.to_owned(),
                result: status.as_str().to_owned(),
            })
            .inc();
    }

    /// A pin write: `result` is written, existing, moved or error.
    pub fn record_pin_write(&self, result: &str, seconds: f64) {
        self.pin_writes
            .get_or_create(&PinWriteLabels {
                result: result.to_owned(),
            })
            .inc();
        self.pin_write_seconds.observe(seconds);
    }

    pub fn record_cluster(&self, gauges: &ClusterGauges) {
        let set = |gauge: &Gauge, value: u64| {
            gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
        };
        set(&self.cluster_node_id, gauges.node_id);
        set(&self.cluster_is_leader, u64::from(gauges.is_leader));
        set(&self.cluster_leader, gauges.leader);
        set(&self.cluster_term, gauges.term);
        set(&self.cluster_last_log_index, gauges.last_log_index);
        set(&self.cluster_last_applied, gauges.last_applied);
        set(&self.cluster_pins, gauges.pins);
        for (voter, count) in [("true", gauges.voters), ("false", gauges.learners)] {
            set(
                &self.cluster_members.get_or_create(&MemberLabels {
                    voter: voter.to_owned(),
                }),
                count,
            );
        }
    }

    /// Updates every family an outcome touches.
    pub fn record_outcome(&self, outcome: &DispatchOutcome) {
        let router = outcome.router.clone().unwrap_or_default();
        let model = outcome.model.clone().unwrap_or_default();
        self.requests
            .get_or_create(&RequestLabels {
                router: router.clone(),
                route: outcome.route.clone(),
                model: model.clone(),
                outcome: outcome.outcome.as_str().to_owned(),
            })
            .inc();
        for attempt in &outcome.attempts {
            let status = match &attempt.failure {
                AttemptFailure::Status { status } => status.to_string(),
                AttemptFailure::Connect => "connect".to_owned(),
                AttemptFailure::Timeout { .. } => "timeout".to_owned(),
                AttemptFailure::Broken { .. } => "broken".to_owned(),
                AttemptFailure::Unavailable { .. } => "unavailable".to_owned(),
            };
            self.upstream_errors
                .get_or_create(&ErrorLabels {
                    model: attempt.model.clone(),
                    status,
                })
                .inc();
            self.failovers
                .get_or_create(&ModelLabels {
                    model: attempt.model.clone(),
                })
                .inc();
        }
        let Some(served_by) = outcome.model.as_ref() else {
            return;
        };
        let labels = ModelLabels {
            model: served_by.clone(),
        };
        if outcome.served_by_fallback {
            self.fallback_served
                .get_or_create(&FallbackLabels {
                    router: router.clone(),
                    route: outcome.route.clone(),
                    model: served_by.clone(),
                })
                .inc();
        }
        if let Some(ttft) = outcome.ttft {
            self.ttft.get_or_create(&labels).observe(ttft.as_secs_f64());
        }
        self.duration
            .get_or_create(&labels)
            .observe(outcome.total.as_secs_f64());
        if let Some(usage) = outcome.usage {
            for (direction, count) in [
                ("input", usage.prompt_tokens),
                ("output", usage.completion_tokens),
            ] {
                self.tokens
                    .get_or_create(&TokenLabels {
                        model: served_by.clone(),
                        direction: direction.to_owned(),
                    })
                    .inc_by(count);
            }
        }
        if let Some(cost) = outcome.cost {
            let labels = CostLabels {
                router,
                route: outcome.route.clone(),
                model: served_by.clone(),
            };
            self.cost_usd.get_or_create(&labels).inc_by(cost.usd);
            if let (Some(baseline), Some(savings)) = (cost.baseline_usd, cost.savings_usd()) {
                self.baseline_cost_usd.get_or_create(&labels).inc_by(baseline);
                self.savings_usd.get_or_create(&labels).inc_by(savings);
            }
        }
    }

    /// A refresh of a live signal source; `at_unix` is set on success.
    pub fn record_refresh(&self, source: &str, ok: bool, at_unix: f64) {
        self.signal_refreshes
            .get_or_create(&RefreshLabels {
                source: source.to_owned(),
                result: if ok { "ok" } else { "error" }.to_owned(),
            })
            .inc();
        if ok {
            self.signal_last_success
                .get_or_create(&SourceLabels { source: source.to_owned() })
                .set(at_unix);
        }
    }

    /// The price in force of `model`.
    pub fn record_price(&self, model: &str, price: Price) {
        let units = match price {
            Price::PerToken { input, output } => vec![("input", input), ("output", output)],
            Price::Hourly { usd_per_hour } => vec![("hourly", usd_per_hour)],
        };
        for (unit, value) in units {
            self.model_price
                .get_or_create(&PriceLabels {
                    model: model.to_owned(),
                    unit: unit.to_owned(),
                })
                .set(value);
        }
    }

    pub fn record_ttft_estimate(&self, model: &str, seconds: f64) {
        self.ttft_estimate
            .get_or_create(&ModelLabels { model: model.to_owned() })
            .set(seconds);
    }

    /// A model started (`true`) or ended (`false`) a cooldown.
    pub fn record_cooling(&self, model: &str, cooling: bool) {
        let labels = ModelLabels { model: model.to_owned() };
        if cooling {
            self.cooldowns.get_or_create(&labels).inc();
        }
        self.cooling.get_or_create(&labels).set(i64::from(cooling));
    }

    /// The OpenMetrics text exposition of every family.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use switchyard_types::{Attempt, Cost, Outcome, Usage};

    use super::*;

    #[test]
    fn an_outcome_moves_requests_tokens_cost_and_errors() {
        let metrics = Metrics::new();
        metrics.record_outcome(
            &DispatchOutcome {
                router: Some("writing".to_owned()),
                route: "translation".to_owned(),
                model: Some("gpt-5-mini".to_owned()),
                outcome: Outcome::FailedOver,
                served_by_fallback: true,
                attempts: vec![Attempt {
                    model: "gemini-2.5-flash".to_owned(),
                    failure: AttemptFailure::Status { status: 429 },
                }],
                usage: Some(Usage {
                    prompt_tokens: 1_000_000,
                    completion_tokens: 500_000,
                }),
                // 1M input at 0.25 + 0.5M output at 2.00 = 1.25 USD; the
                // baseline would have cost 3.
                cost: Some(Cost {
                    usd: 1.25,
                    baseline_usd: Some(3.0),
                }),
                ttft: Some(Duration::from_millis(40)),
                total: Duration::from_millis(900),
            },
        );
        let text = metrics.encode().unwrap();
        assert!(text.contains(
            r#"switchyard_requests_total{router="writing",route="translation",model="gpt-5-mini",outcome="failed_over"} 1"#
        ), "{text}");
        assert!(text.contains(r#"switchyard_tokens_total{model="gpt-5-mini",direction="input"} 1000000"#));
        let labels = r#"{router="writing",route="translation",model="gpt-5-mini"}"#;
        assert!(text.contains(&format!("switchyard_cost_usd_total{labels} 1.25")), "{text}");
        assert!(text.contains(&format!("switchyard_baseline_cost_usd_total{labels} 3.0")), "{text}");
        assert!(text.contains(&format!("switchyard_savings_usd{labels} 1.75")), "{text}");
        assert!(text.contains(r#"switchyard_upstream_errors_total{model="gemini-2.5-flash",status="429"} 1"#));
        assert!(text.contains(r#"switchyard_fallback_served_total{router="writing",route="translation",model="gpt-5-mini"} 1"#));
    }
}
