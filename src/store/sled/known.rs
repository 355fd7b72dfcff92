//! The known ids of a resource: one key per id, its value empty, so adding ids from a
//! page commit and removing deleted ones are plain batch inserts and removes; plus one mark per
//! resource saying its first reconcile has filled the set.

use std::collections::HashSet;

use ::sled::{Batch, Db};

use super::super::codec;
use super::errors::{corrupt, engine};
use crate::object_id::ObjectId;
use crate::store::{KnownIds, ReconcileCommit, ResourceKey, StoreError};

/// A known id: tag, resource key, then the id's stored form ([`ObjectId::to_bytes`]).
pub(super) const TAG_KNOWN: u8 = b'k';
/// Present once the resource's first reconcile committed.
pub(super) const TAG_BASELINED: u8 = b'b';

fn known_key(key: &ResourceKey, id: &ObjectId) -> Vec<u8> {
    let mut out = codec::resource_prefix(TAG_KNOWN, key);
    out.extend_from_slice(&id.to_bytes());
    out
}

pub(super) fn stage_added(key: &ResourceKey, ids: &[ObjectId], batch: &mut Batch) {
    for id in ids {
        batch.insert(known_key(key, id), &[][..]);
    }
}

/// The known set's side of a reconcile commit: deleted ids go, newly seen ones join, and the
/// resource is marked as reconciled.
pub(super) fn stage_reconcile(commit: &ReconcileCommit, batch: &mut Batch) {
    for id in &commit.removed {
        batch.remove(known_key(&commit.key, id));
    }
    stage_added(&commit.key, &commit.added, batch);
    batch.insert(
        codec::resource_prefix(TAG_BASELINED, &commit.key),
        &[1u8][..],
    );
}

pub(super) fn read(db: &Db, key: &ResourceKey) -> Result<KnownIds, StoreError> {
    let action = || format!("read the known ids of {key}");
    let prefix = codec::resource_prefix(TAG_KNOWN, key);
    let mut ids = HashSet::new();
    for item in db.scan_prefix(&prefix).keys() {
        let stored = item.map_err(|e| engine(action(), e))?;
        let id = ObjectId::from_bytes(&stored[prefix.len()..])
            .ok_or_else(|| corrupt(action(), "a known id does not decode".into()))?;
        ids.insert(id);
    }
    let baselined = db
        .contains_key(codec::resource_prefix(TAG_BASELINED, key))
        .map_err(|e| engine(action(), e))?;
    Ok(KnownIds { ids, baselined })
}

/// Stages removing every known id of `key` and its mark; false when there was nothing.
pub(super) fn stage_forget(
    db: &Db,
    key: &ResourceKey,
    batch: &mut Batch,
) -> Result<bool, StoreError> {
    let action = || format!("forget the known ids of {key}");
    let mark = codec::resource_prefix(TAG_BASELINED, key);
    let mut any = db.contains_key(&mark).map_err(|e| engine(action(), e))?;
    batch.remove(mark);
    for item in db
        .scan_prefix(codec::resource_prefix(TAG_KNOWN, key))
        .keys()
    {
        batch.remove(item.map_err(|e| engine(action(), e))?);
        any = true;
    }
    Ok(any)
}
