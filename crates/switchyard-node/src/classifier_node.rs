//! A node whose only role is `classifier`: its worker pool, served over
//! gRPC to the ingress nodes, a registration loop that keeps it known to
//! them, and a small HTTP server (health, readiness, metrics, pool size).
//! No raft, no public API.

use std::net::SocketAddr;
use std::sync::Arc;

use ractor::Actor;
use switchyard_classifier::remote::{ClassifierService, RemoteSettings, proto::classifier_server::ClassifierServer, register};
use switchyard_config::Config;
use switchyard_ingress::{IngressActor, IngressArgs};
use switchyard_metrics::{MetricsArgs, MetricsCollector, initial_signals};
use switchyard_types::shared_signals;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{NodeError, NodeHandle, actor_error, prepare_indexes};

/// The gRPC server and registration of a running classifier node.
#[derive(Debug)]
pub(crate) struct Running {
    pub(crate) grpc_addr: String,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
    registration: JoinHandle<()>,
}

impl Running {
    pub(crate) async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.registration.await;
        let _ = self.server.await;
    }
}

pub(crate) async fn start(config: Config) -> Result<NodeHandle, NodeError> {
    let config = Arc::new(config);
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .map_err(|source| NodeError::Bind {
            addr: config.server.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| NodeError::Bind {
        addr: config.server.listen,
        source,
    })?;
    let mut tasks = Vec::new();
    let (metrics, task) = Actor::spawn(
        None,
        MetricsCollector,
        MetricsArgs {
            config: Arc::clone(&config),
            signals: shared_signals(initial_signals(&config)),
        },
    )
    .await
    .map_err(actor_error("metrics collector"))?;
    tasks.push(task);
    let spec = switchyard_classifier::ClassifierSpec::from_config(&config.classifier);
    let (indexes, classifier) = prepare_indexes(spec, &config).await?;
    let (pool, task) = switchyard_classifier::spawn_pool(indexes, config.classifier.workers).await?;
    tasks.push(task);
    let kind = classifier.name();

    let grpc = tokio::net::TcpListener::bind(config.cluster.listen)
        .await
        .map_err(|source| NodeError::Bind {
            addr: config.cluster.listen,
            source,
        })?;
    let bound: SocketAddr = grpc.local_addr().map_err(|source| NodeError::Bind {
        addr: config.cluster.listen,
        source,
    })?;
    let grpc_addr = config.cluster.advertise.clone().unwrap_or_else(|| bound.to_string());
    let (stop, mut stopped) = watch::channel(false);
    let service = ClassifierServer::new(ClassifierService::new(pool.clone(), classifier));
    let secret = crate::peer_secret(&config);
    let server = tokio::spawn(async move {
        let served = tonic::transport::Server::builder()
            .layer(switchyard_cluster::peer_auth::verify_layer(secret))
            .add_service(service)
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(grpc).with_nodelay(Some(true)),
                async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                },
            )
            .await;
        if let Err(err) = served {
            tracing::error!(error = %err, "classifier gRPC server stopped");
        }
    });
    let (registered_tx, registered) = watch::channel(0);
    let settings = RemoteSettings::from_config(&config.classifier.remote);
    let registration = tokio::spawn(register::run(
        register::Announce {
            addr: grpc_addr.clone(),
            classifier: kind.to_owned(),
            seeds: config.cluster.seeds.clone(),
            every: settings.register_every,
            secret: crate::peer_secret(&config),
        },
        pool.clone(),
        stop.subscribe(),
        registered_tx,
    ));

    let node = Arc::new(switchyard_ingress::classifier_node::ClassifierNode {
        pool: pool.clone(),
        kind,
        addr: grpc_addr.clone(),
        metrics: metrics.clone(),
        admin: config.auth.admin,
        registered,
    });
    let (ingress, task) = Actor::spawn(
        None,
        IngressActor,
        IngressArgs {
            listener,
            app: switchyard_ingress::classifier_node::router(node),
            grace: config.server.shutdown_grace,
            header_timeout: config.limits.header_timeout,
        },
    )
    .await
    .map_err(actor_error("http"))?;
    tasks.push(task);
    tracing::info!(
        %addr,
        grpc = %grpc_addr,
        classifier = kind,
        workers = config.classifier.workers,
        seeds = ?config.cluster.seeds,
        "switchyard classifier node ready"
    );
    Ok(NodeHandle {
        addr,
        config,
        ingress,
        classifier: pool,
        metrics,
        stages: None,
        classifier_node: Some(Running {
            grpc_addr,
            stop,
            server,
            registration,
        }),
        tasks,
        demo: None,
    })
}
