//! The seen set as pages: each page commit writes its seen ids as ONE row (`pollerd_seen_pages`),
//! and a node answers the poller's lookups from a copy in memory, checked against a version
//! number the writes bump (`pollerd_seen_state`).
//!
//! Why: a row per id made the seen set half of the server's work in ingest (an upsert, a lookup
//! and a delete per record, each an index entry). The set's meaning is unchanged: an id's seen
//! date is the latest written for it, and a prune drops every entry dated before its cutoff
//! (whole pages when they are older, else the page is written again without them).
//!
//! The copy in memory is right as long as its version is the database's: every write of a
//! resource's seen entries bumps the version in the same transaction, under the state row's
//! lock, so writes take turns and a copy labelled `v` holds exactly what version `v` held. A
//! write that finds the copy one version behind applies its own change to it; anything else
//! (another node's or handle's write, a failed commit) drops it, and the next lookup reloads.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;

use super::{Db, from_millis, millis};
use crate::store::{ResourceKey, StoreError};

/// Seen dates (ms) by object id, as one resource's pages hold them.
type SeenEntries = HashMap<Box<[u8]>, i64>;

/// This store's copies of seen sets, by resource.
#[derive(Default)]
pub(super) struct SeenCopies {
    copies: Mutex<HashMap<ResourceKey, SeenCopy>>,
}

struct SeenCopy {
    version: i64,
    entries: SeenEntries,
}

/// A change to one resource's seen set, made in a transaction not yet committed.
pub(super) struct SeenChange<'c> {
    pub key: &'c ResourceKey,
    pub added: &'c [(String, DateTime<Utc>)],
    pub prune_before: Option<i64>,
}

impl SeenCopies {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ResourceKey, SeenCopy>> {
        // A panic while holding it leaves at worst a copy the next version check replaces.
        self.copies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// After a commit: `change` brought the set to `version`; applied to the copy when the
    /// copy was the version before, else the copy is dropped.
    fn applied(&self, change: &SeenChange<'_>, version: i64) {
        let mut copies = self.lock();
        let Some(copy) = copies.get_mut(change.key) else {
            return;
        };
        if version.checked_sub(1) != Some(copy.version) {
            copies.remove(change.key);
            return;
        }
        copy.version = version;
        for (id, at) in change.added {
            keep_latest(&mut copy.entries, id.as_bytes(), millis(*at));
        }
        if let Some(cutoff) = change.prune_before {
            copy.entries.retain(|_, ms| *ms >= cutoff);
        }
        if copy.entries.is_empty() {
            // Nothing to look up: the next lookup reloads an empty set in one round trip.
            copies.remove(change.key);
        }
    }

    /// The copy of `key` is no longer to be trusted (a commit whose outcome is unknown).
    pub(super) fn drop_copy(&self, key: &ResourceKey) {
        self.lock().remove(key);
    }
}

fn keep_latest(entries: &mut SeenEntries, id: &[u8], ms: i64) {
    match entries.get_mut(id) {
        Some(kept) => *kept = (*kept).max(ms),
        None => {
            entries.insert(id.into(), ms);
        }
    }
}

/// A page's entries as stored: for each, the id's length (u32, big-endian), its bytes and its
/// date (i64 ms, big-endian). Also the oldest and newest date, for pruning whole pages.
fn encode(entries: impl Iterator<Item = (impl AsRef<[u8]>, i64)>) -> (Vec<u8>, i64, i64) {
    let mut bytes = Vec::new();
    let (mut oldest, mut newest) = (i64::MAX, i64::MIN);
    for (id, ms) in entries {
        let id = id.as_ref();
        // An id is a provider's value bounded far below 4 GiB by the body limit.
        let len = u32::try_from(id.len()).unwrap_or(u32::MAX);
        bytes.extend_from_slice(&len.to_be_bytes());
        bytes.extend_from_slice(id);
        bytes.extend_from_slice(&ms.to_be_bytes());
        oldest = oldest.min(ms);
        newest = newest.max(ms);
    }
    (bytes, oldest, newest)
}

/// Adds a stored page's entries to `into`; Err(reason) when the bytes are not a page.
fn decode_into(mut bytes: &[u8], into: &mut SeenEntries) -> Result<(), String> {
    while !bytes.is_empty() {
        let (len, rest) = bytes
            .split_first_chunk::<4>()
            .ok_or("a seen page ends inside an entry's length")?;
        let len = usize::try_from(u32::from_be_bytes(*len)).map_err(|e| e.to_string())?;
        if rest.len() < len {
            return Err("a seen page ends inside an id".into());
        }
        let (id, rest) = rest.split_at(len);
        let (ms, rest) = rest
            .split_first_chunk::<8>()
            .ok_or("a seen page ends inside a date")?;
        keep_latest(into, id, i64::from_be_bytes(*ms));
        bytes = rest;
    }
    Ok(())
}

fn corrupt(action: &str, reason: String) -> StoreError {
    StoreError::Corrupt {
        action: action.to_string(),
        reason,
    }
}

impl Db {
    /// The seen date of each id, in the order asked: from the copy when its version is the
    /// database's, else from the pages, read again.
    pub(super) async fn seen_dates(
        &self,
        key: &ResourceKey,
        ids: &[Vec<u8>],
    ) -> Result<Vec<Option<DateTime<Utc>>>, StoreError> {
        let action = format!("read seen ids of {key}");
        let answer = |entries: &SeenEntries| {
            ids.iter()
                .map(|id| {
                    entries
                        .get(id.as_slice())
                        .map(|ms| from_millis(*ms))
                        .transpose()
                })
                .collect::<Result<Vec<_>, String>>()
                .map_err(|reason| corrupt(&action, reason))
        };
        // With no copy to check, the version is read with the pages.
        let held = self.seen.lock().contains_key(key);
        if held {
            let version = self.seen_version(key, &action).await?;
            if let Some(copy) = self.seen.lock().get(key).filter(|c| c.version == version) {
                return answer(&copy.entries);
            }
        }
        let (version, entries) = self.load_seen(key, &action).await?;
        let dates = answer(&entries);
        if !entries.is_empty() {
            let copy = SeenCopy { version, entries };
            self.seen.lock().insert(key.clone(), copy);
        }
        dates
    }

    /// Number of ids `key`'s seen set holds (for tests and diagnostics).
    pub(super) async fn seen_count(&self, key: &ResourceKey) -> Result<u64, StoreError> {
        let action = format!("count seen ids of {key}");
        let (_, entries) = self.load_seen(key, &action).await?;
        Ok(u64::try_from(entries.len()).unwrap_or(u64::MAX))
    }

    async fn seen_version(&self, key: &ResourceKey, action: &str) -> Result<i64, StoreError> {
        let client = self.client(action).await?;
        let rows = self
            .query_cached(
                &client,
                "SELECT version FROM pollerd_seen_state WHERE instance = $1 AND resource = $2",
                &[&key.instance, &key.resource],
                action,
            )
            .await?;
        Ok(rows.first().map_or(0, |row| row.get(0)))
    }

    /// The version and every entry of `key`'s seen set, read in one statement (one snapshot).
    async fn load_seen(
        &self,
        key: &ResourceKey,
        action: &str,
    ) -> Result<(i64, SeenEntries), StoreError> {
        let client = self.client(action).await?;
        let rows = client
            .query(
                "SELECT s.version, p.entries FROM pollerd_seen_state s \
                 LEFT JOIN pollerd_seen_pages p \
                 ON p.instance = s.instance AND p.resource = s.resource \
                 WHERE s.instance = $1 AND s.resource = $2",
                &[&key.instance, &key.resource],
            )
            .await
            .map_err(|e| self.error(action, &e))?;
        let mut entries = SeenEntries::new();
        let mut version = 0;
        for row in &rows {
            version = row.get(0);
            if let Some(page) = row.get::<_, Option<&[u8]>>(1) {
                decode_into(page, &mut entries).map_err(|reason| corrupt(action, reason))?;
            }
        }
        Ok((version, entries))
    }
    /// In `tx`: writes `change` (its ids as one page, then its prune) and bumps the set's
    /// version; the version reached, or `None` when the change changes nothing.
    pub(super) async fn write_seen(
        &self,
        tx: &Transaction<'_>,
        change: &SeenChange<'_>,
        action: &str,
    ) -> Result<Option<i64>, StoreError> {
        let key = change.key;
        let mut touched = false;
        if !change.added.is_empty() {
            let entries = change.added.iter().map(|(id, at)| (id, millis(*at)));
            self.insert_seen_page(tx, key, entries, action).await?;
            touched = true;
        }
        if let Some(cutoff) = change.prune_before {
            let pruned = self.prune_seen(tx, &[(key, cutoff)], action).await?;
            touched |= !pruned.is_empty();
        }
        if !touched {
            return Ok(None);
        }
        let versions = self.bump_seen_versions(tx, &[key], action).await?;
        Ok(versions.first().copied())
    }

    /// In `tx`: `entries` as one page of `key`'s seen set (the caller bumps the version).
    pub(super) async fn insert_seen_page(
        &self,
        tx: &Transaction<'_>,
        key: &ResourceKey,
        entries: impl Iterator<Item = (impl AsRef<[u8]>, i64)>,
        action: &str,
    ) -> Result<(), StoreError> {
        let (page, oldest, newest) = encode(entries);
        self.execute_cached(
            tx,
            "INSERT INTO pollerd_seen_pages (instance, resource, oldest_ms, newest_ms, entries) \
             VALUES ($1, $2, $3, $4, $5)",
            &[&key.instance, &key.resource, &oldest, &newest, &page],
            action,
        )
        .await?;
        Ok(())
    }

    /// After `tx` committed (`committed` true) or failed: keeps the copy in step with
    /// `change`, which brought the set to `version`.
    pub(super) fn seen_written(&self, change: &SeenChange<'_>, version: i64, committed: bool) {
        match committed {
            true => self.seen.applied(change, version),
            false => self.seen.drop_copy(change.key),
        }
    }

    /// In `tx`: drops the entries dated before each resource's cutoff; the resources whose set
    /// changed, with their cutoff. Whole pages go when their newest entry is older; a page
    /// holding entries on both sides is written again without the older ones.
    pub(super) async fn prune_seen<'k>(
        &self,
        tx: &Transaction<'_>,
        cutoffs: &[(&'k ResourceKey, i64)],
        action: &str,
    ) -> Result<Vec<(&'k ResourceKey, i64)>, StoreError> {
        let instances: Vec<&str> = cutoffs.iter().map(|(k, _)| k.instance.as_str()).collect();
        let resources: Vec<&str> = cutoffs.iter().map(|(k, _)| k.resource.as_str()).collect();
        let limits: Vec<i64> = cutoffs.iter().map(|(_, cutoff)| *cutoff).collect();
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
            [&instances, &resources, &limits];
        let fail = |e: tokio_postgres::Error| self.error(action, &e);
        let deleted = tx
            .query(
                "DELETE FROM pollerd_seen_pages p \
                 USING unnest($1::text[], $2::text[], $3::int8[]) AS c(instance, resource, cutoff) \
                 WHERE p.instance = c.instance AND p.resource = c.resource \
                 AND p.newest_ms < c.cutoff \
                 RETURNING p.instance, p.resource",
                &params,
            )
            .await
            .map_err(fail)?;
        let split = tx
            .query(
                "SELECT p.instance, p.resource, p.page, p.entries, c.cutoff \
                 FROM pollerd_seen_pages p \
                 JOIN unnest($1::text[], $2::text[], $3::int8[]) AS c(instance, resource, cutoff) \
                 ON p.instance = c.instance AND p.resource = c.resource \
                 WHERE p.oldest_ms < c.cutoff",
                &params,
            )
            .await
            .map_err(fail)?;
        let (mut owners, mut names) = (Vec::new(), Vec::new());
        let (mut pages, mut bodies, mut oldest) = (Vec::new(), Vec::new(), Vec::new());
        for row in &split {
            let mut entries = SeenEntries::new();
            decode_into(row.get(3), &mut entries).map_err(|reason| corrupt(action, reason))?;
            let cutoff: i64 = row.get(4);
            let (page, old, _) = encode(entries.into_iter().filter(|(_, ms)| *ms >= cutoff));
            owners.push(row.get::<_, &str>(0));
            names.push(row.get::<_, &str>(1));
            pages.push(row.get::<_, i64>(2));
            bodies.push(page);
            oldest.push(old);
        }
        if !pages.is_empty() {
            tx.execute(
                "UPDATE pollerd_seen_pages p SET entries = u.entries, oldest_ms = u.oldest \
                 FROM unnest($1::text[], $2::text[], $3::int8[], $4::bytea[], $5::int8[]) \
                 AS u(instance, resource, page, entries, oldest) \
                 WHERE p.instance = u.instance AND p.resource = u.resource AND p.page = u.page",
                &[&owners, &names, &pages, &bodies, &oldest],
            )
            .await
            .map_err(fail)?;
        }
        let changed: HashSet<(&str, &str)> = deleted
            .iter()
            .chain(&split)
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        Ok(cutoffs
            .iter()
            .filter(|(key, _)| changed.contains(&(key.instance.as_str(), key.resource.as_str())))
            .copied()
            .collect())
    }

    /// In `tx`: one more version for each of `keys`' seen sets (each key once); the versions
    /// reached, in the order of `keys`.
    pub(super) async fn bump_seen_versions(
        &self,
        tx: &Transaction<'_>,
        keys: &[&ResourceKey],
        action: &str,
    ) -> Result<Vec<i64>, StoreError> {
        let instances: Vec<&str> = keys.iter().map(|k| k.instance.as_str()).collect();
        let resources: Vec<&str> = keys.iter().map(|k| k.resource.as_str()).collect();
        let rows = self
            .query_cached(
                tx,
                "INSERT INTO pollerd_seen_state (instance, resource, version) \
                 SELECT i, r, 1 FROM unnest($1::text[], $2::text[]) AS t(i, r) \
                 ON CONFLICT (instance, resource) \
                 DO UPDATE SET version = pollerd_seen_state.version + 1 \
                 RETURNING instance, resource, version",
                &[&instances, &resources],
                action,
            )
            .await?;
        let reached: HashMap<(&str, &str), i64> = rows
            .iter()
            .map(|row| ((row.get(0), row.get(1)), row.get(2)))
            .collect();
        keys.iter()
            .map(|key| {
                let version = reached.get(&(key.instance.as_str(), key.resource.as_str()));
                version.copied().ok_or_else(|| {
                    corrupt(action, format!("no seen version was returned for {key}"))
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_reads_back_as_written_with_the_latest_date_per_id() {
        let written = [("7", 5_i64), ("", -3), ("seven\0", 9), ("7", 4)];
        let (page, oldest, newest) = encode(written.iter().map(|(id, ms)| (id.as_bytes(), *ms)));
        assert_eq!((oldest, newest), (-3, 9));
        let mut read = SeenEntries::new();
        decode_into(&page, &mut read).unwrap();
        assert_eq!(read.len(), 3);
        assert_eq!(read.get(b"7".as_slice()), Some(&5));
        assert_eq!(read.get(b"".as_slice()), Some(&-3));
        assert_eq!(read.get(b"seven\0".as_slice()), Some(&9));
    }

    #[test]
    fn a_cut_page_is_refused_not_misread() {
        let (page, _, _) = encode([(b"12345".as_slice(), 1_i64)].into_iter());
        for cut in 1..page.len() {
            let mut read = SeenEntries::new();
            assert!(
                decode_into(&page[..cut], &mut read).is_err(),
                "cut at {cut}"
            );
        }
    }
}
