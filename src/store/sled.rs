//! The sled engine: one tree, keys laid out by [`super::codec`], every multi-key change applied
//! as one `sled::Batch` so it is atomic. All sled types stay in this file.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ::sled::{Batch, Config, Db};
use chrono::{DateTime, Utc};

use super::codec::{self, millis};
use super::{
    DeadLetter, ERROR_SNIPPET_MAX_BYTES, OutboxEntry, PageCommit, ResourceKey, Store, StoreError,
    StoreStats, truncate_to_bytes,
};

/// sled releases its file lock a few milliseconds after the last handle is dropped (its I/O
/// threads finish in the background), so an immediate reopen waits this long for it. A store
/// held by a running daemon stays locked far longer and still gets the clear error.
const LOCK_RELEASE_GRACE: Duration = Duration::from_secs(2);
const LOCK_RETRY_INTERVAL: Duration = Duration::from_millis(20);

pub struct SledStore {
    db: Db,
    path: PathBuf,
    /// Held across every mutation, so that counters change together with the data they count
    /// and read-modify-write steps do not interleave.
    counters: Mutex<Counters>,
}

#[derive(Default, Debug)]
struct Counters {
    /// Only keys with a non-empty queue.
    depth_by_key: BTreeMap<ResourceKey, u64>,
    outbox_total: u64,
    dead_total: u64,
}

impl Counters {
    fn queued(&mut self, key: &ResourceKey, count: u64) {
        if count > 0 {
            *self.depth_by_key.entry(key.clone()).or_default() += count;
            self.outbox_total += count;
        }
    }

    fn dequeued(&mut self, key: &ResourceKey) {
        if let Some(depth) = self.depth_by_key.get_mut(key) {
            *depth -= 1;
            if *depth == 0 {
                self.depth_by_key.remove(key);
            }
        }
        self.outbox_total = self.outbox_total.saturating_sub(1);
    }
}

fn engine(action: impl Into<String>, error: ::sled::Error) -> StoreError {
    StoreError::Engine {
        action: action.into(),
        reason: error.to_string(),
    }
}

fn corrupt(action: impl Into<String>, reason: String) -> StoreError {
    StoreError::Corrupt {
        action: action.into(),
        reason,
    }
}

fn is_lock_contention(error: &::sled::Error) -> bool {
    // sled 0.34 reports a failed flock only through this message.
    matches!(error, ::sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

impl SledStore {
    /// Opens (creating if needed) the store in `dir`, with sled's page cache limited to
    /// `cache_capacity_bytes`.
    pub fn open(dir: &Path, cache_capacity_bytes: u64) -> Result<SledStore, StoreError> {
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
        Ok(SledStore {
            db,
            path: dir.to_path_buf(),
            counters: Mutex::new(counters),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, Counters> {
        // A panic elsewhere while holding the lock leaves sled consistent (batches are atomic);
        // the counters may be off by that one operation until the next open.
        self.counters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn durable(&self, action: impl Into<String>) -> Result<(), StoreError> {
        self.db.flush().map(drop).map_err(|e| engine(action, e))
    }

    fn read_outbox(
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

    fn next_seq(&self, action: &str) -> Result<u64, StoreError> {
        self.db.generate_id().map_err(|e| engine(action, e))
    }

    fn seen_millis(
        &self,
        key: &ResourceKey,
        object_id: &str,
        action: &str,
    ) -> Result<Option<i64>, StoreError> {
        let value = self
            .db
            .get(codec::seen_key(key, object_id))
            .map_err(|e| engine(action, e))?;
        value
            .map(|v| codec::decode_millis(&v).map(millis))
            .transpose()
            .map_err(|reason| corrupt(action, reason))
    }

    /// Adds the seen updates and pruning of `commit` to `batch`, keeping the date index in
    /// step with the seen entries.
    fn stage_seen(
        &self,
        commit: &PageCommit,
        batch: &mut Batch,
        action: &str,
    ) -> Result<(), StoreError> {
        let key = &commit.key;
        // Dates set earlier in this same commit; the tree does not show them yet.
        let mut staged: HashMap<&str, i64> = HashMap::new();
        for (object_id, date) in &commit.seen {
            let ms = millis(*date);
            let previous = match staged.get(object_id.as_str()) {
                Some(ms) => Some(*ms),
                None => self.seen_millis(key, object_id, action)?,
            };
            if let Some(previous) = previous.filter(|previous| *previous != ms) {
                batch.remove(codec::seen_by_date_key(key, previous, object_id));
            }
            batch.insert(codec::seen_key(key, object_id), &ms.to_be_bytes());
            batch.insert(codec::seen_by_date_key(key, ms, object_id), &[]);
            staged.insert(object_id, ms);
        }
        let Some(cutoff) = commit.prune_seen_before else {
            return Ok(());
        };
        let cutoff_ms = millis(cutoff);
        let start = codec::resource_prefix(codec::TAG_SEEN_BY_DATE, key);
        // An empty id makes the smallest index key at the cutoff date: the range excludes it.
        let end = codec::seen_by_date_key(key, cutoff_ms, "");
        for item in self.db.range(start.as_slice()..end.as_slice()) {
            let (index_key, _) = item.map_err(|e| engine(action, e))?;
            let (_, object_id) = codec::parse_seen_by_date_suffix(&index_key[start.len()..])
                .map_err(|reason| corrupt(action, reason))?;
            if staged.contains_key(object_id.as_str()) {
                continue; // re-dated in this commit: judged below by its new date
            }
            batch.remove(index_key);
            batch.remove(codec::seen_key(key, &object_id));
        }
        for (object_id, ms) in staged {
            if ms < cutoff_ms {
                batch.remove(codec::seen_key(key, object_id));
                batch.remove(codec::seen_by_date_key(key, ms, object_id));
            }
        }
        Ok(())
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

impl Drop for SledStore {
    fn drop(&mut self) {
        // Acks and failure records are not flushed as they happen; keep them on a clean stop.
        if let Err(error) = self.db.flush() {
            tracing::warn!(path = %self.path.display(), %error, "store: final flush failed");
        }
    }
}

impl Store for SledStore {
    fn watermark(&self, key: &ResourceKey) -> Result<Option<DateTime<Utc>>, StoreError> {
        let action = || format!("read the watermark of {key}");
        let value = self
            .db
            .get(codec::watermark_key(key))
            .map_err(|e| engine(action(), e))?;
        value
            .map(|v| codec::decode_millis(&v))
            .transpose()
            .map_err(|reason| corrupt(action(), reason))
    }

    fn watermarks(&self) -> Result<Vec<(ResourceKey, DateTime<Utc>)>, StoreError> {
        let action = "list the watermarks";
        let mut marks = Vec::new();
        for item in self.db.scan_prefix([codec::TAG_WATERMARK]) {
            let (key_bytes, value) = item.map_err(|e| engine(action, e))?;
            let parsed = codec::parse_resource_key(&key_bytes)
                .and_then(|(key, _)| Ok((key, codec::decode_millis(&value)?)));
            marks.push(parsed.map_err(|reason| corrupt(action, reason))?);
        }
        marks.sort();
        Ok(marks)
    }

    fn seen_dates(
        &self,
        key: &ResourceKey,
        object_ids: &[&str],
    ) -> Result<Vec<Option<DateTime<Utc>>>, StoreError> {
        let action = format!("read seen ids of {key}");
        object_ids
            .iter()
            .map(|id| {
                self.seen_millis(key, id, &action)?
                    .map(|ms| codec::from_millis(ms).map_err(|r| corrupt(&action, r)))
                    .transpose()
            })
            .collect()
    }

    fn commit(&self, commit: PageCommit) -> Result<(), StoreError> {
        let key = &commit.key;
        if let Some(position) = commit
            .notifications
            .iter()
            .position(|n| n.event_id.is_empty())
        {
            return Err(StoreError::InvalidCommit {
                key: key.clone(),
                reason: format!("notification #{} has an empty event id", position + 1),
            });
        }
        let action = format!("commit a page of {key}");
        {
            let mut counters = self.lock();
            let mut batch = Batch::default();
            for notification in &commit.notifications {
                let entry = OutboxEntry {
                    key: key.clone(),
                    seq: self.next_seq(&action)?,
                    event_id: notification.event_id.clone(),
                    body: notification.body.clone(),
                    created_at: notification.created_at,
                    attempts: 0,
                    next_attempt_at: None,
                    last_error: None,
                };
                batch.insert(
                    codec::outbox_key(key, entry.seq),
                    codec::encode_outbox(&entry),
                );
            }
            self.stage_seen(&commit, &mut batch, &action)?;
            if let Some(watermark) = commit.watermark {
                batch.insert(codec::watermark_key(key), &codec::encode_millis(watermark));
            }
            self.db.apply_batch(batch).map_err(|e| engine(&action, e))?;
            counters.queued(key, commit.notifications.len() as u64);
        }
        // Outside the lock: acks and other commits need not wait for this fsync.
        self.durable(action)
    }

    fn queues(&self) -> Result<Vec<ResourceKey>, StoreError> {
        Ok(self.lock().depth_by_key.keys().cloned().collect())
    }

    fn outbox_head(&self, key: &ResourceKey) -> Result<Option<OutboxEntry>, StoreError> {
        let action = || format!("read the outbox head of {key}");
        let prefix = codec::resource_prefix(codec::TAG_OUTBOX, key);
        let Some(item) = self.db.scan_prefix(prefix).next() else {
            return Ok(None);
        };
        let (key_bytes, value) = item.map_err(|e| engine(action(), e))?;
        let (_, seq) = codec::parse_outbox_key(&key_bytes).map_err(|r| corrupt(action(), r))?;
        codec::decode_outbox(key.clone(), seq, &value)
            .map(Some)
            .map_err(|r| corrupt(action(), r))
    }

    fn outbox_depth(&self, key: &ResourceKey) -> Result<u64, StoreError> {
        Ok(self.lock().depth_by_key.get(key).copied().unwrap_or(0))
    }

    fn ack(&self, key: &ResourceKey, seq: u64) -> Result<(), StoreError> {
        let mut counters = self.lock();
        let removed = self
            .db
            .remove(codec::outbox_key(key, seq))
            .map_err(|e| engine(format!("acknowledge entry {seq} of {key}"), e))?;
        if removed.is_some() {
            counters.dequeued(key);
        }
        Ok(())
    }

    fn record_failure(
        &self,
        key: &ResourceKey,
        seq: u64,
        attempts: u32,
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        let action = format!("record a failed attempt of entry {seq} of {key}");
        let _counters = self.lock();
        let mut entry = self.read_outbox(key, seq, &action)?;
        entry.attempts = attempts;
        entry.next_attempt_at = Some(next_attempt_at);
        entry.last_error = Some(truncate_to_bytes(error, ERROR_SNIPPET_MAX_BYTES).to_string());
        self.db
            .insert(codec::outbox_key(key, seq), codec::encode_outbox(&entry))
            .map_err(|e| engine(action, e))?;
        Ok(())
    }

    fn dead_letter(
        &self,
        key: &ResourceKey,
        seq: u64,
        attempts: u32,
        status: Option<u16>,
        error: &str,
    ) -> Result<(), StoreError> {
        let action = format!("dead-letter entry {seq} of {key}");
        let mut counters = self.lock();
        let entry = self.read_outbox(key, seq, &action)?;
        let taken = |id: &str| self.db.contains_key(codec::dead_key(id));
        let id = match taken(&entry.event_id).map_err(|e| engine(&action, e))? {
            false => entry.event_id.clone(),
            true => format!("{}.{seq}", entry.event_id),
        };
        let letter = DeadLetter {
            id,
            key: key.clone(),
            event_id: entry.event_id,
            body: entry.body,
            created_at: entry.created_at,
            attempts,
            last_status: status,
            last_error: truncate_to_bytes(error, ERROR_SNIPPET_MAX_BYTES).to_string(),
            dead_at: Utc::now(),
        };
        let mut batch = Batch::default();
        batch.remove(codec::outbox_key(key, seq));
        batch.insert(codec::dead_key(&letter.id), codec::encode_dead(&letter));
        self.db.apply_batch(batch).map_err(|e| engine(&action, e))?;
        counters.dequeued(key);
        counters.dead_total += 1;
        Ok(())
    }

    fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError> {
        let action = "list the dead letters";
        let mut letters = Vec::new();
        for item in self.db.scan_prefix([codec::TAG_DEAD]) {
            let (key_bytes, value) = item.map_err(|e| engine(action, e))?;
            let id = String::from_utf8(key_bytes[1..].to_vec())
                .map_err(|_| corrupt(action, "dead letter id is not UTF-8".into()))?;
            letters.push(codec::decode_dead(id, &value).map_err(|r| corrupt(action, r))?);
        }
        letters.sort_by(|a, b| (a.dead_at, &a.id).cmp(&(b.dead_at, &b.id)));
        Ok(letters)
    }

    fn replay_dead_letter(&self, id: &str) -> Result<bool, StoreError> {
        let action = format!("replay dead letter {id}");
        {
            let mut counters = self.lock();
            let Some(value) = self
                .db
                .get(codec::dead_key(id))
                .map_err(|e| engine(&action, e))?
            else {
                return Ok(false);
            };
            let letter =
                codec::decode_dead(id.to_string(), &value).map_err(|r| corrupt(&action, r))?;
            // A fresh sequence number is larger than every queued one: the tail.
            let entry = OutboxEntry {
                key: letter.key,
                seq: self.next_seq(&action)?,
                event_id: letter.event_id,
                body: letter.body,
                created_at: letter.created_at,
                attempts: 0,
                next_attempt_at: None,
                last_error: None,
            };
            let mut batch = Batch::default();
            batch.remove(codec::dead_key(id));
            batch.insert(
                codec::outbox_key(&entry.key, entry.seq),
                codec::encode_outbox(&entry),
            );
            self.db.apply_batch(batch).map_err(|e| engine(&action, e))?;
            counters.queued(&entry.key, 1);
            counters.dead_total = counters.dead_total.saturating_sub(1);
        }
        self.durable(action)?;
        Ok(true)
    }

    fn drop_dead_letter(&self, id: &str) -> Result<bool, StoreError> {
        let action = format!("drop dead letter {id}");
        {
            let mut counters = self.lock();
            let removed = self
                .db
                .remove(codec::dead_key(id))
                .map_err(|e| engine(&action, e))?;
            if removed.is_none() {
                return Ok(false);
            }
            counters.dead_total = counters.dead_total.saturating_sub(1);
        }
        self.durable(action)?;
        Ok(true)
    }

    fn stats(&self) -> Result<StoreStats, StoreError> {
        let counters = self.lock();
        Ok(StoreStats {
            outbox_depth: counters.outbox_total,
            dead_letters: counters.dead_total,
        })
    }

    fn forget_resource(&self, key: &ResourceKey) -> Result<(), StoreError> {
        let action = format!("forget the polling state of {key}");
        {
            let _counters = self.lock();
            let mut batch = Batch::default();
            batch.remove(codec::watermark_key(key));
            for tag in [codec::TAG_SEEN, codec::TAG_SEEN_BY_DATE] {
                for item in self.db.scan_prefix(codec::resource_prefix(tag, key)).keys() {
                    batch.remove(item.map_err(|e| engine(&action, e))?);
                }
            }
            self.db.apply_batch(batch).map_err(|e| engine(&action, e))?;
        }
        self.durable(action)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.durable(format!("flush the store at {}", self.path.display()))
    }

    fn seen_count(&self, key: &ResourceKey) -> Result<u64, StoreError> {
        let mut count = 0;
        for item in self
            .db
            .scan_prefix(codec::resource_prefix(codec::TAG_SEEN, key))
            .keys()
        {
            item.map_err(|e| engine(format!("count seen ids of {key}"), e))?;
            count += 1;
        }
        Ok(count)
    }
}
