//! Pin storage behind a trait, so the backend can change (embedded, or
//! replicated by openraft in `switchyard-cluster`) without the actor or its
//! callers changing.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::AffinityError;

/// A session is pinned per router: one client may use the same session id
/// with two routers and get an independent pin for each.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PinKey {
    pub router: String,
    pub session: String,
}

/// What a session is pinned to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    pub route: String,
    pub model: String,
    /// Wall-clock expiry, fixed at the first turn (first turn + TTL). Wall
    /// clock rather than `Instant` because a replicated store must carry
    /// the same timestamp to every node.
    pub expires_at: SystemTime,
}

impl Pin {
    pub fn is_live(&self, now: SystemTime) -> bool {
        now < self.expires_at
    }
}

/// Storage for pins. Methods take `now` from the caller so expiry is
/// deterministic (and testable) rather than read from a clock inside; a
/// replicated backend carries that `now` in its log entries.
///
/// A backend is a cheap handle (`Clone`), shared by concurrent requests:
/// the actor runs reads inline and writes as tasks of their own, so a write
/// that waits for consensus never holds up a read.
pub trait AffinityBackend: Clone + Send + Sync + 'static {
    /// The live pin of a session, if any.
    fn get(&self, key: &PinKey, now: SystemTime) -> impl Future<Output = Result<Option<Pin>, AffinityError>> + Send;

    /// Writes `pin` unless a live pin exists; returns the pin in force
    /// afterwards. Two requests racing on a session's first turn thus agree.
    fn set_if_absent(
        &self,
        key: PinKey,
        pin: Pin,
        now: SystemTime,
    ) -> impl Future<Output = Result<Pin, AffinityError>> + Send;

    /// Moves a live pin to another model (after failover), keeping its expiry.
    fn repin(&self, key: PinKey, model: String, now: SystemTime) -> impl Future<Output = Result<(), AffinityError>> + Send;

    /// Drops expired pins; returns how many.
    fn purge_expired(&self, now: SystemTime) -> impl Future<Output = Result<usize, AffinityError>> + Send;

    /// Live pins held (approximately: expired ones may linger until purged).
    fn pin_count(&self) -> usize;
}

/// The pins themselves: a map with an expiry index, bounded in size. When
/// full, the pin closest to expiry makes room for the new one.
///
/// Every operation is a deterministic function of its arguments, so the
/// embedded store and each replica of the replicated one (which applies the
/// same commands, with the same `now`, in the same order) agree.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PinTable {
    pins: HashMap<PinKey, Pin>,
    /// (expiry, key), so purging and eviction touch only what they remove.
    by_expiry: BTreeSet<(SystemTime, PinKey)>,
    max_sessions: usize,
}

impl PinTable {
    pub fn new(max_sessions: usize) -> PinTable {
        PinTable {
            pins: HashMap::new(),
            by_expiry: BTreeSet::new(),
            max_sessions: max_sessions.max(1),
        }
    }

    fn remove(&mut self, key: &PinKey) {
        if let Some(old) = self.pins.remove(key) {
            self.by_expiry.remove(&(old.expires_at, key.clone()));
        }
    }

    fn insert(&mut self, key: PinKey, pin: Pin) {
        self.remove(&key);
        self.by_expiry.insert((pin.expires_at, key.clone()));
        self.pins.insert(key, pin);
    }

    fn make_room(&mut self, now: SystemTime) {
        if self.pins.len() < self.max_sessions {
            return;
        }
        self.purge(now);
        while self.pins.len() >= self.max_sessions {
            match self.by_expiry.pop_first() {
                Some((_, key)) => {
                    self.pins.remove(&key);
                }
                None => break,
            }
        }
    }

    /// The live pin of a session.
    pub fn get(&self, key: &PinKey, now: SystemTime) -> Option<Pin> {
        self.pins.get(key).filter(|pin| pin.is_live(now)).cloned()
    }

    /// Writes `pin` unless a live pin exists; returns the pin in force.
    pub fn set_if_absent(&mut self, key: PinKey, pin: Pin, now: SystemTime) -> Pin {
        if let Some(existing) = self.get(&key, now) {
            return existing;
        }
        self.make_room(now);
        self.insert(key, pin.clone());
        pin
    }

    /// Moves a live pin to `model`; returns whether there was one.
    pub fn repin(&mut self, key: &PinKey, model: String, now: SystemTime) -> bool {
        match self.pins.get_mut(key).filter(|pin| pin.is_live(now)) {
            Some(pin) => {
                pin.model = model;
                true
            }
            None => false,
        }
    }

    /// Drops pins expired at `now`; returns how many.
    pub fn purge(&mut self, now: SystemTime) -> usize {
        let mut purged = 0;
        while let Some((expires_at, _)) = self.by_expiry.first() {
            if *expires_at > now {
                break;
            }
            if let Some((_, key)) = self.by_expiry.pop_first() {
                self.pins.remove(&key);
                purged += 1;
            }
        }
        purged
    }

    pub fn len(&self) -> usize {
        self.pins.len()
    }

    /// Changes the bound; the next write evicts down to it.
    pub fn set_max_sessions(&mut self, max_sessions: usize) {
        self.max_sessions = max_sessions.max(1);
    }

    pub fn is_empty(&self) -> bool {
        self.pins.is_empty()
    }
}

/// The embedded single-node store: a [`PinTable`] behind a mutex (every
/// operation is a few map operations, so the lock is never held long).
#[derive(Debug, Clone)]
pub struct LocalStore {
    table: Arc<Mutex<PinTable>>,
}

impl LocalStore {
    pub fn new(max_sessions: usize) -> LocalStore {
        LocalStore {
            table: Arc::new(Mutex::new(PinTable::new(max_sessions))),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, PinTable> {
        self.table.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl AffinityBackend for LocalStore {
    async fn get(&self, key: &PinKey, now: SystemTime) -> Result<Option<Pin>, AffinityError> {
        Ok(self.table().get(key, now))
    }

    async fn set_if_absent(&self, key: PinKey, pin: Pin, now: SystemTime) -> Result<Pin, AffinityError> {
        Ok(self.table().set_if_absent(key, pin, now))
    }

    async fn repin(&self, key: PinKey, model: String, now: SystemTime) -> Result<(), AffinityError> {
        self.table().repin(&key, model, now);
        Ok(())
    }

    async fn purge_expired(&self, now: SystemTime) -> Result<usize, AffinityError> {
        Ok(self.table().purge(now))
    }

    fn pin_count(&self) -> usize {
        self.table().len()
    }
}

/// Expiry for a pin written now.
pub fn expiry(now: SystemTime, ttl: Duration) -> SystemTime {
    now.checked_add(ttl).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(session: &str) -> PinKey {
        PinKey {
            router: "r".to_owned(),
            session: session.to_owned(),
        }
    }

    fn pin(model: &str, expires_at: SystemTime) -> Pin {
        Pin {
            route: "t".to_owned(),
            model: model.to_owned(),
            expires_at,
        }
    }

    #[tokio::test]
    async fn first_writer_wins_until_expiry() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let store = LocalStore::new(10);
        let first = store.set_if_absent(key("s"), pin("a", t0 + Duration::from_secs(60)), t0).await.unwrap();
        let second = store.set_if_absent(key("s"), pin("b", t0 + Duration::from_secs(60)), t0).await.unwrap();
        assert_eq!((first.model.as_str(), second.model.as_str()), ("a", "a"));
        let later = t0 + Duration::from_secs(61);
        assert_eq!(store.get(&key("s"), later).await.unwrap(), None);
        let fresh = store.set_if_absent(key("s"), pin("b", later + Duration::from_secs(60)), later).await.unwrap();
        assert_eq!(fresh.model, "b");
    }

    #[tokio::test]
    async fn repin_moves_the_model_and_keeps_the_expiry() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let expires = t0 + Duration::from_secs(60);
        let store = LocalStore::new(10);
        store.set_if_absent(key("s"), pin("a", expires), t0).await.unwrap();
        store.repin(key("s"), "b".to_owned(), t0).await.unwrap();
        assert_eq!(store.get(&key("s"), t0).await.unwrap(), Some(pin("b", expires)));
    }

    #[tokio::test]
    async fn bounded_store_evicts_the_pin_closest_to_expiry() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let store = LocalStore::new(2);
        store.set_if_absent(key("old"), pin("a", t0 + Duration::from_secs(10)), t0).await.unwrap();
        store.set_if_absent(key("new"), pin("a", t0 + Duration::from_secs(20)), t0).await.unwrap();
        store.set_if_absent(key("newest"), pin("a", t0 + Duration::from_secs(30)), t0).await.unwrap();
        assert_eq!(store.pin_count(), 2);
        assert_eq!(store.get(&key("old"), t0).await.unwrap(), None);
        assert!(store.get(&key("newest"), t0).await.unwrap().is_some());
        assert_eq!(store.purge_expired(t0 + Duration::from_secs(25)).await.unwrap(), 1);
    }
}
