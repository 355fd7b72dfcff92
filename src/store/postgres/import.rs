//! `pollerd store copy`'s target side: a sled store's state written in ONE transaction, so a
//! failure midway leaves nothing a node would trust. Refused when the database already holds
//! state (or a held lease) for any instance being copied: two stores' queues and seen ids cannot
//! be merged without re-sending or losing notifications. Copied instances get no lease row: the
//! nodes create and claim one as they do for any new instance.

use deadpool_postgres::Transaction;

use super::{Db, PostgresStore, millis};
use crate::store::snapshot::{ResourceState, StoreSnapshot};
use crate::store::{DeadLetter, StoreError};

/// Every table holding an instance's state, and the held leases.
const OCCUPIED: &str = "SELECT DISTINCT instance FROM ( \
    SELECT instance FROM pollerd_watermarks UNION ALL SELECT instance FROM pollerd_seen_pages \
    UNION ALL SELECT instance FROM pollerd_known_ids UNION ALL SELECT instance FROM pollerd_reconciled \
    UNION ALL SELECT instance FROM pollerd_outbox UNION ALL SELECT instance FROM pollerd_dead_letters \
    UNION ALL SELECT instance FROM pollerd_corrupt_entries \
    UNION ALL SELECT instance FROM pollerd_leases WHERE owner IS NOT NULL \
    ) AS t WHERE instance = ANY($1) ORDER BY instance";

impl PostgresStore {
    /// The instances among `instances` the database already holds state or a lease for.
    pub fn instances_with_state(&self, instances: Vec<String>) -> Result<Vec<String>, StoreError> {
        self.run(|db| async move {
            let action = "look for state of the instances to copy";
            let client = db.client(action).await?;
            let rows = client
                .query(OCCUPIED, &[&instances])
                .await
                .map_err(|e| db.error(action, &e))?;
            Ok(rows.iter().map(|row| row.get(0)).collect())
        })
    }

    /// Writes `snapshot` in one transaction; refused (nothing written) when the database holds
    /// state for any of its instances, checked inside the transaction after locking the tables
    /// against writers.
    pub fn import(&self, snapshot: StoreSnapshot) -> Result<(), StoreError> {
        self.run(|db| async move {
            let action = "copy the store into PostgreSQL";
            let mut client = db.client(action).await?;
            let tx = client
                .transaction()
                .await
                .map_err(|e| db.error(action, &e))?;
            tx.batch_execute(
                "LOCK TABLE pollerd_watermarks, pollerd_seen_pages, pollerd_seen_state, \
                 pollerd_known_ids, pollerd_reconciled, pollerd_outbox, pollerd_dead_letters, \
                 pollerd_leases \
                 IN SHARE ROW EXCLUSIVE MODE",
            )
            .await
            .map_err(|e| db.error("lock the tables for the copy", &e))?;
            let rows = tx
                .query(OCCUPIED, &[&snapshot.instances()])
                .await
                .map_err(|e| db.error(action, &e))?;
            let occupied: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
            if !occupied.is_empty() {
                return Err(occupied_error(&occupied));
            }
            for resource in &snapshot.resources {
                insert_resource(&db, &tx, resource).await?;
            }
            for letter in &snapshot.dead_letters {
                insert_dead_letter(&db, &tx, letter).await?;
            }
            tx.commit().await.map_err(|e| db.error(action, &e))
        })
    }
}

/// The refusal when the target already holds some of the instances.
pub(super) fn occupied_error(instances: &[String]) -> StoreError {
    StoreError::Engine {
        action: "copy the store into PostgreSQL".into(),
        reason: format!(
            "the database already holds state for instance(s) {}; nothing was copied \
             (a copy never merges into existing state)",
            instances.join(", ")
        ),
    }
}

async fn insert_resource(
    db: &Db,
    tx: &Transaction<'_>,
    resource: &ResourceState,
) -> Result<(), StoreError> {
    let key = &resource.key;
    let action = format!("copy the state of {key}");
    let fail = |e: tokio_postgres::Error| db.error(&action, &e);
    if let Some(mark) = resource.watermark {
        tx.execute(
            "INSERT INTO pollerd_watermarks (instance, resource, watermark_ms) VALUES ($1, $2, $3)",
            &[&key.instance, &key.resource, &millis(mark)],
        )
        .await
        .map_err(fail)?;
    }
    if !resource.seen.is_empty() {
        let entries = resource.seen.iter().map(|(id, ms)| (id.as_bytes(), *ms));
        db.insert_seen_page(tx, key, entries, &action).await?;
        db.bump_seen_versions(tx, &[key], &action).await?;
    }
    let known: Vec<Vec<u8>> = resource.known.ids.iter().map(|id| id.to_bytes()).collect();
    tx.execute(
        "INSERT INTO pollerd_known_ids (instance, resource, object_id) \
         SELECT $1, $2, i FROM unnest($3::bytea[]) AS t(i)",
        &[&key.instance, &key.resource, &known],
    )
    .await
    .map_err(fail)?;
    if resource.known.baselined {
        tx.execute(
            "INSERT INTO pollerd_reconciled (instance, resource) VALUES ($1, $2)",
            &[&key.instance, &key.resource],
        )
        .await
        .map_err(fail)?;
    }
    insert_queue(tx, resource).await.map_err(fail)?;
    Ok(())
}

/// The queue in order (the identity column numbers rows as they come), attempt state kept.
async fn insert_queue(
    tx: &Transaction<'_>,
    resource: &ResourceState,
) -> Result<u64, tokio_postgres::Error> {
    let queued = &resource.queued;
    let event_ids: Vec<&str> = queued.iter().map(|q| q.event_id.as_str()).collect();
    let bodies: Vec<&[u8]> = queued.iter().map(|q| q.body.as_slice()).collect();
    let created: Vec<i64> = queued.iter().map(|q| millis(q.created_at)).collect();
    let attempts: Vec<i32> = queued
        .iter()
        .map(|q| i32::try_from(q.attempts).unwrap_or(i32::MAX))
        .collect();
    let next: Vec<Option<i64>> = queued
        .iter()
        .map(|q| q.next_attempt_at.map(millis))
        .collect();
    let errors: Vec<Option<&str>> = queued.iter().map(|q| q.last_error.as_deref()).collect();
    tx.execute(
        "INSERT INTO pollerd_outbox \
         (instance, resource, event_id, body, created_ms, attempts, next_attempt_ms, last_error) \
         SELECT $1, $2, e, b, c, a, n, l \
         FROM unnest($3::text[], $4::bytea[], $5::int8[], $6::int4[], $7::int8[], $8::text[]) \
         WITH ORDINALITY AS t(e, b, c, a, n, l, o) ORDER BY o",
        &[
            &resource.key.instance,
            &resource.key.resource,
            &event_ids,
            &bodies,
            &created,
            &attempts,
            &next,
            &errors,
        ],
    )
    .await
}

async fn insert_dead_letter(
    db: &Db,
    tx: &Transaction<'_>,
    letter: &DeadLetter,
) -> Result<(), StoreError> {
    let attempts = i32::try_from(letter.attempts).unwrap_or(i32::MAX);
    let status = letter.last_status.map(i32::from);
    tx.execute(
        "INSERT INTO pollerd_dead_letters (id, instance, resource, event_id, body, created_ms, \
         attempts, last_status, last_error, dead_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        &[
            &letter.id,
            &letter.key.instance,
            &letter.key.resource,
            &letter.event_id,
            &letter.body,
            &millis(letter.created_at),
            &attempts,
            &status,
            &letter.last_error,
            &millis(letter.dead_at),
        ],
    )
    .await
    .map_err(|e| {
        db.error(
            format!("copy dead letter {} of {}", letter.id, letter.key),
            &e,
        )
    })?;
    Ok(())
}
