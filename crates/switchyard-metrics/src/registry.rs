//! The Prometheus metric families and how each event updates them.
//!
//! Label values are router, route, model and outcome names from the config
//! and the request path: never request content, never keys.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use switchyard_config::Config;
use switchyard_types::{AffinityStatus, AttemptFailure, DispatchOutcome, RouteDecision};

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
struct AffinityLabels {
    router: String,
    result: String,
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
    cost_usd: Family<ModelLabels, Counter<f64, AtomicU64>>,
    ttft: HistogramFamily<ModelLabels>,
    duration: HistogramFamily<ModelLabels>,
    decision_seconds: HistogramFamily<ClassifierLabels>,
    upstream_errors: Family<ErrorLabels, Counter>,
    affinity: Family<AffinityLabels, Counter>,
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
            "Cost in USD of served requests at the configured prices, by model",
            cost_usd.clone(),
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
        Metrics {
            registry,
            requests,
            decisions,
            task_match,
            fallback_served,
            failovers,
            tokens,
            cost_usd,
            ttft,
            duration,
            decision_seconds,
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

    /// Updates every family an outcome touches; `config` supplies prices.
    pub fn record_outcome(&self, outcome: &DispatchOutcome, config: &Config) {
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
                    router,
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
            if let Some(model) = config.model(served_by) {
                let cost = model
                    .price
                    .cost_usd(usage.prompt_tokens, usage.completion_tokens);
                self.cost_usd.get_or_create(&labels).inc_by(cost);
            }
        }
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
    use std::collections::HashMap;

    use std::time::Duration;

    use switchyard_types::{Attempt, Outcome, Usage};

    use super::*;

    #[test]
    fn an_outcome_moves_requests_tokens_cost_and_errors() {
        let config = Config::embedded_default(&HashMap::new()).unwrap();
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
                ttft: Some(Duration::from_millis(40)),
                total: Duration::from_millis(900),
            },
            &config,
        );
        let text = metrics.encode().unwrap();
        assert!(text.contains(
            r#"switchyard_requests_total{router="writing",route="translation",model="gpt-5-mini",outcome="failed_over"} 1"#
        ), "{text}");
        assert!(text.contains(r#"switchyard_tokens_total{model="gpt-5-mini",direction="input"} 1000000"#));
        // 1M input at 0.25 + 0.5M output at 2.00 = 1.25 USD
        assert!(text.contains(r#"switchyard_cost_usd_total{model="gpt-5-mini"} 1.25"#), "{text}");
        assert!(text.contains(r#"switchyard_upstream_errors_total{model="gemini-2.5-flash",status="429"} 1"#));
        assert!(text.contains(r#"switchyard_fallback_served_total{router="writing",route="translation",model="gpt-5-mini"} 1"#));
    }
}
