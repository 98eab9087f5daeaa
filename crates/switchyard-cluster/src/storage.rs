//! The raft log, vote and snapshots on disk (redb), and the pin state
//! machine in memory.
//!
//! One redb file per node (`<data_dir>/raft.redb`) holds the log entries,
//! the vote, the committed log id, the purge point and the latest snapshot.
//! The state machine lives in memory and is rebuilt at start from the
//! snapshot plus the committed entries after it, which openraft replays.
//! Every write transaction commits durably (fsync) before openraft is told
//! it is done: an acknowledged pin survives a crash of every node.

use std::fmt::Debug;
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, RwLock};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    AnyError, EntryPayload, OptionalSend, RaftLogReader, RaftSnapshotBuilder, SnapshotMeta, StorageIOError,
    StoredMembership, Vote,
};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use switchyard_affinity::PinTable;

use crate::ClusterError;
use crate::types::{CommandResponse, Entry, LogId, Member, NodeId, RouterTable, StorageError, TypeConfig, apply, apply_router, decode, encode};

const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("logs");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const LAST_PURGED: &str = "last_purged";
const SNAPSHOT: &str = "snapshot";

/// Wraps any failure as openraft's storage error of the given kind.
fn failed(kind: fn(AnyError) -> StorageIOError<NodeId>) -> impl Fn(String) -> StorageError {
    move |message| StorageError::IO {
        source: kind(AnyError::error(message)),
    }
}

/// Opens (or creates) the node's raft database.
pub fn open(path: &Path) -> Result<Arc<Database>, ClusterError> {
    let db = Database::create(path).map_err(|err| ClusterError::Storage(format!("{}: {err}", path.display())))?;
    let txn = db.begin_write().map_err(|err| ClusterError::Storage(err.to_string()))?;
    txn.open_table(LOGS).map_err(|err| ClusterError::Storage(err.to_string()))?;
    txn.open_table(META).map_err(|err| ClusterError::Storage(err.to_string()))?;
    txn.commit().map_err(|err| ClusterError::Storage(err.to_string()))?;
    Ok(Arc::new(db))
}

/// Runs blocking redb work (reads, fsyncing commits) off the async workers.
async fn blocking<T: Send + 'static>(
    db: &Arc<Database>,
    work: impl FnOnce(&Database) -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let db = Arc::clone(db);
    tokio::task::spawn_blocking(move || work(&db))
        .await
        .map_err(|err| format!("storage task: {err}"))?
}

fn read_meta<T: DeserializeOwned>(db: &Database, key: &str) -> Result<Option<T>, String> {
    let txn = db.begin_read().map_err(|err| err.to_string())?;
    let table = txn.open_table(META).map_err(|err| err.to_string())?;
    match table.get(key).map_err(|err| err.to_string())? {
        Some(bytes) => decode(bytes.value()).map(Some),
        None => Ok(None),
    }
}

fn write_meta<T: Serialize>(db: &Database, key: &str, value: &T) -> Result<(), String> {
    let bytes = encode(value)?;
    let txn = db.begin_write().map_err(|err| err.to_string())?;
    {
        let mut table = txn.open_table(META).map_err(|err| err.to_string())?;
        table.insert(key, bytes.as_slice()).map_err(|err| err.to_string())?;
    }
    txn.commit().map_err(|err| err.to_string())
}

/// The raft log and vote, in redb. Cheap to clone (one shared database).
#[derive(Debug, Clone)]
pub struct LogStore {
    db: Arc<Database>,
}

impl LogStore {
    pub fn new(db: Arc<Database>) -> LogStore {
        LogStore { db }
    }
}

fn owned_bound(bound: Bound<&u64>) -> Bound<u64> {
    match bound {
        Bound::Included(index) => Bound::Included(*index),
        Bound::Excluded(index) => Bound::Excluded(*index),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let range = (owned_bound(range.start_bound()), owned_bound(range.end_bound()));
        blocking(&self.db, move |db| {
            let txn = db.begin_read().map_err(|err| err.to_string())?;
            let table = txn.open_table(LOGS).map_err(|err| err.to_string())?;
            let mut entries = Vec::new();
            for item in table.range::<u64>(range).map_err(|err| err.to_string())? {
                let (_, bytes) = item.map_err(|err| err.to_string())?;
                entries.push(decode(bytes.value())?);
            }
            Ok(entries)
        })
        .await
        .map_err(failed(StorageIOError::read_logs))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        blocking(&self.db, |db| {
            let last_purged: Option<LogId> = read_meta(db, LAST_PURGED)?;
            let txn = db.begin_read().map_err(|err| err.to_string())?;
            let table = txn.open_table(LOGS).map_err(|err| err.to_string())?;
            let last = match table.last().map_err(|err| err.to_string())? {
                Some((_, bytes)) => Some(decode::<Entry>(bytes.value())?.log_id),
                None => last_purged,
            };
            Ok(LogState {
                last_purged_log_id: last_purged,
                last_log_id: last,
            })
        })
        .await
        .map_err(failed(StorageIOError::read_logs))
    }

    async fn get_log_reader(&mut self) -> LogStore {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        let vote = *vote;
        blocking(&self.db, move |db| write_meta(db, VOTE, &vote))
            .await
            .map_err(failed(StorageIOError::write_vote))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        blocking(&self.db, |db| read_meta(db, VOTE))
            .await
            .map_err(failed(StorageIOError::read_vote))
    }

    // The committed log id is saved so a restarted node re-applies every
    // committed entry at once, before it hears from a leader.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        blocking(&self.db, move |db| write_meta(db, COMMITTED, &committed))
            .await
            .map_err(failed(StorageIOError::write))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        blocking(&self.db, |db| Ok(read_meta::<Option<LogId>>(db, COMMITTED)?.flatten()))
            .await
            .map_err(failed(StorageIOError::read))
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let encoded: Result<Vec<(u64, Vec<u8>)>, String> = entries
            .into_iter()
            .map(|entry| Ok((entry.log_id.index, encode(&entry)?)))
            .collect();
        let encoded = encoded.map_err(failed(StorageIOError::write_logs))?;
        let result = blocking(&self.db, move |db| {
            let txn = db.begin_write().map_err(|err| err.to_string())?;
            {
                let mut table = txn.open_table(LOGS).map_err(|err| err.to_string())?;
                for (index, bytes) in &encoded {
                    table.insert(*index, bytes.as_slice()).map_err(|err| err.to_string())?;
                }
            }
            // Durable before openraft counts the entries as persisted.
            txn.commit().map_err(|err| err.to_string())
        })
        .await;
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(message) => {
                callback.log_io_completed(Err(std::io::Error::other(message.clone())));
                Err(failed(StorageIOError::write_logs)(message))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        blocking(&self.db, move |db| {
            let txn = db.begin_write().map_err(|err| err.to_string())?;
            {
                let mut table = txn.open_table(LOGS).map_err(|err| err.to_string())?;
                table.retain_in(log_id.index.., |_, _| false).map_err(|err| err.to_string())?;
            }
            txn.commit().map_err(|err| err.to_string())
        })
        .await
        .map_err(failed(StorageIOError::write_logs))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        blocking(&self.db, move |db| {
            let bytes = encode(&log_id)?;
            let txn = db.begin_write().map_err(|err| err.to_string())?;
            {
                let mut meta = txn.open_table(META).map_err(|err| err.to_string())?;
                meta.insert(LAST_PURGED, bytes.as_slice()).map_err(|err| err.to_string())?;
                let mut table = txn.open_table(LOGS).map_err(|err| err.to_string())?;
                table.retain_in(..=log_id.index, |_, _| false).map_err(|err| err.to_string())?;
            }
            txn.commit().map_err(|err| err.to_string())
        })
        .await
        .map_err(failed(StorageIOError::write_logs))
    }
}

/// The state machine's contents: what a snapshot holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StateData {
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership<NodeId, Member>,
    pub pins: Option<PinTable>,
    /// Routers made through the admin API.
    pub routers: RouterTable,
}

/// [`StateData`] as snapshots before routers were replicated wrote it;
/// read so that a node upgraded in place keeps its pins.
#[derive(Debug, Deserialize)]
struct StateDataV1 {
    last_applied: Option<LogId>,
    membership: StoredMembership<NodeId, Member>,
    pins: Option<PinTable>,
}

/// Decodes a snapshot's state, in the current layout or the one before it.
fn decode_state(data: &[u8]) -> Result<StateData, String> {
    decode::<StateData>(data).or_else(|err| {
        decode::<StateDataV1>(data)
            .map(|old| StateData {
                last_applied: old.last_applied,
                membership: old.membership,
                pins: old.pins,
                routers: RouterTable::default(),
            })
            .map_err(|_| err)
    })
}

/// A snapshot as persisted: its meta and the encoded [`StateData`].
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, Member>,
    data: Vec<u8>,
}

/// The pins and what openraft needs to know about them. Shared with the
/// read path ([`StateMachine::state`]), which reads pins without going
/// through raft.
#[derive(Debug, Clone)]
pub struct StateMachine {
    state: Arc<RwLock<StateData>>,
    max_sessions: usize,
    db: Arc<Database>,
}

impl StateMachine {
    /// The state machine, restored from the latest snapshot on disk.
    pub fn open(db: Arc<Database>, max_sessions: usize) -> Result<StateMachine, ClusterError> {
        let stored: Option<StoredSnapshot> = read_meta(&db, SNAPSHOT).map_err(ClusterError::Storage)?;
        let mut state = match stored {
            Some(snapshot) => decode_state(&snapshot.data).map_err(ClusterError::Storage)?,
            None => StateData::default(),
        };
        state.pins.get_or_insert_with(|| PinTable::new(max_sessions));
        Ok(StateMachine {
            state: Arc::new(RwLock::new(state)),
            max_sessions,
            db,
        })
    }

    /// The live state, for local reads.
    pub fn state(&self) -> Arc<RwLock<StateData>> {
        Arc::clone(&self.state)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, StateData> {
        self.state.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, StateData> {
        self.state.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Builds snapshots from a copy of the state taken when asked.
#[derive(Debug)]
pub struct SnapshotBuilder {
    machine: StateMachine,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let state = self.machine.read().clone();
        let data = encode(&state).map_err(failed(StorageIOError::read_state_machine))?;
        let snapshot_id = match &state.last_applied {
            Some(log_id) => format!("{}-{}-{}", log_id.leader_id.term, log_id.index, data.len()),
            None => format!("empty-{}", data.len()),
        };
        let meta = SnapshotMeta {
            last_log_id: state.last_applied,
            last_membership: state.membership.clone(),
            snapshot_id,
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        };
        blocking(&self.machine.db, move |db| write_meta(db, SNAPSHOT, &stored))
            .await
            .map_err(failed(|err| StorageIOError::write_snapshot(None, err)))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership<NodeId, Member>), StorageError> {
        let state = self.read();
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut state = self.write();
        let max_sessions = self.max_sessions;
        let mut responses = Vec::new();
        for entry in entries {
            state.last_applied = Some(entry.log_id);
            let response = match &entry.payload {
                EntryPayload::Blank => CommandResponse::Nothing,
                EntryPayload::Normal(command) if command.is_router_command() => {
                    apply_router(&mut state.routers, command, entry.log_id.index)
                }
                EntryPayload::Normal(command) => {
                    apply(state.pins.get_or_insert_with(|| PinTable::new(max_sessions)), command)
                }
                EntryPayload::Membership(membership) => {
                    state.membership = StoredMembership::new(Some(entry.log_id), membership.clone());
                    CommandResponse::Nothing
                }
            };
            responses.push(response);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            machine: self.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Member>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let mut received: StateData = decode_state(&data).map_err(failed(|err| StorageIOError::read_snapshot(None, err)))?;
        received.pins.get_or_insert_with(|| PinTable::new(self.max_sessions));
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        blocking(&self.db, move |db| write_meta(db, SNAPSHOT, &stored))
            .await
            .map_err(failed(|err| StorageIOError::write_snapshot(None, err)))?;
        *self.write() = received;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let stored: Option<StoredSnapshot> = blocking(&self.db, |db| read_meta(db, SNAPSHOT))
            .await
            .map_err(failed(|err| StorageIOError::read_snapshot(None, err)))?;
        Ok(stored.map(|stored| Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        }))
    }
}


#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

    use openraft::testing::{StoreBuilder, Suite};

    use super::*;

    /// A fresh store in a temporary directory, kept alive by the guard.
    struct Fresh;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Fresh {
        async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
            let dir = tempfile::tempdir().unwrap();
            let db = open(&dir.path().join("raft.redb")).unwrap();
            Ok((dir, LogStore::new(Arc::clone(&db)), StateMachine::open(db, 100).unwrap()))
        }
    }

    /// openraft's own conformance suite for log stores and state machines:
    /// vote, append, truncate, purge, log state, apply, snapshots.
    #[test]
    fn passes_the_openraft_storage_suite() {
        Suite::test_all(Fresh).unwrap();
    }

    #[test]
    fn snapshots_of_the_layout_before_routers_still_load() {
        #[derive(Serialize)]
        struct Old {
            last_applied: Option<LogId>,
            membership: StoredMembership<NodeId, Member>,
            pins: Option<PinTable>,
        }
        let t0 = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000);
        let mut pins = PinTable::new(10);
        let key = switchyard_affinity::PinKey { router: "r".to_owned(), session: "s".to_owned() };
        let pin = switchyard_affinity::Pin {
            route: "t".to_owned(),
            model: "m".to_owned(),
            expires_at: t0 + std::time::Duration::from_secs(60),
        };
        pins.set_if_absent(key.clone(), pin.clone(), t0);
        let old = Old {
            last_applied: Some(openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), 7)),
            membership: StoredMembership::default(),
            pins: Some(pins),
        };
        let state = decode_state(&encode(&old).unwrap()).unwrap();
        assert_eq!(state.last_applied.map(|id| id.index), Some(7));
        assert_eq!(state.pins.unwrap().get(&key, t0), Some(pin));
        assert_eq!(state.routers, RouterTable::default());
        // And the current layout round-trips.
        let mut current = StateData::default();
        current.routers.version = 3;
        assert_eq!(decode_state(&encode(&current).unwrap()).unwrap().routers.version, 3);
    }

    #[tokio::test]
    async fn vote_log_and_snapshot_survive_a_reopen() {
        use switchyard_affinity::{Pin, PinKey};
        use crate::types::Command;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft.redb");
        let vote = Vote::new(3, 2);
        let t0 = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000);
        let key = PinKey {
            router: "eng".to_owned(),
            session: "s".to_owned(),
        };
        {
            let db = open(&path).unwrap();
            let mut log = LogStore::new(Arc::clone(&db));
            log.save_vote(&vote).await.unwrap();
            let mut machine = StateMachine::open(db, 100).unwrap();
            let entry = Entry {
                log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(3, 2), 1),
                payload: EntryPayload::Normal(Command::SetIfAbsent {
                    key: key.clone(),
                    pin: Pin {
                        route: "debugging".to_owned(),
                        model: "m1".to_owned(),
                        expires_at: t0 + std::time::Duration::from_secs(60),
                    },
                    now: t0,
                    max_sessions: 100,
                }),
            };
            machine.apply([entry]).await.unwrap();
            machine.get_snapshot_builder().await.build_snapshot().await.unwrap();
        }
        let db = open(&path).unwrap();
        let mut log = LogStore::new(Arc::clone(&db));
        assert_eq!(log.read_vote().await.unwrap(), Some(vote));
        let machine = StateMachine::open(db, 100).unwrap();
        assert_eq!(machine.read().pins.as_ref().unwrap().get(&key, t0).unwrap().model, "m1");
        assert_eq!(machine.read().last_applied.map(|id| id.index), Some(1));
    }
}
