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


/// How long an HTTP/2 connection may go without answering a ping.
const H2_KEEPALIVE: Duration = Duration::from_secs(20);

/// Accepts connections until `stop`, then lets the open ones finish.
///
/// A hand-rolled loop rather than `axum::serve` because the latter runs
/// hyper without a timer, so nothing bounds how long a client may take to
/// send its headers: a few thousand slow clients (slowloris) would hold a
/// node's connections forever. Here hyper closes a connection whose
/// headers take longer than `header_timeout`, and HTTP/2 connections whose
/// peer stops answering pings.
async fn serve(listener: TcpListener, app: axum::Router, stop: CancellationToken, header_timeout: Duration) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(H2_KEEPALIVE))
        .keep_alive_timeout(H2_KEEPALIVE);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (socket, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors, say: back off rather than spin.
                    tracing::warn!(error = %err, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stop.cancelled() => break,
        };
        // No Nagle: SSE chunks are small and must go out as they come.
        let _ = socket.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            // The peer address lets the admin endpoints tell loopback callers apart.
            request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            let mut app = app.clone();
            tower_service::Service::call(&mut app, request.map(axum::body::Body::new))
        });
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(socket), service).into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, %peer, "connection closed with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

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
    /// How long a client may take to send a request's headers, and an idle
    /// connection may wait for its next request (`limits.header_timeout_secs`).
    pub header_timeout: Duration,
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
        let server = tokio::spawn(serve(args.listener, app, shutdown, args.header_timeout));
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
