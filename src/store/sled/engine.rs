//! One open sled database: opening it, its counters, and the steps the store's operations
//! share. [`super::SledStore`] wraps it with recovery from failures.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ::sled::{Batch, Config, Db};

use super::seen::SeenSets;
use crate::store::bodylog::{BodyLog, BodyRef};
use crate::store::codec;
use crate::store::{OutboxEntry, ResourceKey, StoreError};

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
        let open_error = |reason: String| StoreError::Open {
            path: dir.to_path_buf(),
            reason,
        };
        let OpenScan {
            counters,
            live_bodies,
            inline,
        } = count_on_open(&db).map_err(open_error)?;
        let bodies = BodyLog::open(&dir.join(BODY_LOG_DIR), live_bodies)
            .map_err(|e| open_error(format!("body log: {e}")))?;
        move_inline_bodies(&db, &bodies, inline).map_err(open_error)?;
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

    /// One outbox entry without its body, and where the body is.
    pub(super) fn read_outbox(
        &self,
        key: &ResourceKey,
        seq: u64,
        action: &str,
    ) -> Result<(OutboxEntry, BodyRef), StoreError> {
        let value = self
            .db
            .get(codec::outbox_key(key, seq))
            .map_err(|e| engine(action, e))?
            .ok_or_else(|| StoreError::NotInOutbox {
                key: key.clone(),
                seq,
            })?;
        decode_logged(key.clone(), seq, &value).map_err(|reason| corrupt(action, reason))
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

    /// Drops a body reference whose outbox entry is gone; a segment left without live bodies
    /// is deleted once that removal is on disk.
    pub(super) fn release_body(&self, body: &BodyRef, action: &str) -> Result<(), StoreError> {
        let drained = self
            .bodies
            .release(body)
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

/// Opening moves every inline body into the body log; meeting one later means damage.
pub(super) const INLINE_AFTER_OPEN: &str = "outbox entry with its body inline after opening";

/// Decodes an outbox value whose body is in the body log (every one is after opening).
pub(super) fn decode_logged(
    key: ResourceKey,
    seq: u64,
    value: &[u8],
) -> Result<(OutboxEntry, BodyRef), String> {
    match codec::decode_outbox(key, seq, value)? {
        (entry, Some(body)) => Ok((entry, body)),
        (_, None) => Err(INLINE_AFTER_OPEN.into()),
    }
}

/// A body-log failure: damaged or missing data is corruption; anything else (a full disk, an
/// I/O error) is an engine failure, after which the store is reopened.
pub(super) fn body_error(action: impl Into<String>, error: std::io::Error) -> StoreError {
    match error.kind() {
        std::io::ErrorKind::InvalidData | std::io::ErrorKind::NotFound => {
            corrupt(action, format!("body log: {error}"))
        }
        _ => StoreError::Engine {
            action: action.into(),
            reason: format!("body log: {error}"),
        },
    }
}

/// Moves bodies stored inside outbox values (stores written before the body log) into the log.
fn move_inline_bodies(db: &Db, bodies: &BodyLog, inline: Vec<OutboxEntry>) -> Result<(), String> {
    if inline.is_empty() {
        return Ok(());
    }
    let texts: Vec<&[u8]> = inline.iter().map(|e| e.body.as_slice()).collect();
    let refs = bodies
        .append(&texts)
        .map_err(|e| format!("body log: {e}"))?;
    let mut batch = Batch::default();
    for (entry, body) in inline.iter().zip(&refs) {
        batch.insert(
            codec::outbox_key(&entry.key, entry.seq),
            codec::encode_outbox(entry, body),
        );
    }
    db.apply_batch(batch).map_err(|e| e.to_string())?;
    db.flush().map(drop).map_err(|e| e.to_string())
}

/// What opening learns from one scan of the outbox and dead letters.
struct OpenScan {
    counters: Counters,
    /// Live bodies per body-log segment.
    live_bodies: HashMap<u64, u64>,
    /// Entries whose body is still inside the value (written before the body log).
    inline: Vec<OutboxEntry>,
}

/// Recomputes the counters, and the live bodies per body-log segment, by one scan of the
/// outbox and the dead letters.
fn count_on_open(db: &Db) -> Result<OpenScan, String> {
    let mut counters = Counters::default();
    let mut inline = Vec::new();
    let mut live_bodies: HashMap<u64, u64> = HashMap::new();
    for item in db.scan_prefix([codec::TAG_OUTBOX]) {
        let (key_bytes, value) = item.map_err(|e| e.to_string())?;
        let (key, seq) = codec::parse_outbox_key(&key_bytes)?;
        let unreadable = |reason| format!("outbox entry {seq} of {key}: {reason}");
        match codec::outbox_body_ref(&value).map_err(unreadable)? {
            Some(body) => *live_bodies.entry(body.segment).or_default() += 1,
            None => {
                let (entry, _) =
                    codec::decode_outbox(key.clone(), seq, &value).map_err(unreadable)?;
                inline.push(entry);
            }
        }
        counters.queued(&key, 1);
    }
    for item in db.scan_prefix([codec::TAG_DEAD]).keys() {
        item.map_err(|e| e.to_string())?;
        counters.dead_total += 1;
    }
    Ok(OpenScan {
        counters,
        live_bodies,
        inline,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_stored_inline_by_older_versions_move_to_the_body_log_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let key = ResourceKey::new("cw", "contacts");
        {
            let db = Config::new().path(dir.path()).open().unwrap();
            // A version-2 outbox value: created, attempts, no next attempt, event id, no
            // error, then the LZ4 body.
            let mut value = vec![2];
            value.extend_from_slice(&1_767_225_600_000i64.to_be_bytes());
            value.extend_from_slice(&0u32.to_be_bytes());
            value.push(0);
            value.extend_from_slice(&2u32.to_be_bytes());
            value.extend_from_slice(b"e1");
            value.push(0);
            value.extend_from_slice(&lz4_flex::compress_prepend_size(b"{\"old\":true}"));
            db.insert(codec::outbox_key(&key, 7), value).unwrap();
            db.flush().unwrap();
        }
        let engine = Engine::open(dir.path(), 1 << 20).unwrap();
        let (entry, body) = engine.read_outbox(&key, 7, "test").unwrap();
        assert_eq!(entry.event_id, "e1");
        assert_eq!(engine.read_body(&body, "test").unwrap(), b"{\"old\":true}");
        assert_eq!(engine.lock().outbox_total, 1);
    }
}
