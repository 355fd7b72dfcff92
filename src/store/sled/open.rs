//! Opening a store: counting queues, live bodies and dead letters in one scan, rewriting what
//! older builds stored (one outbox entry per value) as runs, and setting aside what does not
//! read (a corrupt run or queue front never keeps the store from opening).

use std::collections::HashMap;

use ::sled::{Batch, Db};

use super::super::corrupt::{self, OpenDamage};
use super::super::engine::Counters;
use super::consumed;
use crate::store::bodylog::{BodyLog, BodyRef};
use crate::store::codec::{self, HeadFailure, NewRunEntry, QueueFront, Run, position};
use crate::store::{OutboxEntry, ResourceKey};

/// What opening learns from one scan of the outbox, queue fronts and dead letters.
pub(in crate::store::sled) struct OpenScan {
    pub(in crate::store::sled) counters: Counters,
    /// Live bodies per body-log segment.
    pub(in crate::store::sled) live_bodies: HashMap<u64, u64>,
    /// Single-entry values of older builds, to rewrite as runs once the body log is open
    /// (with the body inline when written before the body log).
    pub(in crate::store::sled) older: Vec<(OutboxEntry, Option<BodyRef>)>,
    /// Keys of runs every entry of which had left, and queue fronts of empty queues.
    pub(in crate::store::sled) leftovers: Vec<Vec<u8>>,
    /// Values that do not read, to set aside (see `store/sled/corrupt.rs`).
    pub(in crate::store::sled) damaged: Vec<OpenDamage>,
}

/// Counts the queues, dead letters and live bodies per segment from one scan.
pub(in crate::store::sled) fn scan_on_open(db: &Db) -> Result<OpenScan, String> {
    let mut fronts: HashMap<ResourceKey, QueueFront> = HashMap::new();
    let mut leftovers = Vec::new();
    let mut damaged = Vec::new();
    for item in db.scan_prefix([codec::TAG_QUEUE_FRONT]) {
        let (key_bytes, value) = item.map_err(|e| e.to_string())?;
        let front = codec::parse_resource_key(&key_bytes)
            .map_err(|reason| corrupt::unreadable_key("queue front", &key_bytes, &reason))
            .and_then(|(key, _)| match codec::decode_queue_front(&value) {
                Ok(front) => Ok((key, front)),
                // Without it the first run is delivered from its start: duplicates, no loss.
                Err(reason) => Err(format!(
                    "queue front of {key} (entries of its first run already delivered are sent again): {reason}"
                )),
            });
        match front {
            Ok((key, front)) => {
                fronts.insert(key, front);
            }
            Err(reason) => damaged.push(damage(&key_bytes, &value, reason)),
        }
    }
    let mut counters = Counters::default();
    let mut live_bodies: HashMap<u64, u64> = HashMap::new();
    let mut older = Vec::new();
    for item in db.scan_prefix([codec::TAG_OUTBOX]) {
        let (key_bytes, value) = item.map_err(|e| e.to_string())?;
        let read = read_outbox_value(&key_bytes, &value);
        let (key, run, stored) = match read {
            Ok(read) => read,
            Err(reason) => {
                damaged.push(damage(&key_bytes, &value, reason));
                continue;
            }
        };
        let parsed = match stored {
            Stored::Older(entry, body) => {
                if let Some(body) = body {
                    *live_bodies.entry(body.segment).or_default() += 1;
                }
                older.push((entry, body));
                continue;
            }
            Stored::Run(parsed) => parsed,
        };
        let through = fronts.get(&key).and_then(|front| front.through);
        let left = consumed(through, run, parsed.len());
        if left == parsed.len() {
            leftovers.push(key_bytes.to_vec());
            continue;
        }
        for body in parsed.readable_bodies() {
            *live_bodies.entry(body.segment).or_default() += 1;
        }
        counters.queued(&key, (parsed.len() - left) as u64);
    }
    for (key, front) in fronts {
        match counters.queues.get_mut(&key) {
            Some(queue) => {
                queue.front = front;
                queue.front_on_disk = true;
            }
            // A later batch entry for the same key (a rewritten head's failure) wins.
            None => leftovers.push(codec::queue_front_key(&key)),
        }
    }
    for item in db.scan_prefix([codec::TAG_DEAD]) {
        let (_, value) = item.map_err(|e| e.to_string())?;
        counters.dead.add_value(&value);
    }
    Ok(OpenScan {
        counters,
        live_bodies,
        older,
        leftovers,
        damaged,
    })
}

/// An outbox value as stored: a run, or one entry of an older build.
enum Stored<'a> {
    Run(Run<'a>),
    Older(OutboxEntry, Option<BodyRef>),
}

/// The queue, run id and contents of one outbox value, or why it does not read.
fn read_outbox_value<'a>(
    key_bytes: &[u8],
    value: &'a [u8],
) -> Result<(ResourceKey, u64, Stored<'a>), String> {
    let (key, run) = codec::parse_outbox_key(key_bytes)
        .map_err(|reason| corrupt::unreadable_key("outbox run", key_bytes, &reason))?;
    let unreadable = |reason| format!("outbox run {run} of {key}: {reason}");
    let stored = match codec::is_run(value).map_err(unreadable)? {
        true => Stored::Run(Run::parse(value).map_err(unreadable)?),
        false => {
            let (entry, body) =
                codec::decode_single_entry(key.clone(), run, value).map_err(unreadable)?;
            Stored::Older(entry, body)
        }
    };
    Ok((key, run, stored))
}

fn damage(key_bytes: &[u8], value: &[u8], reason: String) -> OpenDamage {
    OpenDamage {
        key_bytes: key_bytes.to_vec(),
        value: value.to_vec(),
        queue: codec::parse_resource_key(key_bytes)
            .ok()
            .map(|(key, _)| key),
        reason,
    }
}

/// Finishes opening once the body log is open: rewrites single entries of older builds as runs
/// of one under the same key (bodies written inline move into the log; a head's failure moves
/// to its queue front), and removes what [`scan_on_open`] found left over.
pub(in crate::store::sled) fn finish_open(
    db: &Db,
    bodies: &BodyLog,
    counters: &mut Counters,
    scan_older: Vec<(OutboxEntry, Option<BodyRef>)>,
    leftovers: Vec<Vec<u8>>,
    damaged: Vec<OpenDamage>,
) -> Result<(), String> {
    if scan_older.is_empty() && leftovers.is_empty() && damaged.is_empty() {
        return Ok(());
    }
    let inline: Vec<&[u8]> = scan_older
        .iter()
        .filter(|(_, body)| body.is_none())
        .map(|(entry, _)| entry.body.as_slice())
        .collect();
    let mut appended = bodies
        .append(&inline)
        .map_err(|e| format!("body log: {e}"))?
        .into_iter();
    let mut batch = Batch::default();
    for key in leftovers {
        batch.remove(key);
    }
    corrupt::stage_open_damage(db, &damaged, &mut batch, counters)?;
    for (entry, body) in &scan_older {
        let body = match body {
            Some(body) => *body,
            None => appended.next().expect("one appended body per inline one"),
        };
        let run = [NewRunEntry {
            event_id: &entry.event_id,
            created_at: entry.created_at,
            body,
        }];
        batch.insert(
            codec::outbox_key(&entry.key, entry.seq),
            codec::encode_run(&run),
        );
        let is_new_queue = !counters.queues.contains_key(&entry.key);
        let queue = counters.queues.entry(entry.key.clone()).or_default();
        if is_new_queue && let Some(next_attempt_at) = entry.next_attempt_at {
            queue.front.failure = Some(HeadFailure {
                seq: position(entry.seq, 0),
                attempts: entry.attempts,
                next_attempt_at,
                last_error: entry.last_error.clone().unwrap_or_default(),
            });
            queue.front_on_disk = true;
            batch.insert(
                codec::queue_front_key(&entry.key),
                codec::encode_queue_front(&queue.front),
            );
        }
        queue.depth += 1;
        counters.outbox_total += 1;
    }
    db.apply_batch(batch).map_err(|e| e.to_string())?;
    db.flush().map(drop).map_err(|e| e.to_string())
}
