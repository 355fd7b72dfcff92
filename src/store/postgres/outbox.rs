//! The outbox and the dead letters. A queue is the rows of one resource in `seq` order; an entry
//! leaves only at its head, and an acknowledged or dead-lettered row is deleted.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::commits::insert_notifications;
use super::{Db, from_millis, millis, seq_param, storable};
use crate::store::{
    CorruptEntry, DeadLetter, DeadLetterSummary, ERROR_SNIPPET_MAX_BYTES, NewNotification,
    OutboxEntry, QueueDeadLetters, ResourceKey, StoreError, StoreStats, truncate_to_bytes,
};

/// Corrupt heads set aside by one read of a queue's front, at most (as the sled engine).
const SET_ASIDE_MAX_PER_READ: usize = 64;

/// The head of a queue, in SQL: the smallest `seq` of the resource.
const IS_HEAD: &str =
    "seq = (SELECT min(seq) FROM pollerd_outbox WHERE instance = $1 AND resource = $2)";

fn snippet(error: &str) -> String {
    storable(truncate_to_bytes(error, ERROR_SNIPPET_MAX_BYTES)).into_owned()
}

/// An outbox row back; Err(reason) when a value is out of range.
fn outbox_entry(key: &ResourceKey, row: &Row) -> Result<OutboxEntry, String> {
    let seq: i64 = row.get("seq");
    let event_id: String = row.get("event_id");
    let entry = OutboxEntry {
        key: key.clone(),
        seq: u64::try_from(seq).map_err(|_| format!("entry {seq}: a negative position"))?,
        created_at: from_millis(row.get("created_ms"))
            .map_err(|r| format!("entry {seq} ({event_id}): created {r}"))?,
        attempts: u32::try_from(row.get::<_, i32>("attempts"))
            .map_err(|_| format!("entry {seq} ({event_id}): a negative attempt count"))?,
        next_attempt_at: row
            .get::<_, Option<i64>>("next_attempt_ms")
            .map(from_millis)
            .transpose()
            .map_err(|r| format!("entry {seq} ({event_id}): next attempt {r}"))?,
        last_error: row.get("last_error"),
        body: row.get("body"),
        event_id,
    };
    Ok(entry)
}

fn dead_letter(row: &Row) -> Result<DeadLetter, String> {
    let status: Option<i32> = row.get("last_status");
    Ok(DeadLetter {
        id: row.get("id"),
        key: ResourceKey::new(
            row.get::<_, String>("instance"),
            row.get::<_, String>("resource"),
        ),
        event_id: row.get("event_id"),
        body: row.get("body"),
        created_at: from_millis(row.get("created_ms"))?,
        attempts: u32::try_from(row.get::<_, i32>("attempts"))
            .map_err(|_| "a negative attempt count".to_string())?,
        last_status: status
            .map(u16::try_from)
            .transpose()
            .map_err(|_| "a status out of range".to_string())?,
        last_error: row.get("last_error"),
        dead_at: from_millis(row.get("dead_ms"))?,
    })
}

impl Db {
    /// A connection for reading or changing the outbox, once the acks noted so far are written:
    /// the queue then reads as though each had committed at once (`acks.rs`).
    async fn queue_client(&self, action: &str) -> Result<deadpool_postgres::Client, StoreError> {
        self.write_acks().await?;
        self.client(action).await
    }

    pub(super) async fn queues(&self) -> Result<Vec<ResourceKey>, StoreError> {
        let action = "list the outbox queues";
        let client = self.queue_client(action).await?;
        let rows = client
            .query(
                "SELECT DISTINCT instance, resource FROM pollerd_outbox",
                &[],
            )
            .await
            .map_err(|e| self.error(action, &e))?;
        let mut keys: Vec<ResourceKey> = rows
            .iter()
            .map(|r| ResourceKey::new(r.get::<_, String>(0), r.get::<_, String>(1)))
            .collect();
        keys.sort();
        Ok(keys)
    }

    pub(super) async fn outbox_depth(&self, key: &ResourceKey) -> Result<u64, StoreError> {
        let action = format!("count the outbox of {key}");
        let client = self.queue_client(&action).await?;
        let row = client
            .query_one(
                "SELECT count(*) FROM pollerd_outbox WHERE instance = $1 AND resource = $2",
                &[&key.instance, &key.resource],
            )
            .await
            .map_err(|e| self.error(&action, &e))?;
        Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
    }

    /// The front of the queue; an unreadable head is set aside (and the next read goes on), an
    /// unreadable entry behind it ends the list.
    pub(super) async fn outbox_front(
        &self,
        key: &ResourceKey,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let action = format!("read the front of the outbox of {key}");
        let client = self.client(&action).await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        for _ in 0..SET_ASIDE_MAX_PER_READ {
            // Delivered entries whose ack is not yet written are not the front any more.
            let after = self.acks.hidden_through(key).unwrap_or(i64::MIN);
            let rows = self
                .query_cached(
                    &client,
                    "SELECT seq, event_id, body, created_ms, attempts, next_attempt_ms, \
                     last_error FROM pollerd_outbox WHERE instance = $1 AND resource = $2 \
                     AND seq > $4 ORDER BY seq LIMIT $3",
                    &[&key.instance, &key.resource, &limit, &after],
                    &action,
                )
                .await?;
            let mut entries = Vec::with_capacity(rows.len());
            for (at, row) in rows.iter().enumerate() {
                match outbox_entry(key, row) {
                    Ok(entry) => entries.push(entry),
                    Err(reason) if at == 0 => {
                        self.set_aside_head(key, row, &reason, &action).await?;
                        break;
                    }
                    Err(_) => break,
                }
            }
            if !entries.is_empty() || rows.is_empty() {
                let seqs = entries.iter().filter_map(|e| i64::try_from(e.seq).ok());
                self.acks.read_front(key, seqs);
                return Ok(entries);
            }
        }
        Err(StoreError::Corrupt {
            action,
            reason: format!(
                "{SET_ASIDE_MAX_PER_READ} corrupt entries in a row were set aside; the next read goes on"
            ),
        })
    }

    /// Moves an unreadable head row to the corrupt entries, logging it.
    async fn set_aside_head(
        &self,
        key: &ResourceKey,
        row: &Row,
        reason: &str,
        action: &str,
    ) -> Result<(), StoreError> {
        let seq: i64 = row.get("seq");
        let event_id: String = row.get("event_id");
        let mut client = self.client(action).await?;
        let tx = self.fenced(&mut client, &key.instance, action).await?;
        let deleted = tx
            .execute("DELETE FROM pollerd_outbox WHERE seq = $1", &[&seq])
            .await
            .map_err(|e| self.error(action, &e))?;
        if deleted == 1 {
            let created: i64 = row.get("created_ms");
            let created = from_millis(created).is_ok().then_some(created);
            let raw: Vec<u8> = row.get("body");
            tx.execute(
                "INSERT INTO pollerd_corrupt_entries \
                 (id, instance, resource, event_id, created_ms, found_ms, reason, raw) \
                 VALUES ('corrupt-' || nextval('pollerd_corrupt_ids'), $1, $2, $3, $4, $5, $6, $7)",
                &[
                    &key.instance,
                    &key.resource,
                    &event_id,
                    &created,
                    &millis(Utc::now()),
                    &snippet(reason),
                    &raw,
                ],
            )
            .await
            .map_err(|e| self.error(action, &e))?;
        }
        tx.commit().await.map_err(|e| self.error(action, &e))?;
        if deleted == 1 {
            self.count_set_aside();
            tracing::error!(
                queue = %key,
                "store: an outbox entry cannot be read ({reason}); set aside with the dead letters"
            );
        }
        Ok(())
    }

    /// Why `seq` is not `key`'s head: queued behind it, or not queued at all.
    async fn not_head(
        &self,
        client: &tokio_postgres::Client,
        key: &ResourceKey,
        seq: u64,
        action: &str,
    ) -> Result<StoreError, StoreError> {
        let row = client
            .query_one(
                "SELECT min(seq) FROM pollerd_outbox WHERE instance = $1 AND resource = $2",
                &[&key.instance, &key.resource],
            )
            .await
            .map_err(|e| self.error(action, &e))?;
        let head = row
            .get::<_, Option<i64>>(0)
            .and_then(|h| u64::try_from(h).ok());
        let not_in = StoreError::NotInOutbox {
            key: key.clone(),
            seq,
        };
        let Some(head) = head.filter(|head| *head < seq) else {
            return Ok(not_in);
        };
        let queued = client
            .query_opt(
                "SELECT 1 FROM pollerd_outbox WHERE instance = $1 AND resource = $2 AND seq = $3",
                &[&key.instance, &key.resource, &seq_param(seq)],
            )
            .await
            .map_err(|e| self.error(action, &e))?
            .is_some();
        Ok(match queued {
            true => StoreError::NotHead {
                key: key.clone(),
                seq,
                head,
            },
            false => not_in,
        })
    }

    pub(super) async fn ack(&self, key: &ResourceKey, seq: u64) -> Result<(), StoreError> {
        let action = format!("acknowledge entry {seq} of {key}");
        let mut client = self.queue_client(&action).await?;
        let tx = self.fenced(&mut client, &key.instance, &action).await?;
        let deleted = tx
            .execute(
                &format!(
                    "DELETE FROM pollerd_outbox WHERE instance = $1 AND resource = $2 \
                     AND seq = $3 AND {IS_HEAD}"
                ),
                &[&key.instance, &key.resource, &seq_param(seq)],
            )
            .await
            .map_err(|e| self.error(&action, &e))?;
        tx.commit().await.map_err(|e| self.error(&action, &e))?;
        if deleted == 1 {
            return Ok(());
        }
        // Already gone (behind the head, or the queue is empty) is fine; ahead of it is not.
        match self.not_head(&client, key, seq, &action).await? {
            error @ StoreError::NotHead { .. } => Err(error),
            _ => Ok(()),
        }
    }

    pub(super) async fn record_failure(
        &self,
        key: &ResourceKey,
        seq: u64,
        attempts: u32,
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        let action = format!("record a failed attempt of entry {seq} of {key}");
        let mut client = self.queue_client(&action).await?;
        let tx = self.fenced(&mut client, &key.instance, &action).await?;
        let attempts = i32::try_from(attempts).unwrap_or(i32::MAX);
        let updated = tx
            .execute(
                &format!(
                    "UPDATE pollerd_outbox SET attempts = $4, next_attempt_ms = $5, last_error = $6 \
                     WHERE instance = $1 AND resource = $2 AND seq = $3 AND {IS_HEAD}"
                ),
                &[
                    &key.instance,
                    &key.resource,
                    &seq_param(seq),
                    &attempts,
                    &millis(next_attempt_at),
                    &snippet(error),
                ],
            )
            .await
            .map_err(|e| self.error(&action, &e))?;
        tx.commit().await.map_err(|e| self.error(&action, &e))?;
        match updated {
            1 => Ok(()),
            _ => Err(self.not_head(&client, key, seq, &action).await?),
        }
    }

    /// One transaction: the head row leaves the outbox and becomes a dead letter, under its
    /// event id (suffixed with its position when that id is already dead-lettered).
    pub(super) async fn dead_letter(
        &self,
        key: &ResourceKey,
        seq: u64,
        attempts: u32,
        status: Option<u16>,
        error: &str,
    ) -> Result<(), StoreError> {
        let action = format!("dead-letter entry {seq} of {key}");
        let mut client = self.queue_client(&action).await?;
        let tx = self.fenced(&mut client, &key.instance, &action).await?;
        let row = tx
            .query_opt(
                &format!(
                    "DELETE FROM pollerd_outbox WHERE instance = $1 AND resource = $2 \
                     AND seq = $3 AND {IS_HEAD} RETURNING event_id, body, created_ms"
                ),
                &[&key.instance, &key.resource, &seq_param(seq)],
            )
            .await
            .map_err(|e| self.error(&action, &e))?;
        let Some(row) = row else {
            drop(tx);
            return Err(self.not_head(&client, key, seq, &action).await?);
        };
        let event_id: String = row.get(0);
        let taken = tx
            .query_opt(
                "SELECT 1 FROM pollerd_dead_letters WHERE id = $1 \
                 UNION ALL SELECT 1 FROM pollerd_corrupt_entries WHERE id = $1",
                &[&event_id],
            )
            .await
            .map_err(|e| self.error(&action, &e))?
            .is_some();
        let id = match taken {
            false => event_id.clone(),
            true => format!("{event_id}.{seq}"),
        };
        let attempts = i32::try_from(attempts).unwrap_or(i32::MAX);
        let status = status.map(i32::from);
        let params: [&(dyn ToSql + Sync); 10] = [
            &id,
            &key.instance,
            &key.resource,
            &event_id,
            &row.get::<_, Vec<u8>>(1),
            &row.get::<_, i64>(2),
            &attempts,
            &status,
            &snippet(error),
            &millis(Utc::now()),
        ];
        tx.execute(
            "INSERT INTO pollerd_dead_letters (id, instance, resource, event_id, body, created_ms, \
             attempts, last_status, last_error, dead_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            &params,
        )
        .await
        .map_err(|e| self.error(&action, &e))?;
        tx.commit().await.map_err(|e| self.error(&action, &e))
    }

    pub(super) async fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError> {
        let action = "list the dead letters";
        let client = self.client(action).await?;
        let rows = client
            .query("SELECT * FROM pollerd_dead_letters", &[])
            .await
            .map_err(|e| self.error(action, &e))?;
        // A letter whose values are out of range (a hand-edited row) is left out.
        let mut letters: Vec<DeadLetter> =
            rows.iter().filter_map(|r| dead_letter(r).ok()).collect();
        letters.sort_by(|a, b| (a.dead_at, &a.id).cmp(&(b.dead_at, &b.id)));
        Ok(letters)
    }

    /// Counts and dates per queue, by aggregate queries (no letter's body is read).
    pub(super) async fn dead_letter_summary(&self) -> Result<DeadLetterSummary, StoreError> {
        let action = "summarise the dead letters";
        let client = self.client(action).await?;
        let rows = client
            .query(
                "SELECT instance, resource, count(*), 0::int8, min(dead_ms), max(dead_ms) \
                 FROM pollerd_dead_letters GROUP BY instance, resource \
                 UNION ALL \
                 SELECT instance, resource, count(*), count(*), min(found_ms), max(found_ms) \
                 FROM pollerd_corrupt_entries GROUP BY instance, resource",
                &[],
            )
            .await
            .map_err(|e| self.error(action, &e))?;
        let second =
            |ms: Option<i64>| ms.and_then(|ms| DateTime::from_timestamp(ms.div_euclid(1000), 0));
        let mut queues: BTreeMap<Option<ResourceKey>, QueueDeadLetters> = BTreeMap::new();
        for row in &rows {
            let instance: Option<String> = row.get(0);
            let resource: Option<String> = row.get(1);
            let key = instance.zip(resource).map(|(i, r)| ResourceKey::new(i, r));
            let queue = queues.entry(key.clone()).or_insert(QueueDeadLetters {
                key,
                count: 0,
                corrupt: 0,
                oldest: None,
                newest: None,
            });
            queue.count += u64::try_from(row.get::<_, i64>(2)).unwrap_or(0);
            queue.corrupt += u64::try_from(row.get::<_, i64>(3)).unwrap_or(0);
            let (oldest, newest) = (second(row.get(4)), second(row.get(5)));
            queue.oldest = [queue.oldest, oldest].into_iter().flatten().min();
            queue.newest = [queue.newest, newest].into_iter().flatten().max();
        }
        Ok(DeadLetterSummary {
            queues: queues.into_values().collect(),
        })
    }

    pub(super) async fn corrupt_entries(&self) -> Result<Vec<CorruptEntry>, StoreError> {
        let action = "list the corrupt entries among the dead letters";
        let client = self.client(action).await?;
        let rows = client
            .query(
                "SELECT id, instance, resource, event_id, created_ms, found_ms, reason, \
                 octet_length(raw)::int8 FROM pollerd_corrupt_entries",
                &[],
            )
            .await
            .map_err(|e| self.error(action, &e))?;
        let mut entries = Vec::with_capacity(rows.len());
        for row in &rows {
            let instance: Option<String> = row.get(1);
            let resource: Option<String> = row.get(2);
            entries.push(CorruptEntry {
                id: row.get(0),
                key: instance.zip(resource).map(|(i, r)| ResourceKey::new(i, r)),
                event_id: row.get(3),
                created_at: row
                    .get::<_, Option<i64>>(4)
                    .and_then(|ms| from_millis(ms).ok()),
                found_at: from_millis(row.get(5)).unwrap_or(DateTime::UNIX_EPOCH),
                reason: row.get(6),
                size: u64::try_from(row.get::<_, i64>(7)).unwrap_or(0),
            });
        }
        entries.sort_by(|a, b| (a.found_at, &a.id).cmp(&(b.found_at, &b.id)));
        Ok(entries)
    }

    pub(super) async fn corrupt_entry_bytes(
        &self,
        id: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let action = format!("read corrupt entry {id}");
        let client = self.client(&action).await?;
        let row = client
            .query_opt(
                "SELECT raw FROM pollerd_corrupt_entries WHERE id = $1",
                &[&id],
            )
            .await
            .map_err(|e| self.error(&action, &e))?;
        Ok(row.map(|r| r.get(0)))
    }

    /// One transaction: the letter leaves the dead letters and is queued at the tail again.
    pub(super) async fn replay_dead_letter(&self, id: &str) -> Result<bool, StoreError> {
        let action = format!("replay dead letter {id}");
        let mut client = self.client(&action).await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| self.error(&action, &e))?;
        let corrupt = tx
            .query_opt(
                "SELECT reason FROM pollerd_corrupt_entries WHERE id = $1",
                &[&id],
            )
            .await
            .map_err(|e| self.error(&action, &e))?;
        if let Some(row) = corrupt {
            return Err(StoreError::CorruptDeadLetter {
                id: id.to_string(),
                reason: row.get(0),
            });
        }
        let row = tx
            .query_opt(
                "DELETE FROM pollerd_dead_letters WHERE id = $1 RETURNING *",
                &[&id],
            )
            .await
            .map_err(|e| self.error(&action, &e))?;
        let Some(row) = row else {
            return Ok(false);
        };
        let letter = dead_letter(&row).map_err(|reason| StoreError::CorruptDeadLetter {
            id: id.to_string(),
            reason,
        })?;
        let notification = NewNotification {
            event_id: letter.event_id,
            body: letter.body,
            created_at: letter.created_at,
        };
        insert_notifications(self, &tx, &letter.key, &[notification], &action).await?;
        tx.commit().await.map_err(|e| self.error(&action, &e))?;
        Ok(true)
    }

    pub(super) async fn drop_dead_letter(&self, id: &str) -> Result<bool, StoreError> {
        let action = format!("drop dead letter {id}");
        let client = self.client(&action).await?;
        let row = client
            .query_one(
                "WITH letter AS (DELETE FROM pollerd_dead_letters WHERE id = $1 RETURNING 1), \
                 corrupt AS (DELETE FROM pollerd_corrupt_entries WHERE id = $1 RETURNING 1) \
                 SELECT (SELECT count(*) FROM letter) + (SELECT count(*) FROM corrupt)",
                &[&id],
            )
            .await
            .map_err(|e| self.error(&action, &e))?;
        Ok(row.get::<_, i64>(0) > 0)
    }

    /// Counted by the server at each call, not kept in counters as sled does (no node's memory
    /// holds the totals of a shared database); the cost grows with what is queued and dead, not
    /// with what was delivered, since delivered rows are deleted.
    pub(super) async fn stats(&self) -> Result<StoreStats, StoreError> {
        let action = "read the store's counts";
        let client = self.queue_client(action).await?;
        let row = client
            .query_one(
                "SELECT (SELECT count(*) FROM pollerd_outbox), \
                 (SELECT count(*) FROM pollerd_dead_letters) \
                 + (SELECT count(*) FROM pollerd_corrupt_entries)",
                &[],
            )
            .await
            .map_err(|e| self.error(action, &e))?;
        Ok(StoreStats {
            outbox_depth: u64::try_from(row.get::<_, i64>(0)).unwrap_or(0),
            dead_letters: u64::try_from(row.get::<_, i64>(1)).unwrap_or(0),
            corrupt_set_aside: self.set_aside.load(std::sync::atomic::Ordering::Relaxed),
        })
    }
}
