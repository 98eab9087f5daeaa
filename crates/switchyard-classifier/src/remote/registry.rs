//! The classifier nodes an ingress node knows: soft state, kept alive by
//! the nodes' own registrations. Each known node has a bounded queue and a
//! task that sends what is queued in batches, one `Classify` call per batch.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use super::proto;
use super::proto::classifier_client::ClassifierClient;

/// Items waiting for one node beyond this are refused (the caller
/// classifies locally): a slow node never grows an unbounded queue.
pub const QUEUE_BOUND: usize = 1024;

/// One conversation waiting for a classifier node.
#[derive(Debug)]
pub(crate) struct Pending {
    pub item: proto::ClassifyItem,
    pub reply: oneshot::Sender<Result<proto::Decision, String>>,
}

#[derive(Debug)]
struct Remote {
    workers: usize,
    busy: usize,
    classifier: String,
    expires: Instant,
    /// Sent and not yet answered (or given up on) by this node.
    outstanding: Arc<AtomicUsize>,
    queue: mpsc::Sender<Pending>,
    /// After a failure the node is skipped until then.
    down_until: Option<Instant>,
}

/// A known node, as [`super::Spread`] weighs it.
#[derive(Debug, Clone)]
pub(crate) struct Live {
    pub addr: String,
    pub workers: usize,
    pub outstanding: Arc<AtomicUsize>,
    pub queue: mpsc::Sender<Pending>,
}

/// A known node, as `/v1/classifier` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RemoteStatus {
    pub addr: String,
    pub classifier: String,
    pub workers: usize,
    /// Busy workers at its last registration.
    pub busy: usize,
    /// This node's requests it has not answered yet.
    pub outstanding: usize,
    /// Skipped after a failure or timeout, until its next registration.
    pub down: bool,
    pub expires_in_ms: u64,
}

/// Every classifier node this node knows.
#[derive(Debug)]
pub struct Registry {
    remotes: Mutex<HashMap<String, Remote>>,
    max_batch: usize,
    /// Presented to classifier nodes on every call.
    secret: switchyard_cluster::PeerSecret,
}

impl Registry {
    pub fn new(max_batch: usize, secret: switchyard_cluster::PeerSecret) -> Registry {
        Registry {
            remotes: Mutex::new(HashMap::new()),
            max_batch: max_batch.max(1),
            secret,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Remote>> {
        // The map stays consistent whatever a panicking holder did: every
        // update is a single insert or field store.
        self.remotes.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers or renews a node; a new one gets its queue and batch
    /// sender (which needs a tokio runtime). A renewal clears a `down` mark:
    /// the node says it is back.
    pub fn register(&self, registration: &proto::Registration, now: Instant) -> Result<(), String> {
        let ttl = Duration::from_millis(registration.ttl_ms.clamp(100, 600_000));
        let mut remotes = self.lock();
        if let Some(remote) = remotes.get_mut(&registration.addr)
            && !remote.queue.is_closed()
        {
            remote.workers = registration.workers as usize;
            remote.busy = registration.busy as usize;
            remote.classifier.clone_from(&registration.classifier);
            remote.expires = now + ttl;
            remote.down_until = None;
            return Ok(());
        }
        let channel = switchyard_cluster::peer_auth::link(&registration.addr, &self.secret).map_err(|err| err.to_string())?;
        let (queue, receiver) = mpsc::channel(QUEUE_BOUND);
        tokio::spawn(send_batches(
            registration.addr.clone(),
            ClassifierClient::new(channel),
            receiver,
            self.max_batch,
        ));
        tracing::info!(addr = %registration.addr, workers = registration.workers, "classifier node registered");
        remotes.insert(
            registration.addr.clone(),
            Remote {
                workers: registration.workers as usize,
                busy: registration.busy as usize,
                classifier: registration.classifier.clone(),
                expires: now + ttl,
                outstanding: Arc::new(AtomicUsize::new(0)),
                queue,
                down_until: None,
            },
        );
        Ok(())
    }

    /// Nodes to send to now: registered, not expired, not marked down.
    /// Expired nodes are forgotten (their batch sender ends with them).
    pub(crate) fn live(&self, now: Instant) -> Vec<Live> {
        let mut remotes = self.lock();
        remotes.retain(|addr, remote| {
            let keep = remote.expires > now;
            if !keep {
                tracing::info!(%addr, "classifier node expired (no renewal)");
            }
            keep
        });
        remotes
            .iter()
            .filter(|(_, remote)| remote.down_until.is_none_or(|until| until <= now) && remote.workers > 0)
            .map(|(addr, remote)| Live {
                addr: addr.clone(),
                workers: remote.workers,
                outstanding: Arc::clone(&remote.outstanding),
                queue: remote.queue.clone(),
            })
            .collect()
    }

    /// Skips a node that failed or timed out until `until` (or its next
    /// registration).
    pub(crate) fn mark_down(&self, addr: &str, until: Instant) {
        if let Some(remote) = self.lock().get_mut(addr) {
            remote.down_until = Some(until);
        }
    }

    /// Every known node, for status.
    pub fn status(&self, now: Instant) -> Vec<RemoteStatus> {
        let remotes = self.lock();
        let mut status: Vec<RemoteStatus> = remotes
            .iter()
            .filter(|(_, remote)| remote.expires > now)
            .map(|(addr, remote)| RemoteStatus {
                addr: addr.clone(),
                classifier: remote.classifier.clone(),
                workers: remote.workers,
                busy: remote.busy,
                outstanding: remote.outstanding.load(Ordering::Relaxed),
                down: remote.down_until.is_some_and(|until| until > now),
                expires_in_ms: remote.expires.saturating_duration_since(now).as_millis() as u64,
            })
            .collect();
        status.sort_by(|a, b| a.addr.cmp(&b.addr));
        status
    }

    /// How many nodes are registered and not expired.
    pub fn len(&self, now: Instant) -> usize {
        self.lock().values().filter(|remote| remote.expires > now).count()
    }

    pub fn is_empty(&self, now: Instant) -> bool {
        self.len(now) == 0
    }
}

/// Sends a node's queue in batches: whatever is queued when a call can
/// start, up to `max_batch`, goes in one call. It never waits to fill a
/// batch (an idle node answers a lone request at once); under load the
/// queue fills while calls are out, and batches form by themselves.
async fn send_batches(
    addr: String,
    client: ClassifierClient<switchyard_cluster::peer_auth::Link>,
    mut queue: mpsc::Receiver<Pending>,
    max_batch: usize,
) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match queue.try_recv() {
                Ok(pending) => batch.push(pending),
                Err(_) => break,
            }
        }
        let mut client = client.clone();
        let addr = addr.clone();
        // Calls overlap: HTTP/2 multiplexes them over one connection, and
        // the node's worker pool queues what it cannot start yet.
        tokio::spawn(async move {
            let (items, replies): (Vec<_>, Vec<_>) =
                batch.into_iter().map(|pending| (pending.item, pending.reply)).unzip();
            match client.classify(proto::ClassifyBatch { items }).await {
                Ok(answer) => {
                    let results = answer.into_inner().results;
                    for (reply, result) in replies.into_iter().zip(results) {
                        let result = match result.outcome {
                            Some(proto::classify_result::Outcome::Decision(decision)) => Ok(decision),
                            Some(proto::classify_result::Outcome::Error(error)) => Err(error),
                            None => Err("empty result".to_owned()),
                        };
                        // The caller may have timed out already.
                        let _ = reply.send(result);
                    }
                }
                Err(status) => {
                    tracing::debug!(%addr, error = %status.message(), "classify call failed");
                    // Dropping the replies tells each caller the call failed.
                }
            }
        });
    }
}
