//! The cluster, beside the request path: session pins replicated by
//! openraft, so `X-Model-Affinity` keeps working when a node dies and a
//! client may send each turn to any node.
//!
//! # Layout
//! - [`types`]: the pin commands the log carries, and the pure function
//!   that applies them (the state machine's logic).
//! - [`storage`]: the raft log, vote and snapshots in redb; the pin state
//!   machine in memory, rebuilt from the snapshot and the log at start.
//! - [`network`] / [`service`]: openraft over gRPC (`proto/`): the client
//!   side and the internal services a node serves its peers.
//! - [`peer_auth`]: the shared secret peers present on every gRPC call.
//! - [`node`]: one node's raft instance and server, pin writes from any node
//!   (forwarded to the leader), linearizable reads, status and membership.
//! - [`backend`]: [`ReplicatedStore`], the affinity backend over all that.

pub mod backend;
pub mod network;
pub mod node;
pub mod peer_auth;
pub mod service;
pub mod storage;
pub mod types;

pub use backend::ReplicatedStore;
pub use peer_auth::PeerSecret;
pub use node::{ClusterNode, ClusterSettings, ClusterStatus, MemberStatus, Shared};
pub use types::{Member, NodeId, RouterTable, StoredRouter};

/// Generated from `proto/switchyard/cluster/v1/cluster.proto`.
pub mod proto {
    #![allow(missing_debug_implementations, clippy::all, clippy::pedantic)]
    tonic::include_proto!("switchyard.cluster.v1");
}

/// Why a cluster operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("raft storage: {0}")]
    Storage(String),
    #[error("cluster config: {0}")]
    Config(String),
    #[error("cannot listen on {addr} for cluster peers: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("raft: {0}")]
    Raft(String),
    #[error("no cluster leader is reachable (an election may be running)")]
    NoLeader,
    #[error("cluster peer: {0}")]
    Peer(String),
    #[error("node {0} is not a member of the cluster")]
    UnknownNode(u64),
}
