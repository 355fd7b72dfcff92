//! The seen set in sled: each commit writes its (id, date) pairs as ONE chunk value, and a run's
//! last commit (the one that prunes) rewrites the survivors as a single chunk. A page of 1,000
//! records thus costs one sled write instead of one per id (and one per date-index entry), which
//! would be three quarters of the daemon's CPU while ingesting.
//!
//! Lookups are answered from the resource's set held in memory, loaded from its chunks on first
//! use and dropped after the pruning commit, so only resources being polled hold memory.

mod ids;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ::sled::{Batch, Db};

use super::errors::{corrupt, engine};
use crate::store::codec::{self, millis};
use crate::store::{PageCommit, ResourceKey, StoreError};
use ids::{IdDates, IdText};

/// The loaded seen sets of the resources being polled.
#[derive(Default)]
pub(super) struct SeenSets {
    by_key: Mutex<HashMap<ResourceKey, Arc<Mutex<SeenSet>>>>,
}

/// One resource's seen set as stored: the latest date per id, and the chunks holding it.
#[derive(Default)]
pub(super) struct SeenSet {
    dates: IdDates,
    chunks: Vec<u64>,
}

/// What a staged commit changes in the loaded set once its batch is applied.
pub(super) enum SeenChange {
    None,
    /// A chunk was added holding these pairs.
    Added {
        chunk: u64,
        pairs: Vec<(String, i64)>,
    },
    /// Every chunk was replaced by `chunk` (or by nothing) holding the survivors: drop the
    /// loaded set, the next run reads the one small chunk back.
    Compacted,
}

impl SeenSets {
    /// The resource's set, loaded from its chunks if not in memory; held locked.
    pub(super) fn lock(
        &self,
        db: &Db,
        key: &ResourceKey,
        action: &str,
    ) -> Result<LockedSeen, StoreError> {
        let set = {
            let mut by_key = self.by_key.lock().unwrap_or_else(PoisonError::into_inner);
            match by_key.get(key) {
                Some(set) => set.clone(),
                None => {
                    let set = Arc::new(Mutex::new(load(db, key, action)?));
                    by_key.insert(key.clone(), set.clone());
                    set
                }
            }
        };
        Ok(LockedSeen { set })
    }

    pub(super) fn forget(&self, key: &ResourceKey) {
        self.by_key
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }
}

/// A loaded set; lock it with [`LockedSeen::guard`].
pub(super) struct LockedSeen {
    set: Arc<Mutex<SeenSet>>,
}

impl LockedSeen {
    pub(super) fn guard(&self) -> MutexGuard<'_, SeenSet> {
        self.set.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl SeenSet {
    pub(super) fn date_ms(&self, object_id: &str) -> Option<i64> {
        self.dates.get(object_id)
    }

    pub(super) fn len(&self) -> usize {
        self.dates.len()
    }

    /// Adds the commit's seen pairs and pruning to `batch`; apply the returned change to this
    /// set once the batch has been applied.
    pub(super) fn stage(&self, commit: &PageCommit, batch: &mut Batch) -> SeenChange {
        let key = &commit.key;
        let next_chunk = self.chunks.last().map_or(0, |last| last + 1);
        let pairs: Vec<(String, i64)> = commit
            .seen
            .iter()
            .map(|(id, date)| (id.clone(), millis(*date)))
            .collect();
        let Some(cutoff) = commit.prune_seen_before.map(millis) else {
            if pairs.is_empty() {
                return SeenChange::None;
            }
            let value = codec::encode_seen_chunk(pairs.iter().map(|(id, ms)| (id.as_str(), *ms)));
            batch.insert(codec::seen_chunk_key(key, next_chunk), value);
            return SeenChange::Added {
                chunk: next_chunk,
                pairs,
            };
        };
        // Nothing to add and nothing older than the cutoff (an idle resource's set, often empty):
        // no chunk is rewritten.
        if pairs.is_empty() && self.dates.at_or_after(cutoff).count() == self.dates.len() {
            return SeenChange::None;
        }
        // The survivors: the set's entries at or after the cutoff, with this commit's pairs (a
        // page's worth) merged in; streamed into the chunk without copying the set.
        let mut fresh: HashMap<&str, i64> = HashMap::new();
        for (object_id, ms) in &pairs {
            let known = self.dates.get(object_id).unwrap_or(*ms);
            let kept = fresh.entry(object_id.as_str()).or_insert(known);
            *kept = (*kept).max(*ms);
        }
        fresh.retain(|_, ms| *ms >= cutoff);
        let kept = self
            .dates
            .at_or_after(cutoff)
            .filter(|(object_id, _)| !fresh.contains_key(object_id.as_ref()));
        let mut survivors = kept
            .chain(fresh.iter().map(|(id, ms)| (IdText::Text(id), *ms)))
            .peekable();
        for chunk in &self.chunks {
            batch.remove(codec::seen_chunk_key(key, *chunk));
        }
        if survivors.peek().is_some() {
            let value = codec::encode_seen_chunk(survivors);
            batch.insert(codec::seen_chunk_key(key, next_chunk), value);
        }
        SeenChange::Compacted
    }

    /// Records an applied change; `Compacted` is handled by dropping the set
    /// ([`SeenSets::forget`]).
    pub(super) fn apply(&mut self, change: SeenChange) {
        if let SeenChange::Added { chunk, pairs } = change {
            self.chunks.push(chunk);
            for (object_id, ms) in pairs {
                self.dates.merge(&object_id, ms);
            }
        }
    }
}

fn load(db: &Db, key: &ResourceKey, action: &str) -> Result<SeenSet, StoreError> {
    let mut set = SeenSet::default();
    for item in db.scan_prefix(codec::resource_prefix(codec::TAG_SEEN_CHUNK, key)) {
        let (chunk_key, value) = item.map_err(|e| engine(action, e))?;
        let chunk = codec::parse_seen_chunk_key(&chunk_key).map_err(|r| corrupt(action, r))?;
        set.chunks.push(chunk);
        codec::decode_seen_chunk(&value, |object_id, ms| set.dates.merge(object_id, ms))
            .map_err(|reason| corrupt(action, format!("seen chunk {chunk}: {reason}")))?;
    }
    Ok(set)
}
