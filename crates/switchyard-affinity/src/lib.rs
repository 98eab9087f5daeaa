//! Session pinning: `X-Model-Affinity: <session>` keeps one model per session.
//!
//! Sits beside the request path. On a session's first turn the ingress
//! writes a pin (router, route, model); later turns read it and skip the
//! classifier until the pin expires, so an agent loop keeps one model and
//! its prompt cache. If the pinned model fails, dispatch fails over as usual
//! and the pin moves to the model that served.
//!
//! # Layout
//! - [`store`]: the [`AffinityBackend`] seam, the deterministic
//!   [`PinTable`], and the embedded [`LocalStore`]. `switchyard-cluster`
//!   puts a replicated backend (openraft) behind the same trait.
//! - [`actor`]: the `AffinityStore` actor, the only way the node touches pins.

pub mod actor;
pub mod store;

pub use actor::{AffinityMsg, AffinityStoreActor, lookup, pin_served};
pub use store::{AffinityBackend, LocalStore, Pin, PinKey, PinTable, expiry};

/// Why a pin operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AffinityError {
    #[error("the affinity store is not running: {0}")]
    Unavailable(String),
    #[error("affinity backend error: {0}")]
    Backend(String),
}
