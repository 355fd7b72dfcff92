//! A whole store's state read out for `pollerd store copy`: every resource's watermark, seen
//! ids, known ids and queue (bodies and attempt state, in order), and the dead letters. Read
//! from a sled store ([`super::SledStore::snapshot`]) and written into PostgreSQL in one
//! transaction ([`super::PostgresStore::import`]).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use super::{DeadLetter, KnownIds, OutboxEntry, ResourceKey};

/// One resource's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceState {
    pub key: ResourceKey,
    pub watermark: Option<DateTime<Utc>>,
    /// Object id → the updated date emitted for it, in milliseconds since the epoch.
    pub seen: Vec<(String, i64)>,
    pub known: KnownIds,
    /// The queue, head first.
    pub queued: Vec<OutboxEntry>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreSnapshot {
    pub resources: Vec<ResourceState>,
    /// Oldest first.
    pub dead_letters: Vec<DeadLetter>,
}

/// What a copy moves, per kind: what `pollerd store copy` prints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnapshotCounts {
    pub instances: u64,
    pub resources: u64,
    pub watermarks: u64,
    pub seen_ids: u64,
    pub known_ids: u64,
    pub queued: u64,
    pub dead_letters: u64,
}

impl StoreSnapshot {
    /// The instances the snapshot holds state for, ordered.
    pub fn instances(&self) -> Vec<String> {
        let resources = self.resources.iter().map(|r| &r.key.instance);
        let dead = self.dead_letters.iter().map(|d| &d.key.instance);
        let names: BTreeSet<&String> = resources.chain(dead).collect();
        names.into_iter().cloned().collect()
    }

    pub fn counts(&self) -> SnapshotCounts {
        let sum = |f: fn(&ResourceState) -> usize| -> u64 {
            self.resources.iter().map(|r| f(r) as u64).sum()
        };
        SnapshotCounts {
            instances: self.instances().len() as u64,
            resources: self.resources.len() as u64,
            watermarks: sum(|r| usize::from(r.watermark.is_some())),
            seen_ids: sum(|r| r.seen.len()),
            known_ids: sum(|r| r.known.ids.len()),
            queued: sum(|r| r.queued.len()),
            dead_letters: self.dead_letters.len() as u64,
        }
    }
}
