//! Page and reconcile commits, each one transaction, and what the poller reads back: watermarks,
//! seen dates, known ids.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;

use super::seen::SeenChange;
use super::{Db, from_millis, millis};
use crate::object_id::ObjectId;
use crate::store::{
    KnownIds, NewNotification, PageCommit, ReconcileCommit, ResourceKey, StoreError,
};

/// A notification without an event id could never be deduplicated: refused before anything is
/// written.
pub(super) fn check_event_ids(
    key: &ResourceKey,
    notifications: &[NewNotification],
) -> Result<(), StoreError> {
    match notifications.iter().position(|n| n.event_id.is_empty()) {
        Some(position) => Err(StoreError::InvalidCommit {
            key: key.clone(),
            reason: format!("notification #{} has an empty event id", position + 1),
        }),
        None => Ok(()),
    }
}

fn corrupt(action: impl Into<String>, reason: String) -> StoreError {
    StoreError::Corrupt {
        action: action.into(),
        reason,
    }
}

/// Appends `notifications` to the tail of `key`'s queue, in order (the identity column numbers
/// them as the rows come, and the rows come in the order asked).
pub(super) async fn insert_notifications(
    db: &Db,
    tx: &Transaction<'_>,
    key: &ResourceKey,
    notifications: &[NewNotification],
    action: &str,
) -> Result<(), StoreError> {
    if notifications.is_empty() {
        return Ok(());
    }
    let event_ids: Vec<&str> = notifications.iter().map(|n| n.event_id.as_str()).collect();
    let bodies: Vec<&[u8]> = notifications.iter().map(|n| n.body.as_slice()).collect();
    let created: Vec<i64> = notifications.iter().map(|n| millis(n.created_at)).collect();
    db.execute_cached(
        tx,
        "INSERT INTO pollerd_outbox (instance, resource, event_id, body, created_ms) \
         SELECT $1, $2, e, b, c FROM unnest($3::text[], $4::bytea[], $5::int8[]) \
         WITH ORDINALITY AS t(e, b, c, n) ORDER BY n",
        &[&key.instance, &key.resource, &event_ids, &bodies, &created],
        action,
    )
    .await?;
    Ok(())
}

/// In `tx`: how its statements from here on are planned (`plan_cache_mode`).
async fn set_plans(
    db: &Db,
    tx: &Transaction<'_>,
    mode: &str,
    action: &str,
) -> Result<(), StoreError> {
    tx.batch_execute(&format!("SET LOCAL plan_cache_mode = {mode}"))
        .await
        .map_err(|e| db.error(action, &e))
}

async fn insert_known(
    db: &Db,
    tx: &Transaction<'_>,
    key: &ResourceKey,
    ids: &[ObjectId],
    action: &str,
) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let stored: Vec<Vec<u8>> = ids.iter().map(ObjectId::to_bytes).collect();
    tx.execute(
        "INSERT INTO pollerd_known_ids (instance, resource, object_id) \
         SELECT $1, $2, id FROM unnest($3::bytea[]) AS t(id) ON CONFLICT DO NOTHING",
        &[&key.instance, &key.resource, &stored],
    )
    .await
    .map_err(|e| db.error(action, &e))?;
    Ok(())
}

impl Db {
    pub(super) async fn watermark(
        &self,
        key: &ResourceKey,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let action = format!("read the watermark of {key}");
        let client = self.client(&action).await?;
        let row = client
            .query_opt(
                "SELECT watermark_ms FROM pollerd_watermarks WHERE instance = $1 AND resource = $2",
                &[&key.instance, &key.resource],
            )
            .await
            .map_err(|e| self.error(&action, &e))?;
        row.map(|row| from_millis(row.get(0)))
            .transpose()
            .map_err(|reason| corrupt(&action, reason))
    }

    /// One transaction: notifications, seen ids, known ids, watermark, then pruning.
    pub(super) async fn commit(&self, commit: PageCommit) -> Result<(), StoreError> {
        let key = &commit.key;
        let action = format!("commit a page of {key}");
        let mut client = self.client(&action).await?;
        let tx = self.fenced(&mut client, &key.instance, &action).await?;
        // The inserts' plans never depend on a table's size, and a custom plan copies every
        // bound body into itself (a megabyte a page); the prune below plans its own again.
        set_plans(self, &tx, "force_generic_plan", &action).await?;
        insert_notifications(self, &tx, key, &commit.notifications, &action).await?;
        insert_known(self, &tx, key, &commit.known, &action).await?;
        if let Some(watermark) = commit.watermark {
            self.execute_cached(
                &tx,
                "INSERT INTO pollerd_watermarks (instance, resource, watermark_ms) \
                 VALUES ($1, $2, $3) ON CONFLICT (instance, resource) \
                 DO UPDATE SET watermark_ms = EXCLUDED.watermark_ms",
                &[&key.instance, &key.resource, &millis(watermark)],
                &action,
            )
            .await?;
        }
        if commit.prune_seen_before.is_some() {
            set_plans(self, &tx, "force_custom_plan", &action).await?;
        }
        let change = SeenChange {
            key,
            added: &commit.seen,
            prune_before: commit.prune_seen_before.map(millis),
        };
        let version = self.write_seen(&tx, &change, &action).await?;
        let committed = tx.commit().await.map_err(|e| self.error(&action, &e));
        if let Some(version) = version {
            self.seen_written(&change, version, committed.is_ok());
        }
        committed
    }

    /// Watermark moves (and their pruning) of several resources, in one transaction: each
    /// instance's lease is checked in it, and the moves of an instance not held are left out,
    /// refused as [`StoreError::LeaseLost`]. The commits carry only a watermark and a cutoff, one
    /// per resource (what the idle batch writes).
    pub(super) async fn commit_watermarks(
        &self,
        commits: &[PageCommit],
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let action = format!("write the watermarks of {} idle resource(s)", commits.len());
        let mut client = self.client(&action).await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| self.error(&action, &e))?;
        let mut instances: Vec<&str> = commits.iter().map(|c| c.key.instance.as_str()).collect();
        instances.sort_unstable();
        instances.dedup();
        let held = self.check_leases(&tx, &instances, &action).await?;
        let node = self.fence.as_ref().map_or("", |f| f.node_id());
        let mut results = Vec::with_capacity(commits.len());
        let (mut instances, mut resources, mut marks) = (Vec::new(), Vec::new(), Vec::new());
        let mut cutoffs = Vec::new();
        for commit in commits {
            let key = &commit.key;
            if !held.contains(key.instance.as_str()) {
                results.push(Err(StoreError::LeaseLost {
                    instance: key.instance.clone(),
                    node: node.to_string(),
                }));
                continue;
            }
            results.push(Ok(()));
            if let Some(watermark) = commit.watermark {
                instances.push(key.instance.as_str());
                resources.push(key.resource.as_str());
                marks.push(millis(watermark));
                if let Some(cutoff) = commit.prune_seen_before {
                    cutoffs.push((key, millis(cutoff)));
                }
            }
        }
        tx.execute(
            "INSERT INTO pollerd_watermarks (instance, resource, watermark_ms) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::int8[]) \
             ON CONFLICT (instance, resource) DO UPDATE SET watermark_ms = EXCLUDED.watermark_ms",
            &[&instances, &resources, &marks],
        )
        .await
        .map_err(|e| self.error(&action, &e))?;
        let pruned = self.prune_seen(&tx, &cutoffs, &action).await?;
        let keys: Vec<&ResourceKey> = pruned.iter().map(|(key, _)| *key).collect();
        let versions = self.bump_seen_versions(&tx, &keys, &action).await?;
        let committed = tx.commit().await.map_err(|e| self.error(&action, &e));
        for ((key, cutoff), version) in pruned.into_iter().zip(versions) {
            let change = SeenChange {
                key,
                added: &[],
                prune_before: Some(cutoff),
            };
            self.seen_written(&change, version, committed.is_ok());
        }
        committed?;
        Ok(results)
    }

    pub(super) async fn known_ids(&self, key: &ResourceKey) -> Result<KnownIds, StoreError> {
        let action = format!("read the known ids of {key}");
        let client = self.client(&action).await?;
        let rows = client
            .query(
                "SELECT object_id FROM pollerd_known_ids WHERE instance = $1 AND resource = $2",
                &[&key.instance, &key.resource],
            )
            .await
            .map_err(|e| self.error(&action, &e))?;
        let mut ids = HashSet::with_capacity(rows.len());
        for row in &rows {
            let stored: &[u8] = row.get(0);
            let id = ObjectId::from_bytes(stored)
                .ok_or_else(|| corrupt(&action, "a known id does not decode".into()))?;
            ids.insert(id);
        }
        let baselined = client
            .query_opt(
                "SELECT 1 FROM pollerd_reconciled WHERE instance = $1 AND resource = $2",
                &[&key.instance, &key.resource],
            )
            .await
            .map_err(|e| self.error(&action, &e))?
            .is_some();
        Ok(KnownIds { ids, baselined })
    }

    /// One transaction: the DELETED notifications, the known set's changes, the reconciled mark.
    pub(super) async fn commit_reconcile(&self, commit: ReconcileCommit) -> Result<(), StoreError> {
        let key = &commit.key;
        let action = format!("commit a reconcile of {key}");
        let mut client = self.client(&action).await?;
        let tx = self.fenced(&mut client, &key.instance, &action).await?;
        insert_notifications(self, &tx, key, &commit.notifications, &action).await?;
        if !commit.removed.is_empty() {
            let removed: Vec<Vec<u8>> = commit.removed.iter().map(ObjectId::to_bytes).collect();
            tx.execute(
                "DELETE FROM pollerd_known_ids \
                 WHERE instance = $1 AND resource = $2 AND object_id = ANY($3)",
                &[&key.instance, &key.resource, &removed],
            )
            .await
            .map_err(|e| self.error(&action, &e))?;
        }
        insert_known(self, &tx, key, &commit.added, &action).await?;
        tx.execute(
            "INSERT INTO pollerd_reconciled (instance, resource) VALUES ($1, $2) \
             ON CONFLICT DO NOTHING",
            &[&key.instance, &key.resource],
        )
        .await
        .map_err(|e| self.error(&action, &e))?;
        tx.commit().await.map_err(|e| self.error(&action, &e))
    }

    pub(super) async fn forget_known_ids(&self, key: &ResourceKey) -> Result<bool, StoreError> {
        let action = format!("forget the known ids of {key}");
        let mut client = self.client(&action).await?;
        let tx = self.fenced(&mut client, &key.instance, &action).await?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] =
            [&key.instance, &key.resource];
        let ids = tx
            .execute(
                "DELETE FROM pollerd_known_ids WHERE instance = $1 AND resource = $2",
                &params,
            )
            .await
            .map_err(|e| self.error(&action, &e))?;
        let mark = tx
            .execute(
                "DELETE FROM pollerd_reconciled WHERE instance = $1 AND resource = $2",
                &params,
            )
            .await
            .map_err(|e| self.error(&action, &e))?;
        tx.commit().await.map_err(|e| self.error(&action, &e))?;
        Ok(ids + mark > 0)
    }

    pub(super) async fn watermarks(&self) -> Result<Vec<(ResourceKey, DateTime<Utc>)>, StoreError> {
        let action = "list the watermarks";
        let client = self.client(action).await?;
        let rows = client
            .query(
                "SELECT instance, resource, watermark_ms FROM pollerd_watermarks",
                &[],
            )
            .await
            .map_err(|e| self.error(action, &e))?;
        let mut marks = Vec::with_capacity(rows.len());
        for row in &rows {
            let key = ResourceKey::new(row.get::<_, String>(0), row.get::<_, String>(1));
            let at = from_millis(row.get(2)).map_err(|reason| corrupt(action, reason))?;
            marks.push((key, at));
        }
        marks.sort();
        Ok(marks)
    }

    pub(super) async fn forget_resource(&self, key: &ResourceKey) -> Result<(), StoreError> {
        let action = format!("forget the polling state of {key}");
        let mut client = self.client(&action).await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| self.error(&action, &e))?;
        for table in ["pollerd_watermarks", "pollerd_seen_pages"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE instance = $1 AND resource = $2"),
                &[&key.instance, &key.resource],
            )
            .await
            .map_err(|e| self.error(&action, &e))?;
        }
        // The version goes on (never back to one a copy may hold), the copy goes.
        self.bump_seen_versions(&tx, &[key], &action).await?;
        let committed = tx.commit().await.map_err(|e| self.error(&action, &e));
        self.seen.drop_copy(key);
        committed
    }
}
