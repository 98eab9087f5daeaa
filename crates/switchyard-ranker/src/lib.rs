//! The ranker stage: in which order should a task's candidate models be tried?
//!
//! Sits between the classifier and dispatch. Given the route the classifier
//! chose, it orders that task's candidates by the task's selection policy,
//! then appends the router's fallback models (the only pool for `other`).
//!
//! # Layout
//! - [`policy`]: the ranking itself, as pure functions.
//! - [`actor`]: the `Ranker` actor that ingress asks, holding the routers
//!   and reading live prices, latency and cooldowns from the metrics
//!   collector's snapshot.

pub mod actor;
pub mod policy;

pub use actor::{RankerActor, RankerArgs, RankerMsg, rank, rank_now};
pub use policy::{RankInputs, cheapest, fastest, manual, put_first, rank_route};

/// Why no ranking could be made.
#[derive(Debug, thiserror::Error)]
pub enum RankerError {
    #[error("unknown router `{0}`")]
    UnknownRouter(String),
    #[error("router `{router}` has no task `{route}`")]
    UnknownRoute { router: String, route: String },
    #[error("the ranker is not running: {0}")]
    Unavailable(String),
}
