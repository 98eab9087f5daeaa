//! The dispatch stage: send the request to the best model that answers.
//!
//! Last stage of the request path, after the ranker. Models are tried in
//! ranked order, then the router's fallback models: a connect error, a
//! timeout, a 429 or a 5xx passes the request on to the next model; a 4xx
//! that retrying can't fix goes straight back to the client. With
//! streaming, failover is possible only until the first byte reaches the
//! client; a break after that ends the stream with an error event.
//!
//! # Layout
//! - [`upstream`]: the endpoints behind each model id, and the pooled client.
//! - `kinds`: what each provider kind (OpenAI, Anthropic, Gemini) wants on
//!   the wire, its answers translated to OpenAI chat completions (with
//!   `switchyard-protocol`), so failover crosses kinds freely.
//! - [`failover`]: the attempt loop and what counts as worth retrying.
//! - [`stream`]: relaying an upstream's SSE stream to the client, event by
//!   event, with the served model's id written into each chunk.

pub mod failover;
mod kinds;
pub mod stream;
pub mod upstream;

pub use failover::{DispatchFailure, Served, ServedBody, is_retryable};
pub use stream::{SseRelay, StreamSummary};
pub use upstream::Dispatcher;

/// Why the dispatcher could not be built.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("cannot build the upstream HTTP client: {0}")]
    Client(String),
    #[error("model `{model}`: its provider's URL `{url}` is not a valid URL: {reason}")]
    Url { model: String, url: String, reason: String },
}
