//! Idle commits held back: a poll that found nothing only moves its resource's watermark (and
//! prunes the seen set below the next lower bound). Writing that durably at every poll was most
//! of an idle daemon's CPU (BENCHMARKS.md, issue 17), so [`IdleWatermarks`] keeps the latest such
//! move of each resource in memory and writes them all together ([`Store::commit_many`]) about
//! once a second, and at a stop.
//!
//! Why nothing is lost or sent twice: a move held back and lost in a crash leaves the durable
//! watermark where the previous write put it, so the next run asks from further back; the seen
//! set dedupes what it reads again, because the pruning of a move is held back with it (the seen
//! entries the wider window needs are still on disk). A move is never written after a later
//! commit of its resource that set a watermark (a batch and such a commit are written one after
//! the other, and the commit drops the move it supersedes), and a batch never writes a move once
//! a newer one replaced it in memory. One body of logic for every engine: an engine only gives
//! [`Store::commit_many`], its batched write (PostgreSQL's checks each instance's lease in the
//! batch's transaction).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{PageCommit, ResourceKey, Store, StoreError};

/// How often the moves held back are written.
pub const IDLE_WRITE_INTERVAL: Duration = Duration::from_secs(1);

/// The idle watermark moves not written yet, over the store they go to.
pub struct IdleWatermarks {
    store: Arc<dyn Store>,
    pending: Mutex<Pending>,
    /// Held while a batch is written and while a commit that sets a watermark is, so that the
    /// two land one after the other, never interleaved.
    writes: Mutex<()>,
    /// The task that writes the moves every [`IDLE_WRITE_INTERVAL`] runs.
    writer_started: AtomicBool,
    /// The last batch failed: logged once until one is written again.
    failing: AtomicBool,
}

#[derive(Default)]
struct Pending {
    moves: HashMap<ResourceKey, Deferred>,
    /// Numbers each move held back, so a batch drops only the moves it wrote.
    generation: u64,
}

#[derive(Clone, Copy, Debug)]
struct Deferred {
    generation: u64,
    watermark: DateTime<Utc>,
    prune_seen_before: Option<DateTime<Utc>>,
}

impl Deferred {
    fn commit(&self, key: &ResourceKey) -> PageCommit {
        let mut commit = PageCommit::new(key.clone());
        commit.watermark = Some(self.watermark);
        commit.prune_seen_before = self.prune_seen_before;
        commit
    }
}

impl IdleWatermarks {
    /// Moves held back are written by a task started on the runtime of the first one.
    pub fn new(store: Arc<dyn Store>) -> Arc<IdleWatermarks> {
        IdleWatermarks::with_writer(store, false)
    }

    /// Without a writer task: whoever holds it calls [`IdleWatermarks::write_pending`] (tests
    /// that choose when a batch is written).
    pub fn written_by_caller(store: Arc<dyn Store>) -> Arc<IdleWatermarks> {
        IdleWatermarks::with_writer(store, true)
    }

    fn with_writer(store: Arc<dyn Store>, by_caller: bool) -> Arc<IdleWatermarks> {
        Arc::new(IdleWatermarks {
            store,
            pending: Mutex::default(),
            writes: Mutex::new(()),
            writer_started: AtomicBool::new(by_caller),
            failing: AtomicBool::new(false),
        })
    }

    /// The store the moves go to.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// A commit that only moves a watermark (and prunes seen ids): no notification, no seen or
    /// known id.
    pub fn is_idle(commit: &PageCommit) -> bool {
        commit.watermark.is_some()
            && commit.notifications.is_empty()
            && commit.seen.is_empty()
            && commit.known.is_empty()
    }

    /// The watermark the next run of `key` starts from: the move held back, else the store's.
    pub fn watermark(&self, key: &ResourceKey) -> Result<Option<DateTime<Utc>>, StoreError> {
        if let Some(deferred) = self.lock_pending().moves.get(key) {
            return Ok(Some(deferred.watermark));
        }
        self.store.watermark(key)
    }

    /// Holds an idle commit back (written within about [`IDLE_WRITE_INTERVAL`]); gives the
    /// commit back, to be committed as any other, when it is not idle or when no async runtime
    /// is there to write it later.
    /// Must not be used for a resource's first watermark (a baseline): lost, it would be set
    /// again later, and what changed in between would never be seen.
    #[must_use = "a commit given back is not held back: commit it"]
    pub fn defer(self: &Arc<Self>, commit: PageCommit) -> Option<PageCommit> {
        let Some(watermark) = commit.watermark.filter(|_| Self::is_idle(&commit)) else {
            return Some(commit);
        };
        if !self.start_writer() {
            return Some(commit);
        }
        let mut pending = self.lock_pending();
        pending.generation = pending.generation.wrapping_add(1);
        let generation = pending.generation;
        let earlier = pending.moves.get(&commit.key).map(|d| d.prune_seen_before);
        // Two prunes in a row remove what the later of them does.
        let prune_seen_before = commit.prune_seen_before.max(earlier.flatten());
        let deferred = Deferred {
            generation,
            watermark,
            prune_seen_before,
        };
        pending.moves.insert(commit.key, deferred);
        None
    }

    /// [`Store::commit`], durable when it returns; one that sets a watermark supersedes the
    /// move held back for its resource (and is never overtaken by a batch holding that move).
    pub fn commit(&self, commit: PageCommit) -> Result<(), StoreError> {
        if commit.watermark.is_none() {
            return self.store.commit(commit);
        }
        let key = commit.key.clone();
        let _writes = lock(&self.writes);
        self.store.commit(commit)?;
        self.lock_pending().moves.remove(&key);
        Ok(())
    }

    /// Writes every move held back, in one batch; the number written. A move refused because
    /// this node lost its instance's lease is dropped (the fence has told the node); after any
    /// other failure the moves stay, for the next batch, and the first error is returned.
    pub fn write_pending(&self) -> Result<usize, StoreError> {
        let _writes = lock(&self.writes);
        let mut batch: Vec<(ResourceKey, Deferred)> = self
            .lock_pending()
            .moves
            .iter()
            .map(|(key, deferred)| (key.clone(), *deferred))
            .collect();
        if batch.is_empty() {
            return Ok(0);
        }
        batch.sort_by(|a, b| a.0.cmp(&b.0));
        let commits = batch.iter().map(|(key, d)| d.commit(key)).collect();
        let results = self.store.commit_many(commits);
        let mut pending = self.lock_pending();
        let (mut written, mut first_error) = (0, None);
        for ((key, deferred), result) in batch.into_iter().zip(results) {
            let settled = match result {
                Ok(()) => {
                    written += 1;
                    true
                }
                Err(error) if error.lost_lease().is_some() => true,
                Err(error) => {
                    first_error.get_or_insert(error);
                    false
                }
            };
            let unchanged = pending
                .moves
                .get(&key)
                .is_some_and(|d| d.generation == deferred.generation);
            if settled && unchanged {
                pending.moves.remove(&key);
            }
        }
        first_error.map_or(Ok(written), Err)
    }

    /// Drops the moves held back of `instance` (its lease went to another node: the new owner
    /// starts from the durable watermark, a window only wider).
    pub fn discard_instance(&self, instance: &str) {
        self.lock_pending()
            .moves
            .retain(|key, _| key.instance != instance);
    }

    /// How many moves are held back.
    pub fn pending(&self) -> usize {
        self.lock_pending().moves.len()
    }

    /// Starts the writer task on the current runtime once; false when there is none.
    fn start_writer(self: &Arc<Self>) -> bool {
        if self.writer_started.load(Ordering::Acquire) {
            return true;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return false;
        };
        if self.writer_started.swap(true, Ordering::AcqRel) {
            return true;
        }
        let layer = Arc::downgrade(self);
        runtime.spawn(async move {
            let mut ticks = tokio::time::interval(IDLE_WRITE_INTERVAL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(layer) = layer.upgrade() else {
                    return;
                };
                let _ = tokio::task::spawn_blocking(move || layer.write_and_report()).await;
            }
        });
        true
    }

    /// One batch from the writer task; a failure is logged when it starts, and when it ends.
    fn write_and_report(&self) {
        match self.write_pending() {
            Ok(_) => {
                if self.failing.swap(false, Ordering::AcqRel) {
                    tracing::info!("store: the idle watermarks held back are written again");
                }
            }
            Err(error) => {
                if !self.failing.swap(true, Ordering::AcqRel) {
                    tracing::warn!(
                        "store: cannot write the idle watermarks held back ({} resource(s)), \
                         retrying every second: {error}",
                        self.pending()
                    );
                }
            }
        }
    }

    fn lock_pending(&self) -> MutexGuard<'_, Pending> {
        lock(&self.pending)
    }
}

/// A map and a token of plain values stay whole whatever panicked while holding them.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
