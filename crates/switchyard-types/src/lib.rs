//! Data that flows between the stages of Switchyard's request path.
//!
//! Every stage — ingress → classifier → ranker → dispatch, with affinity and
//! metrics beside them — speaks in the types defined here, so no stage needs
//! to depend on another stage's crate just to name what it hands over.
//!
//! # Layout
//! - [`chat`]: the OpenAI chat-completions wire shape, parsed strictly
//!   enough to route on and loosely enough to forward unknown fields.
//! - [`conversation`]: the text view of a request that classifiers read.
//! - [`decision`]: what each stage decides (`RouteDecision`, `RankedCandidates`,
//!   `DispatchOutcome`).
//! - [`limits`]: bounds on the work one request can cause (text cut for
//!   the classifier).
//! - [`signals`]: prices, latency and cooldowns, the live inputs of ranking.

pub mod chat;
pub mod conversation;
pub mod decision;
pub mod limits;
pub mod signals;

pub use chat::{ChatMessage, ChatRequest, RequestError, Role};
pub use conversation::{Conversation, Turn};
pub use signals::{ModelLatency, Price, PriceOrigin, SharedSignals, Signals, shared_signals};
pub use decision::{
    AffinityStatus, Attempt, AttemptFailure, Cost, DecisionRecord, DispatchOutcome, OTHER_ROUTE, Outcome,
    RankedCandidates, RouteDecision, Usage,
};
