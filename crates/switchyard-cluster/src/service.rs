//! The internal gRPC services a node serves to its peers: raft RPCs handed
//! to openraft, and the cluster service (forwarded writes, linearizable
//! reads, status, membership).

use std::sync::Arc;

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use switchyard_affinity::{Pin, PinKey};
use tonic::{Request, Response, Status};

use crate::ClusterError;
use crate::node::{ClusterStatus, MemberStatus, Shared, from_unix_ms, unix_ms};
use crate::proto;
use crate::types::{Command, CommandResponse, Member, NodeId, TypeConfig, decode, encode};

pub(crate) fn key_to_proto(key: &PinKey) -> proto::PinKey {
    proto::PinKey {
        router: key.router.clone(),
        session: key.session.clone(),
    }
}

fn key_from_proto(key: Option<proto::PinKey>) -> Result<PinKey, Status> {
    let key = key.ok_or_else(|| Status::invalid_argument("missing pin key"))?;
    Ok(PinKey {
        router: key.router,
        session: key.session,
    })
}

fn pin_to_proto(pin: &Pin) -> proto::Pin {
    proto::Pin {
        route: pin.route.clone(),
        model: pin.model.clone(),
        expires_at_unix_ms: unix_ms(pin.expires_at),
    }
}

pub(crate) fn pin_from_proto(pin: proto::Pin) -> Pin {
    Pin {
        route: pin.route,
        model: pin.model,
        expires_at: from_unix_ms(pin.expires_at_unix_ms),
    }
}

/// The wire form of a command, for forwarding it to the leader.
pub(crate) fn write_request(command: &Command) -> proto::WriteRequest {
    use proto::write_request::Command as Wire;
    let (now, wire) = match command {
        Command::SetIfAbsent {
            key,
            pin,
            now,
            max_sessions,
        } => (
            now,
            Wire::SetIfAbsent(proto::SetIfAbsent {
                key: Some(key_to_proto(key)),
                pin: Some(pin_to_proto(pin)),
                max_sessions: *max_sessions,
            }),
        ),
        Command::Repin { key, model, now } => (
            now,
            Wire::Repin(proto::Repin {
                key: Some(key_to_proto(key)),
                model: model.clone(),
            }),
        ),
        Command::Purge { now } => (now, Wire::Purge(proto::Purge {})),
        Command::PutRouter { now, .. } | Command::DeleteRouter { now, .. } => (
            now,
            // Encoding a plain enum of strings and a time cannot fail.
            Wire::Encoded(encode(command).unwrap_or_default()),
        ),
    };
    proto::WriteRequest {
        now_unix_ms: unix_ms(*now),
        command: Some(wire),
    }
}

fn command_from_proto(request: proto::WriteRequest) -> Result<Command, Status> {
    use proto::write_request::Command as Wire;
    let now = from_unix_ms(request.now_unix_ms);
    match request.command {
        Some(Wire::SetIfAbsent(set)) => Ok(Command::SetIfAbsent {
            key: key_from_proto(set.key)?,
            pin: pin_from_proto(set.pin.ok_or_else(|| Status::invalid_argument("missing pin"))?),
            now,
            max_sessions: set.max_sessions.max(1),
        }),
        Some(Wire::Repin(repin)) => Ok(Command::Repin {
            key: key_from_proto(repin.key)?,
            model: repin.model,
            now,
        }),
        Some(Wire::Purge(_)) => Ok(Command::Purge { now }),
        Some(Wire::Encoded(bytes)) => {
            let command: Command =
                decode(&bytes).map_err(|err| Status::invalid_argument(format!("undecodable command: {err}")))?;
            if !command.is_router_command() {
                return Err(Status::invalid_argument("only router commands travel encoded"));
            }
            Ok(command)
        }
        None => Err(Status::invalid_argument("missing command")),
    }
}

/// `Ok(None)`: the node asked was not the leader.
pub(crate) fn write_response(reply: proto::WriteReply) -> Result<Option<CommandResponse>, ClusterError> {
    use proto::write_reply::Outcome;
    match reply.outcome {
        Some(Outcome::Pin(pin)) => Ok(Some(CommandResponse::Pin(pin_from_proto(pin)))),
        Some(Outcome::Count(count)) => Ok(Some(CommandResponse::Count(count))),
        Some(Outcome::Leader(_)) => Ok(None),
        Some(Outcome::Encoded(bytes)) => decode(&bytes).map(Some).map_err(ClusterError::Peer),
        None => Err(ClusterError::Peer("empty write reply".to_owned())),
    }
}

fn status_to_proto(status: ClusterStatus) -> proto::StatusReply {
    proto::StatusReply {
        id: status.id,
        role: status.role,
        leader: status.leader.unwrap_or(0),
        term: status.term,
        last_log_index: status.last_log_index,
        last_applied: status.last_applied,
        snapshot_index: status.snapshot_index.unwrap_or(0),
        purged_index: status.purged_index.map_or(0, |index| index + 1),
        members: status
            .members
            .into_iter()
            .map(|member| proto::Member {
                id: member.id,
                raft_addr: member.raft_addr,
                http_addr: member.http_addr,
                voter: member.voter,
            })
            .collect(),
        pins: status.pins,
    }
}

pub(crate) fn status_from_proto(reply: proto::StatusReply) -> ClusterStatus {
    ClusterStatus {
        id: reply.id,
        role: reply.role,
        leader: (reply.leader != 0).then_some(reply.leader),
        term: reply.term,
        last_log_index: reply.last_log_index,
        last_applied: reply.last_applied,
        snapshot_index: (reply.snapshot_index != 0).then_some(reply.snapshot_index),
        purged_index: reply.purged_index.checked_sub(1),
        members: reply
            .members
            .into_iter()
            .map(|member| MemberStatus {
                id: member.id,
                raft_addr: member.raft_addr,
                http_addr: member.http_addr,
                voter: member.voter,
            })
            .collect(),
        pins: reply.pins,
    }
}

fn status_from_error(err: ClusterError) -> Status {
    match err {
        ClusterError::UnknownNode(_) => Status::not_found(err.to_string()),
        ClusterError::NoLeader => Status::unavailable(err.to_string()),
        ClusterError::Config(_) => Status::invalid_argument(err.to_string()),
        _ => Status::internal(err.to_string()),
    }
}

pub(crate) fn error_from_status(status: Status) -> ClusterError {
    match status.code() {
        tonic::Code::NotFound => ClusterError::Peer(status.message().to_owned()),
        tonic::Code::Unavailable => ClusterError::NoLeader,
        _ => ClusterError::Peer(status.message().to_owned()),
    }
}

/// openraft's RPCs, as the `Raft` gRPC service.
#[derive(Debug)]
pub struct RaftService {
    shared: Arc<Shared>,
}

impl RaftService {
    pub fn new(shared: Arc<Shared>) -> RaftService {
        RaftService { shared }
    }
}

fn payload<T: serde::de::DeserializeOwned>(request: Request<proto::RaftPayload>) -> Result<T, Status> {
    decode(&request.into_inner().data).map_err(|err| Status::invalid_argument(format!("undecodable raft message: {err}")))
}

fn reply<T: serde::Serialize>(result: &T) -> Result<Response<proto::RaftPayload>, Status> {
    let data = encode(result).map_err(|err| Status::internal(format!("unencodable raft reply: {err}")))?;
    Ok(Response::new(proto::RaftPayload { data }))
}

#[tonic::async_trait]
impl proto::raft_server::Raft for RaftService {
    async fn append_entries(&self, request: Request<proto::RaftPayload>) -> Result<Response<proto::RaftPayload>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = payload(request)?;
        reply(&self.shared.raft.append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<proto::RaftPayload>) -> Result<Response<proto::RaftPayload>, Status> {
        let rpc: VoteRequest<NodeId> = payload(request)?;
        reply(&self.shared.raft.vote(rpc).await)
    }

    async fn install_snapshot(&self, request: Request<proto::RaftPayload>) -> Result<Response<proto::RaftPayload>, Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> = payload(request)?;
        reply(&self.shared.raft.install_snapshot(rpc).await)
    }
}

/// Writes, reads, status and membership, as the `Cluster` gRPC service.
#[derive(Debug)]
pub struct ClusterService {
    shared: Arc<Shared>,
}

impl ClusterService {
    pub fn new(shared: Arc<Shared>) -> ClusterService {
        ClusterService { shared }
    }
}

#[tonic::async_trait]
impl proto::cluster_server::Cluster for ClusterService {
    async fn write(&self, request: Request<proto::WriteRequest>) -> Result<Response<proto::WriteReply>, Status> {
        use proto::write_reply::Outcome;
        let command = command_from_proto(request.into_inner())?;
        let encoded = command.is_router_command();
        let outcome = match self.shared.propose_local(command).await.map_err(status_from_error)? {
            Ok(response) if encoded => Outcome::Encoded(
                encode(&response).map_err(|err| Status::internal(format!("unencodable reply: {err}")))?,
            ),
            Ok(CommandResponse::Pin(pin)) => Outcome::Pin(pin_to_proto(&pin)),
            Ok(CommandResponse::Count(count)) => Outcome::Count(count),
            Ok(CommandResponse::Nothing | CommandResponse::RouterStored(_) | CommandResponse::RouterExists) => {
                Outcome::Count(0)
            }
            Err(leader) => Outcome::Leader(leader.unwrap_or(0)),
        };
        Ok(Response::new(proto::WriteReply { outcome: Some(outcome) }))
    }

    async fn read(&self, request: Request<proto::ReadRequest>) -> Result<Response<proto::ReadReply>, Status> {
        let request = request.into_inner();
        let key = key_from_proto(request.key)?;
        let now = from_unix_ms(request.now_unix_ms);
        match self.shared.raft.ensure_linearizable().await {
            Ok(_) => Ok(Response::new(proto::ReadReply {
                pin: self.shared.local_pin(&key, now).map(|pin| pin_to_proto(&pin)),
                leader: 0,
            })),
            Err(openraft::error::RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(forward))) => {
                // 0 (no leader known) and "ask someone else" both mean retry.
                Ok(Response::new(proto::ReadReply {
                    pin: None,
                    leader: forward.leader_id.unwrap_or(u64::MAX),
                }))
            }
            Err(err) => Err(Status::unavailable(err.to_string())),
        }
    }

    async fn status(&self, _request: Request<proto::StatusRequest>) -> Result<Response<proto::StatusReply>, Status> {
        Ok(Response::new(status_to_proto(self.shared.status())))
    }

    async fn add_node(&self, request: Request<proto::AddNodeRequest>) -> Result<Response<proto::StatusReply>, Status> {
        let member = request
            .into_inner()
            .member
            .ok_or_else(|| Status::invalid_argument("missing member"))?;
        let status = self
            .shared
            .add_node(
                member.id,
                Member {
                    raft_addr: member.raft_addr,
                    http_addr: member.http_addr,
                },
            )
            .await
            .map_err(status_from_error)?;
        Ok(Response::new(status_to_proto(status)))
    }

    async fn remove_node(&self, request: Request<proto::RemoveNodeRequest>) -> Result<Response<proto::StatusReply>, Status> {
        let status = self
            .shared
            .remove_node(request.into_inner().id)
            .await
            .map_err(status_from_error)?;
        Ok(Response::new(status_to_proto(status)))
    }
}
