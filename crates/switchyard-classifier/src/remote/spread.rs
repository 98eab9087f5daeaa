//! The ingress side of classification: each request goes to this node's
//! own workers or to a registered classifier node, whichever of two picked
//! at random has less outstanding work per worker (power of two choices).
//! A node that does not answer within the timeout is skipped for a while,
//! and the request is classified locally: it is never failed for want of
//! a classifier node.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;
use switchyard_types::{Conversation, RouteDecision};
use tokio::sync::oneshot;

use super::registry::{Live, Pending};
use super::{RemoteSettings, Registry, decision_from_proto, proto, routes_to_proto, turns_to_proto};
use crate::actor::{ClassifierPool, SharedIndexes, classify};
use crate::{ClassifierError, Shed};

/// How long a node that failed or timed out is skipped (a renewal brings
/// it back sooner).
pub const DOWN_FOR: Duration = Duration::from_secs(2);

/// Who classified a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// This node's workers.
    Local,
    /// A classifier node.
    Remote,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Local => "local",
            Target::Remote => "remote",
        }
    }
}

/// Why a request was classified locally although it should not have been.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// The chosen classifier node did not answer in time.
    Timeout,
    /// It refused the call or the connection failed.
    Error,
    /// Its queue was full.
    Overloaded,
    /// This node has no classifier role and no classifier node is
    /// registered: its fallback classifier answered.
    NoClassifier,
}

impl Fallback {
    pub fn as_str(self) -> &'static str {
        match self {
            Fallback::Timeout => "timeout",
            Fallback::Error => "error",
            Fallback::Overloaded => "overloaded",
            Fallback::NoClassifier => "no_classifier",
        }
    }
}

/// Bounds on this node's own classifier queue: past them a request is
/// not classified at all (the caller serves it from the fallback pool)
/// rather than left waiting behind a backlog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalBounds {
    /// Requests waiting beyond one per worker.
    pub queue: usize,
    /// The longest a request waits for its decision.
    pub timeout: Duration,
}

impl LocalBounds {
    pub fn from_config(limits: &switchyard_config::LimitsConfig) -> LocalBounds {
        LocalBounds {
            queue: limits.classifier_queue,
            timeout: limits.classify_timeout,
        }
    }
}

/// A decision and how it was reached.
#[derive(Debug, Clone)]
pub struct Classified {
    pub decision: RouteDecision,
    pub target: Target,
    pub fallback: Option<Fallback>,
    /// As this node saw it, network and queueing included.
    pub elapsed: Duration,
}

/// Outstanding work on a target, per worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    pub outstanding: usize,
    pub workers: usize,
}

impl Load {
    /// Expected wait if one more request joins: lower is better.
    fn cost(self) -> f64 {
        (self.outstanding + 1) as f64 / self.workers.max(1) as f64
    }
}

/// Power of two choices: of targets `a` and `b`, the less loaded (`a` on a
/// tie). Sampling two instead of scanning all keeps ingress nodes from
/// herding onto the one target that looked idlest a moment ago.
pub fn pick_two(loads: &[Load], a: usize, b: usize) -> usize {
    match (loads.get(a), loads.get(b)) {
        (Some(la), Some(lb)) if lb.cost() < la.cost() => b,
        (Some(_), _) => a,
        _ => 0,
    }
}

/// Decrements an outstanding count when a request ends, however it ends.
struct Outstanding(Arc<AtomicUsize>);

impl Outstanding {
    fn start(count: &Arc<AtomicUsize>) -> Outstanding {
        Outstanding::joining(count).0
    }

    /// Starts one and says how many were outstanding before it.
    fn joining(count: &Arc<AtomicUsize>) -> (Outstanding, usize) {
        let before = count.fetch_add(1, Ordering::Relaxed);
        (Outstanding(Arc::clone(count)), before)
    }
}

impl Drop for Outstanding {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The ingress node's classifier: local workers plus registered nodes.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct Spread {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    local: ClassifierPool,
    /// Whether the local pool takes a share of the traffic (the node has
    /// the `classifier` role) or only answers when no node can.
    local_in_spread: bool,
    local_workers: AtomicUsize,
    local_outstanding: Arc<AtomicUsize>,
    indexes: SharedIndexes,
    registry: Arc<Registry>,
    settings: RemoteSettings,
    bounds: LocalBounds,
}

impl Spread {
    pub fn new(
        local: ClassifierPool,
        local_workers: usize,
        local_in_spread: bool,
        indexes: SharedIndexes,
        registry: Arc<Registry>,
        settings: RemoteSettings,
        bounds: LocalBounds,
    ) -> Spread {
        Spread {
            inner: Arc::new(Inner {
                local,
                local_in_spread,
                local_workers: AtomicUsize::new(local_workers),
                local_outstanding: Arc::new(AtomicUsize::new(0)),
                indexes,
                registry,
                settings,
                bounds,
            }),
        }
    }

    /// This node's own worker pool.
    pub fn pool(&self) -> &ClassifierPool {
        &self.inner.local
    }

    /// The indexes the local workers read (swapped when routers change).
    pub fn indexes(&self) -> &SharedIndexes {
        &self.inner.indexes
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.inner.registry
    }

    /// Whether this node's own workers take a share of the traffic.
    pub fn local_in_spread(&self) -> bool {
        self.inner.local_in_spread
    }

    /// Resizes the local pool (see [`crate::resize_pool`]).
    pub fn resize(&self, workers: usize) -> Result<(), ClassifierError> {
        crate::resize_pool(&self.inner.local, workers)?;
        self.inner.local_workers.store(workers, Ordering::Relaxed);
        Ok(())
    }

    /// Classifies `conversation` for `router` where it is cheapest now.
    pub async fn classify(&self, router: &str, conversation: Conversation) -> Result<Classified, ClassifierError> {
        let started = Instant::now();
        let inner = &self.inner;
        let remotes = inner.registry.live(started);
        if remotes.is_empty() {
            let fallback = (!inner.local_in_spread).then_some(Fallback::NoClassifier);
            return self.local(router, conversation, started, fallback).await;
        }
        let mut loads = Vec::with_capacity(remotes.len() + 1);
        if inner.local_in_spread {
            loads.push(Load {
                outstanding: inner.local_outstanding.load(Ordering::Relaxed),
                workers: inner.local_workers.load(Ordering::Relaxed),
            });
        }
        let offset = loads.len();
        loads.extend(remotes.iter().map(|remote| Load {
            outstanding: remote.outstanding.load(Ordering::Relaxed),
            workers: remote.workers,
        }));
        let choice = {
            let mut rng = rand::rng();
            let a = rng.random_range(0..loads.len());
            let b = rng.random_range(0..loads.len());
            pick_two(&loads, a, b)
        };
        match choice.checked_sub(offset).and_then(|index| remotes.get(index)) {
            None => self.local(router, conversation, started, None).await,
            Some(remote) => match self.remote(remote, router, &conversation, started).await {
                Ok(classified) => Ok(classified),
                Err(reason) => self.local(router, conversation, started, Some(reason)).await,
            },
        }
    }

    async fn local(
        &self,
        router: &str,
        conversation: Conversation,
        started: Instant,
        fallback: Option<Fallback>,
    ) -> Result<Classified, ClassifierError> {
        let (_outstanding, ahead) = Outstanding::joining(&self.inner.local_outstanding);
        let bounds = self.inner.bounds;
        if ahead >= self.inner.local_workers.load(Ordering::Relaxed) + bounds.queue {
            return Err(ClassifierError::Shed(Shed::QueueFull));
        }
        let decision = tokio::time::timeout(bounds.timeout, classify(&self.inner.local, router, conversation))
            .await
            .map_err(|_| ClassifierError::Shed(Shed::Timeout))??;
        Ok(Classified {
            decision,
            target: Target::Local,
            fallback,
            elapsed: started.elapsed(),
        })
    }

    /// One conversation through a classifier node; `Err` says why the
    /// caller should classify locally instead.
    async fn remote(
        &self,
        remote: &Live,
        router: &str,
        conversation: &Conversation,
        started: Instant,
    ) -> Result<Classified, Fallback> {
        let indexes = self.inner.indexes.load();
        // An unknown router is the local pool's error to report.
        let (routes, digest) = indexes.route_set(router).ok_or(Fallback::Error)?;
        let item = proto::ClassifyItem {
            router: router.to_owned(),
            routes_digest: digest.to_owned(),
            routes: routes_to_proto(routes),
            turns: turns_to_proto(conversation),
        };
        let (reply, answer) = oneshot::channel();
        let _outstanding = Outstanding::start(&remote.outstanding);
        if remote.queue.try_send(Pending { item, reply }).is_err() {
            return Err(Fallback::Overloaded);
        }
        let down = |reason: Fallback| {
            self.inner.registry.mark_down(&remote.addr, Instant::now() + DOWN_FOR);
            tracing::warn!(addr = %remote.addr, reason = reason.as_str(), "classifier node skipped; classifying locally");
            reason
        };
        match tokio::time::timeout(self.inner.settings.timeout, answer).await {
            Ok(Ok(Ok(decision))) => {
                let mut decision = decision_from_proto(router, decision);
                decision.elapsed = started.elapsed();
                Ok(Classified {
                    elapsed: decision.elapsed,
                    decision,
                    target: Target::Remote,
                    fallback: None,
                })
            }
            // The node answered, but not for this item (e.g. it cannot
            // load the route set): not a reason to skip it for others.
            Ok(Ok(Err(message))) => {
                tracing::warn!(addr = %remote.addr, error = %message, "classifier node refused an item");
                Err(Fallback::Error)
            }
            Ok(Err(_)) => Err(down(Fallback::Error)),
            Err(_) => Err(down(Fallback::Timeout)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_choices_take_the_lighter_target_per_worker() {
        let loads = [
            Load { outstanding: 4, workers: 2 },
            Load { outstanding: 4, workers: 8 },
            Load { outstanding: 0, workers: 1 },
        ];
        assert_eq!(pick_two(&loads, 0, 1), 1, "5/8 per worker beats 5/2");
        assert_eq!(pick_two(&loads, 1, 2), 1, "5/8 beats 1/1");
        assert_eq!(pick_two(&loads, 0, 2), 2);
        assert_eq!(pick_two(&loads, 2, 2), 2);
        assert_eq!(pick_two(&loads, 0, 0), 0);
        // A tie keeps the first draw.
        let even = [Load { outstanding: 1, workers: 1 }, Load { outstanding: 1, workers: 1 }];
        assert_eq!(pick_two(&even, 1, 0), 1);
    }

    #[test]
    fn outstanding_counts_end_with_the_request() {
        let count = Arc::new(AtomicUsize::new(0));
        {
            let _a = Outstanding::start(&count);
            let _b = Outstanding::start(&count);
            assert_eq!(count.load(Ordering::Relaxed), 2);
        }
        assert_eq!(count.load(Ordering::Relaxed), 0);
    }
}
