//! Page and reconcile commits, each one transaction, and what the poller reads back: watermarks,
//! seen dates, known ids.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;

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
    let statement = tx
        .prepare_cached(
            "INSERT INTO pollerd_outbox (instance, resource, event_id, body, created_ms) \
             SELECT $1, $2, e, b, c FROM unnest($3::text[], $4::bytea[], $5::int8[]) \
             WITH ORDINALITY AS t(e, b, c, n) ORDER BY n",
        )
        .await
        .map_err(|e| db.error(action, &e))?;
    tx.execute(
        &statement,
        &[&key.instance, &key.resource, &event_ids, &bodies, &created],
    )
    .await
    .map_err(|e| db.error(action, &e))?;
    Ok(())
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

    pub(super) async fn seen_dates(
        &self,
        key: &ResourceKey,
        ids: Vec<Vec<u8>>,
    ) -> Result<Vec<Option<DateTime<Utc>>>, StoreError> {
        let action = format!("read seen ids of {key}");
        let client = self.client(&action).await?;
        let statement = client
            .prepare_cached(
                "SELECT object_id, seen_ms FROM pollerd_seen \
                 WHERE instance = $1 AND resource = $2 AND object_id = ANY($3)",
            )
            .await
            .map_err(|e| self.error(&action, &e))?;
        let rows = client
            .query(&statement, &[&key.instance, &key.resource, &ids])
            .await
            .map_err(|e| self.error(&action, &e))?;
        let found: HashMap<Vec<u8>, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        ids.iter()
            .map(|id| {
                found
                    .get(id)
                    .map(|ms| from_millis(*ms).map_err(|reason| corrupt(&action, reason)))
                    .transpose()
            })
            .collect()
    }

    /// One transaction: notifications, seen ids, known ids, watermark, then pruning.
    pub(super) async fn commit(&self, commit: PageCommit) -> Result<(), StoreError> {
        let key = &commit.key;
        let action = format!("commit a page of {key}");
        let mut client = self.client(&action).await?;
        let tx = self.fenced(&mut client, &key.instance, &action).await?;
        insert_notifications(self, &tx, key, &commit.notifications, &action).await?;
        if !commit.seen.is_empty() {
            // One row per id, at its latest date: one statement may not update a row twice.
            let mut latest: HashMap<&str, i64> = HashMap::new();
            for (id, at) in &commit.seen {
                let kept = latest.entry(id.as_str()).or_insert(millis(*at));
                *kept = (*kept).max(millis(*at));
            }
            let ids: Vec<&[u8]> = latest.keys().map(|id| id.as_bytes()).collect();
            let dates: Vec<i64> = latest.values().copied().collect();
            let statement = tx
                .prepare_cached(
                    "INSERT INTO pollerd_seen (instance, resource, object_id, seen_ms) \
                     SELECT $1, $2, id, ms FROM unnest($3::bytea[], $4::int8[]) AS t(id, ms) \
                     ON CONFLICT (instance, resource, object_id) \
                     DO UPDATE SET seen_ms = GREATEST(pollerd_seen.seen_ms, EXCLUDED.seen_ms)",
                )
                .await
                .map_err(|e| self.error(&action, &e))?;
            tx.execute(&statement, &[&key.instance, &key.resource, &ids, &dates])
                .await
                .map_err(|e| self.error(&action, &e))?;
        }
        insert_known(self, &tx, key, &commit.known, &action).await?;
        if let Some(watermark) = commit.watermark {
            let statement = tx
                .prepare_cached(
                    "INSERT INTO pollerd_watermarks (instance, resource, watermark_ms) \
                     VALUES ($1, $2, $3) ON CONFLICT (instance, resource) \
                     DO UPDATE SET watermark_ms = EXCLUDED.watermark_ms",
                )
                .await
                .map_err(|e| self.error(&action, &e))?;
            tx.execute(
                &statement,
                &[&key.instance, &key.resource, &millis(watermark)],
            )
            .await
            .map_err(|e| self.error(&action, &e))?;
        }
        if let Some(cutoff) = commit.prune_seen_before {
            let statement = tx
                .prepare_cached(
                    "DELETE FROM pollerd_seen \
                     WHERE instance = $1 AND resource = $2 AND seen_ms < $3",
                )
                .await
                .map_err(|e| self.error(&action, &e))?;
            tx.execute(&statement, &[&key.instance, &key.resource, &millis(cutoff)])
                .await
                .map_err(|e| self.error(&action, &e))?;
        }
        tx.commit().await.map_err(|e| self.error(&action, &e))
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
                cutoffs.push(commit.prune_seen_before.map_or(i64::MIN, millis));
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
        tx.execute(
            "DELETE FROM pollerd_seen s \
             USING unnest($1::text[], $2::text[], $3::int8[]) AS p(instance, resource, cutoff) \
             WHERE s.instance = p.instance AND s.resource = p.resource AND s.seen_ms < p.cutoff",
            &[&instances, &resources, &cutoffs],
        )
        .await
        .map_err(|e| self.error(&action, &e))?;
        tx.commit().await.map_err(|e| self.error(&action, &e))?;
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

    pub(super) async fn seen_count(&self, key: &ResourceKey) -> Result<u64, StoreError> {
        let action = format!("count seen ids of {key}");
        let client = self.client(&action).await?;
        let row = client
            .query_one(
                "SELECT count(*) FROM pollerd_seen WHERE instance = $1 AND resource = $2",
                &[&key.instance, &key.resource],
            )
            .await
            .map_err(|e| self.error(&action, &e))?;
        Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
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
        for table in ["pollerd_watermarks", "pollerd_seen"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE instance = $1 AND resource = $2"),
                &[&key.instance, &key.resource],
            )
            .await
            .map_err(|e| self.error(&action, &e))?;
        }
        tx.commit().await.map_err(|e| self.error(&action, &e))
    }
}
