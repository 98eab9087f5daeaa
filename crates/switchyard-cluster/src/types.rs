//! What the replicated log carries: pin commands, their results, and the
//! openraft type configuration built from them.

use std::fmt;
use std::io::Cursor;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use switchyard_affinity::{Pin, PinKey, PinTable};

/// Node ids are small integers chosen by the operator (`cluster.node_id`).
pub type NodeId = u64;

/// How peers and clients reach a node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// `host:port` of the internal gRPC services (raft, cluster).
    pub raft_addr: String,
    /// `host:port` of the public HTTP API.
    pub http_addr: String,
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "raft {} / http {}", self.raft_addr, self.http_addr)
    }
}

/// A change to the pins, proposed by one node and applied by all in log
/// order. `now` is the proposer's wall clock, carried in the entry so that
/// every replica decides expiry the same way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Pin a session unless it has a live pin. `max_sessions` is the
    /// proposer's bound (`affinity.max_sessions`): carried in the entry, so
    /// every replica evicts the same pins whatever its own config says.
    SetIfAbsent {
        key: PinKey,
        pin: Pin,
        now: SystemTime,
        max_sessions: u64,
    },
    /// Move a live pin to another model (after a failover).
    Repin { key: PinKey, model: String, now: SystemTime },
    /// Drop every pin expired at `now`.
    Purge { now: SystemTime },
    /// Store a router made through the admin API. `definition` is its
    /// JSON, validated by the proposer; every node validates it again
    /// against its own models before serving it. With `create`, an existing
    /// router of that name is left alone.
    PutRouter {
        name: String,
        definition: String,
        create: bool,
        now: SystemTime,
    },
    /// Drop a router made through the admin API.
    DeleteRouter { name: String, now: SystemTime },
}

/// A router made through the admin API, as the log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRouter {
    /// Its definition, JSON in the config file's router shape.
    pub definition: String,
    /// The log index that stored this definition: bumps on every change.
    pub version: u64,
    pub updated_at: SystemTime,
}

/// The routers made through the admin API, and the log index of the last
/// change to them (0: never changed).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterTable {
    pub routers: std::collections::BTreeMap<String, StoredRouter>,
    pub version: u64,
}

/// What applying a [`Command`] returned.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResponse {
    /// Entries that carry no command (membership, blank).
    #[default]
    Nothing,
    /// The pin in force after a set-if-absent.
    Pin(Pin),
    /// Repin: 1 if a live pin moved. Purge: pins dropped. DeleteRouter: 0
    /// when there was no such router.
    Count(u64),
    /// PutRouter stored the router, or DeleteRouter removed it, at this
    /// version (log index).
    RouterStored(u64),
    /// PutRouter with `create`: a router of that name exists already.
    RouterExists,
}

/// The one encoding of what goes on disk (log entries, vote, snapshots)
/// and inside raft RPC payloads: bincode over serde.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    bincode::serde::encode_to_vec(value, bincode::config::standard()).map_err(|err| err.to_string())
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .map(|(value, _)| value)
        .map_err(|err| err.to_string())
}

/// Applies one command to the pins: the whole state machine logic, a pure
/// function of the table and the command.
pub fn apply(table: &mut PinTable, command: &Command) -> CommandResponse {
    match command {
        Command::SetIfAbsent {
            key,
            pin,
            now,
            max_sessions,
        } => {
            table.set_max_sessions(usize::try_from(*max_sessions).unwrap_or(usize::MAX));
            CommandResponse::Pin(table.set_if_absent(key.clone(), pin.clone(), *now))
        }
        Command::Repin { key, model, now } => CommandResponse::Count(u64::from(table.repin(key, model.clone(), *now))),
        Command::Purge { now } => CommandResponse::Count(table.purge(*now) as u64),
        // Router commands change the router table; see [`apply_router`].
        Command::PutRouter { .. } | Command::DeleteRouter { .. } => CommandResponse::Nothing,
    }
}

/// Applies a router command at log index `index`; pin commands change nothing here.
pub fn apply_router(table: &mut RouterTable, command: &Command, index: u64) -> CommandResponse {
    match command {
        Command::PutRouter {
            name,
            definition,
            create,
            now,
        } => {
            if *create && table.routers.contains_key(name) {
                return CommandResponse::RouterExists;
            }
            table.routers.insert(
                name.clone(),
                StoredRouter {
                    definition: definition.clone(),
                    version: index,
                    updated_at: *now,
                },
            );
            table.version = index;
            CommandResponse::RouterStored(index)
        }
        Command::DeleteRouter { name, .. } => {
            if table.routers.remove(name).is_none() {
                return CommandResponse::Count(0);
            }
            table.version = index;
            CommandResponse::RouterStored(index)
        }
        Command::SetIfAbsent { .. } | Command::Repin { .. } | Command::Purge { .. } => CommandResponse::Nothing,
    }
}

impl Command {
    /// Whether the command changes routers rather than pins.
    pub fn is_router_command(&self) -> bool {
        matches!(self, Command::PutRouter { .. } | Command::DeleteRouter { .. })
    }
}

openraft::declare_raft_types!(
    /// openraft's types for the pin log.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = NodeId,
        Node = Member,
        SnapshotData = Cursor<Vec<u8>>,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn key(session: &str) -> PinKey {
        PinKey {
            router: "r".to_owned(),
            session: session.to_owned(),
        }
    }

    #[test]
    fn replicas_applying_the_same_commands_agree_whatever_their_clocks() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let pin = |model: &str| Pin {
            route: "t".to_owned(),
            model: model.to_owned(),
            expires_at: t0 + Duration::from_secs(60),
        };
        let log = [
            Command::SetIfAbsent { key: key("s"), pin: pin("a"), now: t0, max_sessions: 10 },
            // A racing first turn from another node loses.
            Command::SetIfAbsent { key: key("s"), pin: pin("b"), now: t0, max_sessions: 10 },
            Command::Repin { key: key("s"), model: "c".to_owned(), now: t0 },
            Command::SetIfAbsent { key: key("gone"), pin: pin("a"), now: t0, max_sessions: 10 },
            Command::Purge { now: t0 + Duration::from_secs(61) },
        ];
        let run = || {
            let mut table = PinTable::new(10);
            let results: Vec<_> = log.iter().map(|command| apply(&mut table, command)).collect();
            (results, table.get(&key("s"), t0))
        };
        let (results, pinned) = run();
        assert_eq!(results[1], CommandResponse::Pin(pin("a")));
        assert_eq!(results[2], CommandResponse::Count(1));
        assert_eq!(results[4], CommandResponse::Count(2));
        assert_eq!(pinned, None, "purged at t0 + 61 s, as the entry says");
        assert_eq!(run(), (results, pinned));
    }

    #[test]
    fn router_commands_create_replace_and_delete_by_log_order() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let put = |name: &str, definition: &str, create: bool| Command::PutRouter {
            name: name.to_owned(),
            definition: definition.to_owned(),
            create,
            now: t0,
        };
        let mut table = RouterTable::default();
        assert_eq!(apply_router(&mut table, &put("a", "{1}", true), 5), CommandResponse::RouterStored(5));
        // A second create of the same name (a race between two admins) loses.
        assert_eq!(apply_router(&mut table, &put("a", "{2}", true), 6), CommandResponse::RouterExists);
        assert_eq!(table.routers["a"].definition, "{1}");
        assert_eq!(table.version, 5);
        assert_eq!(apply_router(&mut table, &put("a", "{3}", false), 7), CommandResponse::RouterStored(7));
        assert_eq!(table.routers["a"].version, 7);
        let delete = |name: &str| Command::DeleteRouter { name: name.to_owned(), now: t0 };
        assert_eq!(apply_router(&mut table, &delete("nope"), 8), CommandResponse::Count(0));
        assert_eq!(table.version, 7, "deleting nothing changes nothing");
        assert_eq!(apply_router(&mut table, &delete("a"), 9), CommandResponse::RouterStored(9));
        assert!(table.routers.is_empty());
        assert_eq!(table.version, 9);
        // Pin commands leave routers alone, router commands leave pins alone.
        let mut pins = PinTable::new(10);
        assert_eq!(apply(&mut pins, &put("b", "{}", false)), CommandResponse::Nothing);
        assert_eq!(pins.len(), 0);
        assert_eq!(apply_router(&mut table, &Command::Purge { now: t0 }, 10), CommandResponse::Nothing);
    }

    #[test]
    fn the_bound_in_the_entry_decides_eviction_on_every_replica() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let log: Vec<Command> = (0..3)
            .map(|i| Command::SetIfAbsent {
                key: key(&format!("s{i}")),
                pin: Pin {
                    route: "t".to_owned(),
                    model: "a".to_owned(),
                    expires_at: t0 + Duration::from_secs(60 + i),
                },
                now: t0,
                max_sessions: 2,
            })
            .collect();
        // Two replicas configured differently still hold the same pins.
        let held = |local_bound: usize| {
            let mut table = PinTable::new(local_bound);
            for command in &log {
                apply(&mut table, command);
            }
            (0..3).map(|i| table.get(&key(&format!("s{i}")), t0).is_some()).collect::<Vec<_>>()
        };
        assert_eq!(held(1_000), vec![false, true, true]);
        assert_eq!(held(1_000), held(5));
    }
}
