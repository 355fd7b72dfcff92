//! Durable state behind a small trait: watermarks, seen ids, outbox, dead letters.
//!
//! The poller hands each fetched page to [`Store::commit`] as one [`PageCommit`]; delivery
//! walks the per-resource outbox queues ([`Store::queues`], [`Store::outbox_front`]) and
//! acknowledges, reschedules or dead-letters their heads. [`SledStore`] is the engine;
//! nothing outside `store/sled.rs` and `store/sled/` sees a sled type, so another engine can
//! replace it. Queues are stored as runs with a cursor each (`store/codec/runs.rs`). Queued
//! bodies are kept beside sled in the body log (`store/bodylog.rs`), so delivered ones take no
//! disk space.

mod bodylog;
mod codec;
mod fence;
mod idle;
mod postgres;
mod sled;
mod snapshot;

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use chrono::{DateTime, Utc};

pub use self::fence::Fence;
pub use self::idle::IdleWatermarks;
pub use self::postgres::{ClusterView, Heartbeat, LeaseClaim, LeaseView, NodeView, PostgresStore};
pub use self::sled::SledStore;
pub use self::snapshot::{ResourceState, SnapshotCounts, StoreSnapshot};
use crate::object_id::ObjectId;

/// The answer of a store call made from async code (see [`Store::outbox_front_async`]).
pub type StoreFuture<T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'static>>;

/// Longest error text kept with an outbox entry or a dead letter, in bytes.
pub const ERROR_SNIPPET_MAX_BYTES: usize = 512;

/// Which instance and resource a piece of state belongs to (names, never file contents).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceKey {
    pub instance: String,
    pub resource: String,
}

impl ResourceKey {
    pub fn new(instance: impl Into<String>, resource: impl Into<String>) -> ResourceKey {
        ResourceKey {
            instance: instance.into(),
            resource: resource.into(),
        }
    }
}

impl fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.instance, self.resource)
    }
}

/// A notification to append to a resource's outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewNotification {
    pub event_id: String,
    /// The exact JSON bytes that will be POSTed; stored as-is.
    pub body: Vec<u8>,
    pub created_at: DateTime<Utc>,
}

/// Everything one fetched page changes; lands atomically and durably.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageCommit {
    pub key: ResourceKey,
    /// Appended to the tail of the key's queue, in order.
    pub notifications: Vec<NewNotification>,
    /// Object id → updated date now emitted.
    pub seen: Vec<(String, DateTime<Utc>)>,
    /// Set when `Some`.
    pub watermark: Option<DateTime<Utc>>,
    /// Drop seen entries with a date before this (applied after `seen`).
    pub prune_seen_before: Option<DateTime<Utc>>,
    /// Ids to add to the resource's known set (only for resources with a DELETED check).
    pub known: Vec<ObjectId>,
}

impl PageCommit {
    /// An empty commit for `key`; fill in the fields that apply.
    pub fn new(key: ResourceKey) -> PageCommit {
        PageCommit {
            key,
            notifications: Vec::new(),
            seen: Vec::new(),
            watermark: None,
            prune_seen_before: None,
            known: Vec::new(),
        }
    }
}

/// The ids a resource is known to have: every id an event was sent for, and every id a
/// reconcile saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KnownIds {
    pub ids: HashSet<ObjectId>,
    /// The resource's first reconcile has committed (until then, a reconcile only fills the set).
    pub baselined: bool,
}

/// What a complete reconcile changes; lands atomically and durably, like a [`PageCommit`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReconcileCommit {
    pub key: ResourceKey,
    /// DELETED notifications, appended to the tail of the key's queue.
    pub notifications: Vec<NewNotification>,
    /// Ids that leave the known set.
    pub removed: Vec<ObjectId>,
    /// Ids that join it.
    pub added: Vec<ObjectId>,
}

impl ReconcileCommit {
    pub fn new(key: ResourceKey) -> ReconcileCommit {
        ReconcileCommit {
            key,
            notifications: Vec::new(),
            removed: Vec::new(),
            added: Vec::new(),
        }
    }
}

/// A queued notification as delivery sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxEntry {
    pub key: ResourceKey,
    /// Position in the queue: larger means created later.
    pub seq: u64,
    pub event_id: String,
    pub body: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub attempts: u32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

/// A notification that delivery gave up on, kept until replayed or dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// Stable handle for replay/drop: the event id (suffixed with the queue position in the
    /// unlikely case that id is already dead-lettered).
    pub id: String,
    pub key: ResourceKey,
    pub event_id: String,
    pub body: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub attempts: u32,
    pub last_status: Option<u16>,
    /// At most [`ERROR_SNIPPET_MAX_BYTES`] bytes.
    pub last_error: String,
    pub dead_at: DateTime<Utc>,
}

/// A stored entry that could not be read (an outbox entry or a dead letter), kept aside with
/// the dead letters: listed, droppable, never replayed, its raw bytes kept for inspection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorruptEntry {
    /// Handle for drop: the dead letter's id, or `corrupt-N` for an outbox entry set aside.
    pub id: String,
    /// The queue it came from, when that much is readable.
    pub key: Option<ResourceKey>,
    pub event_id: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    /// When it was found unreadable and set aside.
    pub found_at: DateTime<Utc>,
    /// What was unreadable and why, at most [`ERROR_SNIPPET_MAX_BYTES`] bytes.
    pub reason: String,
    /// Raw bytes kept.
    pub size: u64,
}

/// The dead letters at a glance, without reading any of them: what `status` shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeadLetterSummary {
    /// One per queue with dead letters, ordered by key; corrupt entries whose queue is unknown
    /// come first, under `None`.
    pub queues: Vec<QueueDeadLetters>,
}

/// The dead letters of one queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueDeadLetters {
    pub key: Option<ResourceKey>,
    /// Corrupt entries set aside included.
    pub count: u64,
    pub corrupt: u64,
    /// When the first and the last of them were dead-lettered (or set aside), to the second;
    /// `None` when none has a readable date.
    pub oldest: Option<DateTime<Utc>>,
    pub newest: Option<DateTime<Utc>>,
}

impl DeadLetterSummary {
    pub fn total(&self) -> u64 {
        self.queues.iter().map(|q| q.count).sum()
    }

    pub fn corrupt(&self) -> u64 {
        self.queues.iter().map(|q| q.corrupt).sum()
    }

    pub fn oldest(&self) -> Option<DateTime<Utc>> {
        self.queues.iter().filter_map(|q| q.oldest).min()
    }

    pub fn newest(&self) -> Option<DateTime<Utc>> {
        self.queues.iter().filter_map(|q| q.newest).max()
    }

    /// The dead letters of `key`'s queue, if it has any.
    pub fn of(&self, key: &ResourceKey) -> Option<&QueueDeadLetters> {
        self.queues.iter().find(|q| q.key.as_ref() == Some(key))
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub outbox_depth: u64,
    /// Dead letters kept, corrupt entries set aside among them included.
    pub dead_letters: u64,
    /// Corrupt entries set aside since the store was opened (a counter).
    pub corrupt_set_aside: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cannot open the store at {}: it is locked by another open store, is another pollerd running?",
        path.display()
    )]
    Locked { path: PathBuf },
    #[error("cannot open the store at {}: {reason}", path.display())]
    Open { path: PathBuf, reason: String },
    /// The engine failed while doing `action` (which names the resource where there is one).
    #[error("store: cannot {action}: {reason}")]
    Engine { action: String, reason: String },
    #[error("store: cannot {action}: a stored value is unreadable ({reason})")]
    Corrupt { action: String, reason: String },
    #[error("store: {key} has no outbox entry {seq} (already acknowledged or dead-lettered?)")]
    NotInOutbox { key: ResourceKey, seq: u64 },
    /// Entries leave a queue in order: only its head can be acknowledged, failed or buried.
    #[error("store: entry {seq} of {key} is not the head of its queue (entry {head} is)")]
    NotHead {
        key: ResourceKey,
        seq: u64,
        head: u64,
    },
    #[error(
        "store: dead letter {id} is corrupt and cannot be replayed ({reason}); `pollerd dead-letters drop {id}` removes it"
    )]
    CorruptDeadLetter { id: String, reason: String },
    #[error("store: refusing a commit for {key}: {reason}")]
    InvalidCommit { key: ResourceKey, reason: String },
    /// A shared store refused a write of `instance`: this node does not hold its lease at the
    /// epoch it claimed (the lease expired and another node took it, or was given up). Nothing
    /// of the write landed; the node must stop the instance.
    #[error(
        "store: lease lost: node {node} no longer holds the lease of instance {instance}, so its write was refused (the instance stops here; the owner of the lease goes on)"
    )]
    LeaseLost { instance: String, node: String },
}

impl StoreError {
    /// The instance whose lease this node lost, when that is the error.
    pub fn lost_lease(&self) -> Option<&str> {
        match self {
            StoreError::LeaseLost { instance, .. } => Some(instance),
            _ => None,
        }
    }
}

pub trait Store: Send + Sync + 'static {
    fn watermark(&self, key: &ResourceKey) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// The seen date of each id, in the order asked.
    fn seen_dates(
        &self,
        key: &ResourceKey,
        object_ids: &[&str],
    ) -> Result<Vec<Option<DateTime<Utc>>>, StoreError>;
    /// Atomic: notifications + seen + known ids + watermark + pruning land together or not at
    /// all, and are DURABLE (flushed to disk) when this returns Ok — delivery may send them right
    /// after.
    fn commit(&self, commit: PageCommit) -> Result<(), StoreError>;
    /// Several commits, each atomic as [`Store::commit`] and durable when this returns, one
    /// result each in the order given: the idle watermarks [`IdleWatermarks`] held back, written
    /// together (one flush for sled, one transaction for PostgreSQL, where each instance's lease
    /// is checked and a commit of an instance not held is refused alone as
    /// [`StoreError::LeaseLost`]). The default commits them one by one.
    fn commit_many(&self, commits: Vec<PageCommit>) -> Vec<Result<(), StoreError>> {
        commits.into_iter().map(|c| self.commit(c)).collect()
    }
    /// The known ids of `key` and whether its first reconcile has committed.
    fn known_ids(&self, key: &ResourceKey) -> Result<KnownIds, StoreError>;
    /// Atomic and durable as [`Store::commit`]: the DELETED notifications and the known set's
    /// changes land together, and the resource is marked as reconciled.
    fn commit_reconcile(&self, commit: ReconcileCommit) -> Result<(), StoreError>;
    /// Drops `key`'s known ids and its reconciled mark (its DELETED check was turned off); false
    /// when it had none.
    fn forget_known_ids(&self, key: &ResourceKey) -> Result<bool, StoreError>;
    /// Keys with a non-empty outbox, ordered.
    fn queues(&self) -> Result<Vec<ResourceKey>, StoreError>;
    /// Up to `limit` entries from the front of `key`'s queue, in order (the first is the head):
    /// one read for several deliveries. An entry that cannot be read ends the list early. A head
    /// that cannot be read (its stored run or entry does not decode, its body is damaged or
    /// gone) is moved aside to the dead letters as a [`CorruptEntry`], with an error logged
    /// naming the queue, and the next entry is the head: one bad entry never blocks a queue.
    fn outbox_front(&self, key: &ResourceKey, limit: usize)
    -> Result<Vec<OutboxEntry>, StoreError>;
    fn outbox_depth(&self, key: &ResourceKey) -> Result<u64, StoreError>;
    /// Removes the head `seq` after a 2xx (not flushed: a lost ack only means a re-send, and
    /// acks are written to disk at most every few hundred milliseconds; kept on a clean stop).
    /// Acknowledging an entry that is already gone is not an error; one behind the head is.
    fn ack(&self, key: &ResourceKey, seq: u64) -> Result<(), StoreError>;
    /// Records a failed attempt of the head `seq`; `error` is cut to
    /// [`ERROR_SNIPPET_MAX_BYTES`]. Not flushed at once (a lost record only means an earlier
    /// retry); kept on a clean stop.
    fn record_failure(
        &self,
        key: &ResourceKey,
        seq: u64,
        attempts: u32,
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError>;
    /// Atomically moves the head `seq` to the dead letters (not flushed at once: if lost, the
    /// entry is still queued and is attempted again).
    fn dead_letter(
        &self,
        key: &ResourceKey,
        seq: u64,
        attempts: u32,
        status: Option<u16>,
        error: &str,
    ) -> Result<(), StoreError>;
    /// All readable dead letters, oldest first (unreadable ones are in
    /// [`Store::corrupt_entries`]).
    fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError>;
    /// Counts and dates of the dead letters per queue, without reading them: cheap enough to
    /// answer every `status` however many and large they are.
    fn dead_letter_summary(&self) -> Result<DeadLetterSummary, StoreError>;
    /// Corrupt entries kept among the dead letters, oldest first: outbox entries set aside, and
    /// dead letters found unreadable (set aside now, with an error logged, keeping their id).
    fn corrupt_entries(&self) -> Result<Vec<CorruptEntry>, StoreError>;
    /// Back to the TAIL of its queue, same event_id, attempts reset. False when no such id;
    /// [`StoreError::CorruptDeadLetter`] when it is a corrupt entry.
    fn replay_dead_letter(&self, id: &str) -> Result<bool, StoreError>;
    /// Removes a dead letter or a corrupt entry. False when no such id.
    fn drop_dead_letter(&self, id: &str) -> Result<bool, StoreError>;
    /// O(1): served from counters.
    fn stats(&self) -> Result<StoreStats, StoreError>;
    /// Writes everything held in memory (acks) and flushes to disk.
    fn flush(&self) -> Result<(), StoreError>;

    // Delivery's calls, for its async queue workers. An engine whose calls wait on a server
    // (PostgreSQL: a round trip, a commit) answers them without holding the caller's thread, so
    // one queue's wait never stalls the runtime's other workers; the defaults run the call in
    // place, for an engine that answers from memory (sled).

    /// [`Store::outbox_front`], from async code.
    fn outbox_front_async(&self, key: &ResourceKey, limit: usize) -> StoreFuture<Vec<OutboxEntry>> {
        Box::pin(std::future::ready(self.outbox_front(key, limit)))
    }
    /// [`Store::ack`], from async code.
    fn ack_async(&self, key: &ResourceKey, seq: u64) -> StoreFuture<()> {
        Box::pin(std::future::ready(self.ack(key, seq)))
    }
    /// [`Store::record_failure`], from async code.
    fn record_failure_async(
        &self,
        key: &ResourceKey,
        seq: u64,
        attempts: u32,
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> StoreFuture<()> {
        let result = self.record_failure(key, seq, attempts, next_attempt_at, error);
        Box::pin(std::future::ready(result))
    }
    /// [`Store::dead_letter`], from async code.
    fn dead_letter_async(
        &self,
        key: &ResourceKey,
        seq: u64,
        attempts: u32,
        status: Option<u16>,
        error: &str,
    ) -> StoreFuture<()> {
        let result = self.dead_letter(key, seq, attempts, status, error);
        Box::pin(std::future::ready(result))
    }
}

/// Conveniences over the contract, for any engine: not part of what an engine implements.
impl dyn Store {
    /// The head of `key`'s queue: the first of [`Store::outbox_front`] (a head that cannot be
    /// read is set aside first).
    pub fn outbox_head(&self, key: &ResourceKey) -> Result<Option<OutboxEntry>, StoreError> {
        Ok(self.outbox_front(key, 1)?.pop())
    }
}

/// Cuts `text` to at most `max_bytes`, on a character boundary.
pub(crate) fn truncate_to_bytes(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate_to_bytes("abc", 512), "abc");
        assert_eq!(truncate_to_bytes("abcdef", 4), "abcd");
        // "é" is two bytes: cutting at 3 would split the second one.
        assert_eq!(truncate_to_bytes("éé", 3), "é");
    }

    #[test]
    fn resource_key_displays_as_instance_slash_resource() {
        assert_eq!(
            ResourceKey::new("cw-prod", "contacts").to_string(),
            "cw-prod/contacts"
        );
    }
}
