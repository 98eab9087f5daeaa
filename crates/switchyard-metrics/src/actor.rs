//! The `MetricsCollector` actor: the single writer of metrics and latency
//! estimates. Reporters cast and move on; nothing on the request path waits
//! for it except a `/metrics` scrape.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use switchyard_config::Config;
use switchyard_types::{AffinityStatus, DispatchOutcome, RouteDecision, SharedLatency};

use crate::MetricsError;
use crate::latency::LatencyTracker;
use crate::registry::{ClusterGauges, Metrics};

/// Messages the collector accepts.
#[derive(Debug)]
pub enum MetricsMsg {
    /// A classifier decision (route, match or `other`, decision time).
    Decision(Box<RouteDecision>),
    /// A session-pin lookup on a router.
    Affinity {
        router: String,
        status: AffinityStatus,
    },
    /// A finished dispatch: outcome, tokens, cost, latency, failed attempts.
    Outcome(Box<DispatchOutcome>),
    /// A session-pin write and how long it took.
    PinWrite { result: &'static str, seconds: f64 },
    /// This node's view of the cluster changed.
    Cluster(ClusterGauges),
    /// The Prometheus text exposition, for `GET /metrics`.
    Render {
        reply: RpcReplyPort<Result<String, String>>,
    },
}

/// What the collector starts with.
#[derive(Debug, Clone)]
pub struct MetricsArgs {
    /// Prices for cost accounting.
    pub config: Arc<Config>,
    /// Where the time-to-first-token estimates are published for the ranker.
    pub latency: SharedLatency,
}

#[derive(Debug)]
pub struct MetricsState {
    metrics: Metrics,
    latency: LatencyTracker,
    config: Arc<Config>,
}

#[derive(Debug, Default)]
pub struct MetricsCollector;

impl Actor for MetricsCollector {
    type Msg = MetricsMsg;
    type State = MetricsState;
    type Arguments = MetricsArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<MetricsMsg>,
        args: MetricsArgs,
    ) -> Result<MetricsState, ActorProcessingErr> {
        Ok(MetricsState {
            metrics: Metrics::new(),
            latency: LatencyTracker::new(args.latency),
            config: args.config,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<MetricsMsg>,
        message: MetricsMsg,
        state: &mut MetricsState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            MetricsMsg::Decision(decision) => state.metrics.record_decision(&decision),
            MetricsMsg::Affinity { router, status } => {
                state.metrics.record_affinity(&router, status);
            }
            MetricsMsg::Outcome(outcome) => {
                state.metrics.record_outcome(&outcome, &state.config);
                if let (Some(model), Some(ttft)) = (&outcome.model, outcome.ttft) {
                    state.latency.observe(model, ttft);
                }
            }
            MetricsMsg::PinWrite { result, seconds } => state.metrics.record_pin_write(result, seconds),
            MetricsMsg::Cluster(gauges) => state.metrics.record_cluster(&gauges),
            MetricsMsg::Render { reply } => {
                let _ = reply.send(state.metrics.encode().map_err(|err| err.to_string()));
            }
        }
        Ok(())
    }
}

/// Asks the collector for the exposition text.
pub async fn render(collector: &ActorRef<MetricsMsg>) -> Result<String, MetricsError> {
    match collector
        .call(|reply| MetricsMsg::Render { reply }, None)
        .await
    {
        Ok(ractor::rpc::CallResult::Success(Ok(text))) => Ok(text),
        Ok(ractor::rpc::CallResult::Success(Err(err))) => Err(MetricsError::Unavailable(err)),
        Ok(_) => Err(MetricsError::Unavailable("no reply".to_owned())),
        Err(err) => Err(MetricsError::Unavailable(err.to_string())),
    }
}
