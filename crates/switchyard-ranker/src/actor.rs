//! The `Ranker` actor: orders a route's candidate models on request.
//!
//! It owns the routers of the running configuration and reads the latest
//! signals snapshot (prices, latency, cooldowns) published by the metrics
//! collector, so ranking needs no round trip to another actor and takes no
//! lock.

use std::time::Instant;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use switchyard_config::Config;
use switchyard_types::{RankedCandidates, SharedSignals};

use crate::RankerError;
use crate::policy::{RankInputs, rank_route};

/// Messages the ranker accepts.
#[derive(Debug)]
pub enum RankerMsg {
    /// Rank the candidates of `route` (a task name or `other`) of `router`:
    /// the task's models by its policy, then the router's fallbacks, then
    /// models cooling down. With `pinned` (a session's model), that model
    /// goes first and the routing budget applies.
    Rank {
        router: String,
        route: String,
        pinned: Option<String>,
        reply: RpcReplyPort<Result<RankedCandidates, RankerError>>,
    },
}

/// What the ranker starts with.
#[derive(Debug, Clone)]
pub struct RankerArgs {
    /// The config in force (routers change through the admin API).
    pub config: switchyard_config::LiveConfig,
    /// Published by the metrics collector; loaded on every ranking.
    pub signals: SharedSignals,
}

#[derive(Debug, Default)]
pub struct RankerActor;

impl Actor for RankerActor {
    type Msg = RankerMsg;
    type State = RankerArgs;
    type Arguments = RankerArgs;

    async fn pre_start(&self, _myself: ActorRef<RankerMsg>, args: RankerArgs) -> Result<RankerArgs, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(
        &self,
        _myself: ActorRef<RankerMsg>,
        message: RankerMsg,
        state: &mut RankerArgs,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            RankerMsg::Rank {
                router,
                route,
                pinned,
                reply,
            } => {
                let _ = reply.send(rank_now(&state.config.load(), &state.signals, &router, &route, pinned.as_deref()));
            }
        }
        Ok(())
    }
}

/// One ranking against the current snapshot: what the actor does per
/// message, callable without it (benchmarks, tests).
pub fn rank_now(
    config: &Config,
    signals: &SharedSignals,
    router: &str,
    route: &str,
    pinned: Option<&str>,
) -> Result<RankedCandidates, RankerError> {
    let found = config
        .router(router)
        .ok_or_else(|| RankerError::UnknownRouter(router.to_owned()))?;
    let signals = signals.load();
    let inputs = RankInputs {
        signals: &signals,
        now: Instant::now(),
        pinned,
        switch_budget: config.affinity.switch_budget,
    };
    rank_route(config, found, route, inputs, |id| model_usable(config, id))
}

/// A model can be tried when its provider is usable (has its key, or is a
/// demo stand-in).
fn model_usable(config: &Config, id: &str) -> bool {
    config
        .model(id)
        .and_then(|model| config.provider(&model.provider))
        .is_some_and(|provider| provider.available || provider.demo)
}

/// Asks the ranker for a ranking.
pub async fn rank(
    ranker: &ActorRef<RankerMsg>,
    router: &str,
    route: &str,
    pinned: Option<&str>,
) -> Result<RankedCandidates, RankerError> {
    let (router, route, pinned) = (router.to_owned(), route.to_owned(), pinned.map(str::to_owned));
    let result = ranker
        .call(
            |reply| RankerMsg::Rank {
                router,
                route,
                pinned,
                reply,
            },
            None,
        )
        .await
        .map_err(|err| RankerError::Unavailable(err.to_string()))?;
    match result {
        ractor::rpc::CallResult::Success(ranked) => ranked,
        other => Err(RankerError::Unavailable(format!("{other:?}"))),
    }
}
