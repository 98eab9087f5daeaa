//! The `Ingress` actor: owns the HTTP server's lifecycle.
//!
//! Requests themselves run as concurrent tasks of the server (an actor
//! mailbox would serialise them); the actor binds, serves, and on `Drain`
//! stops accepting, lets in-flight requests finish (streams included) up to
//! the grace period, and only then replies.

use std::net::SocketAddr;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;


/// Messages the ingress accepts.
#[derive(Debug)]
pub enum IngressMsg {
    /// The address the HTTP server is bound to (useful with port 0).
    LocalAddr(RpcReplyPort<SocketAddr>),
    /// Stop accepting connections, let in-flight requests finish for up to
    /// the grace period, then reply `true` (all finished) or `false`.
    Drain(RpcReplyPort<bool>),
}

/// What the ingress starts with.
#[derive(Debug)]
pub struct IngressArgs {
    /// Bound by the composition root, so bind errors surface at start.
    pub listener: TcpListener,
    /// The routes served: [`crate::http::router`] on an ingress or voter
    /// node, [`crate::classifier_node::router`] on a classifier node.
    pub app: axum::Router,
    pub grace: Duration,
}

#[derive(Debug)]
pub struct IngressState {
    addr: SocketAddr,
    stop: CancellationToken,
    server: Option<JoinHandle<std::io::Result<()>>>,
    grace: Duration,
}

#[derive(Debug, Default)]
pub struct IngressActor;

impl Actor for IngressActor {
    type Msg = IngressMsg;
    type State = IngressState;
    type Arguments = IngressArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<IngressMsg>,
        args: IngressArgs,
    ) -> Result<IngressState, ActorProcessingErr> {
        let addr = args.listener.local_addr()?;
        let stop = CancellationToken::new();
        let app = args.app;
        let shutdown = stop.clone();
        let server = tokio::spawn(async move {
            // Peer addresses let the admin endpoints tell loopback callers apart.
            axum::serve(args.listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await
        });
        tracing::info!(%addr, "listening for HTTP");
        Ok(IngressState {
            addr,
            stop,
            server: Some(server),
            grace: args.grace,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<IngressMsg>,
        message: IngressMsg,
        state: &mut IngressState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            IngressMsg::LocalAddr(reply) => {
                let _ = reply.send(state.addr);
            }
            IngressMsg::Drain(reply) => {
                state.stop.cancel();
                let drained = match state.server.take() {
                    None => true,
                    Some(mut server) => {
                        match tokio::time::timeout(state.grace, &mut server).await {
                            Ok(_) => true,
                            Err(_) => {
                                tracing::warn!(grace = ?state.grace, "in-flight requests outlived the grace period; closing them");
                                server.abort();
                                false
                            }
                        }
                    }
                };
                let _ = reply.send(drained);
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<IngressMsg>,
        state: &mut IngressState,
    ) -> Result<(), ActorProcessingErr> {
        state.stop.cancel();
        if let Some(server) = state.server.take() {
            server.abort();
        }
        Ok(())
    }
}
