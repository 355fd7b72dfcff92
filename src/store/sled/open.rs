//! Opening a store: the sled database (waiting a moment for a lock a dropped handle still holds),
//! then counting queues, live bodies and dead letters in one scan, rewriting what
//! older builds stored (one outbox entry per value) as runs, and setting aside what does not
//! read (a corrupt run or queue front never keeps the store from opening).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ::sled::{Batch, Config, Db};

use super::corrupt::{self, OpenDamage};
use super::engine::{Counters, Engine, GroupFlush};
use super::seen::SeenSets;
use crate::store::bodylog::{BodyLog, BodyRef};
use crate::store::codec::{self, HeadFailure, NewRunEntry, QueueFront, Run, consumed, position};
use crate::store::{OutboxEntry, ResourceKey, StoreError};

/// sled releases its file lock a few milliseconds after the last handle is dropped (its I/O
/// threads finish in the background), so an immediate reopen waits this long for it. A store
/// held by a running daemon stays locked far longer and still gets the clear error.
const LOCK_RELEASE_GRACE: Duration = Duration::from_secs(2);
/// The body log's folder, inside the state directory beside sled's files.
const BODY_LOG_DIR: &str = "bodies";
const LOCK_RETRY_INTERVAL: Duration = Duration::from_millis(20);

impl Engine {
    pub(super) fn open(dir: &Path, cache_capacity_bytes: u64) -> Result<Engine, StoreError> {
        let config = Config::new().path(dir).cache_capacity(cache_capacity_bytes);
        let started = Instant::now();
        let db = loop {
            match config.open() {
                Ok(db) => break db,
                Err(error) if is_lock_contention(&error) => {
                    if started.elapsed() >= LOCK_RELEASE_GRACE {
                        return Err(StoreError::Locked {
                            path: dir.to_path_buf(),
                        });
                    }
                    std::thread::sleep(LOCK_RETRY_INTERVAL);
                }
                Err(error) => {
                    return Err(StoreError::Open {
                        path: dir.to_path_buf(),
                        reason: error.to_string(),
                    });
                }
            }
        };
        let open_error = |reason: String| StoreError::Open {
            path: dir.to_path_buf(),
            reason,
        };
        let OpenScan {
            mut counters,
            live_bodies,
            older,
            leftovers,
            damaged,
        } = scan_on_open(&db).map_err(open_error)?;
        let bodies = BodyLog::open(&dir.join(BODY_LOG_DIR), live_bodies)
            .map_err(|e| open_error(format!("body log: {e}")))?;
        finish_open(&db, &bodies, &mut counters, older, leftovers, damaged).map_err(open_error)?;
        Ok(Engine {
            db,
            bodies,
            counters: Mutex::new(counters),
            seen: SeenSets::default(),
            flushes: GroupFlush::default(),
        })
    }
}

fn is_lock_contention(error: &::sled::Error) -> bool {
    // sled 0.34 reports a failed flock only through this message.
    matches!(error, ::sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

/// What opening learns from one scan of the outbox, queue fronts and dead letters.
struct OpenScan {
    counters: Counters,
    /// Live bodies per body-log segment.
    live_bodies: HashMap<u64, u64>,
    /// Single-entry values of older builds, to rewrite as runs once the body log is open
    /// (with the body inline when written before the body log).
    older: Vec<(OutboxEntry, Option<BodyRef>)>,
    /// Keys of runs every entry of which had left, and queue fronts of empty queues.
    leftovers: Vec<Vec<u8>>,
    /// Values that do not read, to set aside (see `store/sled/corrupt.rs`).
    damaged: Vec<OpenDamage>,
}

/// Counts the queues, dead letters and live bodies per segment from one scan.
fn scan_on_open(db: &Db) -> Result<OpenScan, String> {
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
fn finish_open(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sled::outbox::Front;

    /// A version-2 outbox value (one entry, its body inline and LZ4-compressed), as the first
    /// builds wrote them.
    fn version_2_entry(event_id: &str, failure: Option<(u32, i64, &str)>, body: &[u8]) -> Vec<u8> {
        let put_str = |value: &mut Vec<u8>, text: &str| {
            value.extend_from_slice(&(text.len() as u32).to_be_bytes());
            value.extend_from_slice(text.as_bytes());
        };
        let mut value = vec![2];
        value.extend_from_slice(&1_767_225_600_000i64.to_be_bytes());
        value.extend_from_slice(&failure.map_or(0, |f| f.0).to_be_bytes());
        match failure {
            Some((_, next_ms, _)) => {
                value.push(1);
                value.extend_from_slice(&next_ms.to_be_bytes());
            }
            None => value.push(0),
        }
        put_str(&mut value, event_id);
        match failure {
            Some((_, _, error)) => {
                value.push(1);
                put_str(&mut value, error);
            }
            None => value.push(0),
        }
        value.extend_from_slice(&lz4_flex::compress_prepend_size(body));
        value
    }

    #[test]
    fn single_entries_of_older_versions_become_runs_keeping_order_bodies_and_failures() {
        let dir = tempfile::tempdir().unwrap();
        let key = ResourceKey::new("cw", "contacts");
        {
            let db = Config::new().path(dir.path()).open().unwrap();
            let failed =
                version_2_entry("e1", Some((2, 1_767_225_700_000, "HTTP 503")), b"{\"n\":1}");
            db.insert(codec::outbox_key(&key, 7), failed).unwrap();
            let plain = version_2_entry("e2", None, b"{\"n\":2}");
            db.insert(codec::outbox_key(&key, 8), plain).unwrap();
            db.flush().unwrap();
        }
        for _open in 0..2 {
            // The second open reads what the first one rewrote.
            let engine = Engine::open(dir.path(), 1 << 20).unwrap();
            assert_eq!(engine.lock().outbox_total, 2);
            let Front::Entries(front) = engine.front(&key, 10, &|| "test".into()).unwrap() else {
                panic!("the head reads");
            };
            let ids: Vec<&str> = front.iter().map(|(e, _)| e.event_id.as_str()).collect();
            assert_eq!(ids, ["e1", "e2"]);
            assert!(front[0].0.seq < front[1].0.seq);
            let head = &front[0].0;
            assert_eq!(
                (head.attempts, head.last_error.as_deref()),
                (2, Some("HTTP 503"))
            );
            assert_eq!(
                head.next_attempt_at.map(|at| at.timestamp_millis()),
                Some(1_767_225_700_000)
            );
            assert_eq!((front[1].0.attempts, front[1].0.next_attempt_at), (0, None));
            assert_eq!(engine.read_body(&front[0].1, "test").unwrap(), b"{\"n\":1}");
            assert_eq!(engine.read_body(&front[1].1, "test").unwrap(), b"{\"n\":2}");
        }
    }
}
