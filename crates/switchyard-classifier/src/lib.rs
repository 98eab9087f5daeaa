//! The classifier stage: which of a router's tasks does a conversation ask for?
//!
//! Sits between ingress and the ranker. A [`Classifier`] turns a router's
//! task descriptions into a [`RouteIndex`] once per configuration (so
//! descriptions are analysed once, not per request); the index then scores
//! each conversation against every task and answers a task name or `other`.
//!
//! # Layout
//! - [`bm25`]: the lexical baseline shipped first, kept for comparison with
//!   the learned classifiers that replace it.
//! - [`embedding`]: cosine between the conversation and each route in the
//!   sentence encoder's space (`switchyard_encoder`).
//! - [`actor`]: the `Classifier` actor, a pool of workers (a ractor factory)
//!   that the ingress calls; classification runs off the async runtime.
//! - [`RouterIndexes`]: the prepared indexes for every router of a config.

pub mod actor;
pub mod bm25;
pub mod context;
pub mod embedding;
pub mod moe;
pub mod remote;

use std::collections::HashMap;
use std::sync::Arc;

use switchyard_config::{ClassifierConfig, Config, EncoderBackend, EncoderPrecision};
use switchyard_encoder::{Device, Encoder, EncoderSettings, Precision};
use switchyard_types::{Conversation, OTHER_ROUTE, RouteDecision};

/// Helpers shared by the classifiers' unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use switchyard_types::{Conversation, Role, Turn};

    /// A conversation from (role, text) pairs, oldest first.
    pub(crate) fn conversation(turns: &[(Role, &str)]) -> Conversation {
        Conversation {
            turns: turns
                .iter()
                .map(|(role, text)| Turn {
                    role: *role,
                    text: (*text).to_owned(),
                })
                .collect(),
        }
    }
}

pub use actor::{ClassifierMsg, ClassifierPool, MAX_WORKERS, PoolSize, SharedIndexes, classify, pool_size, resize_pool, spawn_pool};
pub use bm25::Bm25Classifier;
pub use embedding::EmbeddingClassifier;
pub use moe::MoeClassifier;

/// Why a conversation could not be classified.
#[derive(Debug, thiserror::Error)]
pub enum ClassifierError {
    #[error("unknown classifier `{0}`; available: {available}", available = AVAILABLE.join(", "))]
    UnknownClassifier(String),
    #[error("unknown router `{0}`")]
    UnknownRouter(String),
    #[error("a router needs at least one task")]
    NoRoutes,
    #[error("the classifier pool is not running: {0}")]
    Unavailable(String),
    #[error("`workers` must be 1 to {max}, not {0}", max = actor::MAX_WORKERS)]
    WorkerCount(usize),
    #[error(transparent)]
    Encoder(#[from] switchyard_encoder::EncoderError),
    #[error("MoE head {path}: {reason}; the head ships in models/moe-router (made by `switchyard train`)", path = path.display())]
    Head { path: std::path::PathBuf, reason: String },
    /// No decision, on purpose: the node's classifier is saturated and the
    /// request should be served by its router's fallback models.
    #[error("the classifier is saturated ({})", .0.as_str())]
    Shed(Shed),
}

/// Why a request got no classifier decision (`limits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shed {
    /// More requests were waiting than `limits.classifier_queue`.
    QueueFull,
    /// The decision took longer than `limits.classify_timeout_ms`.
    Timeout,
}

impl Shed {
    pub fn as_str(self) -> &'static str {
        match self {
            Shed::QueueFull => "queue_full",
            Shed::Timeout => "timeout",
        }
    }
}

/// Names accepted by [`build`].
pub const AVAILABLE: &[&str] = &["moe", "embedding", "lexical"];

/// One task a request can be routed to, as the classifier sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RouteSpec {
    pub name: String,
    pub description: String,
}

/// A classifier's verdict: per-route scores and the winner.
#[derive(Debug, Clone, PartialEq)]
pub struct Classification {
    /// Index into the route list, or `None` for `other`.
    pub route: Option<usize>,
    /// One score per route, in route order.
    pub scores: Vec<f32>,
}

/// Turns route descriptions into a [`RouteIndex`]. Implementations:
/// [`Bm25Classifier`] now; the burn encoder and MoE head later.
pub trait Classifier: Send + Sync + std::fmt::Debug {
    /// Short name used in metrics, `/v1/route` and `switchyard eval`.
    fn name(&self) -> &'static str;

    /// Analyses a route set once, so each request only analyses its own text.
    fn prepare(&self, routes: &[RouteSpec]) -> Result<Arc<dyn RouteIndex>, ClassifierError>;
}

/// A prepared route set that scores conversations. Synchronous and CPU-bound
/// by design: callers run it off the async runtime.
pub trait RouteIndex: Send + Sync + std::fmt::Debug {
    fn routes(&self) -> &[RouteSpec];
    fn classify(&self, conversation: &Conversation) -> Result<Classification, ClassifierError>;
}

/// What it takes to build a classifier.
#[derive(Debug, Clone)]
pub struct ClassifierSpec {
    /// `moe`, `embedding`, `lexical` (or `bm25`).
    pub kind: String,
    /// The classifier's own default when `None`.
    pub other_threshold: Option<f32>,
    /// For classifiers that use the sentence encoder.
    pub encoder: EncoderSettings,
    /// Token budget of the turns that make up the context.
    pub context_tokens: usize,
    /// The trained head of the `moe` classifier.
    pub head_dir: std::path::PathBuf,
}

impl ClassifierSpec {
    /// A spec with default encoder settings.
    pub fn new(kind: &str, other_threshold: Option<f32>) -> ClassifierSpec {
        ClassifierSpec {
            kind: kind.to_owned(),
            other_threshold,
            encoder: EncoderSettings::default(),
            context_tokens: embedding::DEFAULT_CONTEXT_TOKENS,
            head_dir: MoeClassifier::default_dir(),
        }
    }

    pub fn from_config(config: &ClassifierConfig) -> ClassifierSpec {
        ClassifierSpec {
            kind: config.kind.clone(),
            other_threshold: config.other_threshold,
            encoder: EncoderSettings {
                model_dir: config.model_dir.clone(),
                device: match config.backend {
                    EncoderBackend::Cpu => Device::Cpu,
                    EncoderBackend::Cuda => Device::Cuda,
                },
                max_batch: config.max_batch,
                max_wait: config.max_wait,
                cache_entries: config.cache_entries,
                max_message_tokens: config.max_message_tokens,
                precision: match config.precision {
                    EncoderPrecision::Int8 => Precision::Int8,
                    EncoderPrecision::F32 => Precision::F32,
                },
            },
            context_tokens: config.context_tokens,
            head_dir: config.head_dir.clone(),
        }
    }
}

/// Builds the classifier a spec names; the encoder is loaded (and its files
/// checked) only for classifiers that use it.
pub fn build(spec: &ClassifierSpec) -> Result<Arc<dyn Classifier>, ClassifierError> {
    build_sharing(spec, &mut None)
}

/// [`build`], reusing the encoder in `encoder` if one is loaded already (and
/// keeping the one it loads there): several classifiers over one encoder
/// share its weights and its embedding cache, as `switchyard eval` does
/// when it compares classifiers.
pub fn build_sharing(
    spec: &ClassifierSpec,
    encoder: &mut Option<Arc<Encoder>>,
) -> Result<Arc<dyn Classifier>, ClassifierError> {
    let mut shared = || -> Result<Arc<Encoder>, ClassifierError> {
        if let Some(encoder) = encoder {
            return Ok(Arc::clone(encoder));
        }
        let loaded = Arc::new(Encoder::load(&spec.encoder)?);
        *encoder = Some(Arc::clone(&loaded));
        Ok(loaded)
    };
    match spec.kind.as_str() {
        // `bm25` names the same baseline by its algorithm.
        "lexical" | "bm25" => Ok(Arc::new(Bm25Classifier::new(
            spec.other_threshold.unwrap_or(bm25::DEFAULT_OTHER_THRESHOLD),
        ))),
        "embedding" => {
            let encoder = shared()?;
            Ok(Arc::new(EmbeddingClassifier::new(
                encoder,
                spec.other_threshold.unwrap_or(embedding::DEFAULT_OTHER_THRESHOLD),
                spec.context_tokens,
            )))
        }
        "moe" => {
            let encoder = shared()?;
            Ok(Arc::new(MoeClassifier::load(
                encoder,
                &spec.head_dir,
                spec.other_threshold.unwrap_or(0.0),
                spec.context_tokens,
            )?))
        }
        other => Err(ClassifierError::UnknownClassifier(other.to_owned())),
    }
}

/// A router's prepared route set, and the digest that names it.
#[derive(Debug, Clone)]
struct Prepared {
    index: Arc<dyn RouteIndex>,
    digest: String,
}

/// The prepared index of every router in a configuration.
#[derive(Debug, Clone)]
pub struct RouterIndexes {
    classifier: Arc<dyn Classifier>,
    by_router: HashMap<String, Prepared>,
}

/// The route specs of a configured router, in declared order.
pub fn route_specs(router: &switchyard_config::Router) -> Vec<RouteSpec> {
    router
        .tasks
        .iter()
        .map(|task| RouteSpec {
            name: task.name.clone(),
            description: task.description.clone(),
        })
        .collect()
}

/// SHA-256 (hex) of a route set's names and descriptions: what a prepared
/// index depends on, so equal digests can share one preparation.
pub fn routes_digest(routes: &[RouteSpec]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for route in routes {
        // Lengths first, so no two different lists hash the same bytes.
        hasher.update((route.name.len() as u64).to_le_bytes());
        hasher.update(route.name.as_bytes());
        hasher.update((route.description.len() as u64).to_le_bytes());
        hasher.update(route.description.as_bytes());
    }
    hex::encode(hasher.finalize())
}

impl RouterIndexes {
    pub fn prepare(config: &Config, classifier: Arc<dyn Classifier>) -> Result<Self, ClassifierError> {
        RouterIndexes {
            classifier,
            by_router: HashMap::new(),
        }
        .with_routers(&config.routers)
    }

    /// The indexes for `routers`, preparing only the route sets this one
    /// has not prepared already: a change to one router encodes that
    /// router's descriptions, not every router's.
    pub fn with_routers(&self, routers: &[switchyard_config::Router]) -> Result<Self, ClassifierError> {
        let known: HashMap<&str, &Prepared> = self
            .by_router
            .values()
            .map(|prepared| (prepared.digest.as_str(), prepared))
            .collect();
        let mut by_router = HashMap::with_capacity(routers.len());
        for router in routers {
            let routes = route_specs(router);
            let digest = routes_digest(&routes);
            let prepared = match known.get(digest.as_str()) {
                Some(prepared) => (*prepared).clone(),
                None => Prepared {
                    index: self.classifier.prepare(&routes)?,
                    digest,
                },
            };
            by_router.insert(router.name.clone(), prepared);
        }
        Ok(RouterIndexes {
            classifier: Arc::clone(&self.classifier),
            by_router,
        })
    }

    /// The classifier these indexes were prepared with.
    pub fn classifier(&self) -> &Arc<dyn Classifier> {
        &self.classifier
    }

    /// A router's routes and their digest (what a remote classifier needs).
    pub fn route_set(&self, router: &str) -> Option<(&[RouteSpec], &str)> {
        self.by_router
            .get(router)
            .map(|prepared| (prepared.index.routes(), prepared.digest.as_str()))
    }

    /// Classifies a conversation for a router. Blocking: CPU work.
    pub fn decide(
        &self,
        router: &str,
        conversation: &Conversation,
    ) -> Result<RouteDecision, ClassifierError> {
        let prepared = self
            .by_router
            .get(router)
            .ok_or_else(|| ClassifierError::UnknownRouter(router.to_owned()))?;
        decide_with(router, self.classifier.name(), prepared.index.as_ref(), conversation)
    }
}

/// Classifies a conversation against one prepared route set. Blocking.
pub fn decide_with(
    router: &str,
    classifier: &str,
    index: &dyn RouteIndex,
    conversation: &Conversation,
) -> Result<RouteDecision, ClassifierError> {
    let started = std::time::Instant::now();
    let classification = index.classify(conversation)?;
    Ok(to_decision(router, classifier, index.routes(), classification, started.elapsed()))
}

/// Names a classification's winner and pairs each score with its route.
pub fn to_decision(
    router: &str,
    classifier: &str,
    routes: &[RouteSpec],
    classification: Classification,
    elapsed: std::time::Duration,
) -> RouteDecision {
    let route = classification
        .route
        .and_then(|index| routes.get(index))
        .map_or_else(|| OTHER_ROUTE.to_owned(), |spec| spec.name.clone());
    RouteDecision {
        router: router.to_owned(),
        route,
        scores: routes
            .iter()
            .map(|spec| spec.name.clone())
            .zip(classification.scores)
            .collect(),
        classifier: classifier.to_owned(),
        elapsed,
    }
}
