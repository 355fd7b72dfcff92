//! The sled engine: one tree, keys laid out by [`super::codec`], every multi-key change applied
//! as one `sled::Batch` so it is atomic. All sled types stay in this file and its submodules.

mod corrupt;
mod dead;
mod engine;
mod errors;
mod export;
mod known;
mod open;
mod outbox;
mod seen;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use ::sled::Batch;
use chrono::{DateTime, Utc};

use super::bodylog::BodyRef;
use super::codec;
use super::{
    CorruptEntry, DeadLetter, DeadLetterSummary, KnownIds, NewNotification, OutboxEntry,
    PageCommit, ReconcileCommit, ResourceKey, Store, StoreError, StoreStats,
};
use corrupt::Damage;
use engine::{Counters, Engine};
use errors::{body_error, corrupt, engine};
use outbox::Front;

/// First pause before reopening a store that failed; it doubles with each failure in a row.
const REOPEN_FIRST_PAUSE: Duration = Duration::from_millis(250);
const REOPEN_MAX_PAUSE: Duration = Duration::from_secs(16);

/// The store, and how it recovers from an engine failure (a full disk, an I/O error).
///
/// sled applies a batch in memory before writing it, and after a failed write it refuses every
/// later operation. So after any engine error the open database is dropped — what it holds
/// beyond the disk is exactly what the failed operations promised not to have done — and the
/// next operation reopens it from disk, with a growing pause between attempts. Until then
/// every operation fails: nothing reads state that is not on disk.
pub struct SledStore {
    /// `None` while a failed engine waits to be reopened.
    engine: RwLock<Option<Engine>>,
    /// An engine error happened: reopen before the next operation.
    broken: AtomicBool,
    /// Failures since the last durable write, for the pause between reopen attempts.
    strikes: AtomicU32,
    recovery: Mutex<Recovery>,
    path: PathBuf,
    cache_capacity_bytes: u64,
}

#[derive(Default)]
struct Recovery {
    /// Why the store is failing, for the errors returned until it is reopened.
    reason: String,
    last_attempt: Option<Instant>,
}

/// A read hold on the open engine: reopening waits until no operation holds one.
struct EngineGuard<'a>(RwLockReadGuard<'a, Option<Engine>>);

impl std::ops::Deref for EngineGuard<'_> {
    type Target = Engine;
    fn deref(&self) -> &Engine {
        self.0.as_ref().expect("checked when the guard was made")
    }
}

impl SledStore {
    /// Opens (creating if needed) the store in `dir`, with sled's page cache limited to
    /// `cache_capacity_bytes`.
    pub fn open(dir: &Path, cache_capacity_bytes: u64) -> Result<SledStore, StoreError> {
        Ok(SledStore {
            engine: RwLock::new(Some(Engine::open(dir, cache_capacity_bytes)?)),
            broken: AtomicBool::new(false),
            strikes: AtomicU32::new(0),
            recovery: Mutex::default(),
            path: dir.to_path_buf(),
            cache_capacity_bytes,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Overwrites the stored value of `key`'s first outbox run with `bytes`, as a damaged disk
    /// or a bug could: for the tests of corrupt entries. False when the queue has no run.
    #[doc(hidden)]
    pub fn overwrite_first_run_for_tests(
        &self,
        key: &ResourceKey,
        bytes: &[u8],
    ) -> Result<bool, StoreError> {
        self.with_engine(|e| {
            let action = "overwrite an outbox run (test)";
            let prefix = codec::resource_prefix(codec::TAG_OUTBOX, key);
            let first = e.db.scan_prefix(prefix).keys().next().transpose();
            let Some(run_key) = first.map_err(|err| engine(action, err))? else {
                return Ok(false);
            };
            e.db.insert(run_key, bytes)
                .map_err(|err| engine(action, err))?;
            e.durable(action).map(|()| true)
        })
    }

    /// Overwrites the stored value of dead letter `id` with `bytes` (see
    /// [`SledStore::overwrite_first_run_for_tests`]). False when there is no such letter.
    #[doc(hidden)]
    pub fn overwrite_dead_letter_for_tests(
        &self,
        id: &str,
        bytes: &[u8],
    ) -> Result<bool, StoreError> {
        self.with_engine(|e| {
            let action = "overwrite a dead letter (test)";
            let mut counters = e.lock();
            let old =
                e.db.insert(codec::dead_key(id), bytes)
                    .map_err(|err| engine(action, err))?;
            match &old {
                Some(old) => {
                    counters.dead.remove_value(old);
                    counters.dead.add_value(bytes);
                }
                None => {
                    e.db.remove(codec::dead_key(id))
                        .map_err(|err| engine(action, err))?;
                }
            }
            drop(counters);
            e.durable(action).map(|()| old.is_some())
        })
    }

    /// Every resource with a watermark, ordered by key (for tests and diagnostics).
    #[doc(hidden)]
    pub fn watermarks(&self) -> Result<Vec<(ResourceKey, DateTime<Utc>)>, StoreError> {
        self.with_engine(|e| {
            let action = "list the watermarks";
            let mut marks = Vec::new();
            for item in e.db.scan_prefix([codec::TAG_WATERMARK]) {
                let (key_bytes, value) = item.map_err(|e| engine(action, e))?;
                let parsed = codec::parse_resource_key(&key_bytes)
                    .and_then(|(key, _)| Ok((key, codec::decode_millis(&value)?)));
                marks.push(parsed.map_err(|reason| corrupt(action, reason))?);
            }
            marks.sort();
            Ok(marks)
        })
    }

    /// The head of `key`'s queue, as on any engine (`<dyn Store>::outbox_head`).
    pub fn outbox_head(&self, key: &ResourceKey) -> Result<Option<OutboxEntry>, StoreError> {
        (self as &dyn Store).outbox_head(key)
    }

    /// Drops the watermark and seen ids of `key`, not its outbox (for tests and diagnostics).
    #[doc(hidden)]
    pub fn forget_resource(&self, key: &ResourceKey) -> Result<(), StoreError> {
        self.with_engine(|e| {
            let action = format!("forget the polling state of {key}");
            {
                let _counters = e.lock();
                let mut batch = Batch::default();
                batch.remove(codec::watermark_key(key));
                let prefix = codec::resource_prefix(codec::TAG_SEEN_CHUNK, key);
                for item in e.db.scan_prefix(prefix).keys() {
                    batch.remove(item.map_err(|e| engine(&action, e))?);
                }
                e.db.apply_batch(batch).map_err(|e| engine(&action, e))?;
                e.seen.forget(key);
            }
            e.durable(action)
        })
    }

    /// Number of seen entries kept for `key` (for tests and diagnostics).
    #[doc(hidden)]
    pub fn seen_count(&self, key: &ResourceKey) -> Result<u64, StoreError> {
        self.with_engine(|e| {
            let action = format!("count seen ids of {key}");
            let loaded = e.seen.lock(&e.db, key, &action)?;
            Ok(loaded.guard().len() as u64)
        })
    }

    /// The raw bytes kept of a corrupt entry (for inspection and tests).
    #[doc(hidden)]
    pub fn corrupt_entry_bytes(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.with_engine(|e| e.corrupt_entry_bytes(id, &format!("read corrupt entry {id}")))
    }

    /// Runs one operation on the open engine (reopening it first after a failure); an engine
    /// error marks the store for reopening.
    fn with_engine<T>(
        &self,
        operation: impl FnOnce(&Engine) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let result = {
            let engine = self.engine()?;
            operation(&engine)
        };
        if let Err(StoreError::Engine { action, reason }) = &result {
            self.mark_broken(format!("cannot {action}: {reason}"));
        }
        result
    }

    fn engine(&self) -> Result<EngineGuard<'_>, StoreError> {
        if self.broken.load(Ordering::Acquire) {
            self.reopen()?;
        }
        let guard = self.engine.read().unwrap_or_else(PoisonError::into_inner);
        if guard.is_none() {
            // Released before `unavailable` locks `recovery`: `reopen` takes them the other way.
            drop(guard);
            return Err(self.unavailable());
        }
        Ok(EngineGuard(guard))
    }

    /// A commit written to disk: the store works again, reopen promptly if it fails later.
    fn note_commit(&self, committed: &Result<(), StoreError>) {
        if committed.is_ok() {
            self.strikes.store(0, Ordering::Release);
        }
    }

    fn mark_broken(&self, reason: String) {
        let mut recovery = self.recovery.lock().unwrap_or_else(PoisonError::into_inner);
        self.strikes.fetch_add(1, Ordering::AcqRel);
        if !self.broken.swap(true, Ordering::AcqRel) {
            tracing::error!(
                path = %self.path.display(),
                "store: {reason}; reopening it from disk (changes not yet on disk are redone)"
            );
            recovery.reason = reason;
        }
    }

    fn unavailable(&self) -> StoreError {
        let recovery = self.recovery.lock().unwrap_or_else(PoisonError::into_inner);
        StoreError::Engine {
            action: "use the store".into(),
            reason: format!(
                "it failed earlier ({}) and has not been reopened yet",
                recovery.reason
            ),
        }
    }

    /// Drops the failed engine and opens the store again from disk, unless the last attempt
    /// was too recent.
    fn reopen(&self) -> Result<(), StoreError> {
        let mut recovery = self.recovery.lock().unwrap_or_else(PoisonError::into_inner);
        if !self.broken.load(Ordering::Acquire) {
            return Ok(()); // another thread reopened it meanwhile
        }
        let strikes = self
            .strikes
            .load(Ordering::Acquire)
            .saturating_sub(1)
            .min(16);
        let pause = REOPEN_FIRST_PAUSE
            .saturating_mul(1 << strikes)
            .min(REOPEN_MAX_PAUSE);
        if recovery.last_attempt.is_some_and(|at| at.elapsed() < pause) {
            drop(recovery);
            return Err(self.unavailable());
        }
        recovery.last_attempt = Some(Instant::now());
        let mut slot = self.engine.write().unwrap_or_else(PoisonError::into_inner);
        // Dropped before opening: sled holds a file lock until its last handle is gone.
        drop(slot.take());
        match Engine::open(&self.path, self.cache_capacity_bytes) {
            Ok(engine) => {
                *slot = Some(engine);
                self.broken.store(false, Ordering::Release);
                tracing::warn!(path = %self.path.display(), "store: reopened after a failure");
                Ok(())
            }
            Err(error) => {
                self.strikes.fetch_add(1, Ordering::AcqRel);
                recovery.reason = error.to_string();
                Err(error)
            }
        }
    }
}

/// Applies `commit` to the engine, in memory and in sled's log, not yet flushed; the action
/// named, for the flush that makes it durable.
fn apply_commit(e: &Engine, commit: &PageCommit) -> Result<String, StoreError> {
    let key = &commit.key;
    let action = format!("commit a page of {key}");
    let mut staged = stage_commit(e, key, &commit.notifications, action)?;
    let (batch, action) = (&mut staged.batch, staged.action.as_str());
    // A commit that neither adds seen ids nor prunes (a baseline, say) need not load the
    // resource's seen set at all.
    let touches_seen = !commit.seen.is_empty() || commit.prune_seen_before.is_some();
    let loaded = match touches_seen {
        true => Some(e.seen.lock(&e.db, key, action)?),
        false => None,
    };
    let mut seen = loaded.as_ref().map(|loaded| loaded.guard());
    let change = seen
        .as_ref()
        .map_or(seen::SeenChange::None, |seen| seen.stage(commit, batch));
    known::stage_added(key, &commit.known, batch);
    if let Some(watermark) = commit.watermark {
        batch.insert(codec::watermark_key(key), &codec::encode_millis(watermark));
    }
    staged.apply()?;
    match (change, seen.as_mut()) {
        (seen::SeenChange::Compacted, _) => e.seen.forget(key),
        (change, Some(seen)) => seen.apply(change),
        (_, None) => {}
    }
    // The rest of `staged` (the counters' lock) is dropped after the seen set's.
    Ok(staged.action)
}

/// Applies watermark moves and their pruning, one resource each, as ONE sled batch (not yet
/// flushed); a result per move (a resource whose seen set cannot be read is left out, refused).
fn apply_moves(
    e: &Engine,
    commits: &[PageCommit],
    action: &str,
) -> Result<Vec<Result<(), StoreError>>, StoreError> {
    let _counters = e.lock();
    let mut results = Vec::with_capacity(commits.len());
    let mut loaded = Vec::with_capacity(commits.len());
    for commit in commits {
        let seen = match commit.prune_seen_before {
            Some(_) => e.seen.lock(&e.db, &commit.key, action).map(Some),
            None => Ok(None),
        };
        match seen {
            Ok(seen) => {
                loaded.push(seen);
                results.push(Ok(()));
            }
            Err(error @ StoreError::Engine { .. }) => return Err(error),
            Err(error) => {
                loaded.push(None);
                results.push(Err(error));
            }
        }
    }
    let mut guards: Vec<_> = loaded
        .iter()
        .map(|l| l.as_ref().map(|l| l.guard()))
        .collect();
    let mut batch = Batch::default();
    let mut changes = Vec::with_capacity(commits.len());
    for ((commit, seen), result) in commits.iter().zip(&guards).zip(&results) {
        let change = match (result, seen) {
            (Ok(()), Some(seen)) => seen.stage(commit, &mut batch),
            _ => seen::SeenChange::None,
        };
        changes.push(change);
        if let (Ok(()), Some(watermark)) = (result, commit.watermark) {
            batch.insert(
                codec::watermark_key(&commit.key),
                &codec::encode_millis(watermark),
            );
        }
    }
    e.db.apply_batch(batch).map_err(|e| engine(action, e))?;
    for ((commit, seen), change) in commits.iter().zip(guards.iter_mut()).zip(changes) {
        match (change, seen.as_mut()) {
            (seen::SeenChange::Compacted, _) => e.seen.forget(&commit.key),
            (change, Some(seen)) => seen.apply(change),
            (_, None) => {}
        }
    }
    Ok(results)
}

impl Drop for SledStore {
    fn drop(&mut self) {
        // Acks and failure records are not flushed as they happen; keep them on a clean stop.
        let engine = self
            .engine
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(engine) = engine
            && !*self.broken.get_mut()
            && let Err(error) = engine.durable_with_fronts("flush the store at a stop")
        {
            tracing::warn!(path = %self.path.display(), %error, "store: final flush failed");
        }
    }
}

impl Store for SledStore {
    fn watermark(&self, key: &ResourceKey) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.with_engine(|e| {
            let action = || format!("read the watermark of {key}");
            let value =
                e.db.get(codec::watermark_key(key))
                    .map_err(|e| engine(action(), e))?;
            value
                .map(|v| codec::decode_millis(&v))
                .transpose()
                .map_err(|reason| corrupt(action(), reason))
        })
    }

    fn seen_dates(
        &self,
        key: &ResourceKey,
        object_ids: &[&str],
    ) -> Result<Vec<Option<DateTime<Utc>>>, StoreError> {
        self.with_engine(|e| {
            if object_ids.is_empty() {
                return Ok(Vec::new());
            }
            let action = format!("read seen ids of {key}");
            let loaded = e.seen.lock(&e.db, key, &action)?;
            let set = loaded.guard();
            object_ids
                .iter()
                .map(|id| {
                    set.date_ms(id)
                        .map(|ms| codec::from_millis(ms).map_err(|r| corrupt(&action, r)))
                        .transpose()
                })
                .collect()
        })
    }

    fn commit(&self, commit: PageCommit) -> Result<(), StoreError> {
        let committed = self.with_engine(|e| {
            let action = apply_commit(e, &commit)?;
            // Outside the lock: acks and other commits need not wait for this fsync.
            e.durable(action)
        });
        self.note_commit(&committed);
        committed
    }

    /// Watermark moves (the idle batch): all in one sled batch and one flush, since sled writes
    /// every batch applied to its log at once. Any other commits: each applied on its own, then
    /// one flush.
    fn commit_many(&self, commits: Vec<PageCommit>) -> Vec<Result<(), StoreError>> {
        let only_moves = commits.iter().all(super::IdleWatermarks::is_idle);
        let mut results = Vec::with_capacity(commits.len());
        let flushed = self.with_engine(|e| {
            let action = format!("write the watermarks of {} resource(s)", commits.len());
            if only_moves {
                results = apply_moves(e, &commits, &action)?;
            } else {
                for commit in &commits {
                    match apply_commit(e, commit) {
                        Ok(_) => results.push(Ok(())),
                        // sled refuses everything after a failed write: none of them is on disk.
                        Err(error @ StoreError::Engine { .. }) => return Err(error),
                        Err(error) => results.push(Err(error)),
                    }
                }
            }
            e.durable(action)
        });
        match flushed {
            Ok(()) => {
                self.note_commit(&Ok(()));
                results
            }
            Err(error) => {
                let reason = error.to_string();
                let failed = |c: &PageCommit| StoreError::Engine {
                    action: format!("write the watermark of {}", c.key),
                    reason: reason.clone(),
                };
                commits.iter().map(|c| Err(failed(c))).collect()
            }
        }
    }

    fn known_ids(&self, key: &ResourceKey) -> Result<KnownIds, StoreError> {
        self.with_engine(|e| known::read(&e.db, key))
    }

    fn commit_reconcile(&self, commit: ReconcileCommit) -> Result<(), StoreError> {
        let committed = self.with_engine(|e| {
            let key = &commit.key;
            let action = format!("commit a reconcile of {key}");
            let mut staged = stage_commit(e, key, &commit.notifications, action)?;
            known::stage_reconcile(&commit, &mut staged.batch);
            staged.apply()?;
            // The counters' lock is let go before the flush, as the page commits' is.
            e.durable(staged.into_action())
        });
        self.note_commit(&committed);
        committed
    }

    fn forget_known_ids(&self, key: &ResourceKey) -> Result<bool, StoreError> {
        self.with_engine(|e| {
            let action = format!("forget the known ids of {key}");
            let mut batch = Batch::default();
            let any = known::stage_forget(&e.db, key, &mut batch)?;
            e.db.apply_batch(batch).map_err(|e| engine(&action, e))?;
            e.durable(action)?;
            Ok(any)
        })
    }

    fn queues(&self) -> Result<Vec<ResourceKey>, StoreError> {
        self.with_engine(|e| Ok(e.lock().queues.keys().cloned().collect()))
    }

    fn outbox_depth(&self, key: &ResourceKey) -> Result<u64, StoreError> {
        self.with_engine(|e| Ok(e.lock().queues.get(key).map_or(0, |q| q.depth)))
    }

    fn ack(&self, key: &ResourceKey, seq: u64) -> Result<(), StoreError> {
        self.with_engine(|e| {
            // Formatted only for an error: acks are the hot path of delivery.
            let action = || format!("acknowledge entry {seq} of {key}");
            let released = e.ack(key, seq, &action)?;
            e.release_bodies(&released, &action)
        })
    }

    fn record_failure(
        &self,
        key: &ResourceKey,
        seq: u64,
        attempts: u32,
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        self.with_engine(|e| {
            let action = || format!("record a failed attempt of entry {seq} of {key}");
            e.record_failure(key, seq, attempts, next_attempt_at, error, &action)
        })
    }

    fn dead_letter(
        &self,
        key: &ResourceKey,
        seq: u64,
        attempts: u32,
        status: Option<u16>,
        error: &str,
    ) -> Result<(), StoreError> {
        self.with_engine(|e| {
            let action = || format!("dead-letter entry {seq} of {key}");
            let released = e.dead_letter(key, seq, attempts, status, error, &action)?;
            e.release_bodies(&released, &action)
        })
    }

    fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError> {
        self.with_engine(|e| {
            let action = "list the dead letters";
            let mut letters = Vec::new();
            for item in e.db.scan_prefix([codec::TAG_DEAD]) {
                let (key_bytes, value) = item.map_err(|e| engine(action, e))?;
                // What does not read is listed by `corrupt_entries` instead.
                let Ok(id) = String::from_utf8(key_bytes[1..].to_vec()) else {
                    continue;
                };
                if let Ok(letter) = codec::decode_dead(id, &value) {
                    letters.push(letter);
                }
            }
            letters.sort_by(|a, b| (a.dead_at, &a.id).cmp(&(b.dead_at, &b.id)));
            Ok(letters)
        })
    }

    fn replay_dead_letter(&self, id: &str) -> Result<bool, StoreError> {
        self.with_engine(|e| {
            let action = format!("replay dead letter {id}");
            {
                let mut counters = e.lock();
                let Some(value) =
                    e.db.get(codec::dead_key(id))
                        .map_err(|e| engine(&action, e))?
                else {
                    return Ok(false);
                };
                let letter = match codec::decode_set_aside(&value) {
                    Some(record) => Err(record.map_or_else(|reason| reason, |r| r.reason)),
                    None => codec::decode_dead(id.to_string(), &value),
                }
                .map_err(|reason| StoreError::CorruptDeadLetter {
                    id: id.to_string(),
                    reason,
                })?;
                let body = e
                    .bodies
                    .append(&[&letter.body])
                    .map_err(|err| body_error(&action, err))?;
                // A fresh run id is larger than every queued one: the tail.
                let mut batch = Batch::default();
                batch.remove(codec::dead_key(id));
                let entry = codec::NewRunEntry {
                    event_id: &letter.event_id,
                    created_at: letter.created_at,
                    body: body[0],
                };
                e.stage_runs(&letter.key, &[entry], &mut batch, &action)?;
                e.db.apply_batch(batch).map_err(|e| engine(&action, e))?;
                counters.queued(&letter.key, 1);
                counters.dead.remove_value(&value);
            }
            e.durable(action)?;
            Ok(true)
        })
    }

    fn drop_dead_letter(&self, id: &str) -> Result<bool, StoreError> {
        self.with_engine(|e| {
            let action = format!("drop dead letter {id}");
            {
                let mut counters = e.lock();
                let removed =
                    e.db.remove(codec::dead_key(id))
                        .map_err(|e| engine(&action, e))?;
                let Some(removed) = removed else {
                    return Ok(false);
                };
                counters.dead.remove_value(&removed);
            }
            e.durable(action)?;
            Ok(true)
        })
    }

    fn stats(&self) -> Result<StoreStats, StoreError> {
        self.with_engine(|e| {
            let counters = e.lock();
            Ok(StoreStats {
                outbox_depth: counters.outbox_total,
                dead_letters: counters.dead.total(),
                corrupt_set_aside: counters.corrupt_set_aside,
            })
        })
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.with_engine(|e| {
            e.durable_with_fronts(format!("flush the store at {}", self.path.display()))
        })
    }

    fn outbox_front(
        &self,
        key: &ResourceKey,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        self.with_engine(|e| {
            let action = || format!("read the front of the outbox of {key}");
            for _ in 0..SET_ASIDE_MAX_PER_READ {
                let damage = match e.front(key, limit, &action)? {
                    Front::DamagedHead(damage) => damage,
                    Front::Entries(front) => match with_bodies(e, front, &action)? {
                        Ok(entries) => return Ok(entries),
                        Err(damage) => damage,
                    },
                };
                let released = e.set_aside_head(key, damage, &action)?;
                e.release_bodies(&released, &action)?;
            }
            Err(corrupt(
                action(),
                format!(
                    "{SET_ASIDE_MAX_PER_READ} corrupt entries in a row were set aside; the next read goes on"
                ),
            ))
        })
    }

    fn dead_letter_summary(&self) -> Result<DeadLetterSummary, StoreError> {
        self.with_engine(|e| Ok(e.lock().dead.summary()))
    }

    fn corrupt_entries(&self) -> Result<Vec<CorruptEntry>, StoreError> {
        self.with_engine(|e| e.corrupt_entries("list the corrupt entries among the dead letters"))
    }
}

/// Corrupt heads set aside by one read of a queue's front, at most: a queue of nothing but
/// corrupt entries is worked through over several reads, not in one long hold of the store.
const SET_ASIDE_MAX_PER_READ: usize = 64;

/// A commit begun: its notifications checked, their bodies in the body log and their entries
/// staged at the tail of the queue in `batch`, the counters locked until it is applied. Page and
/// reconcile commits stage the rest of what they write in the same batch.
struct StagedCommit<'a> {
    engine: &'a Engine,
    key: &'a ResourceKey,
    /// What the commit is, for errors and the flush that makes it durable.
    action: String,
    counters: MutexGuard<'a, Counters>,
    batch: Batch,
    queued: u64,
}

fn stage_commit<'a>(
    e: &'a Engine,
    key: &'a ResourceKey,
    notifications: &[NewNotification],
    action: String,
) -> Result<StagedCommit<'a>, StoreError> {
    check_event_ids(key, notifications)?;
    let bodies = append_bodies(e, notifications, &action)?;
    let counters = e.lock();
    let mut batch = Batch::default();
    stage_notifications(e, key, notifications, &bodies, &mut batch, &action)?;
    Ok(StagedCommit {
        engine: e,
        key,
        action,
        counters,
        batch,
        queued: notifications.len() as u64,
    })
}

impl StagedCommit<'_> {
    /// Applies the batch (in sled's log, not yet flushed) and counts the queued notifications;
    /// the counters stay locked until the commit is dropped.
    fn apply(&mut self) -> Result<(), StoreError> {
        let batch = std::mem::take(&mut self.batch);
        self.engine
            .db
            .apply_batch(batch)
            .map_err(|err| engine(&self.action, err))?;
        self.counters.queued(self.key, self.queued);
        Ok(())
    }

    /// Ends the commit (the counters' lock with it) and gives back what it was, for the flush.
    fn into_action(self) -> String {
        self.action
    }
}

/// A notification without an event id could never be deduplicated: refused before anything is
/// written.
fn check_event_ids(key: &ResourceKey, notifications: &[NewNotification]) -> Result<(), StoreError> {
    match notifications.iter().position(|n| n.event_id.is_empty()) {
        Some(position) => Err(StoreError::InvalidCommit {
            key: key.clone(),
            reason: format!("notification #{} has an empty event id", position + 1),
        }),
        None => Ok(()),
    }
}

/// The bodies go to the body log first: on disk before the sled batch that refers to them (see
/// store/bodylog.rs).
fn append_bodies(
    e: &Engine,
    notifications: &[NewNotification],
    action: &str,
) -> Result<Vec<BodyRef>, StoreError> {
    let texts: Vec<&[u8]> = notifications.iter().map(|n| n.body.as_slice()).collect();
    e.bodies
        .append(&texts)
        .map_err(|err| body_error(action, err))
}

/// Stages `notifications` (their bodies already in the body log) at the tail of `key`'s queue.
fn stage_notifications(
    e: &Engine,
    key: &ResourceKey,
    notifications: &[NewNotification],
    bodies: &[BodyRef],
    batch: &mut Batch,
    action: &str,
) -> Result<(), StoreError> {
    let entries: Vec<codec::NewRunEntry<'_>> = notifications
        .iter()
        .zip(bodies)
        .map(|(notification, body)| codec::NewRunEntry {
            event_id: &notification.event_id,
            created_at: notification.created_at,
            body: *body,
        })
        .collect();
    e.stage_runs(key, &entries, batch, action)
}

/// The entries of `front` with their bodies read, up to the first whose body does not read
/// (met again when it is the head); `Err(damage)` when that is the head's body.
fn with_bodies(
    e: &Engine,
    front: Vec<(OutboxEntry, BodyRef)>,
    action: &dyn Fn() -> String,
) -> Result<Result<Vec<OutboxEntry>, Damage>, StoreError> {
    let (mut entries, bodies): (Vec<OutboxEntry>, Vec<BodyRef>) = front.into_iter().unzip();
    let reads = e.read_bodies(&bodies, &action());
    for (at, read) in reads.into_iter().enumerate() {
        match read {
            Ok(body) => entries[at].body = body,
            Err(StoreError::Corrupt { reason, .. }) if at == 0 => {
                let head = &entries[0];
                return Ok(Err(Damage::Entry {
                    seq: head.seq,
                    event_id: Some(head.event_id.clone()),
                    created_at: Some(head.created_at),
                    raw: e.bodies.read_stored(&bodies[0]).unwrap_or_default(),
                    reason: format!("body of {} (entry {}): {reason}", head.event_id, head.seq),
                }));
            }
            Err(error) if at == 0 => return Err(error),
            Err(_) => {
                entries.truncate(at);
                break;
            }
        }
    }
    Ok(Ok(entries))
}
