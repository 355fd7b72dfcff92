//! The outbox in sled: queues as runs of entries plus one queue-front value each (layout and
//! why in `store/codec/runs.rs`). Entries leave a queue only at its head, in order; an ack moves
//! the queue's cursor in memory and writes it at most every [`FRONT_WRITE_INTERVAL`] (and on
//! flush), and a run is removed in one operation once its last entry has left.

use std::time::{Duration, Instant};

use ::sled::Batch;
use chrono::{DateTime, Utc};

use super::corrupt::Damage;
use super::engine::{Counters, Engine, QueueState};
use super::errors::{corrupt, engine};
use crate::store::bodylog::BodyRef;
use crate::store::codec::{self, HeadFailure, NewRunEntry, QueueFront, Run, consumed, position};
use crate::store::{
    DeadLetter, ERROR_SNIPPET_MAX_BYTES, OutboxEntry, ResourceKey, StoreError, truncate_to_bytes,
};

/// Longest time an acknowledgement stays in memory only (besides sled's own flush interval):
/// a crash loses at most this much progress, which means re-sending those notifications.
const FRONT_WRITE_INTERVAL: Duration = Duration::from_millis(100);

/// The front of a queue as read.
pub(super) enum Front {
    /// Its first entries, with where their bodies are (none when the queue is empty).
    Entries(Vec<(OutboxEntry, BodyRef)>),
    /// Its head cannot be read: set it aside ([`Engine::set_aside_head`]) and read again.
    DamagedHead(Damage),
}

/// Where a queue's head is.
pub(super) struct Head {
    pub(super) seq: u64,
    pub(super) run: u64,
    index: usize,
    run_len: usize,
}

impl Head {
    fn is_last_of_run(&self) -> bool {
        self.index + 1 == self.run_len
    }
}

impl Engine {
    /// Stages `entries` (bodies already in the log) as runs at the tail of `key`'s queue.
    pub(super) fn stage_runs(
        &self,
        key: &ResourceKey,
        entries: &[NewRunEntry<'_>],
        batch: &mut Batch,
        action: &str,
    ) -> Result<(), StoreError> {
        let mut start = 0;
        while start < entries.len() {
            let mut end = start + 1;
            let mut bytes = codec::run_entry_bytes(entries[start].event_id);
            while end < entries.len() && end - start < codec::RUN_MAX_ENTRIES {
                bytes += codec::run_entry_bytes(entries[end].event_id);
                if bytes > codec::RUN_MAX_BYTES {
                    break;
                }
                end += 1;
            }
            let run = self.next_seq(action)?;
            batch.insert(
                codec::outbox_key(key, run),
                codec::encode_run(&entries[start..end]),
            );
            start = end;
        }
        Ok(())
    }

    /// Up to `limit` entries from the front of `key`'s queue with where their bodies are, or
    /// what is wrong with the head when it cannot be read. An entry behind the head that cannot
    /// be read ends the list: it is met again when it is the head.
    pub(super) fn front(
        &self,
        key: &ResourceKey,
        limit: usize,
        action: &dyn Fn() -> String,
    ) -> Result<Front, StoreError> {
        let front = match self.lock().queues.get(key) {
            Some(queue) => queue.front.clone(),
            None => return Ok(Front::Entries(Vec::new())),
        };
        let mut entries = Vec::new();
        let prefix = codec::resource_prefix(codec::TAG_OUTBOX, key);
        for item in self.db.scan_prefix(prefix) {
            if entries.len() >= limit {
                break;
            }
            let (run_key, value) = match item {
                Ok(item) => item,
                Err(error) if entries.is_empty() => return Err(engine(action(), error)),
                Err(_) => break,
            };
            let parsed = codec::parse_outbox_key(&run_key)
                .and_then(|(_, run)| Ok((run, Run::parse(&value)?)));
            let (run, parsed) = match parsed {
                Ok(parsed) => parsed,
                Err(reason) if entries.is_empty() => {
                    return Ok(Front::DamagedHead(Damage::Run {
                        run_key: run_key.to_vec(),
                        value: value.to_vec(),
                        reason: format!("outbox run {}: {reason}", run_label(&run_key)),
                    }));
                }
                Err(_) => break,
            };
            let start = consumed(front.through, run, parsed.len());
            let wanted = (parsed.len() - start).min(limit - entries.len());
            for index in start..start + wanted {
                let seq = position(run, index);
                match parsed.entry(index) {
                    Ok(entry) => entries.push((outbox_entry(key, seq, &entry, &front), entry.body)),
                    Err(reason) if entries.is_empty() => {
                        return Ok(Front::DamagedHead(Damage::Entry {
                            seq,
                            event_id: None,
                            created_at: None,
                            raw: value.to_vec(),
                            reason: format!("entry {index} of outbox run {run}: {reason}"),
                        }));
                    }
                    Err(_) => return Ok(Front::Entries(entries)),
                }
            }
        }
        Ok(Front::Entries(entries))
    }

    /// Acknowledges the head `seq`. Returns the bodies to release (those of a finished run).
    pub(super) fn ack(
        &self,
        key: &ResourceKey,
        seq: u64,
        action: &dyn Fn() -> String,
    ) -> Result<Vec<BodyRef>, StoreError> {
        let mut counters = self.lock();
        let Some(queue) = counters.queues.get_mut(key) else {
            return Ok(Vec::new()); // nothing queued: already gone
        };
        let head = self.head(key, queue, action)?;
        if seq < head.seq {
            return Ok(Vec::new());
        }
        self.check_head(key, seq, &head, action)?;
        let released = self.consume_head(key, queue, &head, action)?;
        counters.dequeued(key);
        Ok(released)
    }

    /// Records a failed attempt of the head `seq`, written to sled at once.
    pub(super) fn record_failure(
        &self,
        key: &ResourceKey,
        seq: u64,
        attempts: u32,
        next_attempt_at: DateTime<Utc>,
        error: &str,
        action: &dyn Fn() -> String,
    ) -> Result<(), StoreError> {
        let mut counters = self.lock();
        let (queue, _) = self.queued_head(&mut counters, key, seq, action)?;
        queue.front.failure = Some(HeadFailure {
            seq,
            attempts,
            next_attempt_at,
            last_error: truncate_to_bytes(error, ERROR_SNIPPET_MAX_BYTES).to_string(),
        });
        self.write_front(key, queue, action)
    }

    /// Moves the head `seq` to the dead letters in one batch. Returns the bodies to release.
    pub(super) fn dead_letter(
        &self,
        key: &ResourceKey,
        seq: u64,
        attempts: u32,
        status: Option<u16>,
        error: &str,
        action: &dyn Fn() -> String,
    ) -> Result<Vec<BodyRef>, StoreError> {
        let mut counters = self.lock();
        let (queue, head) = self.queued_head(&mut counters, key, seq, action)?;
        let value = self.head_run(key, &head, action)?;
        let run = Run::parse(&value).map_err(|r| corrupt(action(), r))?;
        let entry = run.entry(head.index).map_err(|r| corrupt(action(), r))?;
        // The letter keeps its own copy: the body log drops what the outbox no longer holds.
        let body = self.read_body(&entry.body, &action())?;
        let taken = self
            .db
            .contains_key(codec::dead_key(entry.event_id))
            .map_err(|e| engine(action(), e))?;
        let letter = DeadLetter {
            id: match taken {
                false => entry.event_id.to_string(),
                true => format!("{}.{seq}", entry.event_id),
            },
            key: key.clone(),
            event_id: entry.event_id.to_string(),
            body,
            created_at: entry.created_at,
            attempts,
            last_status: status,
            last_error: truncate_to_bytes(error, ERROR_SNIPPET_MAX_BYTES).to_string(),
            dead_at: Utc::now(),
        };
        let value = codec::encode_dead(&letter);
        let mut batch = Batch::default();
        batch.insert(codec::dead_key(&letter.id), value.as_slice());
        let released = self.remove_head(key, queue, &head, &run, batch, action)?;
        counters.dequeued(key);
        counters.dead.add_value(&value);
        Ok(released)
    }

    /// The stored run holding `head`.
    pub(super) fn head_run(
        &self,
        key: &ResourceKey,
        head: &Head,
        action: &dyn Fn() -> String,
    ) -> Result<::sled::IVec, StoreError> {
        self.db
            .get(codec::outbox_key(key, head.run))
            .map_err(|e| engine(action(), e))?
            .ok_or_else(|| corrupt(action(), format!("the run of entry {} is gone", head.seq)))
    }

    /// Takes `head` (of run `run`) off the queue in `batch` with whatever else the batch holds:
    /// the cursor moves past it, or its run goes when it was the last. Returns the bodies to
    /// release.
    pub(super) fn remove_head(
        &self,
        key: &ResourceKey,
        queue: &mut QueueState,
        head: &Head,
        run: &Run<'_>,
        mut batch: Batch,
        action: &dyn Fn() -> String,
    ) -> Result<Vec<BodyRef>, StoreError> {
        let front = QueueFront {
            through: Some(head.seq),
            failure: None,
        };
        let released = match head.is_last_of_run() {
            true => {
                batch.remove(codec::outbox_key(key, head.run));
                batch.remove(codec::queue_front_key(key));
                run.readable_bodies()
            }
            false => {
                batch.insert(
                    codec::queue_front_key(key),
                    codec::encode_queue_front(&front),
                );
                Vec::new()
            }
        };
        self.db
            .apply_batch(batch)
            .map_err(|e| engine(action(), e))?;
        queue.front = front;
        queue.front_dirty = false;
        queue.front_on_disk = !head.is_last_of_run();
        queue.front_written_at = Some(Instant::now());
        if head.is_last_of_run() {
            queue.first_run = None;
        }
        Ok(released)
    }

    /// Writes every queue front that changed since it was last written (before a flush).
    pub(super) fn write_fronts(&self, action: &dyn Fn() -> String) -> Result<(), StoreError> {
        let mut counters = self.lock();
        let mut batch = Batch::default();
        let mut written = 0;
        for (key, queue) in counters.queues.iter_mut().filter(|(_, q)| q.front_dirty) {
            batch.insert(
                codec::queue_front_key(key),
                codec::encode_queue_front(&queue.front),
            );
            queue.front_dirty = false;
            queue.front_on_disk = true;
            written += 1;
        }
        if written > 0 {
            self.db
                .apply_batch(batch)
                .map_err(|e| engine(action(), e))?;
        }
        Ok(())
    }

    /// `key`'s queue and head, which must be `seq`.
    pub(super) fn queued_head<'c>(
        &self,
        counters: &'c mut Counters,
        key: &ResourceKey,
        seq: u64,
        action: &dyn Fn() -> String,
    ) -> Result<(&'c mut QueueState, Head), StoreError> {
        let queue = counters
            .queues
            .get_mut(key)
            .ok_or_else(|| not_in_outbox(key, seq))?;
        let head = self.head(key, queue, action)?;
        self.check_head(key, seq, &head, action)?;
        Ok((queue, head))
    }

    /// Where `key`'s head is (the first run is looked up once per run).
    fn head(
        &self,
        key: &ResourceKey,
        queue: &mut QueueState,
        action: &dyn Fn() -> String,
    ) -> Result<Head, StoreError> {
        let (run, run_len) = match queue.first_run {
            Some(first) => first,
            None => {
                let prefix = codec::resource_prefix(codec::TAG_OUTBOX, key);
                let (run_key, value) = self
                    .db
                    .scan_prefix(prefix)
                    .next()
                    .transpose()
                    .map_err(|e| engine(action(), e))?
                    .ok_or_else(|| {
                        corrupt(action(), format!("{} queued, but no run", queue.depth))
                    })?;
                let (_, run) =
                    codec::parse_outbox_key(&run_key).map_err(|r| corrupt(action(), r))?;
                let len = Run::parse(&value).map_err(|r| corrupt(action(), r))?.len();
                *queue.first_run.insert((run, len))
            }
        };
        let index = consumed(queue.front.through, run, run_len);
        if index >= run_len {
            return Err(corrupt(
                action(),
                format!("run {run} was consumed but not removed"),
            ));
        }
        Ok(Head {
            seq: position(run, index),
            run,
            index,
            run_len,
        })
    }

    /// The head has left the queue: move the cursor, and remove its run when it was the last.
    fn consume_head(
        &self,
        key: &ResourceKey,
        queue: &mut QueueState,
        head: &Head,
        action: &dyn Fn() -> String,
    ) -> Result<Vec<BodyRef>, StoreError> {
        queue.front.through = Some(head.seq);
        if queue
            .front
            .failure
            .as_ref()
            .is_some_and(|f| f.seq <= head.seq)
        {
            queue.front.failure = None;
        }
        if !head.is_last_of_run() {
            queue.front_dirty = true;
            let due = queue
                .front_written_at
                .is_none_or(|at| at.elapsed() >= FRONT_WRITE_INTERVAL);
            return match due {
                true => self.write_front(key, queue, action).map(|()| Vec::new()),
                false => Ok(Vec::new()),
            };
        }
        let removed = self
            .db
            .remove(codec::outbox_key(key, head.run))
            .map_err(|e| engine(action(), e))?;
        queue.first_run = None;
        if queue.front_on_disk {
            // It only says how far a run that is now gone was consumed.
            self.db
                .remove(codec::queue_front_key(key))
                .map_err(|e| engine(action(), e))?;
            queue.front_on_disk = false;
        }
        queue.front_dirty = false;
        match removed {
            Some(value) => Run::parse(&value)
                .map(|run| run.readable_bodies())
                .map_err(|r| corrupt(action(), r)),
            None => Ok(Vec::new()),
        }
    }

    /// Ok when `seq` is the head; otherwise says whether it is queued behind it or not at all.
    fn check_head(
        &self,
        key: &ResourceKey,
        seq: u64,
        head: &Head,
        action: &dyn Fn() -> String,
    ) -> Result<(), StoreError> {
        if seq == head.seq {
            return Ok(());
        }
        let (run, index) = codec::split_position(seq);
        let queued_behind = match run.cmp(&head.run) {
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Equal => index > head.index && index < head.run_len,
            std::cmp::Ordering::Greater => {
                let value = self
                    .db
                    .get(codec::outbox_key(key, run))
                    .map_err(|e| engine(action(), e))?;
                value.is_some_and(|v| Run::parse(&v).is_ok_and(|run| index < run.len()))
            }
        };
        match queued_behind {
            true => Err(StoreError::NotHead {
                key: key.clone(),
                seq,
                head: head.seq,
            }),
            false => Err(not_in_outbox(key, seq)),
        }
    }

    fn write_front(
        &self,
        key: &ResourceKey,
        queue: &mut QueueState,
        action: &dyn Fn() -> String,
    ) -> Result<(), StoreError> {
        self.db
            .insert(
                codec::queue_front_key(key),
                codec::encode_queue_front(&queue.front),
            )
            .map_err(|e| engine(action(), e))?;
        queue.front_on_disk = true;
        queue.front_dirty = false;
        queue.front_written_at = Some(Instant::now());
        Ok(())
    }
}

impl Counters {
    pub(super) fn queued(&mut self, key: &ResourceKey, count: u64) {
        if count > 0 {
            self.queues.entry(key.clone()).or_default().depth += count;
            self.outbox_total += count;
        }
    }

    /// One entry left `key`'s queue; an emptied queue is forgotten (its last run is gone).
    pub(super) fn dequeued(&mut self, key: &ResourceKey) {
        if let Some(queue) = self.queues.get_mut(key) {
            queue.depth -= 1;
            if queue.depth == 0 {
                self.queues.remove(key);
            }
        }
        self.outbox_total = self.outbox_total.saturating_sub(1);
    }
}

fn outbox_entry(
    key: &ResourceKey,
    seq: u64,
    entry: &codec::RunEntry<'_>,
    front: &QueueFront,
) -> OutboxEntry {
    let failure = front.failure.as_ref().filter(|f| f.seq == seq);
    OutboxEntry {
        key: key.clone(),
        seq,
        event_id: entry.event_id.to_string(),
        body: Vec::new(),
        created_at: entry.created_at,
        attempts: failure.map_or(0, |f| f.attempts),
        next_attempt_at: failure.map(|f| f.next_attempt_at),
        last_error: failure.map(|f| f.last_error.clone()),
    }
}

fn not_in_outbox(key: &ResourceKey, seq: u64) -> StoreError {
    StoreError::NotInOutbox {
        key: key.clone(),
        seq,
    }
}

/// A run's id for messages, from its stored key (which may itself be what is damaged).
fn run_label(run_key: &[u8]) -> String {
    match codec::parse_outbox_key(run_key) {
        Ok((_, run)) => run.to_string(),
        Err(_) => format!("with an unreadable key ({} bytes)", run_key.len()),
    }
}
