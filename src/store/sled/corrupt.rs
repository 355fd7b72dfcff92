//! Corrupt entries. A stored value that cannot be read (an outbox run or entry, a body, a queue
//! front, a dead letter) is moved aside to the dead letters as a set-aside record: what is known
//! of it, why it is unreadable, and its raw bytes. So one bad value never blocks a queue or the
//! dead-letter list, and nothing is lost: the operator sees it in `dead-letters list`, can drop
//! it, and cannot replay it. Every move is logged at error, naming the queue.

use ::sled::{Batch, Db};
use chrono::{DateTime, Utc};

use super::engine::{Counters, Engine};
use super::errors::{corrupt, engine};
use crate::store::bodylog::BodyRef;
use crate::store::codec::{self, QueueFront, Run, SetAside, consumed};
use crate::store::{
    CorruptEntry, ERROR_SNIPPET_MAX_BYTES, ResourceKey, StoreError, truncate_to_bytes,
};

/// Fresh `corrupt-N` ids tried before giving up (the first is free unless an event id happens
/// to be spelled so).
const ID_ATTEMPTS: usize = 8;
/// Bytes of an unreadable key shown (in hex) in a reason.
const KEY_BYTES_SHOWN: usize = 32;

/// Why the head of a queue cannot be read.
pub(super) enum Damage {
    /// The queue's first stored run (its value or its key) does not decode: it goes aside whole,
    /// with every entry it held.
    Run {
        run_key: Vec<u8>,
        value: Vec<u8>,
        reason: String,
    },
    /// The head entry does not decode, or its body is damaged or gone: it goes aside alone.
    Entry {
        seq: u64,
        event_id: Option<String>,
        created_at: Option<DateTime<Utc>>,
        /// The run value, or the body's stored bytes, as found.
        raw: Vec<u8>,
        reason: String,
    },
}

/// A value found unreadable while opening the store: set aside before anything reads it.
pub(super) struct OpenDamage {
    pub(super) key_bytes: Vec<u8>,
    pub(super) value: Vec<u8>,
    /// The queue it belongs to, when its key says.
    pub(super) queue: Option<ResourceKey>,
    pub(super) reason: String,
}

impl Engine {
    /// Moves the damaged head of `key`'s queue aside to the dead letters; the next entry is
    /// the head. Returns the bodies to release.
    pub(super) fn set_aside_head(
        &self,
        key: &ResourceKey,
        damage: Damage,
        action: &dyn Fn() -> String,
    ) -> Result<Vec<BodyRef>, StoreError> {
        let mut counters = self.lock();
        match damage {
            Damage::Run {
                run_key,
                value,
                reason,
            } => self
                .set_aside_run(&mut counters, key, &run_key, &value, &reason, action)
                .map(|()| Vec::new()),
            Damage::Entry {
                seq,
                event_id,
                created_at,
                raw,
                reason,
            } => {
                let (queue, head) = self.queued_head(&mut counters, key, seq, action)?;
                let value = self.head_run(key, &head, action)?;
                let run = Run::parse(&value).map_err(|r| corrupt(action(), r))?;
                let id = fresh_id(&self.db, action)?;
                let record = SetAside {
                    found_at: found_now(),
                    key: Some(key.clone()),
                    event_id,
                    created_at,
                    reason: bounded(&reason),
                    raw: &raw,
                };
                let stored = codec::encode_set_aside(&record);
                let mut batch = Batch::default();
                batch.insert(codec::dead_key(&id), stored.as_slice());
                let released = self.remove_head(key, queue, &head, &run, batch, action)?;
                counters.dequeued(key);
                counters.dead.add_value(&stored);
                counters.corrupt_set_aside += 1;
                log_queue_set_aside(key, &id, &record.reason);
                Ok(released)
            }
        }
    }

    /// The queue's first run goes aside whole. Its bodies stay counted as live in the body log
    /// until the store is next opened (their references are what is unreadable).
    fn set_aside_run(
        &self,
        counters: &mut Counters,
        key: &ResourceKey,
        run_key: &[u8],
        value: &[u8],
        reason: &str,
        action: &dyn Fn() -> String,
    ) -> Result<(), StoreError> {
        let now = self.db.get(run_key).map_err(|e| engine(action(), e))?;
        if now.as_deref() != Some(value) {
            return Ok(()); // changed since it was read: the caller reads the queue again
        }
        let id = fresh_id(&self.db, action)?;
        let record = SetAside {
            found_at: found_now(),
            key: Some(key.clone()),
            event_id: None,
            created_at: None,
            reason: bounded(reason),
            raw: value,
        };
        let stored = codec::encode_set_aside(&record);
        let mut batch = Batch::default();
        batch.remove(run_key);
        // The front only says how far that run was consumed.
        batch.remove(codec::queue_front_key(key));
        batch.insert(codec::dead_key(&id), stored.as_slice());
        self.db
            .apply_batch(batch)
            .map_err(|e| engine(action(), e))?;
        if let Some(queue) = counters.queues.get_mut(key) {
            queue.front = QueueFront::default();
            queue.front_on_disk = false;
            queue.front_dirty = false;
            queue.first_run = None;
        }
        self.recount_queue(counters, key, action)?;
        counters.dead.add_value(&stored);
        counters.corrupt_set_aside += 1;
        log_queue_set_aside(key, &id, &record.reason);
        Ok(())
    }

    /// Counts `key`'s queue again from its runs (after a run of unknown length went aside).
    fn recount_queue(
        &self,
        counters: &mut Counters,
        key: &ResourceKey,
        action: &dyn Fn() -> String,
    ) -> Result<(), StoreError> {
        let through = counters.queues.get(key).and_then(|q| q.front.through);
        let mut depth = 0u64;
        for item in self
            .db
            .scan_prefix(codec::resource_prefix(codec::TAG_OUTBOX, key))
        {
            let (run_key, value) = item.map_err(|e| engine(action(), e))?;
            let parsed = codec::parse_outbox_key(&run_key)
                .and_then(|(_, run)| Ok((run, Run::parse(&value)?)));
            let entries = match parsed {
                Ok((run, parsed)) => parsed.len() - consumed(through, run, parsed.len()),
                // Counted as one so the queue stays known: it goes aside when it is the head.
                Err(_) => 1,
            };
            depth = depth.saturating_add(entries as u64);
        }
        let before = counters.queues.get(key).map_or(0, |q| q.depth);
        counters.outbox_total = counters
            .outbox_total
            .saturating_sub(before)
            .saturating_add(depth);
        match depth {
            0 => {
                counters.queues.remove(key);
            }
            depth => counters.queues.entry(key.clone()).or_default().depth = depth,
        }
        Ok(())
    }

    /// Every corrupt entry among the dead letters, oldest first. A dead letter found unreadable
    /// is set aside in place on the way (keeping its id when that is readable).
    pub(super) fn corrupt_entries(&self, action: &str) -> Result<Vec<CorruptEntry>, StoreError> {
        let mut found = Vec::new();
        for item in self.db.scan_prefix([codec::TAG_DEAD]) {
            let (key_bytes, value) = item.map_err(|e| engine(action, e))?;
            let id = std::str::from_utf8(&key_bytes[1..]).ok();
            let problem = match (id, codec::decode_set_aside(&value)) {
                (Some(id), Some(Ok(record))) => {
                    found.push(corrupt_entry(id, &record));
                    continue;
                }
                (None, _) => format!(
                    "its id is not UTF-8 (0x{})",
                    hex(&key_bytes[1..], KEY_BYTES_SHOWN)
                ),
                (Some(_), Some(Err(reason))) => format!("set-aside record unreadable: {reason}"),
                (Some(id), None) => match codec::decode_dead(id.to_string(), &value) {
                    Ok(_) => continue,
                    Err(reason) => reason,
                },
            };
            if let Some(entry) = self.set_aside_dead_value(&key_bytes, &value, &problem, action)? {
                found.push(entry);
            }
        }
        found.sort_by(|a, b| (a.found_at, &a.id).cmp(&(b.found_at, &b.id)));
        Ok(found)
    }

    /// Rewrites an unreadable dead-letter value as a set-aside record holding it; `None` when
    /// it was replayed or dropped meanwhile.
    fn set_aside_dead_value(
        &self,
        key_bytes: &[u8],
        value: &[u8],
        problem: &str,
        action: &str,
    ) -> Result<Option<CorruptEntry>, StoreError> {
        let action = || action.to_string();
        let mut counters = self.lock();
        let now = self.db.get(key_bytes).map_err(|e| engine(action(), e))?;
        if now.as_deref() != Some(value) {
            return Ok(None);
        }
        let readable_id = std::str::from_utf8(&key_bytes[1..]).ok();
        let id = match readable_id {
            Some(id) => id.to_string(),
            None => fresh_id(&self.db, &action)?,
        };
        let record = SetAside {
            found_at: found_now(),
            key: codec::peek_dead_letter_key(value),
            event_id: None,
            created_at: None,
            reason: bounded(&format!("dead letter {id}: {problem}")),
            raw: value,
        };
        let stored = codec::encode_set_aside(&record);
        let mut batch = Batch::default();
        if readable_id.is_none() {
            batch.remove(key_bytes);
        }
        batch.insert(codec::dead_key(&id), stored.as_slice());
        self.db
            .apply_batch(batch)
            .map_err(|e| engine(action(), e))?;
        counters.dead.remove_value(value);
        counters.dead.add_value(&stored);
        counters.corrupt_set_aside += 1;
        tracing::error!(
            "store: {}; set aside with its raw bytes ({} bytes): `pollerd dead-letters list` shows it as corrupt, it can be dropped, not replayed",
            record.reason,
            value.len()
        );
        Ok(Some(corrupt_entry(&id, &record)))
    }

    /// The raw bytes kept of corrupt entry `id`.
    pub(super) fn corrupt_entry_bytes(
        &self,
        id: &str,
        action: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let value = self
            .db
            .get(codec::dead_key(id))
            .map_err(|e| engine(action, e))?;
        Ok(
            value.and_then(|value| match codec::decode_set_aside(&value) {
                Some(Ok(record)) => Some(record.raw.to_vec()),
                _ => None,
            }),
        )
    }
}

/// Stages the set-aside of what opening found unreadable, and counts it.
pub(super) fn stage_open_damage(
    db: &Db,
    damaged: &[OpenDamage],
    batch: &mut Batch,
    counters: &mut Counters,
) -> Result<(), String> {
    for damage in damaged {
        let id = fresh_id(db, &|| "set aside a corrupt value".into()).map_err(|e| e.to_string())?;
        let record = SetAside {
            found_at: found_now(),
            key: damage.queue.clone(),
            event_id: None,
            created_at: None,
            reason: bounded(&damage.reason),
            raw: &damage.value,
        };
        let stored = codec::encode_set_aside(&record);
        batch.remove(damage.key_bytes.as_slice());
        batch.insert(codec::dead_key(&id), stored.as_slice());
        counters.dead.add_value(&stored);
        counters.corrupt_set_aside += 1;
        match &damage.queue {
            Some(key) => log_queue_set_aside(key, &id, &record.reason),
            None => tracing::error!(
                "store: a corrupt value ({}) was moved aside to the dead letters as {id}, raw bytes kept",
                record.reason
            ),
        }
    }
    Ok(())
}

/// The reason, with the key of an unreadable value, for [`OpenDamage`].
pub(super) fn unreadable_key(kind: &str, key_bytes: &[u8], reason: &str) -> String {
    format!(
        "{kind} with an unreadable key (0x{}): {reason}",
        hex(key_bytes, KEY_BYTES_SHOWN)
    )
}

fn log_queue_set_aside(key: &ResourceKey, id: &str, reason: &str) {
    tracing::error!(
        instance = %key.instance, resource = %key.resource,
        "store: a corrupt entry in the outbox of {key} was moved aside to the dead letters as {id} ({reason}); the queue goes on with the next entry; `pollerd dead-letters list` shows it"
    );
}

/// A `corrupt-N` id no dead letter has.
fn fresh_id(db: &Db, action: &dyn Fn() -> String) -> Result<String, StoreError> {
    for _ in 0..ID_ATTEMPTS {
        let id = format!(
            "corrupt-{}",
            db.generate_id().map_err(|e| engine(action(), e))?
        );
        if !db
            .contains_key(codec::dead_key(&id))
            .map_err(|e| engine(action(), e))?
        {
            return Ok(id);
        }
    }
    Err(corrupt(
        action(),
        format!("no free corrupt-N id in {ID_ATTEMPTS} tries"),
    ))
}

fn corrupt_entry(id: &str, record: &SetAside<'_>) -> CorruptEntry {
    CorruptEntry {
        id: id.to_string(),
        key: record.key.clone(),
        event_id: record.event_id.clone(),
        created_at: record.created_at,
        found_at: record.found_at,
        reason: record.reason.clone(),
        size: record.raw.len() as u64,
    }
}

/// Now, to the millisecond the record keeps (so what is listed at once equals what is read back).
fn found_now() -> DateTime<Utc> {
    let now = Utc::now();
    codec::from_millis(codec::millis(now)).unwrap_or(now)
}

fn bounded(reason: &str) -> String {
    truncate_to_bytes(reason, ERROR_SNIPPET_MAX_BYTES).to_string()
}

/// The first `max` bytes in hex, "…" when there are more.
fn hex(bytes: &[u8], max: usize) -> String {
    let mut text: String = bytes.iter().take(max).map(|b| format!("{b:02x}")).collect();
    if bytes.len() > max {
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests;
