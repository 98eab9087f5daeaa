//! The `Classifier` actor: a pool of workers (a ractor factory) that turn
//! conversations into route decisions.
//!
//! Requests queue at the factory and go to whichever worker is free
//! (`QueuerRouting`), so one slow classification does not hold up the
//! requests behind it while another worker idles. The scoring itself is
//! CPU work and runs on tokio's blocking pool, off the async runtime.

use std::sync::Arc;

use arc_swap::ArcSwap;
use ractor::factory::{
    Factory, FactoryArguments, FactoryMessage, FactoryRef, Job, Worker, WorkerId,
    queues::DefaultQueue, routing::QueuerRouting, worker_builder,
};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use switchyard_types::{Conversation, RouteDecision};

use crate::{ClassifierError, RouteIndex, RouterIndexes};

/// Messages the classifier pool accepts.
#[derive(Debug)]
pub enum ClassifierMsg {
    /// Decide which of `router`'s tasks `conversation` asks for. The reply
    /// carries the decision, or why there is none (unknown router).
    Classify {
        router: String,
        conversation: Conversation,
        reply: RpcReplyPort<Result<RouteDecision, ClassifierError>>,
    },
    /// Score `conversation` against a route set prepared elsewhere (a
    /// classifier node serving an ingress node's router by its digest).
    ClassifyWith {
        router: String,
        index: Arc<dyn RouteIndex>,
        classifier: &'static str,
        conversation: Conversation,
        reply: RpcReplyPort<Result<RouteDecision, ClassifierError>>,
    },
}

/// Handle to the pool; cheap to clone.
pub type ClassifierPool = FactoryRef<(), ClassifierMsg>;

/// The indexes every worker reads. Swapped whole when routers change, so a
/// decision never sees half of an old configuration and half of a new one.
pub type SharedIndexes = Arc<ArcSwap<RouterIndexes>>;

/// One worker of the pool; stateless apart from the shared indexes.
#[derive(Debug)]
struct ClassifierWorker {
    indexes: SharedIndexes,
}

impl Worker for ClassifierWorker {
    type Key = ();
    type Message = ClassifierMsg;
    type Arguments = ();
    type State = ();

    async fn pre_start(
        &self,
        _wid: WorkerId,
        _factory: &ActorRef<FactoryMessage<(), ClassifierMsg>>,
        _args: (),
    ) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(
        &self,
        _wid: WorkerId,
        _factory: &ActorRef<FactoryMessage<(), ClassifierMsg>>,
        Job { msg, key, .. }: Job<(), ClassifierMsg>,
        _state: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ClassifierMsg::Classify {
                router,
                conversation,
                reply,
            } => {
                let indexes = self.indexes.load_full();
                let decision =
                    tokio::task::spawn_blocking(move || indexes.decide(&router, &conversation))
                        .await
                        .map_err(|err| ClassifierError::Unavailable(err.to_string()))
                        .and_then(|result| result);
                // The caller may have given up (client gone); nothing to do then.
                let _ = reply.send(decision);
            }
            ClassifierMsg::ClassifyWith {
                router,
                index,
                classifier,
                conversation,
                reply,
            } => {
                let decision = tokio::task::spawn_blocking(move || {
                    crate::decide_with(&router, classifier, index.as_ref(), &conversation)
                })
                .await
                .map_err(|err| ClassifierError::Unavailable(err.to_string()))
                .and_then(|result| result);
                let _ = reply.send(decision);
            }
        }
        Ok(key)
    }
}

/// Starts a pool of `workers` classifier workers reading `indexes`.
pub async fn spawn_pool(
    indexes: SharedIndexes,
    workers: usize,
) -> Result<(ClassifierPool, tokio::task::JoinHandle<()>), ClassifierError> {
    let factory = Factory::<
        (),
        ClassifierMsg,
        (),
        ClassifierWorker,
        QueuerRouting<(), ClassifierMsg>,
        DefaultQueue<(), ClassifierMsg>,
    >::default();
    let arguments = FactoryArguments::builder()
        .worker_builder(Box::new(worker_builder(move |_wid| {
            (
                ClassifierWorker {
                    indexes: indexes.clone(),
                },
                (),
            )
        })))
        .queue(Default::default())
        .router(Default::default())
        .num_initial_workers(workers.max(1))
        .build();
    let (pool, handle) = Actor::spawn(None, factory, arguments)
        .await
        .map_err(|err| ClassifierError::Unavailable(err.to_string()))?;
    Ok((pool, handle))
}

/// Most workers one node's pool may be resized to.
pub const MAX_WORKERS: usize = 256;

/// The pool's workers right now: busy with a decision, or idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSize {
    pub workers: usize,
    pub busy: usize,
    pub idle: usize,
}

fn call_result<T>(result: Result<ractor::rpc::CallResult<T>, impl std::fmt::Display>) -> Result<T, ClassifierError> {
    match result {
        Ok(ractor::rpc::CallResult::Success(value)) => Ok(value),
        Ok(ractor::rpc::CallResult::Timeout) => Err(ClassifierError::Unavailable("timed out".to_owned())),
        Ok(ractor::rpc::CallResult::SenderError) => Err(ClassifierError::Unavailable("no reply".to_owned())),
        Err(err) => Err(ClassifierError::Unavailable(err.to_string())),
    }
}

/// How many workers the pool has (busy + idle; the factory reports the two
/// separately, so the sum can be off by one while a job changes hands).
pub async fn pool_size(pool: &ClassifierPool) -> Result<PoolSize, ClassifierError> {
    let busy = call_result(pool.active_workers(None).await)?;
    // Without a queue limit the available capacity is the idle workers.
    let idle = call_result(pool.available_capacity(None).await)?;
    Ok(PoolSize {
        workers: busy + idle,
        busy,
        idle,
    })
}

/// Resizes the pool to `workers` (1..=[`MAX_WORKERS`]) while it runs: new
/// workers start at once, surplus ones stop after their current job.
pub fn resize_pool(pool: &ClassifierPool, workers: usize) -> Result<(), ClassifierError> {
    if !(1..=MAX_WORKERS).contains(&workers) {
        return Err(ClassifierError::WorkerCount(workers));
    }
    pool.adjust_worker_pool(workers)
        .map_err(|err| ClassifierError::Unavailable(err.to_string()))?;
    tracing::info!(workers, "classifier pool resized");
    Ok(())
}

/// Asks the pool for a decision.
pub async fn classify(
    pool: &ClassifierPool,
    router: &str,
    conversation: Conversation,
) -> Result<RouteDecision, ClassifierError> {
    let router = router.to_owned();
    ask(pool, |reply| ClassifierMsg::Classify {
        router,
        conversation,
        reply,
    })
    .await
}

/// Asks the pool to score a conversation against a prepared route set.
pub async fn classify_with(
    pool: &ClassifierPool,
    router: &str,
    index: Arc<dyn RouteIndex>,
    classifier: &'static str,
    conversation: Conversation,
) -> Result<RouteDecision, ClassifierError> {
    let router = router.to_owned();
    ask(pool, |reply| ClassifierMsg::ClassifyWith {
        router,
        index,
        classifier,
        conversation,
        reply,
    })
    .await
}

async fn ask(
    pool: &ClassifierPool,
    message: impl FnOnce(RpcReplyPort<Result<RouteDecision, ClassifierError>>) -> ClassifierMsg,
) -> Result<RouteDecision, ClassifierError> {
    let result = pool
        .call_job((), message, None)
        .await
        .map_err(|err| ClassifierError::Unavailable(err.to_string()))?;
    match result {
        ractor::rpc::CallResult::Success(decision) => decision,
        ractor::rpc::CallResult::Timeout => {
            Err(ClassifierError::Unavailable("timed out".to_owned()))
        }
        ractor::rpc::CallResult::SenderError => Err(ClassifierError::Unavailable(
            "worker dropped the request".to_owned(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use switchyard_config::Config;
    use switchyard_types::{Role, Turn};

    use super::*;

    #[tokio::test]
    async fn pool_answers_concurrent_requests() {
        let config = Config::embedded_default(&HashMap::new()).unwrap();
        let classifier = crate::build(&crate::ClassifierSpec::new("lexical", None)).unwrap();
        let indexes = RouterIndexes::prepare(&config, classifier).unwrap();
        let (pool, handle) = spawn_pool(Arc::new(ArcSwap::from_pointee(indexes)), 2)
            .await
            .unwrap();
        let ask = |text: &str| Conversation {
            turns: vec![Turn {
                role: Role::User,
                text: text.to_owned(),
            }],
        };
        let (a, b) = tokio::join!(
            classify(&pool, "writing", ask("Translate this paragraph into French")),
            classify(&pool, "writing", ask("Write a poem about the sea")),
        );
        assert_eq!(a.unwrap().route, "translation");
        assert_eq!(b.unwrap().route, "creative_writing");
        let missing = classify(&pool, "nope", ask("hi")).await;
        assert!(matches!(missing, Err(ClassifierError::UnknownRouter(_))));
        pool.stop(None);
        handle.await.unwrap();
    }
}
