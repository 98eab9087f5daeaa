//! openraft's network over gRPC: each peer is a lazily connected tonic
//! channel to its `Raft` service. Payloads are openraft's own messages,
//! bincode-encoded (see `proto/switchyard/cluster/v1/cluster.proto`).


use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::AnyError;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::proto::RaftPayload;
use crate::proto::raft_client::RaftClient;
use crate::types::{Member, NodeId, TypeConfig, decode, encode};

pub use crate::peer_auth::CONNECT_TIMEOUT;
use crate::peer_auth::{Link, PeerSecret, link};

/// Makes one [`Peer`] per target; openraft keeps it for the replication
/// stream to that target.
#[derive(Debug, Clone, Default)]
pub struct Network {
    /// Presented to every peer (`auth.cluster_secret_env`).
    pub secret: PeerSecret,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> Peer {
        Peer {
            target,
            client: link(&node.raft_addr, &self.secret).map(RaftClient::new).map_err(|err| err.to_string()),
        }
    }
}

/// The raft RPC client for one peer.
#[derive(Debug)]
pub struct Peer {
    target: NodeId,
    client: Result<RaftClient<Link>, String>,
}

type RpcError<E = RaftError<NodeId>> = RPCError<NodeId, Member, E>;

impl Peer {
    async fn call<Req: Serialize, Resp: DeserializeOwned, E: std::error::Error + DeserializeOwned>(
        &mut self,
        rpc: &Req,
        option: &RPCOption,
        kind: Rpc,
    ) -> Result<Resp, RpcError<E>> {
        let network = |message: String| RPCError::Network(NetworkError::new(&AnyError::error(message)));
        let client = match &mut self.client {
            Ok(client) => client,
            Err(message) => return Err(RPCError::Unreachable(Unreachable::new(&AnyError::error(message.clone())))),
        };
        let mut request = tonic::Request::new(RaftPayload { data: encode(rpc).map_err(network)? });
        request.set_timeout(option.hard_ttl());
        let reply = match kind {
            Rpc::Append => client.append_entries(request).await,
            Rpc::Vote => client.vote(request).await,
            Rpc::Snapshot => client.install_snapshot(request).await,
        };
        let reply = reply.map_err(|status| match status.code() {
            // Down or not listening: openraft backs off before retrying.
            tonic::Code::Unavailable => RPCError::Unreachable(Unreachable::new(&status)),
            _ => RPCError::Network(NetworkError::new(&status)),
        })?;
        let result: Result<Resp, E> = decode(&reply.into_inner().data).map_err(network)?;
        result.map_err(|err| RPCError::RemoteError(RemoteError::new(self.target, err)))
    }
}

#[derive(Debug, Clone, Copy)]
enum Rpc {
    Append,
    Vote,
    Snapshot,
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcError> {
        self.call(&rpc, &option, Rpc::Append).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcError<RaftError<NodeId, InstallSnapshotError>>> {
        self.call(&rpc, &option, Rpc::Snapshot).await
    }

    async fn vote(&mut self, rpc: VoteRequest<NodeId>, option: RPCOption) -> Result<VoteResponse<NodeId>, RpcError> {
        self.call(&rpc, &option, Rpc::Vote).await
    }
}
