//! Acknowledgements written in groups. A delivery worker does not wait for its ack to commit (a
//! lost ack only means a re-send, as with sled, whose acks reach the disk every few hundred
//! milliseconds): [`Db::note_ack`] notes it and returns, and one writer deletes every ack noted
//! meanwhile in one statement — one commit for many deliveries of many queues, while their next
//! deliveries go on. Until its delete commits, an acknowledged entry stays hidden from this
//! store's reads of its queue, and any other change to a queue writes the noted acks first, so
//! a queue reads as though each ack had committed at once.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;

use super::Db;
use crate::store::{ResourceKey, StoreError};

/// How long the writer waits after a failed write before it tries again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The acks noted and not yet committed, by queue, in the order noted.
#[derive(Default)]
pub(super) struct PendingAcks {
    noted: Mutex<HashMap<ResourceKey, Vec<i64>>>,
    /// Told of each ack noted; the writer waits on it.
    wake: Notify,
    /// Held while acks are written: one writer at a time, so a write never races another
    /// with an overlapping batch.
    writing: tokio::sync::Mutex<()>,
}

impl PendingAcks {
    fn noted(&self) -> std::sync::MutexGuard<'_, HashMap<ResourceKey, Vec<i64>>> {
        self.noted.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn note(&self, key: &ResourceKey, seq: i64) {
        self.noted().entry(key.clone()).or_default().push(seq);
        self.wake.notify_one();
    }

    /// The entries of `key` acknowledged and not yet deleted: what reads of its queue skip.
    pub(super) fn hidden(&self, key: &ResourceKey) -> Vec<i64> {
        self.noted().get(key).cloned().unwrap_or_default()
    }

    fn is_empty(&self) -> bool {
        self.noted().is_empty()
    }

    /// What is noted now, as one batch.
    fn batch(&self) -> Vec<(ResourceKey, Vec<i64>)> {
        self.noted()
            .iter()
            .map(|(key, seqs)| (key.clone(), seqs.clone()))
            .collect()
    }

    /// `batch` is written (or its instance's lease is lost): its acks are no longer pending.
    /// Acks noted while it was written stay for the next batch.
    fn settle(&self, batch: &[(ResourceKey, Vec<i64>)]) {
        let mut noted = self.noted();
        for (key, written) in batch {
            let Some(seqs) = noted.get_mut(key) else {
                continue;
            };
            seqs.retain(|seq| !written.contains(seq));
            if seqs.is_empty() {
                noted.remove(key);
            }
        }
    }
}

/// The statement of an unfenced store: each acknowledged row that is still its queue's head once
/// the batch's rows before it are gone (an ack behind the head deletes nothing).
const DELETE_ACKED: &str = "DELETE FROM pollerd_outbox o WHERE o.seq = ANY($1) \
     AND NOT EXISTS (SELECT 1 FROM pollerd_outbox p WHERE p.instance = o.instance \
     AND p.resource = o.resource AND p.seq < o.seq AND NOT p.seq = ANY($1))";

/// The statement of a fenced store, as [`DELETE_ACKED`] for the instances whose lease this node
/// holds at its epoch (`$2`, `$3`; locked `FOR SHARE` until the statement commits, in instance
/// order so two such statements never deadlock); it returns those instances.
const DELETE_ACKED_FENCED: &str = "WITH held AS ( \
       SELECT l.instance FROM pollerd_leases l \
       JOIN unnest($2::text[], $3::int8[]) AS f(instance, epoch) ON l.instance = f.instance \
       WHERE l.owner = $4 AND l.epoch = f.epoch ORDER BY l.instance FOR SHARE OF l), \
     gone AS ( \
       DELETE FROM pollerd_outbox o WHERE o.seq = ANY($1) \
       AND o.instance IN (SELECT instance FROM held) \
       AND NOT EXISTS (SELECT 1 FROM pollerd_outbox p WHERE p.instance = o.instance \
       AND p.resource = o.resource AND p.seq < o.seq AND NOT p.seq = ANY($1)) RETURNING 1) \
     SELECT instance FROM held";

impl Db {
    /// Notes that `seq` of `key` was delivered; the writer deletes it soon.
    pub(super) fn note_ack(&self, key: &ResourceKey, seq: i64) {
        self.acks.note(key, seq);
    }

    /// Writes every ack noted so far. Err when the server failed (they stay noted and hidden);
    /// the acks of an instance whose lease this node lost are dropped (its new owner delivers
    /// them again), and the fence is told.
    pub(super) async fn write_acks(&self) -> Result<(), StoreError> {
        let _turn = self.acks.writing.lock().await;
        let batch = self.acks.batch();
        if batch.is_empty() {
            return Ok(());
        }
        let seqs: Vec<i64> = batch.iter().flat_map(|(_, s)| s.iter().copied()).collect();
        let action = format!("acknowledge {} delivered entries", seqs.len());
        let client = self.client(&action).await?;
        match &self.fence {
            None => {
                let statement = client
                    .prepare_cached(DELETE_ACKED)
                    .await
                    .map_err(|e| self.error(&action, &e))?;
                client
                    .execute(&statement, &[&seqs])
                    .await
                    .map_err(|e| self.error(&action, &e))?;
            }
            Some(fence) => {
                let mut instances: Vec<&str> =
                    batch.iter().map(|(k, _)| k.instance.as_str()).collect();
                instances.sort_unstable();
                instances.dedup();
                let (names, epochs): (Vec<&str>, Vec<i64>) = instances
                    .iter()
                    .filter_map(|name| fence.epoch(name).map(|epoch| (*name, epoch)))
                    .unzip();
                let statement = client
                    .prepare_cached(DELETE_ACKED_FENCED)
                    .await
                    .map_err(|e| self.error(&action, &e))?;
                let rows = client
                    .query(&statement, &[&seqs, &names, &epochs, &fence.node_id()])
                    .await
                    .map_err(|e| self.error(&action, &e))?;
                let held: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
                for lost in instances
                    .iter()
                    .filter(|name| !held.iter().any(|h| h == *name))
                {
                    tracing::warn!(
                        instance = %lost,
                        "store: lease lost: the acknowledgements of instance {lost} were refused; \
                         its new owner delivers those notifications again"
                    );
                    fence.refused(lost);
                }
            }
        }
        self.acks.settle(&batch);
        Ok(())
    }

    /// The writer: waits for acks and writes them, all that were noted meanwhile at a time. A
    /// failure is logged once until a write works again, and retried after a pause.
    pub(super) async fn write_acks_forever(self) {
        let mut failing = false;
        loop {
            self.acks.wake.notified().await;
            while !self.acks.is_empty() {
                match self.write_acks().await {
                    Ok(()) if failing => {
                        failing = false;
                        tracing::info!("store: acknowledgements are written again");
                    }
                    Ok(()) => {}
                    Err(e) => {
                        if !failing {
                            tracing::error!("{e}; retrying");
                        }
                        failing = true;
                        tokio::time::sleep(RETRY_AFTER).await;
                    }
                }
            }
        }
    }
}
