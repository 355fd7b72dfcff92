//! Acknowledgements written in groups. A delivery worker does not wait for its ack to commit (a
//! lost ack only means a re-send, as with sled, whose acks reach the disk every few hundred
//! milliseconds): [`Db::note_ack`] notes the ack of a queue's head and returns, and one writer
//! deletes every ack noted meanwhile in one statement, by key — one commit for many deliveries of many queues, while their next
//! deliveries go on. Until its delete commits, an acknowledged entry stays hidden from this
//! store's reads of its queue, and any other change to a queue writes the noted acks first, so
//! a queue reads as though each ack had committed at once.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use deadpool_postgres::Transaction;
use tokio::sync::Notify;

use super::Db;
use crate::store::{Fence, ResourceKey, StoreError};

/// How long the writer waits after a failed write before it tries again.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// How long the writer lets acks gather after the first one before it writes them: a few
/// milliseconds of a delivery's life, and several times fewer commits under load.
const GATHER_FOR: Duration = Duration::from_millis(5);

/// The acks noted and not yet committed, and the fronts last read, by queue.
#[derive(Default)]
pub(super) struct PendingAcks {
    state: Mutex<AckState>,
    /// Told of each ack noted; the writer waits on it.
    wake: Notify,
    /// Held while acks are written: one writer at a time, so a write never races another
    /// with an overlapping batch.
    writing: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct AckState {
    /// Acknowledged and not yet deleted, in the order noted (so in queue order).
    noted: HashMap<ResourceKey, Vec<i64>>,
    /// What the last read of each queue's front returned, less what was acknowledged since: an
    /// ack is taken without a query only when it is the first of these, the queue's head.
    fronts: HashMap<ResourceKey, VecDeque<i64>>,
}

impl PendingAcks {
    fn state(&self) -> std::sync::MutexGuard<'_, AckState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A read of `key`'s front returned `seqs`, in order.
    pub(super) fn read_front(&self, key: &ResourceKey, seqs: impl Iterator<Item = i64>) {
        let seqs: VecDeque<i64> = seqs.collect();
        let mut state = self.state();
        match seqs.is_empty() {
            true => state.fronts.remove(key),
            false => state.fronts.insert(key.clone(), seqs),
        };
    }

    /// Notes the ack of `seq` when it is `key`'s head as last read; false (nothing noted) when
    /// it is not known to be.
    fn note_head(&self, key: &ResourceKey, seq: i64) -> bool {
        let mut state = self.state();
        let Some(front) = state.fronts.get_mut(key) else {
            return false;
        };
        if front.front() != Some(&seq) {
            return false;
        }
        front.pop_front();
        if front.is_empty() {
            state.fronts.remove(key);
        }
        // This runs for every delivered notification: the key is copied only for its first ack.
        match state.noted.get_mut(key) {
            Some(seqs) => seqs.push(seq),
            None => {
                state.noted.insert(key.clone(), vec![seq]);
            }
        }
        drop(state);
        self.wake.notify_one();
        true
    }

    /// The last entry of `key` acknowledged and not yet deleted: reads of its queue start after
    /// it (the entries before it are acknowledged too, or committed late below it: those are
    /// read once the acks are written).
    pub(super) fn hidden_through(&self, key: &ResourceKey) -> Option<i64> {
        self.state()
            .noted
            .get(key)
            .and_then(|seqs| seqs.last().copied())
    }

    fn is_empty(&self) -> bool {
        self.state().noted.is_empty()
    }

    /// What is noted now, as one batch.
    fn batch(&self) -> Vec<(ResourceKey, Vec<i64>)> {
        self.state()
            .noted
            .iter()
            .map(|(key, seqs)| (key.clone(), seqs.clone()))
            .collect()
    }

    /// `batch` is written (or its instance's lease is lost): its acks are no longer pending.
    /// Acks noted while it was written stay for the next batch: they were appended, and only
    /// the one writer removes any, so each queue's written acks are the front of its list.
    fn settle(&self, batch: &[(ResourceKey, Vec<i64>)]) {
        let noted = &mut self.state().noted;
        for (key, written) in batch {
            let Some(seqs) = noted.get_mut(key) else {
                continue;
            };
            seqs.drain(..written.len().min(seqs.len()));
            if seqs.is_empty() {
                noted.remove(key);
            }
        }
    }
}

/// The acknowledged rows, by their key (one index probe each, whatever the table's statistics).
const DELETE_ACKED: &str = "DELETE FROM pollerd_outbox WHERE seq = ANY($1)";

/// Of the instances `$1` at the epochs `$2`, those whose lease node `$3` holds, locked
/// `FOR SHARE` until the transaction ends (in instance order, so two batches never deadlock):
/// a takeover cannot commit between this check and the delete.
const HELD_LEASES: &str = "SELECT l.instance FROM pollerd_leases l \
     JOIN unnest($1::text[], $2::int8[]) AS f(instance, epoch) ON l.instance = f.instance \
     WHERE l.owner = $3 AND l.epoch = f.epoch ORDER BY l.instance FOR SHARE OF l";

impl Db {
    /// Notes that `seq`, the head of `key` as last read, was delivered: the writer deletes it
    /// soon. False (nothing noted) for anything else (not read, or not the head), which is
    /// then acknowledged with the checks of [`Db::ack`].
    pub(super) fn note_ack(&self, key: &ResourceKey, seq: u64) -> bool {
        i64::try_from(seq).is_ok_and(|stored| self.acks.note_head(key, stored))
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
        let count: usize = batch.iter().map(|(_, seqs)| seqs.len()).sum();
        let action = format!("acknowledge {count} delivered entries");
        let mut client = self.client(&action).await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| self.error(&action, &e))?;
        let held = match &self.fence {
            None => None,
            Some(fence) => Some(self.held_leases(&tx, fence, &batch, &action).await?),
        };
        let seqs: Vec<i64> = batch
            .iter()
            .filter(|(key, _)| {
                held.as_ref()
                    .is_none_or(|held| held.contains(&key.instance))
            })
            .flat_map(|(_, seqs)| seqs.iter().copied())
            .collect();
        self.execute_cached(&tx, DELETE_ACKED, &[&seqs], &action)
            .await?;
        tx.commit().await.map_err(|e| self.error(&action, &e))?;
        self.acks.settle(&batch);
        Ok(())
    }

    /// The instances of `batch` whose lease this node holds, locked until `tx` ends; the fence
    /// is told of the others (their acks are dropped: the new owner delivers them again).
    async fn held_leases(
        &self,
        tx: &Transaction<'_>,
        fence: &Fence,
        batch: &[(ResourceKey, Vec<i64>)],
        action: &str,
    ) -> Result<HashSet<String>, StoreError> {
        let mut instances: Vec<&str> = batch.iter().map(|(k, _)| k.instance.as_str()).collect();
        instances.sort_unstable();
        instances.dedup();
        let (names, epochs): (Vec<&str>, Vec<i64>) = instances
            .iter()
            .filter_map(|name| fence.epoch(name).map(|epoch| (*name, epoch)))
            .unzip();
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
            [&names, &epochs, &fence.node_id()];
        let rows = self.query_cached(tx, HELD_LEASES, &params, action).await?;
        let held: HashSet<String> = rows.iter().map(|row| row.get(0)).collect();
        for lost in instances.iter().filter(|name| !held.contains(**name)) {
            tracing::warn!(
                instance = %lost,
                "store: lease lost: the acknowledgements of instance {lost} were refused; \
                 its new owner delivers those notifications again"
            );
            fence.refused(lost);
        }
        Ok(held)
    }

    /// The writer: waits for acks and writes them, all that were noted meanwhile at a time. A
    /// failure is logged once until a write works again, and retried after a pause.
    pub(super) async fn write_acks_forever(self) {
        let mut failing = false;
        loop {
            self.acks.wake.notified().await;
            tokio::time::sleep(GATHER_FOR).await;
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
