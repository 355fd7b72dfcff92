//! One open sled database: its handles, its counters, and the steps the store's operations
//! share. The parts add their own steps to [`Engine`] in files of their own (`open.rs`,
//! `outbox.rs`, `corrupt.rs`) and import this file, never the reverse; `super::SledStore`
//! wraps it with recovery from failures.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use ::sled::Db;

use super::dead::DeadIndex;
use super::errors::{body_error, engine};
use super::seen::SeenSets;
use crate::store::bodylog::{BodyLog, BodyRef};
use crate::store::codec::QueueFront;
use crate::store::{ResourceKey, StoreError};

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
    pub(super) flushes: GroupFlush,
}

/// Flushes shared by the writers that wait at the same moment (group commit): a writer whose
/// write a flush begun after it already covers returns when that flush ends, without an fsync
/// of its own. Thousands of idle resources each commit a watermark every interval; one flush
/// then serves every commit that arrived while the previous one ran.
#[derive(Debug, Default)]
pub(super) struct GroupFlush {
    /// Tickets handed out: a writer takes the next one after its write is applied.
    issued: AtomicU64,
    /// The highest ticket a finished flush covers.
    covered: Mutex<u64>,
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

/// A non-empty queue as the engine tracks it.
#[derive(Debug, Default)]
pub(super) struct QueueState {
    pub(super) depth: u64,
    /// The cursor and the head's failure as they are now.
    pub(super) front: QueueFront,
    /// A queue-front value for this queue is in sled.
    pub(super) front_on_disk: bool,
    /// `front` has changed since it was last written.
    pub(super) front_dirty: bool,
    /// When `front` was last written, to space the writes of acks.
    pub(super) front_written_at: Option<Instant>,
    /// The first run: its id and number of entries, once looked up.
    pub(super) first_run: Option<(u64, usize)>,
}

impl Engine {
    pub(super) fn lock(&self) -> MutexGuard<'_, Counters> {
        // A panic elsewhere while holding the lock leaves sled consistent (batches are atomic);
        // the counters may be off by that one operation until the next open.
        self.counters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Returns once every write this thread has applied is on disk.
    pub(super) fn durable(&self, action: impl Into<String>) -> Result<(), StoreError> {
        let ticket = self.flushes.issued.fetch_add(1, Ordering::SeqCst) + 1;
        let mut covered = self
            .flushes
            .covered
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if *covered >= ticket {
            return Ok(());
        }
        // Every ticket issued so far belongs to a write applied before this flush starts.
        let covers = self.flushes.issued.load(Ordering::SeqCst);
        self.db.flush().map_err(|e| engine(action, e))?;
        *covered = covers;
        Ok(())
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
