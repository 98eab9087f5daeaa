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
use switchyard_classifier::{ClassifierPool, RouterIndexes};
use switchyard_config::Config;
use switchyard_dispatch::Dispatcher;
use switchyard_ingress::{IngressActor, IngressArgs, IngressMsg, Pipeline};
use switchyard_metrics::{MetricsArgs, MetricsCollector, MetricsMsg, initial_signals};
use switchyard_mock::{MockConfig, MockServer};
use switchyard_ranker::{RankerActor, RankerArgs, RankerMsg};
use switchyard_types::shared_signals;
use tokio::task::JoinHandle;

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
    ingress: ActorRef<IngressMsg>,
    classifier: ClassifierPool,
    ranker: ActorRef<RankerMsg>,
    affinity: ActorRef<AffinityMsg>,
    metrics: ActorRef<MetricsMsg>,
    cluster: ClusterNode,
    /// Actor tasks, awaited at shutdown so nothing outlives the node.
    tasks: Vec<JoinHandle<()>>,
    /// The built-in demo upstream, when no provider has a key.
    demo: Option<MockServer>,
}

/// Starts a node: actors, HTTP listener and, in demo mode, the built-in
/// demo upstream.
pub async fn start_node(mut config: Config) -> Result<NodeHandle, NodeError> {
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
            config: Arc::clone(&config),
            signals: Arc::clone(&signals),
        },
    )
    .await
    .map_err(actor_error("ranker"))?;
    tasks.push(task);
    // A single node is a cluster of one: the same replicated store, so
    // pins survive a restart and a node can later grow into a cluster.
    let addr = listener.local_addr().map_err(|source| NodeError::Bind {
        addr: config.server.listen,
        source,
    })?;
    let cluster = ClusterNode::start(cluster_settings(&config, addr)).await?;
    tasks.push(tokio::spawn(publish_cluster_gauges(cluster.shared(), metrics.clone())));
    let (affinity, task) = Actor::spawn(
        None,
        AffinityStoreActor::<ReplicatedStore>::default(),
        (ReplicatedStore::new(cluster.shared()), config.affinity.ttl),
    )
    .await
    .map_err(actor_error("affinity store"))?;
    tasks.push(task);
    // Loading the encoder reads and checks ~90 MB, and preparing encodes
    // every route description: blocking work, kept off the runtime.
    let spec = switchyard_classifier::ClassifierSpec::from_config(&config.classifier);
    let for_indexes = Arc::clone(&config);
    let indexes = tokio::task::spawn_blocking(move || {
        let classifier = switchyard_classifier::build(&spec)?;
        RouterIndexes::prepare(&for_indexes, classifier.as_ref())
    })
    .await
    .map_err(|err| NodeError::Actor {
        actor: "classifier",
        message: err.to_string(),
    })??;
    let (classifier, task) = switchyard_classifier::spawn_pool(
        Arc::new(ArcSwap::from_pointee(indexes)),
        config.classifier.workers,
    )
    .await?;
    tasks.push(task);

    let pipeline = Arc::new(Pipeline {
        config: Arc::clone(&config),
        classifier: classifier.clone(),
        ranker: ranker.clone(),
        affinity: affinity.clone(),
        metrics: metrics.clone(),
        dispatcher: Dispatcher::new(&config)?,
        signals,
        cluster: cluster.shared(),
        admin_token: config.cluster.admin_token.clone(),
    });
    let (ingress, task) = Actor::spawn(
        None,
        IngressActor,
        IngressArgs {
            listener,
            pipeline,
            grace: config.server.shutdown_grace,
        },
    )
    .await
    .map_err(actor_error("ingress"))?;
    tasks.push(task);
    tracing::info!(
        %addr,
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
        classifier,
        ranker,
        affinity,
        metrics,
        cluster,
        tasks,
        demo,
    })
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

    /// This node's cluster view.
    pub fn cluster_status(&self) -> switchyard_cluster::ClusterStatus {
        self.cluster.shared().status()
    }

    /// The gRPC address of this node's cluster services.
    pub fn raft_addr(&self) -> &str {
        self.cluster.raft_addr()
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
        self.classifier.stop(None);
        self.ranker.stop(None);
        self.affinity.stop(None);
        // Raft stops after the affinity store, its only writer; the gauge
        // task ends with it.
        self.cluster.shutdown().await;
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
