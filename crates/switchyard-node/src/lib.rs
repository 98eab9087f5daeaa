//! The composition root: one function that starts a node.
//!
//! [`start_node`] takes a validated config, starts each actor with the
//! handles of the ones it talks to, binds the HTTP listener and returns a
//! [`NodeHandle`]. Binaries and tests start nodes the same way; nothing
//! else in the workspace wires actors together.
//!
//! Start order follows the dependencies: metrics collector (publishes the
//! prices, latency and cooldowns the ranker reads) → ranker → affinity store → classifier pool →
//! ingress. Shutdown runs the other way, ingress first, so requests in
//! flight finish while every stage they need is still up.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use ractor::{Actor, ActorRef};
use switchyard_affinity::{AffinityMsg, AffinityStoreActor};
use switchyard_cluster::{ClusterNode, ClusterSettings, Member, ReplicatedStore};
use switchyard_classifier::remote::{ClassifierService, Registry, RegistryService, RemoteSettings, Spread};
use switchyard_classifier::{ClassifierPool, RouterIndexes, SharedIndexes};
use switchyard_config::Config;
use switchyard_dispatch::Dispatcher;
use switchyard_ingress::{IngressActor, IngressArgs, IngressMsg, Pipeline};
use switchyard_metrics::{MetricsArgs, MetricsCollector, MetricsMsg, initial_signals};
use switchyard_mock::{MockConfig, MockServer};
use switchyard_ranker::{RankerActor, RankerArgs, RankerMsg};
use switchyard_types::shared_signals;
use tokio::sync::watch;
use tokio::task::JoinHandle;

mod classifier_node;
mod routers;

/// Why a node could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the demo upstream: {0}")]
    Demo(std::io::Error),
    #[error("cannot start the {actor} actor: {message}")]
    Actor {
        actor: &'static str,
        message: String,
    },
    #[error(transparent)]
    Classifier(#[from] switchyard_classifier::ClassifierError),
    #[error(transparent)]
    Dispatch(#[from] switchyard_dispatch::DispatchError),
    #[error(transparent)]
    Cluster(#[from] switchyard_cluster::ClusterError),
}

fn actor_error(actor: &'static str) -> impl FnOnce(ractor::SpawnErr) -> NodeError {
    move |err| NodeError::Actor {
        actor,
        message: err.to_string(),
    }
}

/// A running node.
#[derive(Debug)]
pub struct NodeHandle {
    addr: SocketAddr,
    config: Arc<Config>,
    /// The HTTP server (the public API on ingress nodes).
    ingress: ActorRef<IngressMsg>,
    classifier: ClassifierPool,
    metrics: ActorRef<MetricsMsg>,
    /// Ranker, affinity store and raft: voter nodes only.
    stages: Option<Stages>,
    /// A classifier-only node's gRPC server and registration.
    classifier_node: Option<classifier_node::Running>,
    /// Actor tasks, awaited at shutdown so nothing outlives the node.
    tasks: Vec<JoinHandle<()>>,
    /// The built-in demo upstream, when no provider has a key.
    demo: Option<MockServer>,
}

/// The stages a voter node runs beside the classifier.
#[derive(Debug)]
struct Stages {
    ranker: ActorRef<RankerMsg>,
    affinity: ActorRef<AffinityMsg>,
    cluster: ClusterNode,
    decisions: Option<ActorRef<switchyard_metrics::DecisionLogMsg>>,
}

/// Starts a node: actors, HTTP listener and, in demo mode, the built-in
/// demo upstream. A node whose only role is `classifier` starts just its
/// workers, their gRPC service and a small HTTP server.
pub async fn start_node(mut config: Config) -> Result<NodeHandle, NodeError> {
    if config.cluster.roles.classifier_only() {
        return classifier_node::start(config).await;
    }
    std::fs::create_dir_all(&config.server.data_dir).map_err(|source| NodeError::DataDir {
        path: config.server.data_dir.display().to_string(),
        source,
    })?;
    let demo = if config.demo_active() {
        let server = MockServer::start(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            MockConfig {
                ttft: Duration::from_millis(80),
                tokens_per_sec: 40.0,
                label: Some("demo".to_owned()),
                ..MockConfig::default()
            },
        )
        .await
        .map_err(NodeError::Demo)?;
        config.use_demo_upstream(&server.base_url());
        tracing::warn!(
            upstream = %server.base_url(),
            "demo mode: no provider API key is set (OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY, TOGETHER_API_KEY, ...); built-in demo upstreams answer every model"
        );
        Some(server)
    } else {
        for provider in config.providers.iter().filter(|p| !p.available) {
            tracing::warn!(
                provider = %provider.name,
                env = provider.api_key_env.as_deref().unwrap_or(""),
                "provider has no API key; its models are skipped"
            );
        }
        None
    };
    let config = Arc::new(config);
    let live = switchyard_config::live((*config).clone());
    let roles = config.cluster.roles;
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .map_err(|source| NodeError::Bind {
            addr: config.server.listen,
            source,
        })?;

    let mut tasks = Vec::new();
    let signals = shared_signals(initial_signals(&config));
    let (metrics, task) = Actor::spawn(
        None,
        MetricsCollector,
        MetricsArgs {
            config: Arc::clone(&config),
            signals: Arc::clone(&signals),
        },
    )
    .await
    .map_err(actor_error("metrics collector"))?;
    tasks.push(task);
    let (ranker, task) = Actor::spawn(
        None,
        RankerActor,
        RankerArgs {
            config: Arc::clone(&live),
            signals: Arc::clone(&signals),
        },
    )
    .await
    .map_err(actor_error("ranker"))?;
    tasks.push(task);

    // The classifier comes before raft: its gRPC service is served beside
    // raft's. Without the `classifier` role the node keeps a small pool of
    // the fallback kind, for when no classifier node answers in time.
    let (indexes, classifier, pool_workers) = if roles.classifier {
        let spec = switchyard_classifier::ClassifierSpec::from_config(&config.classifier);
        let (indexes, classifier) = prepare_indexes(spec, &config).await?;
        (indexes, classifier, config.classifier.workers)
    } else {
        let mut spec = switchyard_classifier::ClassifierSpec::from_config(&config.classifier);
        spec.kind.clone_from(&config.classifier.remote.fallback);
        spec.other_threshold = None;
        let (indexes, classifier) = prepare_indexes(spec, &config).await?;
        (indexes, classifier, 1)
    };
    let (pool, task) = switchyard_classifier::spawn_pool(Arc::clone(&indexes), pool_workers).await?;
    tasks.push(task);
    let registry = Arc::new(Registry::new(config.classifier.remote.max_batch, peer_secret(&config)));
    let cluster_shared: Arc<std::sync::OnceLock<Arc<switchyard_cluster::Shared>>> = Arc::default();
    let members = {
        let cluster_shared = Arc::clone(&cluster_shared);
        Arc::new(move || {
            cluster_shared
                .get()
                .map(|shared| shared.status().members.into_iter().map(|member| member.raft_addr).collect())
                .unwrap_or_default()
        })
    };
    let mut services = tonic::service::Routes::default().add_service(
        switchyard_classifier::remote::proto::registry_server::RegistryServer::new(RegistryService::new(
            Arc::clone(&registry),
            members,
        )),
    );
    if roles.classifier {
        services = services.add_service(switchyard_classifier::remote::proto::classifier_server::ClassifierServer::new(
            ClassifierService::new(pool.clone(), classifier),
        ));
    }

    // A single node is a cluster of one: the same replicated store, so
    // pins survive a restart and a node can later grow into a cluster.
    let addr = listener.local_addr().map_err(|source| NodeError::Bind {
        addr: config.server.listen,
        source,
    })?;
    let cluster = ClusterNode::start(cluster_settings(&config, addr), services).await?;
    let _ = cluster_shared.set(cluster.shared());
    tasks.push(tokio::spawn(publish_cluster_gauges(cluster.shared(), metrics.clone())));
    let (affinity, task) = Actor::spawn(
        None,
        AffinityStoreActor::<ReplicatedStore>::default(),
        (ReplicatedStore::new(cluster.shared()), config.affinity.ttl),
    )
    .await
    .map_err(actor_error("affinity store"))?;
    tasks.push(task);

    // Routers made through the admin API: in force once applied from the log.
    let (routers_applied, routers_seen) = watch::channel(0);
    tasks.push(tokio::spawn(routers::follow(
        cluster.shared(),
        Arc::clone(&live),
        Arc::clone(&indexes),
        routers_applied,
    )));
    let spread = Spread::new(
        pool.clone(),
        pool_workers,
        roles.classifier,
        indexes,
        registry,
        RemoteSettings::from_config(&config.classifier.remote),
        switchyard_classifier::remote::LocalBounds::from_config(&config.limits),
    );

    let decisions = if config.decisions.enabled {
        let (log, task) = Actor::spawn(
            None,
            switchyard_metrics::DecisionLog,
            switchyard_metrics::DecisionLogArgs {
                dir: config.decisions_dir(),
                max_bytes: config.decisions.max_bytes,
                segments: config.decisions.segments,
            },
        )
        .await
        .map_err(actor_error("decision log"))?;
        tasks.push(task);
        Some(log)
    } else {
        None
    };
    let pipeline = Arc::new(Pipeline {
        decisions: decisions.clone(),
        config: Arc::clone(&live),
        classifier: spread,
        ranker: ranker.clone(),
        affinity: affinity.clone(),
        metrics: metrics.clone(),
        dispatcher: Dispatcher::new(&config)?,
        signals,
        cluster: cluster.shared(),
        admin: config.auth.admin,
        routers_applied: routers_seen,
        ingress: roles.ingress,
    });
    let (ingress, task) = Actor::spawn(
        None,
        IngressActor,
        IngressArgs {
            listener,
            app: switchyard_ingress::http::router(pipeline),
            grace: config.server.shutdown_grace,
            header_timeout: config.limits.header_timeout,
        },
    )
    .await
    .map_err(actor_error("ingress"))?;
    tasks.push(task);
    tracing::info!(
        %addr,
        roles = ?roles.names(),
        routers = config.routers.len(),
        models = config.models.len(),
        classifier = %config.classifier.kind,
        demo = demo.is_some(),
        "switchyard node ready"
    );
    Ok(NodeHandle {
        addr,
        config,
        ingress,
        classifier: pool,
        metrics,
        stages: Some(Stages {
            ranker,
            affinity,
            cluster,
            decisions,
        }),
        classifier_node: None,
        tasks,
        demo,
    })
}

/// Loads a classifier and prepares every router's index with it. Loading
/// the encoder reads and checks ~90 MB, and preparing encodes every route
/// description: blocking work, kept off the runtime.
async fn prepare_indexes(
    spec: switchyard_classifier::ClassifierSpec,
    config: &Arc<Config>,
) -> Result<(SharedIndexes, Arc<dyn switchyard_classifier::Classifier>), NodeError> {
    let config = Arc::clone(config);
    let (indexes, classifier) = tokio::task::spawn_blocking(move || {
        let classifier = switchyard_classifier::build(&spec)?;
        let indexes = RouterIndexes::prepare(&config, Arc::clone(&classifier))?;
        Ok::<_, switchyard_classifier::ClassifierError>((indexes, classifier))
    })
    .await
    .map_err(|err| NodeError::Actor {
        actor: "classifier",
        message: err.to_string(),
    })??;
    Ok((Arc::new(ArcSwap::from_pointee(indexes)), classifier))
}

/// The cluster settings for this node: its HTTP address is the one it bound.
fn cluster_settings(config: &Config, http_addr: SocketAddr) -> ClusterSettings {
    let cluster = &config.cluster;
    ClusterSettings {
        node_id: cluster.node_id,
        listen: cluster.listen,
        advertise: cluster.advertise.clone(),
        http_addr: cluster.http_advertise.clone().unwrap_or_else(|| http_addr.to_string()),
        peers: cluster
            .peers
            .iter()
            .map(|peer| {
                (
                    peer.id,
                    Member {
                        raft_addr: peer.raft.clone(),
                        http_addr: peer.http.clone(),
                    },
                )
            })
            .collect(),
        bootstrap: cluster.bootstrap,
        data_dir: config.server.data_dir.clone(),
        max_sessions: config.affinity.max_sessions,
        heartbeat: cluster.heartbeat,
        election_timeout: (cluster.election_timeout_min, cluster.election_timeout_max),
        snapshot_every: cluster.snapshot_every,
        secret: peer_secret(config),
    }
}

/// The cluster's shared secret as the gRPC links use it. Warns when the
/// internal services are reachable from other machines without one.
pub(crate) fn peer_secret(config: &Config) -> switchyard_cluster::PeerSecret {
    match &config.auth.cluster_secret {
        // Validation admits only secrets that can travel as gRPC metadata.
        Some(secret) => switchyard_cluster::PeerSecret::new(secret.expose()).unwrap_or_default(),
        None => {
            if !config.cluster.listen.ip().is_loopback() {
                tracing::warn!(
                    listen = %config.cluster.listen,
                    "the cluster gRPC services listen beyond loopback without a shared secret: set auth.cluster_secret_env"
                );
            }
            switchyard_cluster::PeerSecret::none()
        }
    }
}

/// Keeps the `cluster_*` gauges in step with raft's own metrics; ends when
/// raft stops.
async fn publish_cluster_gauges(shared: Arc<switchyard_cluster::Shared>, metrics: ActorRef<MetricsMsg>) {
    let mut changes = shared.metrics_watch();
    loop {
        let status = shared.status();
        let voters = status.members.iter().filter(|member| member.voter).count() as u64;
        let gauges = switchyard_metrics::ClusterGauges {
            node_id: status.id,
            is_leader: status.role == "leader",
            leader: status.leader.unwrap_or(0),
            term: status.term,
            last_log_index: status.last_log_index,
            last_applied: status.last_applied,
            voters,
            learners: status.members.len() as u64 - voters,
            pins: status.pins,
        };
        if metrics.cast(MetricsMsg::Cluster(gauges)).is_err() || changes.changed().await.is_err() {
            return;
        }
    }
}

impl NodeHandle {
    /// The HTTP address the node listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://{addr}`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The configuration the node runs (with demo upstreams applied).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// This node's cluster view (`None` on a classifier-only node).
    pub fn cluster_status(&self) -> Option<switchyard_cluster::ClusterStatus> {
        self.stages.as_ref().map(|stages| stages.cluster.shared().status())
    }

    /// The gRPC address of this node's internal services.
    pub fn raft_addr(&self) -> &str {
        match (&self.stages, &self.classifier_node) {
            (Some(stages), _) => stages.cluster.raft_addr(),
            (None, Some(node)) => &node.grpc_addr,
            (None, None) => "",
        }
    }

    /// The built-in demo upstream, when the node runs in demo mode.
    pub fn demo_upstream(&self) -> Option<&MockServer> {
        self.demo.as_ref()
    }

    /// Stops the node: the ingress drains in-flight requests (up to the
    /// grace period) before the stages behind it stop. Returns whether every
    /// in-flight request finished within the grace period.
    pub async fn shutdown(self) -> bool {
        let drained = match self
            .ingress
            .call(IngressMsg::Drain, Some(self.config.server.shutdown_grace + Duration::from_secs(5)))
            .await
        {
            Ok(ractor::rpc::CallResult::Success(drained)) => drained,
            _ => false,
        };
        self.ingress.stop(None);
        if let Some(node) = self.classifier_node {
            // Stop registering first: ingress nodes forget this node
            // within three periods and classify elsewhere meanwhile.
            node.shutdown().await;
        }
        self.classifier.stop(None);
        if let Some(stages) = self.stages {
            stages.ranker.stop(None);
            stages.affinity.stop(None);
            // Stopping flushes what the log still buffers.
            if let Some(log) = &stages.decisions {
                log.stop(None);
            }
            // Raft stops after the affinity store, its only writer; the
            // gauge and router tasks end with it.
            stages.cluster.shutdown().await;
        }
        self.metrics.stop(None);
        for task in self.tasks {
            let _ = task.await;
        }
        if let Some(demo) = self.demo {
            demo.shutdown().await;
        }
        tracing::info!(drained, "switchyard node stopped");
        drained
    }
}

/// Runs a node until `shutdown` resolves, then stops it gracefully.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), NodeError> {
    let node = start_node(config).await?;
    shutdown.await;
    tracing::info!("shutting down: finishing in-flight requests");
    node.shutdown().await;
    Ok(())
}

/// The process environment as a map, for [`Config`] loading.
pub fn process_env() -> HashMap<String, String> {
    std::env::vars().collect()
}
