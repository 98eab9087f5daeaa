//! Classification across nodes: classifier nodes serve their workers over
//! gRPC (`proto/switchyard/classifier/v1/classifier.proto`), and ingress
//! nodes spread their requests over local workers and those nodes.
//!
//! - [`server`]: the `Classifier` service a node with the `classifier` role
//!   serves, and the `Registry` service voters serve.
//! - [`registry`]: which classifier nodes an ingress node knows, kept by
//!   their registrations (soft state: a node that stops renewing expires).
//! - [`spread`]: the ingress side: power-of-two choices over local workers
//!   and registered nodes, a timeout, and the local fallback.
//! - [`register`]: the classifier node's side of registration.
//!
//! A request carries its router's route set (names, descriptions, digest),
//! so classifier nodes hold no router state: a router created through the
//! API works on them at once, and each prepares a route set once per
//! digest.

pub mod register;
pub mod registry;
pub mod server;
pub mod spread;

use std::time::Duration;

use switchyard_types::{Conversation, Role, RouteDecision, Turn};

use crate::RouteSpec;

/// Generated from `proto/switchyard/classifier/v1/classifier.proto`.
pub mod proto {
    #![allow(missing_debug_implementations, clippy::all, clippy::pedantic)]
    tonic::include_proto!("switchyard.classifier.v1");
}

pub use registry::{Registry, RemoteStatus};
pub use server::{ClassifierService, RegistryService};
pub use spread::{Classified, Fallback, LocalBounds, Spread, Target};

/// How ingress nodes use classifier nodes (`classifier.remote` in the config).
#[derive(Debug, Clone)]
pub struct RemoteSettings {
    /// Past this, the ingress node classifies locally instead.
    pub timeout: Duration,
    /// Most items per `Classify` call.
    pub max_batch: usize,
    /// How often classifier nodes renew their registration; it expires
    /// after three periods without renewal.
    pub register_every: Duration,
}

impl RemoteSettings {
    pub fn from_config(config: &switchyard_config::RemoteClassifierConfig) -> RemoteSettings {
        RemoteSettings {
            timeout: config.timeout,
            max_batch: config.max_batch,
            register_every: config.register_every,
        }
    }
}

pub(crate) fn turns_to_proto(conversation: &Conversation) -> Vec<proto::Turn> {
    conversation
        .turns
        .iter()
        .map(|turn| proto::Turn {
            role: turn.role.as_str().to_owned(),
            text: turn.text.clone(),
        })
        .collect()
}

pub(crate) fn conversation_from_proto(turns: Vec<proto::Turn>) -> Result<Conversation, String> {
    let turns = turns
        .into_iter()
        .map(|turn| {
            let role = Role::parse(&turn.role).ok_or_else(|| format!("unknown role `{}`", turn.role))?;
            Ok(Turn { role, text: turn.text })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Conversation { turns })
}

pub(crate) fn routes_to_proto(routes: &[RouteSpec]) -> Vec<proto::Route> {
    routes
        .iter()
        .map(|route| proto::Route {
            name: route.name.clone(),
            description: route.description.clone(),
        })
        .collect()
}

pub(crate) fn decision_to_proto(decision: &RouteDecision) -> proto::Decision {
    proto::Decision {
        route: decision.route.clone(),
        scores: decision
            .scores
            .iter()
            .map(|(route, score)| proto::Score {
                route: route.clone(),
                score: *score,
            })
            .collect(),
        classifier: decision.classifier.clone(),
        elapsed_us: decision.elapsed.as_micros() as u64,
    }
}

pub(crate) fn decision_from_proto(router: &str, decision: proto::Decision) -> RouteDecision {
    RouteDecision {
        router: router.to_owned(),
        route: decision.route,
        scores: decision.scores.into_iter().map(|score| (score.route, score.score)).collect(),
        classifier: decision.classifier,
        elapsed: Duration::from_micros(decision.elapsed_us),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversations_and_decisions_survive_the_wire() {
        let conversation = Conversation {
            turns: vec![
                Turn { role: Role::System, text: "be brief".to_owned() },
                Turn { role: Role::User, text: "fix it".to_owned() },
                Turn { role: Role::Tool, text: "{}".to_owned() },
            ],
        };
        assert_eq!(conversation_from_proto(turns_to_proto(&conversation)).unwrap(), conversation);
        let bad = vec![proto::Turn { role: "robot".to_owned(), text: String::new() }];
        assert_eq!(conversation_from_proto(bad).unwrap_err(), "unknown role `robot`");
        let decision = RouteDecision {
            router: "r".to_owned(),
            route: "code".to_owned(),
            scores: vec![("code".to_owned(), 0.75), ("math".to_owned(), 0.25)],
            classifier: "moe".to_owned(),
            elapsed: Duration::from_micros(1234),
        };
        assert_eq!(decision_from_proto("r", decision_to_proto(&decision)), decision);
    }
}
