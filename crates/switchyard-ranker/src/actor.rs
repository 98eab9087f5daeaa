//! The `Ranker` actor: orders a route's candidate models on request.
//!
//! It owns the routers of the running configuration and reads the latest
//! latency snapshot published by the metrics collector, so ranking needs
//! no round trip to another actor.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use switchyard_config::Config;
use switchyard_types::{RankedCandidates, SharedLatency};

use crate::RankerError;
use crate::policy::rank_route;

/// Messages the ranker accepts.
#[derive(Debug)]
pub enum RankerMsg {
    /// Rank the candidates of `route` (a task name or `other`) of `router`:
    /// the task's models by its policy, then the router's fallbacks.
    Rank {
        router: String,
        route: String,
        reply: RpcReplyPort<Result<RankedCandidates, RankerError>>,
    },
}

/// What the ranker starts with.
#[derive(Debug, Clone)]
pub struct RankerArgs {
    pub config: Arc<Config>,
    /// Published by the metrics collector; read on every `fastest` ranking.
    pub latency: SharedLatency,
}

#[derive(Debug, Default)]
pub struct RankerActor;

impl Actor for RankerActor {
    type Msg = RankerMsg;
    type State = RankerArgs;
    type Arguments = RankerArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<RankerMsg>,
        args: RankerArgs,
    ) -> Result<RankerArgs, ActorProcessingErr> {
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
                reply,
            } => {
                let result = match state.config.router(&router) {
                    None => Err(RankerError::UnknownRouter(router)),
                    Some(found) => {
                        let latency = state.latency.load();
                        rank_route(&state.config, found, &route, &latency, |id| {
                            model_usable(&state.config, id)
                        })
                    }
                };
                let _ = reply.send(result);
            }
        }
        Ok(())
    }
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
) -> Result<RankedCandidates, RankerError> {
    let (router, route) = (router.to_owned(), route.to_owned());
    let result = ranker
        .call(
            |reply| RankerMsg::Rank {
                router,
                route,
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
