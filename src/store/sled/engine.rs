//! One open sled database: opening it, its counters, and the steps the store's operations
//! share. [`super::SledStore`] wraps it with recovery from failures.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ::sled::{Config, Db};

use super::seen::SeenSets;
use crate::store::codec;
use crate::store::{OutboxEntry, ResourceKey, StoreError};

/// sled releases its file lock a few milliseconds after the last handle is dropped (its I/O
/// threads finish in the background), so an immediate reopen waits this long for it. A store
/// held by a running daemon stays locked far longer and still gets the clear error.
const LOCK_RELEASE_GRACE: Duration = Duration::from_secs(2);
const LOCK_RETRY_INTERVAL: Duration = Duration::from_millis(20);

/// One open sled database and its counters.
pub(super) struct Engine {
    pub(super) db: Db,
    /// Held across every mutation, so that counters change together with the data they count
    /// and read-modify-write steps do not interleave.
    pub(super) counters: Mutex<Counters>,
    /// Seen sets of the resources being polled; dropped with the engine, so a reopened store
    /// reads them from disk again.
    pub(super) seen: SeenSets,
}

#[derive(Default, Debug)]
pub(super) struct Counters {
    /// Only keys with a non-empty queue.
    pub(super) depth_by_key: BTreeMap<ResourceKey, u64>,
    pub(super) outbox_total: u64,
    pub(super) dead_total: u64,
}

impl Counters {
    pub(super) fn queued(&mut self, key: &ResourceKey, count: u64) {
        if count > 0 {
            *self.depth_by_key.entry(key.clone()).or_default() += count;
            self.outbox_total += count;
        }
    }

    pub(super) fn dequeued(&mut self, key: &ResourceKey) {
        if let Some(depth) = self.depth_by_key.get_mut(key) {
            *depth -= 1;
            if *depth == 0 {
                self.depth_by_key.remove(key);
            }
        }
        self.outbox_total = self.outbox_total.saturating_sub(1);
    }
}

pub(super) fn engine(action: impl Into<String>, error: ::sled::Error) -> StoreError {
    StoreError::Engine {
        action: action.into(),
        reason: error.to_string(),
    }
}

pub(super) fn corrupt(action: impl Into<String>, reason: String) -> StoreError {
    StoreError::Corrupt {
        action: action.into(),
        reason,
    }
}

fn is_lock_contention(error: &::sled::Error) -> bool {
    // sled 0.34 reports a failed flock only through this message.
    matches!(error, ::sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

impl Engine {
    pub(super) fn open(dir: &Path, cache_capacity_bytes: u64) -> Result<Engine, StoreError> {
        let config = Config::new().path(dir).cache_capacity(cache_capacity_bytes);
        let started = Instant::now();
        let db = loop {
            match config.open() {
                Ok(db) => break db,
                Err(error) if is_lock_contention(&error) => {
                    if started.elapsed() >= LOCK_RELEASE_GRACE {
                        return Err(StoreError::Locked {
                            path: dir.to_path_buf(),
                        });
                    }
                    std::thread::sleep(LOCK_RETRY_INTERVAL);
                }
                Err(error) => {
                    return Err(StoreError::Open {
                        path: dir.to_path_buf(),
                        reason: error.to_string(),
                    });
                }
            }
        };
        let counters = count_on_open(&db).map_err(|error| StoreError::Open {
            path: dir.to_path_buf(),
            reason: error.to_string(),
        })?;
        Ok(Engine {
            db,
            counters: Mutex::new(counters),
            seen: SeenSets::default(),
        })
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Counters> {
        // A panic elsewhere while holding the lock leaves sled consistent (batches are atomic);
        // the counters may be off by that one operation until the next open.
        self.counters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn durable(&self, action: impl Into<String>) -> Result<(), StoreError> {
        self.db.flush().map(drop).map_err(|e| engine(action, e))
    }

    pub(super) fn read_outbox(
        &self,
        key: &ResourceKey,
        seq: u64,
        action: &str,
    ) -> Result<OutboxEntry, StoreError> {
        let value = self
            .db
            .get(codec::outbox_key(key, seq))
            .map_err(|e| engine(action, e))?
            .ok_or_else(|| StoreError::NotInOutbox {
                key: key.clone(),
                seq,
            })?;
        codec::decode_outbox(key.clone(), seq, &value).map_err(|reason| corrupt(action, reason))
    }

    pub(super) fn next_seq(&self, action: &str) -> Result<u64, StoreError> {
        self.db.generate_id().map_err(|e| engine(action, e))
    }
}

/// Recomputes the counters by one scan of the outbox and the dead letters.
fn count_on_open(db: &Db) -> Result<Counters, String> {
    let mut counters = Counters::default();
    for item in db.scan_prefix([codec::TAG_OUTBOX]).keys() {
        let key_bytes = item.map_err(|e| e.to_string())?;
        let (key, _) = codec::parse_outbox_key(&key_bytes)?;
        counters.queued(&key, 1);
    }
    for item in db.scan_prefix([codec::TAG_DEAD]).keys() {
        item.map_err(|e| e.to_string())?;
        counters.dead_total += 1;
    }
    Ok(counters)
}
