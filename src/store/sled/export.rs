//! Reading the whole store out, for `pollerd store copy`.

use std::collections::{BTreeMap, BTreeSet};

use super::errors::{corrupt, engine};
use super::{SledStore, codec, known};
use crate::store::snapshot::{ResourceState, StoreSnapshot};
use crate::store::{ResourceKey, Store, StoreError};

impl SledStore {
    /// Every resource's state and the dead letters. Refused when corrupt entries are kept
    /// (they cannot be moved faithfully: `pollerd dead-letters drop` them first).
    pub fn snapshot(&self) -> Result<StoreSnapshot, StoreError> {
        let store: &dyn Store = self;
        let corrupt_kept = store.corrupt_entries()?.len();
        if corrupt_kept > 0 {
            return Err(corrupt(
                "read the store out",
                format!(
                    "{corrupt_kept} corrupt entries are kept among the dead letters; \
                     list them with `pollerd dead-letters list` and drop them first"
                ),
            ));
        }
        let mut keys = self.with_engine(|e| resource_keys(&e.db))?;
        keys.extend(store.queues()?);
        let mut resources = Vec::with_capacity(keys.len());
        for key in keys {
            let depth = usize::try_from(store.outbox_depth(&key)?).unwrap_or(usize::MAX);
            resources.push(ResourceState {
                watermark: store.watermark(&key)?,
                seen: self.with_engine(|e| seen_ids(&e.db, &key))?,
                known: store.known_ids(&key)?,
                queued: if depth == 0 {
                    Vec::new()
                } else {
                    store.outbox_front(&key, depth)?
                },
                key,
            });
        }
        let dead_letters = store.dead_letters()?;
        Ok(StoreSnapshot {
            resources,
            dead_letters,
        })
    }
}

/// Keys with a watermark, seen ids or known ids (queues are listed by the store).
fn resource_keys(db: &::sled::Db) -> Result<BTreeSet<ResourceKey>, StoreError> {
    let action = "list the resources of the store";
    let mut keys = BTreeSet::new();
    for tag in [
        codec::TAG_WATERMARK,
        codec::TAG_SEEN_CHUNK,
        known::TAG_KNOWN,
        known::TAG_BASELINED,
    ] {
        for item in db.scan_prefix([tag]).keys() {
            let stored = item.map_err(|e| engine(action, e))?;
            let (key, _) = codec::parse_resource_key(&stored).map_err(|r| corrupt(action, r))?;
            keys.insert(key);
        }
    }
    Ok(keys)
}

/// The seen ids of `key` with their dates, the latest date of an id kept.
fn seen_ids(db: &::sled::Db, key: &ResourceKey) -> Result<Vec<(String, i64)>, StoreError> {
    let action = format!("read the seen ids of {key}");
    let mut dates: BTreeMap<String, i64> = BTreeMap::new();
    for item in db.scan_prefix(codec::resource_prefix(codec::TAG_SEEN_CHUNK, key)) {
        let (_, value) = item.map_err(|e| engine(&action, e))?;
        codec::decode_seen_chunk(&value, |id, ms| {
            let date = dates.entry(id.to_string()).or_insert(ms);
            *date = (*date).max(ms);
        })
        .map_err(|reason| corrupt(&action, reason))?;
    }
    Ok(dates.into_iter().collect())
}
