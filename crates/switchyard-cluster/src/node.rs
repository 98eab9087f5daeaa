//! One node's share of the cluster: the openraft instance, its gRPC
//! server, and the operations the rest of the node uses (pin writes and
//! reads, status, membership changes).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::{ChangeMembers, ServerState, SnapshotPolicy};
use switchyard_affinity::{Pin, PinKey};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::ClusterError;
use crate::network::Network;
use crate::peer_auth::{Link, PeerSecret, link, verify_layer};
use crate::proto;
use crate::proto::cluster_client::ClusterClient;
use crate::service::{RaftService, ClusterService};
use crate::storage::{self, LogStore, StateData, StateMachine};
use crate::types::{Command, CommandResponse, Member, NodeId, Raft};

/// How long a pin write keeps retrying while the cluster elects a leader
/// (about 1.5 s with the default timeouts). Past it the write fails and the
/// request is answered unpinned: a cluster that lost its quorum delays a
/// session's first turn by this much, never fails it.
pub const WRITE_DEADLINE: Duration = Duration::from_secs(3);
/// How long a read that missed locally waits for the leader's confirmation
/// (and, on a node that does not know a leader yet, such as one just
/// restarted, for one to be known) before the local miss stands.
pub const READ_DEADLINE: Duration = Duration::from_secs(1);
/// How long a membership change may take (the new node catches up first).
pub const MEMBERSHIP_DEADLINE: Duration = Duration::from_secs(60);

/// What a node needs to join or form a cluster.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    pub node_id: NodeId,
    /// Where the internal gRPC services listen.
    pub listen: SocketAddr,
    /// The gRPC address peers use to reach this node; `None`: the bound
    /// address (right for loopback and single nodes).
    pub advertise: Option<String>,
    /// The public HTTP address, as peers and operators should see it.
    pub http_addr: String,
    /// The initial members, this node included; empty: this node alone.
    pub peers: BTreeMap<NodeId, Member>,
    /// Whether this node forms the cluster from `peers` when it has never
    /// been initialized. Exactly one node of a new cluster bootstraps.
    pub bootstrap: bool,
    /// The raft database lives at `<data_dir>/raft.redb`.
    pub data_dir: PathBuf,
    /// Bound of the pin table (`affinity.max_sessions`), carried in every
    /// pin write so that replicas evict alike.
    pub max_sessions: usize,
    pub heartbeat: Duration,
    pub election_timeout: (Duration, Duration),
    /// A snapshot is built after this many applied entries; the log before
    /// it is then purged.
    pub snapshot_every: u64,
    /// The cluster's shared secret: presented to peers, required of them.
    pub secret: PeerSecret,
}

/// Everything the server, the store backend and the admin API share.
pub struct Shared {
    pub(crate) id: NodeId,
    pub(crate) max_sessions: usize,
    pub(crate) raft: Raft,
    pub(crate) state: Arc<RwLock<StateData>>,
    pub(crate) secret: PeerSecret,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("id", &self.id).finish_non_exhaustive()
    }
}

/// A running cluster member.
#[derive(Debug)]
pub struct ClusterNode {
    shared: Arc<Shared>,
    raft_addr: String,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<()>,
}

/// Milliseconds since the Unix epoch (0 before it).
pub(crate) fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

pub(crate) fn from_unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

impl ClusterNode {
    /// Opens the raft store, starts raft and the gRPC server, and
    /// bootstraps the cluster when this node is the one to. `services` are
    /// the node's other internal gRPC services (classification), served on
    /// the same address beside raft's.
    pub async fn start(settings: ClusterSettings, services: tonic::service::Routes) -> Result<ClusterNode, ClusterError> {
        std::fs::create_dir_all(&settings.data_dir)
            .map_err(|err| ClusterError::Storage(format!("{}: {err}", settings.data_dir.display())))?;
        let db = storage::open(&settings.data_dir.join("raft.redb"))?;
        let machine = StateMachine::open(Arc::clone(&db), settings.max_sessions)?;
        let state = machine.state();
        let config = openraft::Config {
            cluster_name: "switchyard".to_owned(),
            heartbeat_interval: settings.heartbeat.as_millis() as u64,
            election_timeout_min: settings.election_timeout.0.as_millis() as u64,
            election_timeout_max: settings.election_timeout.1.as_millis() as u64,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(settings.snapshot_every.max(1)),
            // A node that was down briefly catches up from the log; one
            // further behind gets the snapshot.
            max_in_snapshot_log_to_keep: settings.snapshot_every.max(1),
            ..openraft::Config::default()
        }
        .validate()
        .map_err(|err| ClusterError::Config(err.to_string()))?;
        let raft = Raft::new(settings.node_id, Arc::new(config), Network { secret: settings.secret.clone() }, LogStore::new(db), machine)
            .await
            .map_err(|err| ClusterError::Raft(err.to_string()))?;

        let listener = tokio::net::TcpListener::bind(settings.listen)
            .await
            .map_err(|source| ClusterError::Bind {
                addr: settings.listen,
                source,
            })?;
        let bound = listener.local_addr().map_err(|source| ClusterError::Bind {
            addr: settings.listen,
            source,
        })?;
        let raft_addr = settings.advertise.clone().unwrap_or_else(|| bound.to_string());
        let shared = Arc::new(Shared {
            id: settings.node_id,
            max_sessions: settings.max_sessions,
            raft,
            state,
            secret: settings.secret.clone(),
        });
        let (shutdown, mut stop) = watch::channel(false);
        let services = services
            .add_service(proto::raft_server::RaftServer::new(RaftService::new(Arc::clone(&shared))))
            .add_service(proto::cluster_server::ClusterServer::new(ClusterService::new(Arc::clone(&shared))));
        let server = tonic::transport::Server::builder()
            .layer(verify_layer(settings.secret.clone()))
            .add_routes(services)
            // No Nagle: a forwarded write is one small request and one small
            // reply, which Nagle plus delayed ACKs held back 40 ms.
            .serve_with_incoming_shutdown(tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)), async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            });
        let server = tokio::spawn(async move {
            if let Err(err) = server.await {
                tracing::error!(error = %err, "cluster gRPC server stopped");
            }
        });

        if settings.bootstrap {
            let mut members = settings.peers.clone();
            members.entry(settings.node_id).or_insert_with(|| Member {
                raft_addr: raft_addr.clone(),
                http_addr: settings.http_addr.clone(),
            });
            let initialized = shared
                .raft
                .is_initialized()
                .await
                .map_err(|err| ClusterError::Raft(err.to_string()))?;
            if !initialized {
                shared
                    .raft
                    .initialize(members.clone())
                    .await
                    .map_err(|err| ClusterError::Raft(err.to_string()))?;
                tracing::info!(members = members.len(), "cluster bootstrapped");
            }
        }
        tracing::info!(id = settings.node_id, %raft_addr, "cluster node started");
        Ok(ClusterNode {
            shared,
            raft_addr,
            shutdown,
            server,
        })
    }

    pub fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    /// The gRPC address peers reach this node at.
    pub fn raft_addr(&self) -> &str {
        &self.raft_addr
    }

    /// Stops raft and the gRPC server.
    pub async fn shutdown(self) {
        if let Err(err) = self.shared.raft.shutdown().await {
            tracing::warn!(error = %err, "raft did not stop cleanly");
        }
        let _ = self.shutdown.send(true);
        let _ = self.server.await;
    }
}

/// `step`, given up (as no leader) at `deadline`.
async fn within<T>(deadline: Instant, step: impl Future<Output = T>) -> Result<T, ClusterError> {
    tokio::time::timeout_at(deadline.into(), step)
        .await
        .map_err(|_| ClusterError::NoLeader)
}

/// The cluster as one node sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ClusterStatus {
    pub id: NodeId,
    /// leader, follower, candidate, learner or shutdown.
    pub role: String,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub last_log_index: u64,
    pub last_applied: u64,
    pub snapshot_index: Option<u64>,
    /// Log entries up to here are compacted into the snapshot: a node
    /// further behind catches up by installing the snapshot.
    pub purged_index: Option<u64>,
    pub members: Vec<MemberStatus>,
    pub pins: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MemberStatus {
    pub id: NodeId,
    pub raft_addr: String,
    pub http_addr: String,
    pub voter: bool,
}

impl Shared {
    fn pins(&self) -> std::sync::RwLockReadGuard<'_, StateData> {
        self.state.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// This node's view: role, leader, term, indexes and members.
    pub fn status(&self) -> ClusterStatus {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, member)| MemberStatus {
                id: *id,
                raft_addr: member.raft_addr.clone(),
                http_addr: member.http_addr.clone(),
                voter: voters.contains(id),
            })
            .collect();
        let role = match metrics.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        ClusterStatus {
            id: self.id,
            role: role.to_owned(),
            leader: metrics.current_leader,
            term: metrics.current_term,
            last_log_index: metrics.last_log_index.unwrap_or(0),
            last_applied: metrics.last_applied.map_or(0, |log_id| log_id.index),
            snapshot_index: metrics.snapshot.map(|log_id| log_id.index),
            purged_index: metrics.purged.map(|log_id| log_id.index),
            members,
            pins: self.pins().pins.as_ref().map_or(0, |table| table.len() as u64),
        }
    }

    /// Fires whenever raft's view (role, term, indexes, members) changes.
    pub fn metrics_watch(&self) -> watch::Receiver<openraft::RaftMetrics<NodeId, Member>> {
        self.raft.metrics()
    }

    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    /// A session's live pin in this node's state machine (the fast path).
    pub fn local_pin(&self, key: &PinKey, now: SystemTime) -> Option<Pin> {
        self.pins().pins.as_ref().and_then(|table| table.get(key, now))
    }

    /// The routers made through the admin API, as this node has applied them.
    pub fn routers(&self) -> crate::types::RouterTable {
        self.pins().routers.clone()
    }

    /// The log index of the last router change this node applied.
    pub fn routers_version(&self) -> u64 {
        self.pins().routers.version
    }

    /// Stores a router through the log (from any node). `Ok(None)`: with
    /// `create`, a router of that name exists already. Otherwise the
    /// version it was stored at.
    pub async fn put_router(&self, name: &str, definition: String, create: bool) -> Result<Option<u64>, ClusterError> {
        let command = Command::PutRouter {
            name: name.to_owned(),
            definition,
            create,
            now: SystemTime::now(),
        };
        match self.write(command).await? {
            CommandResponse::RouterStored(version) => Ok(Some(version)),
            CommandResponse::RouterExists => Ok(None),
            other => Err(ClusterError::Raft(format!("unexpected reply to a router write: {other:?}"))),
        }
    }

    /// Deletes a router made through the admin API: the version of the
    /// deletion, `None` when there was no such router.
    pub async fn delete_router(&self, name: &str) -> Result<Option<u64>, ClusterError> {
        let command = Command::DeleteRouter {
            name: name.to_owned(),
            now: SystemTime::now(),
        };
        match self.write(command).await? {
            CommandResponse::RouterStored(version) => Ok(Some(version)),
            CommandResponse::Count(_) => Ok(None),
            other => Err(ClusterError::Raft(format!("unexpected reply to a router delete: {other:?}"))),
        }
    }

    pub fn pin_count(&self) -> usize {
        self.pins().pins.as_ref().map_or(0, |table| table.len())
    }

    fn member(&self, id: NodeId) -> Option<Member> {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&id)
            .cloned()
    }

    fn client(&self, id: NodeId) -> Result<ClusterClient<Link>, ClusterError> {
        let member = self.member(id).ok_or(ClusterError::NoLeader)?;
        let channel = link(&member.raft_addr, &self.secret).map_err(|err| ClusterError::Peer(err.to_string()))?;
        Ok(ClusterClient::new(channel))
    }

    /// Proposes a command here if this node leads, or returns the leader
    /// to ask (`Err(Some(id))`), `Err(None)` while no leader is known.
    pub(crate) async fn propose_local(&self, command: Command) -> Result<Result<CommandResponse, Option<NodeId>>, ClusterError> {
        match self.raft.client_write(command).await {
            Ok(reply) => Ok(Ok(reply.data)),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => Ok(Err(forward.leader_id)),
            Err(err) => Err(ClusterError::Raft(err.to_string())),
        }
    }

    /// Writes a command through the log, from any node: proposed here on
    /// the leader, forwarded to it otherwise, retried across elections
    /// until [`WRITE_DEADLINE`].
    pub async fn write(&self, command: Command) -> Result<CommandResponse, ClusterError> {
        let deadline = Instant::now() + WRITE_DEADLINE;
        // Every step is bounded by what is left of the deadline: a leader
        // that lost its quorum accepts a proposal and never commits it, and
        // a forwarded write to such a leader never returns either.
        let mut pause = Duration::from_millis(10);
        loop {
            let leader = match within(deadline, self.propose_local(command.clone())).await?? {
                Ok(response) => return Ok(response),
                Err(leader) => leader,
            };
            if let Some(leader) = leader.filter(|leader| *leader != self.id) {
                match within(deadline, self.forward_write(leader, &command)).await? {
                    Ok(Some(response)) => return Ok(response),
                    Ok(None) => {}
                    Err(err) => tracing::debug!(leader, error = %err, "forwarding a pin write failed; retrying"),
                }
            }
            if Instant::now() + pause > deadline {
                return Err(ClusterError::NoLeader);
            }
            // No leader yet (an election is running): wait a little for it.
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// `Ok(None)`: the node asked is no longer the leader.
    async fn forward_write(&self, leader: NodeId, command: &Command) -> Result<Option<CommandResponse>, ClusterError> {
        let reply = self
            .client(leader)?
            .write(crate::service::write_request(command))
            .await
            .map_err(|status| ClusterError::Peer(status.message().to_owned()))?
            .into_inner();
        crate::service::write_response(reply)
    }

    /// A session's pin after every committed write: read here on the
    /// leader once it confirmed its leadership, or asked of the leader.
    pub async fn linearizable_pin(&self, key: &PinKey, now: SystemTime) -> Result<Option<Pin>, ClusterError> {
        tokio::time::timeout(READ_DEADLINE, self.linearizable_pin_now(key, now))
            .await
            .map_err(|_| ClusterError::NoLeader)?
    }

    /// Retries until a leader answers (the caller bounds it): a node that
    /// restarted serves requests before its first heartbeat tells it who
    /// leads, and its own state misses every pin written while it was down.
    /// Seen in the fault test: a turn routed to the restarted node 80 ms
    /// after its start found no leader, and its local miss stood.
    async fn linearizable_pin_now(&self, key: &PinKey, now: SystemTime) -> Result<Option<Pin>, ClusterError> {
        let mut metrics = self.raft.metrics();
        loop {
            match self.linearizable_pin_once(key, now).await {
                Err(ClusterError::NoLeader | ClusterError::Peer(_)) => {
                    // Wait for news (a leader learnt, a term changed), with a
                    // floor so a flapping peer is not hammered.
                    let pause = tokio::time::sleep(Duration::from_millis(20));
                    let (changed, ()) = tokio::join!(metrics.changed(), pause);
                    if changed.is_err() {
                        return Err(ClusterError::NoLeader);
                    }
                }
                other => return other,
            }
        }
    }

    async fn linearizable_pin_once(&self, key: &PinKey, now: SystemTime) -> Result<Option<Pin>, ClusterError> {
        match self.raft.ensure_linearizable().await {
            Ok(_) => Ok(self.local_pin(key, now)),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(forward))) => {
                if let Some(leader) = forward.leader_id.filter(|leader| *leader != self.id) {
                    let reply = self
                        .client(leader)?
                        .read(proto::ReadRequest {
                            key: Some(crate::service::key_to_proto(key)),
                            now_unix_ms: unix_ms(now),
                        })
                        .await
                        .map_err(|status| ClusterError::Peer(status.message().to_owned()))?
                        .into_inner();
                    if reply.leader == 0 {
                        return Ok(reply.pin.map(crate::service::pin_from_proto));
                    }
                }
                Err(ClusterError::NoLeader)
            }
            Err(err) => Err(ClusterError::Raft(err.to_string())),
        }
    }

    /// Adds a node: as a learner first (it catches up from the log or a
    /// snapshot), then as a voter. Runs on the leader; forwarded otherwise.
    pub async fn add_node(&self, id: NodeId, member: Member) -> Result<ClusterStatus, ClusterError> {
        if !self.is_leader() {
            return self.forward_membership(proto::AddNodeRequest {
                member: Some(proto::Member {
                    id,
                    raft_addr: member.raft_addr,
                    http_addr: member.http_addr,
                    voter: true,
                }),
            }).await;
        }
        let change = async {
            self.raft
                .add_learner(id, member, true)
                .await
                .map_err(|err| ClusterError::Raft(err.to_string()))?;
            self.raft
                .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                .await
                .map_err(|err| ClusterError::Raft(err.to_string()))
        };
        tokio::time::timeout(MEMBERSHIP_DEADLINE, change)
            .await
            .map_err(|_| ClusterError::Raft(format!("adding node {id} took longer than {MEMBERSHIP_DEADLINE:?}")))??;
        Ok(self.status())
    }

    /// Removes a node from the voters and the cluster.
    pub async fn remove_node(&self, id: NodeId) -> Result<ClusterStatus, ClusterError> {
        if !self.is_leader() {
            return self.forward_membership_remove(id).await;
        }
        let membership = self.raft.metrics().borrow().membership_config.membership().clone();
        if membership.get_node(&id).is_none() {
            return Err(ClusterError::UnknownNode(id));
        }
        let change = if membership.voter_ids().any(|voter| voter == id) {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        self.raft
            .change_membership(change, false)
            .await
            .map_err(|err| ClusterError::Raft(err.to_string()))?;
        Ok(self.status())
    }

    fn leader(&self) -> Result<NodeId, ClusterError> {
        self.raft.metrics().borrow().current_leader.ok_or(ClusterError::NoLeader)
    }

    async fn forward_membership(&self, request: proto::AddNodeRequest) -> Result<ClusterStatus, ClusterError> {
        let reply = self
            .client(self.leader()?)?
            .add_node(request)
            .await
            .map_err(crate::service::error_from_status)?;
        Ok(crate::service::status_from_proto(reply.into_inner()))
    }

    async fn forward_membership_remove(&self, id: NodeId) -> Result<ClusterStatus, ClusterError> {
        let reply = self
            .client(self.leader()?)?
            .remove_node(proto::RemoveNodeRequest { id })
            .await
            .map_err(crate::service::error_from_status)?;
        Ok(crate::service::status_from_proto(reply.into_inner()))
    }
}
