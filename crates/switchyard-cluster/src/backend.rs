//! The replicated pin store: [`AffinityBackend`] over the raft log, so the
//! affinity actor works the same on one node or many.

use std::sync::Arc;
use std::time::SystemTime;

use switchyard_affinity::{AffinityBackend, AffinityError, Pin, PinKey};

use crate::node::Shared;
use crate::types::{Command, CommandResponse};

/// Pins read from the local state machine and written through the log.
#[derive(Debug, Clone)]
pub struct ReplicatedStore {
    shared: Arc<Shared>,
}

impl ReplicatedStore {
    pub fn new(shared: Arc<Shared>) -> ReplicatedStore {
        ReplicatedStore { shared }
    }
}

fn backend_error(err: crate::ClusterError) -> AffinityError {
    AffinityError::Backend(err.to_string())
}

impl AffinityBackend for ReplicatedStore {
    /// Local first (a later turn finds its pin here without a network hop).
    /// On a miss, the leader confirms: this node may not have applied a pin
    /// another node wrote a moment ago. If no leader answers, the local
    /// miss stands and the request is routed unpinned.
    async fn get(&self, key: &PinKey, now: SystemTime) -> Result<Option<Pin>, AffinityError> {
        if let Some(pin) = self.shared.local_pin(key, now) {
            return Ok(Some(pin));
        }
        match self.shared.linearizable_pin(key, now).await {
            Ok(pin) => Ok(pin),
            Err(err) => {
                tracing::debug!(error = %err, "no linearizable pin read; using the local state");
                Ok(None)
            }
        }
    }

    async fn set_if_absent(&self, key: PinKey, pin: Pin, now: SystemTime) -> Result<Pin, AffinityError> {
        match self
            .shared
            .write(Command::SetIfAbsent {
                key,
                pin,
                now,
                max_sessions: self.shared.max_sessions as u64,
            })
            .await
            .map_err(backend_error)?
        {
            CommandResponse::Pin(pin) => Ok(pin),
            other => Err(AffinityError::Backend(format!("unexpected reply to a pin write: {other:?}"))),
        }
    }

    async fn repin(&self, key: PinKey, model: String, now: SystemTime) -> Result<(), AffinityError> {
        self.shared
            .write(Command::Repin { key, model, now })
            .await
            .map(|_| ())
            .map_err(backend_error)
    }

    /// Only the leader proposes purges: one entry per sweep, not one per node.
    async fn purge_expired(&self, now: SystemTime) -> Result<usize, AffinityError> {
        if !self.shared.is_leader() {
            return Ok(0);
        }
        match self.shared.write(Command::Purge { now }).await.map_err(backend_error)? {
            CommandResponse::Count(count) => Ok(count as usize),
            _ => Ok(0),
        }
    }

    fn pin_count(&self) -> usize {
        self.shared.pin_count()
    }
}
