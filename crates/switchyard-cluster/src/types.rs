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
}

/// What applying a [`Command`] returned.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResponse {
    /// Entries that carry no command (membership, blank).
    #[default]
    Nothing,
    /// The pin in force after a set-if-absent.
    Pin(Pin),
    /// Repin: 1 if a live pin moved. Purge: pins dropped.
    Count(u64),
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
