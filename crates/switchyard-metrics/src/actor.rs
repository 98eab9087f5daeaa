//! The `MetricsCollector` actor: the single writer of metrics and of the
//! live signals the ranker reads (prices in force, latency, cooldowns).
//! Reporters cast and move on; nothing on the request path waits for it
//! except a `/metrics` scrape.
//!
//! Pollers for the pricing URL and for Prometheus run as tasks of the
//! collector and send it what they fetched; the collector merges it and
//! swaps a new snapshot in whole.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use switchyard_config::{Config, LatencySource, Price};
use switchyard_types::{
    AffinityStatus, DispatchOutcome, ModelLatency, Outcome, PriceOrigin, RouteDecision, SharedSignals, Signals,
};
use tokio::task::JoinHandle;

use crate::MetricsError;
use crate::health::{HealthTracker, counts_against_health};
use crate::latency::LatencyTracker;
use crate::pricing::{PriceUpdate, display_url};
use crate::registry::{ClusterGauges, Metrics};

/// `source` label of the pricing URL's refreshes.
pub const PRICING: &str = "pricing";
/// `source` label of the Prometheus latency refreshes.
pub const PROMETHEUS: &str = "prometheus";

/// Messages the collector accepts.
#[derive(Debug)]
pub enum MetricsMsg {
    /// A classifier decision (route, match or `other`, decision time).
    Decision(Box<RouteDecision>),
    /// Where a classification ran (`local`, `remote`), how long the
    /// ingress node waited, why it fell back if it did, and how many
    /// classifier nodes are registered.
    Classified {
        target: &'static str,
        fallback: Option<&'static str>,
        seconds: f64,
        nodes: usize,
    },
    /// A request served by its router's fallback models without a
    /// classifier decision (`queue_full`, `timeout`).
    Shed { reason: &'static str },
    /// A public API request refused at the door or admitted under a key.
    Admission(crate::registry::Admission),
    /// A session-pin lookup on a router.
    Affinity { router: String, status: AffinityStatus },
    /// A finished dispatch: outcome, tokens, cost, latency, failed
    /// attempts. Feeds the latency estimates and the models' health.
    Outcome(Box<DispatchOutcome>),
    /// A session-pin write and how long it took.
    PinWrite { result: &'static str, seconds: f64 },
    /// This node's view of the cluster changed.
    Cluster(ClusterGauges),
    /// The pricing poller read new prices.
    Prices(PriceUpdate),
    /// The Prometheus poller read time to first token per model.
    PrometheusLatency(HashMap<String, Duration>),
    /// A poller's fetch failed; the last good values stay in force.
    RefreshFailed { source: &'static str, error: String },
    /// A cooldown may have ended (sent to itself when one starts).
    CooldownOver,
    /// Time to publish the latency measured since the last publication
    /// (sent to itself; see [`LATENCY_PUBLISH_INTERVAL`]).
    PublishLatency,
    /// The Prometheus text exposition, for `GET /metrics`.
    Render { reply: RpcReplyPort<Result<String, String>> },
}

/// Latency estimates reach the ranker at most this often. Each publication
/// takes percentiles over every measured model's window and swaps the
/// signals; done per request it cost ~17% of a core at 3000 requests/s
/// (perf, 2 cores). A model's first measurement is published at once, and
/// a quiet spell never strands the last ones (a publication is scheduled).
pub const LATENCY_PUBLISH_INTERVAL: Duration = Duration::from_millis(100);

/// What the collector starts with.
#[derive(Debug, Clone)]
pub struct MetricsArgs {
    /// Prices, signal sources and health settings.
    pub config: Arc<Config>,
    /// Where the signals are published for the ranker (start it with
    /// [`initial_signals`]).
    pub signals: SharedSignals,
}

/// The signals before any measurement or refresh: the configured prices.
pub fn initial_signals(config: &Config) -> Signals {
    Signals {
        prices: Arc::new(config.models.iter().map(|model| (model.id.clone(), model.price)).collect()),
        price_origin: Arc::new(PriceOrigin {
            source: "config".to_owned(),
            as_of: config.prices_as_of.clone(),
            refreshed_at: None,
        }),
        latency: Arc::default(),
        cooldowns: Arc::default(),
    }
}

#[derive(Debug)]
pub struct MetricsState {
    metrics: Metrics,
    config: Arc<Config>,
    latency: LatencyTracker,
    /// This node's measurements, by model, as last published.
    measured: HashMap<String, ModelLatency>,
    /// Models measured since the last latency publication.
    unpublished: HashSet<String>,
    /// When latency was last published, and whether a publication is
    /// scheduled.
    latency_published: Option<Instant>,
    latency_scheduled: bool,
    /// The last good Prometheus values, by model.
    prometheus: HashMap<String, Duration>,
    health: HealthTracker,
    /// What is published now; each part is replaced as it changes.
    current: Signals,
    shared: SharedSignals,
    pollers: Vec<JoinHandle<()>>,
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

impl MetricsState {
    fn publish(&self) {
        self.shared.store(Arc::new(self.current.clone()));
    }

    /// The latency the ranker sees: this node's measurements, or, with a
    /// Prometheus source, its values (with local percentiles beside them).
    fn latency_view(&self) -> HashMap<String, ModelLatency> {
        match self.config.signals.latency {
            LatencySource::Internal => self.measured.clone(),
            LatencySource::Prometheus { .. } => self
                .prometheus
                .iter()
                .map(|(model, ttft)| {
                    let local = self.measured.get(model).copied().unwrap_or_default();
                    (model.clone(), ModelLatency { ttft: *ttft, ..local })
                })
                .collect(),
        }
    }

    /// Publishes the measurements of models seen since the last time, now
    /// or (at most [`LATENCY_PUBLISH_INTERVAL`] later) by a message to itself.
    /// Returns whether it published now.
    fn measured_latency(&mut self, model: &str, myself: &ActorRef<MetricsMsg>) -> bool {
        let first = !self.measured.contains_key(model);
        self.unpublished.insert(model.to_owned());
        let since = self.latency_published.map(|at| at.elapsed());
        match since {
            Some(since) if !first && since < LATENCY_PUBLISH_INTERVAL => {
                if !self.latency_scheduled {
                    self.latency_scheduled = true;
                    myself.send_after(LATENCY_PUBLISH_INTERVAL - since, || MetricsMsg::PublishLatency);
                }
                false
            }
            _ => {
                self.publish_measured();
                true
            }
        }
    }

    fn publish_measured(&mut self) {
        for model in std::mem::take(&mut self.unpublished) {
            if let Some(latency) = self.latency.model(&model) {
                self.measured.insert(model, latency);
            }
        }
        self.latency_published = Some(Instant::now());
        self.publish_latency();
    }

    fn publish_latency(&mut self) {
        let view = self.latency_view();
        for (model, latency) in &view {
            self.metrics.record_ttft_estimate(model, latency.ttft.as_secs_f64());
        }
        self.current.latency = Arc::new(view);
        self.publish();
    }

    fn record_health(&mut self, outcome: &DispatchOutcome, myself: &ActorRef<MetricsMsg>) -> bool {
        let now = Instant::now();
        let mut changed = false;
        let failed = outcome
            .attempts
            .iter()
            .filter(|attempt| counts_against_health(&attempt.failure))
            .map(|attempt| attempt.model.as_str());
        let broken = outcome.model.as_deref().filter(|_| outcome.outcome == Outcome::StreamBroken);
        for model in failed.chain(broken) {
            if let Some(until) = self.health.failure(model, now) {
                tracing::warn!(
                    model,
                    cooldown_secs = self.config.signals.health.cooldown.as_secs(),
                    "model keeps failing; ranked last until its cooldown ends"
                );
                self.metrics.record_cooling(model, true);
                myself.send_after(until.saturating_duration_since(now), || MetricsMsg::CooldownOver);
                changed = true;
            }
        }
        if let Some(model) = outcome.model.as_deref().filter(|_| outcome.outcome != Outcome::StreamBroken) {
            self.health.success(model, now);
        }
        if changed {
            self.current.cooldowns = Arc::new(self.health.cooldowns());
        }
        changed
    }

    fn apply_prices(&mut self, update: PriceUpdate) {
        let mut prices: HashMap<String, Price> = (*self.current.prices).clone();
        let mut changed = 0;
        for (model, price) in update.prices {
            self.metrics.record_price(&model, price);
            if prices.insert(model, price) != Some(price) {
                changed += 1;
            }
        }
        if changed > 0 {
            tracing::info!(changed, unpriced = update.unpriced.len(), "prices refreshed");
        }
        if !update.unpriced.is_empty() {
            tracing::debug!(models = ?update.unpriced, "the pricing URL does not price these models; they keep their price");
        }
        let at = unix_now();
        self.metrics.record_refresh(PRICING, true, at);
        self.current.prices = Arc::new(prices);
        self.current.price_origin = Arc::new(PriceOrigin {
            source: self.config.signals.pricing.url.as_deref().map_or_else(|| "config".to_owned(), display_url),
            as_of: update.as_of.or_else(|| self.config.prices_as_of.clone()),
            refreshed_at: Some(at as u64),
        });
        self.publish();
    }
}

#[derive(Debug, Default)]
pub struct MetricsCollector;

impl Actor for MetricsCollector {
    type Msg = MetricsMsg;
    type State = MetricsState;
    type Arguments = MetricsArgs;

    async fn pre_start(&self, myself: ActorRef<MetricsMsg>, args: MetricsArgs) -> Result<MetricsState, ActorProcessingErr> {
        let metrics = Metrics::new();
        let current = initial_signals(&args.config);
        for (model, price) in current.prices.iter() {
            metrics.record_price(model, *price);
        }
        let mut pollers = Vec::new();
        if let Some(url) = args.config.signals.pricing.url.clone() {
            pollers.push(tokio::spawn(crate::pricing::poll(Arc::clone(&args.config), url, myself.clone())));
        }
        if matches!(args.config.signals.latency, LatencySource::Prometheus { .. }) {
            pollers.push(tokio::spawn(crate::prometheus::poll(Arc::clone(&args.config), myself.clone())));
        }
        let state = MetricsState {
            metrics,
            latency: LatencyTracker::new(),
            measured: HashMap::new(),
            unpublished: HashSet::new(),
            latency_published: None,
            latency_scheduled: false,
            prometheus: HashMap::new(),
            health: HealthTracker::new(args.config.signals.health),
            config: args.config,
            current,
            shared: args.signals,
            pollers,
        };
        state.publish();
        Ok(state)
    }

    async fn post_stop(&self, _myself: ActorRef<MetricsMsg>, state: &mut MetricsState) -> Result<(), ActorProcessingErr> {
        for poller in &state.pollers {
            poller.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<MetricsMsg>,
        message: MetricsMsg,
        state: &mut MetricsState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            MetricsMsg::Decision(decision) => state.metrics.record_decision(&decision),
            MetricsMsg::Classified {
                target,
                fallback,
                seconds,
                nodes,
            } => state.metrics.record_classify(target, fallback, seconds, nodes),
            MetricsMsg::Affinity { router, status } => state.metrics.record_affinity(&router, status),
            MetricsMsg::Shed { reason } => state.metrics.record_shed(reason),
            MetricsMsg::Admission(admission) => state.metrics.record_admission(&admission),
            MetricsMsg::Outcome(outcome) => {
                state.metrics.record_outcome(&outcome);
                let health_changed = state.record_health(&outcome, &myself);
                let mut published = false;
                if let (Some(model), Some(ttft)) = (&outcome.model, outcome.ttft) {
                    state.latency.observe(model, ttft, outcome.total);
                    published = state.measured_latency(model, &myself);
                }
                // A latency publication carried the health change with it.
                if health_changed && !published {
                    state.publish();
                }
            }
            MetricsMsg::PinWrite { result, seconds } => state.metrics.record_pin_write(result, seconds),
            MetricsMsg::Cluster(gauges) => state.metrics.record_cluster(&gauges),
            MetricsMsg::Prices(update) => state.apply_prices(update),
            MetricsMsg::PrometheusLatency(latency) => {
                state.metrics.record_refresh(PROMETHEUS, true, unix_now());
                // Models absent from this result (no traffic in the query's
                // range) keep their last value rather than becoming unmeasured.
                state.prometheus.extend(latency);
                state.publish_latency();
            }
            MetricsMsg::RefreshFailed { source, error } => {
                state.metrics.record_refresh(source, false, 0.0);
                tracing::warn!(source, %error, "signal refresh failed; the last good values stay in force");
            }
            MetricsMsg::PublishLatency => {
                state.latency_scheduled = false;
                if !state.unpublished.is_empty() {
                    state.publish_measured();
                }
            }
            MetricsMsg::CooldownOver => {
                let over = state.health.expire(Instant::now());
                for model in &over {
                    tracing::info!(model = %model, "cooldown over; the model is probed again");
                    state.metrics.record_cooling(model, false);
                }
                if !over.is_empty() {
                    state.current.cooldowns = Arc::new(state.health.cooldowns());
                    state.publish();
                }
            }
            MetricsMsg::Render { reply } => {
                let _ = reply.send(state.metrics.encode().map_err(|err| err.to_string()));
            }
        }
        Ok(())
    }
}

/// Asks the collector for the exposition text.
pub async fn render(collector: &ActorRef<MetricsMsg>) -> Result<String, MetricsError> {
    match collector.call(|reply| MetricsMsg::Render { reply }, None).await {
        Ok(ractor::rpc::CallResult::Success(Ok(text))) => Ok(text),
        Ok(ractor::rpc::CallResult::Success(Err(err))) => Err(MetricsError::Unavailable(err)),
        Ok(_) => Err(MetricsError::Unavailable("no reply".to_owned())),
        Err(err) => Err(MetricsError::Unavailable(err.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use switchyard_types::{Outcome, shared_signals};

    use super::*;

    fn served(model: &str, ttft_ms: u64) -> MetricsMsg {
        MetricsMsg::Outcome(Box::new(DispatchOutcome {
            router: None,
            route: "direct".to_owned(),
            model: Some(model.to_owned()),
            outcome: Outcome::Success,
            served_by_fallback: false,
            attempts: Vec::new(),
            usage: None,
            cost: None,
            ttft: Some(Duration::from_millis(ttft_ms)),
            total: Duration::from_millis(ttft_ms * 2),
        }))
    }

    /// Polls `check` until it holds (the collector works asynchronously).
    async fn eventually(what: &str, check: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !check() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    #[tokio::test]
    async fn latency_is_published_at_once_for_a_new_model_then_at_most_every_interval_and_never_stranded() {
        let config = Arc::new(Config::embedded_default(&HashMap::new()).unwrap());
        let model = config.models[0].id.clone();
        let signals = shared_signals(initial_signals(&config));
        let (collector, handle) = Actor::spawn(
            None,
            MetricsCollector,
            MetricsArgs {
                config,
                signals: signals.clone(),
            },
        )
        .await
        .unwrap();
        let published = || signals.load().latency.get(&model).map(|latency| latency.samples);

        // The first measurement of a model reaches the ranker at once.
        collector.cast(served(&model, 40)).unwrap();
        eventually("the first sample", || published() == Some(1)).await;

        // A burst right after it is held back, then published whole by the
        // scheduled publication, without any further traffic.
        let burst_sent = Instant::now();
        for _ in 0..99 {
            collector.cast(served(&model, 40)).unwrap();
        }
        eventually("the burst", || published() == Some(100)).await;
        let waited = burst_sent.elapsed();
        assert!(
            waited <= LATENCY_PUBLISH_INTERVAL + Duration::from_secs(2),
            "the last samples took {waited:?} to be published"
        );
        let latency = signals.load().latency.get(&model).copied().unwrap();
        assert_eq!(latency.ttft_p50, Some(Duration::from_millis(40)));
        assert_eq!(latency.latency_p95, Some(Duration::from_millis(80)));

        collector.stop(None);
        handle.await.unwrap();
    }
}
