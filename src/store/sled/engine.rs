//! One open sled database: opening it, its counters, and the steps the store's operations
//! share. [`super::SledStore`] wraps it with recovery from failures.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ::sled::{Config, Db};

use super::dead::DeadIndex;
use super::outbox::{self, OpenScan, QueueState};
use super::seen::SeenSets;
use crate::store::bodylog::{BodyLog, BodyRef};

use crate::store::{ResourceKey, StoreError};

/// sled releases its file lock a few milliseconds after the last handle is dropped (its I/O
/// threads finish in the background), so an immediate reopen waits this long for it. A store
/// held by a running daemon stays locked far longer and still gets the clear error.
const LOCK_RELEASE_GRACE: Duration = Duration::from_secs(2);
/// The body log's folder, inside the state directory beside sled's files.
const BODY_LOG_DIR: &str = "bodies";
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
    pub(super) bodies: BodyLog,
}

#[derive(Default, Debug)]
pub(super) struct Counters {
    /// Only non-empty queues.
    pub(super) queues: BTreeMap<ResourceKey, QueueState>,
    pub(super) outbox_total: u64,
    /// Every dead-letter key, corrupt entries set aside included.
    pub(super) dead: DeadIndex,
    /// Corrupt entries set aside since the store was opened.
    pub(super) corrupt_set_aside: u64,
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
        let open_error = |reason: String| StoreError::Open {
            path: dir.to_path_buf(),
            reason,
        };
        let OpenScan {
            mut counters,
            live_bodies,
            older,
            leftovers,
            damaged,
        } = outbox::scan_on_open(&db).map_err(open_error)?;
        let bodies = BodyLog::open(&dir.join(BODY_LOG_DIR), live_bodies)
            .map_err(|e| open_error(format!("body log: {e}")))?;
        outbox::finish_open(&db, &bodies, &mut counters, older, leftovers, damaged)
            .map_err(open_error)?;
        Ok(Engine {
            db,
            bodies,
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

    /// Writes the queue fronts (acks) held in memory, then flushes.
    pub(super) fn durable_with_fronts(&self, action: impl Into<String>) -> Result<(), StoreError> {
        let action = action.into();
        self.write_fronts(&|| action.clone())?;
        self.durable(action)
    }

    pub(super) fn read_body(&self, body: &BodyRef, action: &str) -> Result<Vec<u8>, StoreError> {
        self.bodies.read(body).map_err(|e| body_error(action, e))
    }

    /// Several bodies, one result each (see [`BodyLog::read_many`]).
    pub(super) fn read_bodies(
        &self,
        bodies: &[BodyRef],
        action: &str,
    ) -> Vec<Result<Vec<u8>, StoreError>> {
        self.bodies
            .read_many(bodies)
            .into_iter()
            .map(|read| read.map_err(|e| body_error(action, e)))
            .collect()
    }

    /// Drops body references whose outbox entries are gone; a segment left without live
    /// bodies is deleted once that removal is on disk.
    pub(super) fn release_bodies(
        &self,
        bodies: &[BodyRef],
        action: &dyn Fn() -> String,
    ) -> Result<(), StoreError> {
        if bodies.is_empty() {
            return Ok(());
        }
        let action = &action();
        let drained = self
            .bodies
            .release(bodies)
            .map_err(|e| body_error(action, e))?;
        if drained.is_empty() {
            return Ok(());
        }
        self.durable(action)?;
        self.bodies
            .delete(&drained)
            .map_err(|e| body_error(action, e))
    }

    pub(super) fn next_seq(&self, action: &str) -> Result<u64, StoreError> {
        self.db.generate_id().map_err(|e| engine(action, e))
    }
}

/// A body-log failure: damaged, cut short or missing data is corruption; anything else (a full
/// disk, an I/O error) is an engine failure, after which the store is reopened.
pub(super) fn body_error(action: impl Into<String>, error: std::io::Error) -> StoreError {
    match error.kind() {
        std::io::ErrorKind::InvalidData
        | std::io::ErrorKind::NotFound
        | std::io::ErrorKind::UnexpectedEof => corrupt(action, format!("body log: {error}")),
        _ => StoreError::Engine {
            action: action.into(),
            reason: format!("body log: {error}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::codec;

    /// A version-2 outbox value (one entry, its body inline and LZ4-compressed), as the first
    /// builds wrote them.
    fn version_2_entry(event_id: &str, failure: Option<(u32, i64, &str)>, body: &[u8]) -> Vec<u8> {
        let put_str = |value: &mut Vec<u8>, text: &str| {
            value.extend_from_slice(&(text.len() as u32).to_be_bytes());
            value.extend_from_slice(text.as_bytes());
        };
        let mut value = vec![2];
        value.extend_from_slice(&1_767_225_600_000i64.to_be_bytes());
        value.extend_from_slice(&failure.map_or(0, |f| f.0).to_be_bytes());
        match failure {
            Some((_, next_ms, _)) => {
                value.push(1);
                value.extend_from_slice(&next_ms.to_be_bytes());
            }
            None => value.push(0),
        }
        put_str(&mut value, event_id);
        match failure {
            Some((_, _, error)) => {
                value.push(1);
                put_str(&mut value, error);
            }
            None => value.push(0),
        }
        value.extend_from_slice(&lz4_flex::compress_prepend_size(body));
        value
    }

    #[test]
    fn single_entries_of_older_versions_become_runs_keeping_order_bodies_and_failures() {
        let dir = tempfile::tempdir().unwrap();
        let key = ResourceKey::new("cw", "contacts");
        {
            let db = Config::new().path(dir.path()).open().unwrap();
            let failed =
                version_2_entry("e1", Some((2, 1_767_225_700_000, "HTTP 503")), b"{\"n\":1}");
            db.insert(codec::outbox_key(&key, 7), failed).unwrap();
            let plain = version_2_entry("e2", None, b"{\"n\":2}");
            db.insert(codec::outbox_key(&key, 8), plain).unwrap();
            db.flush().unwrap();
        }
        for _open in 0..2 {
            // The second open reads what the first one rewrote.
            let engine = Engine::open(dir.path(), 1 << 20).unwrap();
            assert_eq!(engine.lock().outbox_total, 2);
            let outbox::Front::Entries(front) = engine.front(&key, 10, &|| "test".into()).unwrap()
            else {
                panic!("the head reads");
            };
            let ids: Vec<&str> = front.iter().map(|(e, _)| e.event_id.as_str()).collect();
            assert_eq!(ids, ["e1", "e2"]);
            assert!(front[0].0.seq < front[1].0.seq);
            let head = &front[0].0;
            assert_eq!(
                (head.attempts, head.last_error.as_deref()),
                (2, Some("HTTP 503"))
            );
            assert_eq!(
                head.next_attempt_at.map(|at| at.timestamp_millis()),
                Some(1_767_225_700_000)
            );
            assert_eq!((front[1].0.attempts, front[1].0.next_attempt_at), (0, None));
            assert_eq!(engine.read_body(&front[0].1, "test").unwrap(), b"{\"n\":1}");
            assert_eq!(engine.read_body(&front[1].1, "test").unwrap(), b"{\"n\":2}");
        }
    }
}
