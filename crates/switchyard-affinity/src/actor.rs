//! The `AffinityStore` actor: the node's only door to session pins.
//!
//! Reads run inline (a local lookup). Writes run as tasks of their own, so
//! a write waiting for consensus in a cluster never holds up the reads
//! behind it; set-if-absent stays atomic because the backend applies it
//! atomically (under its lock, or in the replicated log's order). Expired
//! pins are purged on a timer.

use std::time::{Duration, SystemTime};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::AffinityError;
use crate::store::{AffinityBackend, Pin, PinKey, expiry};

/// How often expired pins are swept out.
const PURGE_INTERVAL: Duration = Duration::from_secs(30);

/// Messages the affinity store accepts.
#[derive(Debug)]
pub enum AffinityMsg {
    /// The live pin of a session, if any.
    Get {
        key: PinKey,
        reply: RpcReplyPort<Result<Option<Pin>, AffinityError>>,
    },
    /// Pin a session on its first turn unless a live pin exists; the reply
    /// carries the pin in force (the existing one if another request won).
    SetIfAbsent {
        key: PinKey,
        route: String,
        model: String,
        reply: RpcReplyPort<Result<Pin, AffinityError>>,
    },
    /// Move a session's pin to the model that served after a failover; the
    /// reply comes once the move is written, so the session's next turn
    /// sees it.
    Repin {
        key: PinKey,
        model: String,
        reply: RpcReplyPort<Result<(), AffinityError>>,
    },
    /// Drop expired pins (sent by the store's own timer).
    Purge,
    /// Number of pins held.
    Count { reply: RpcReplyPort<usize> },
}

/// The actor, generic over where pins live.
#[derive(Debug)]
pub struct AffinityStoreActor<B> {
    _backend: std::marker::PhantomData<fn() -> B>,
}

impl<B> Default for AffinityStoreActor<B> {
    fn default() -> Self {
        AffinityStoreActor {
            _backend: std::marker::PhantomData,
        }
    }
}

/// State of the affinity store.
#[derive(Debug)]
pub struct AffinityState<B> {
    backend: B,
    ttl: Duration,
}

impl<B: AffinityBackend + std::fmt::Debug> Actor for AffinityStoreActor<B> {
    type Msg = AffinityMsg;
    type State = AffinityState<B>;
    /// The backend and the pin time-to-live.
    type Arguments = (B, Duration);

    async fn pre_start(
        &self,
        myself: ActorRef<AffinityMsg>,
        (backend, ttl): (B, Duration),
    ) -> Result<AffinityState<B>, ActorProcessingErr> {
        myself.send_interval(PURGE_INTERVAL, || AffinityMsg::Purge);
        Ok(AffinityState { backend, ttl })
    }

    async fn handle(
        &self,
        _myself: ActorRef<AffinityMsg>,
        message: AffinityMsg,
        state: &mut AffinityState<B>,
    ) -> Result<(), ActorProcessingErr> {
        let now = SystemTime::now();
        match message {
            AffinityMsg::Get { key, reply } => {
                let _ = reply.send(state.backend.get(&key, now).await);
            }
            AffinityMsg::SetIfAbsent {
                key,
                route,
                model,
                reply,
            } => {
                let pin = Pin {
                    route,
                    model,
                    expires_at: expiry(now, state.ttl),
                };
                let backend = state.backend.clone();
                tokio::spawn(async move {
                    let _ = reply.send(backend.set_if_absent(key, pin, now).await);
                });
            }
            AffinityMsg::Repin { key, model, reply } => {
                let backend = state.backend.clone();
                tokio::spawn(async move {
                    let _ = reply.send(backend.repin(key, model, now).await);
                });
            }
            AffinityMsg::Purge => {
                let backend = state.backend.clone();
                tokio::spawn(async move {
                    match backend.purge_expired(now).await {
                        Ok(0) => {}
                        Ok(purged) => tracing::debug!(purged, "expired session pins purged"),
                        Err(err) => tracing::warn!(error = %err, "could not purge session pins"),
                    }
                });
            }
            AffinityMsg::Count { reply } => {
                let _ = reply.send(state.backend.pin_count());
            }
        }
        Ok(())
    }
}

fn unwrap_call<T>(
    result: Result<ractor::rpc::CallResult<Result<T, AffinityError>>, impl std::fmt::Display>,
) -> Result<T, AffinityError> {
    match result {
        Ok(ractor::rpc::CallResult::Success(inner)) => inner,
        Ok(ractor::rpc::CallResult::Timeout) => {
            Err(AffinityError::Unavailable("timed out".to_owned()))
        }
        Ok(ractor::rpc::CallResult::SenderError) => Err(AffinityError::Unavailable(
            "the store dropped the request".to_owned(),
        )),
        Err(err) => Err(AffinityError::Unavailable(err.to_string())),
    }
}

/// Looks up a session's live pin.
pub async fn lookup(store: &ActorRef<AffinityMsg>, key: PinKey) -> Result<Option<Pin>, AffinityError> {
    unwrap_call(store.call(|reply| AffinityMsg::Get { key, reply }, None).await)
}

/// Records the model that served a session's turn: pins it on the first
/// turn, or moves the pin when failover changed the model.
pub async fn pin_served(
    store: &ActorRef<AffinityMsg>,
    key: PinKey,
    route: String,
    model: String,
    previous: Option<&Pin>,
) -> Result<Pin, AffinityError> {
    match previous {
        Some(pin) if pin.model == model => Ok(pin.clone()),
        Some(pin) => {
            unwrap_call(
                store
                    .call(
                        |reply| AffinityMsg::Repin {
                            key,
                            model: model.clone(),
                            reply,
                        },
                        None,
                    )
                    .await,
            )?;
            Ok(Pin {
                model,
                ..pin.clone()
            })
        }
        None => unwrap_call(
            store
                .call(
                    |reply| AffinityMsg::SetIfAbsent {
                        key,
                        route,
                        model,
                        reply,
                    },
                    None,
                )
                .await,
        ),
    }
}
