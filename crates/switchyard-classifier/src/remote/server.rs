//! The gRPC services: `Classifier` (a node's workers, for ingress nodes)
//! and `Registry` (where classifier nodes announce themselves).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::OnceCell;
use tonic::{Request, Response, Status};

use super::{Registry, conversation_from_proto, decision_to_proto, proto};
use crate::actor::{ClassifierPool, classify_with};
use crate::{Classifier, RouteIndex, RouteSpec, routes_digest};

/// Route sets a classifier node keeps prepared; past this, the oldest
/// preparation is dropped (it is made again if asked for).
pub const PREPARED_BOUND: usize = 256;

type Slot = Arc<OnceCell<Arc<dyn RouteIndex>>>;

/// A node's classifier workers, served to ingress nodes.
pub struct ClassifierService {
    pool: ClassifierPool,
    classifier: Arc<dyn Classifier>,
    /// Route sets by digest, each prepared once however many calls ask for
    /// it at the same time; with the insertion order, for the bound.
    prepared: Mutex<(HashMap<String, Slot>, std::collections::VecDeque<String>)>,
}

impl std::fmt::Debug for ClassifierService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClassifierService")
            .field("classifier", &self.classifier.name())
            .finish_non_exhaustive()
    }
}

impl ClassifierService {
    pub fn new(pool: ClassifierPool, classifier: Arc<dyn Classifier>) -> ClassifierService {
        ClassifierService {
            pool,
            classifier,
            prepared: Mutex::new((HashMap::new(), std::collections::VecDeque::new())),
        }
    }

    fn slot(&self, digest: &str) -> Slot {
        let mut guard = self.prepared.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (slots, order) = &mut *guard;
        if let Some(slot) = slots.get(digest) {
            return Arc::clone(slot);
        }
        if slots.len() >= PREPARED_BOUND
            && let Some(oldest) = order.pop_front()
        {
            slots.remove(&oldest);
        }
        let slot = Slot::default();
        slots.insert(digest.to_owned(), Arc::clone(&slot));
        order.push_back(digest.to_owned());
        slot
    }

    /// The prepared route set of an item, preparing it on first use.
    async fn index(&self, digest: &str, routes: Vec<RouteSpec>) -> Result<Arc<dyn RouteIndex>, String> {
        if routes.is_empty() {
            return Err("the item carries no routes".to_owned());
        }
        // The digest names the preparation; one that does not match its
        // routes would poison the cache for every later caller.
        if routes_digest(&routes) != digest {
            return Err("routes_digest does not match the routes".to_owned());
        }
        let slot = self.slot(digest);
        let classifier = Arc::clone(&self.classifier);
        slot.get_or_try_init(|| async move {
            tokio::task::spawn_blocking(move || classifier.prepare(&routes))
                .await
                .map_err(|err| err.to_string())?
                .map_err(|err| err.to_string())
        })
        .await
        .map(Arc::clone)
    }

    async fn one(&self, item: proto::ClassifyItem) -> proto::ClassifyResult {
        use proto::classify_result::Outcome;
        let routes = item
            .routes
            .into_iter()
            .map(|route| RouteSpec {
                name: route.name,
                description: route.description,
            })
            .collect();
        let outcome = async {
            let index = self.index(&item.routes_digest, routes).await?;
            let conversation = conversation_from_proto(item.turns)?;
            classify_with(&self.pool, &item.router, index, self.classifier.name(), conversation)
                .await
                .map_err(|err| err.to_string())
        }
        .await;
        proto::ClassifyResult {
            outcome: Some(match outcome {
                Ok(decision) => Outcome::Decision(decision_to_proto(&decision)),
                Err(error) => Outcome::Error(error),
            }),
        }
    }
}

#[tonic::async_trait]
impl proto::classifier_server::Classifier for ClassifierService {
    async fn classify(&self, request: Request<proto::ClassifyBatch>) -> Result<Response<proto::ClassifyResults>, Status> {
        let items = request.into_inner().items;
        // The items run side by side; the encoder batches their passes.
        let results = futures_util::future::join_all(items.into_iter().map(|item| self.one(item))).await;
        Ok(Response::new(proto::ClassifyResults { results }))
    }
}

/// The cluster's nodes, as a registering classifier node should reach them.
pub type Members = Arc<dyn Fn() -> Vec<String> + Send + Sync>;

/// Where classifier nodes register with a voter.
pub struct RegistryService {
    registry: Arc<Registry>,
    members: Members,
}

impl std::fmt::Debug for RegistryService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryService").field("registry", &self.registry).finish_non_exhaustive()
    }
}

impl RegistryService {
    pub fn new(registry: Arc<Registry>, members: Members) -> RegistryService {
        RegistryService { registry, members }
    }
}

#[tonic::async_trait]
impl proto::registry_server::Registry for RegistryService {
    async fn register(&self, request: Request<proto::Registration>) -> Result<Response<proto::RegisterReply>, Status> {
        let registration = request.into_inner();
        if registration.addr.trim().is_empty() || !registration.addr.contains(':') {
            return Err(Status::invalid_argument("addr must be a host:port address"));
        }
        self.registry
            .register(&registration, Instant::now())
            .map_err(Status::invalid_argument)?;
        Ok(Response::new(proto::RegisterReply { nodes: (self.members)() }))
    }
}
