//! Outbox layout since value version 4: a queue is a series of **runs**, each the entries one
//! commit appended (split at [`RUN_MAX_BYTES`]), stored as ONE sled value under the run's id;
//! and one **queue front** value per queue that says how far the front run has been consumed
//! and how the head's last attempt failed.
//!
//! Why: delivery consumes a queue one entry at a time, and one sled insert plus one remove per
//! notification would be a third of the daemon's CPU while delivering. Instead an
//! acknowledgement moves a cursor in memory (written to sled now and then, see
//! `store/sled/outbox.rs`), and the run is removed in one operation once its last entry has left.
//!
//! An entry's position (`OutboxEntry::seq`) is `run id << 16 | index in the run`, so positions
//! still grow along the queue. A run value is a count, then one fixed-size slot per entry, so
//! any entry reads without decoding the others, then the event ids.

use chrono::{DateTime, Utc};

use super::{BODY_REF_BYTES, Reader, VALUE_VERSION, from_millis, millis, read_body_ref};
use crate::store::bodylog::BodyRef;

/// Bits of an entry's position that hold its index in the run.
const INDEX_BITS: u32 = 16;
/// Most entries in one run (the index must fit its bits).
pub(crate) const RUN_MAX_ENTRIES: usize = (1 << INDEX_BITS) - 1;
/// A commit's entries are split into runs of about this size, well below the size at which
/// sled writes a value as a blob file of its own (a quarter of its 512 KiB segments).
pub(crate) const RUN_MAX_BYTES: usize = 16 * 1024;
/// created ms, body reference, event id offset and length.
const SLOT_BYTES: usize = 8 + BODY_REF_BYTES + 4 + 4;
/// Version byte and entry count.
const HEADER_BYTES: usize = 1 + 4;

/// The position of entry `index` of run `run`.
pub(crate) fn position(run: u64, index: usize) -> u64 {
    (run << INDEX_BITS) | index as u64
}

/// The run and index of a position.
pub(crate) fn split_position(seq: u64) -> (u64, usize) {
    (seq >> INDEX_BITS, (seq & ((1 << INDEX_BITS) - 1)) as usize)
}

/// How many entries of run `run` (of `len` entries) have left the queue, given its cursor.
pub(crate) fn consumed(through: Option<u64>, run: u64, len: usize) -> usize {
    match through {
        Some(through) if through >= position(run, 0) => {
            usize::try_from(through - position(run, 0) + 1).map_or(len, |n| n.min(len))
        }
        _ => 0,
    }
}

/// Bytes one entry adds to a run value.
pub(crate) fn run_entry_bytes(event_id: &str) -> usize {
    SLOT_BYTES + event_id.len()
}

/// One entry as written into a run.
pub(crate) struct NewRunEntry<'a> {
    pub event_id: &'a str,
    pub created_at: DateTime<Utc>,
    pub body: BodyRef,
}

pub(crate) fn encode_run(entries: &[NewRunEntry<'_>]) -> Vec<u8> {
    debug_assert!(entries.len() <= RUN_MAX_ENTRIES);
    let ids: usize = entries.iter().map(|e| e.event_id.len()).sum();
    let mut out = Vec::with_capacity(HEADER_BYTES + entries.len() * SLOT_BYTES + ids);
    out.push(VALUE_VERSION);
    out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    let mut id_offset = 0u32;
    for entry in entries {
        out.extend_from_slice(&millis(entry.created_at).to_be_bytes());
        out.extend_from_slice(&entry.body.segment.to_be_bytes());
        out.extend_from_slice(&entry.body.offset.to_be_bytes());
        out.extend_from_slice(&entry.body.len.to_be_bytes());
        out.extend_from_slice(&entry.body.crc.to_be_bytes());
        out.extend_from_slice(&id_offset.to_be_bytes());
        out.extend_from_slice(&(entry.event_id.len() as u32).to_be_bytes());
        id_offset += entry.event_id.len() as u32;
    }
    for entry in entries {
        out.extend_from_slice(entry.event_id.as_bytes());
    }
    out
}

/// A run value, read in place.
pub(crate) struct Run<'a> {
    value: &'a [u8],
    len: usize,
}

/// One entry of a run, borrowed from its value.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct RunEntry<'a> {
    pub event_id: &'a str,
    pub created_at: DateTime<Utc>,
    pub body: BodyRef,
}

impl<'a> Run<'a> {
    /// Checks the version and that the slots are all there; entries are checked when read.
    pub(crate) fn parse(value: &'a [u8]) -> Result<Run<'a>, String> {
        let mut reader = Reader::new(value);
        let version = reader.version()?;
        if version != VALUE_VERSION {
            return Err(format!("outbox run of version {version}"));
        }
        let len = reader.u32()? as usize;
        if len == 0 || value.len() < HEADER_BYTES + len * SLOT_BYTES {
            return Err(format!(
                "outbox run of {len} entries in {} bytes",
                value.len()
            ));
        }
        Ok(Run { value, len })
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn entry(&self, index: usize) -> Result<RunEntry<'a>, String> {
        let slot = HEADER_BYTES + index * SLOT_BYTES;
        let mut reader = Reader::new(
            self.value
                .get(slot..slot + SLOT_BYTES)
                .ok_or_else(|| format!("outbox run has no entry {index}"))?,
        );
        let created_at = from_millis(reader.i64()?)?;
        let body = read_body_ref(&mut reader)?;
        let id_start = HEADER_BYTES + self.len * SLOT_BYTES + reader.u32()? as usize;
        let id_len = reader.u32()? as usize;
        let id = self
            .value
            .get(id_start..id_start + id_len)
            .ok_or_else(|| format!("outbox run entry {index}: event id out of bounds"))?;
        let event_id = std::str::from_utf8(id)
            .map_err(|_| format!("outbox run entry {index}: event id is not UTF-8"))?;
        Ok(RunEntry {
            event_id,
            created_at,
            body,
        })
    }

    /// The body reference of every entry that reads (for counting and releasing them): an
    /// unreadable entry is set aside when it is the head, and its body is not known.
    pub(crate) fn readable_bodies(&self) -> Vec<BodyRef> {
        (0..self.len)
            .filter_map(|i| self.entry(i).ok().map(|entry| entry.body))
            .collect()
    }
}

/// How the head's last attempt failed: kept per queue, since only the head is ever attempted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HeadFailure {
    pub seq: u64,
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: String,
}

/// A queue's front as stored: entries at or before `through` have left the queue (their run
/// stays until its last entry leaves), and the head's failure, if any.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct QueueFront {
    pub through: Option<u64>,
    pub failure: Option<HeadFailure>,
}

pub(crate) fn encode_queue_front(front: &QueueFront) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.push(VALUE_VERSION);
    match front.through {
        Some(seq) => {
            out.push(1);
            out.extend_from_slice(&seq.to_be_bytes());
        }
        None => out.push(0),
    }
    match &front.failure {
        Some(failure) => {
            out.push(1);
            out.extend_from_slice(&failure.seq.to_be_bytes());
            out.extend_from_slice(&failure.attempts.to_be_bytes());
            out.extend_from_slice(&millis(failure.next_attempt_at).to_be_bytes());
            super::put_str(&mut out, &failure.last_error);
        }
        None => out.push(0),
    }
    out
}

pub(crate) fn decode_queue_front(value: &[u8]) -> Result<QueueFront, String> {
    let mut reader = Reader::new(value);
    reader.version()?;
    let through = match reader.flag()? {
        true => Some(u64::from_be_bytes(reader.array()?)),
        false => None,
    };
    let failure = match reader.flag()? {
        true => Some(HeadFailure {
            seq: u64::from_be_bytes(reader.array()?),
            attempts: reader.u32()?,
            next_attempt_at: from_millis(reader.i64()?)?,
            last_error: reader.string()?,
        }),
        false => None,
    };
    Ok(QueueFront { through, failure })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(n: u64) -> BodyRef {
        BodyRef {
            segment: n,
            offset: n << 33,
            len: 1_579,
            crc: 0xdead_beef ^ n as u32,
        }
    }

    #[test]
    fn positions_grow_along_runs_and_split_back() {
        assert!(position(7, RUN_MAX_ENTRIES) < position(8, 0));
        assert_eq!(split_position(position(1 << 40, 513)), (1 << 40, 513));
    }

    #[test]
    fn a_run_reads_each_entry_in_place() {
        let created = from_millis(1_534_778_974_827).unwrap();
        let ids = ["e1", "", "é-3"];
        let entries: Vec<NewRunEntry<'_>> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| NewRunEntry {
                event_id: id,
                created_at: created + chrono::Duration::milliseconds(i as i64),
                body: body(i as u64),
            })
            .collect();
        let value = encode_run(&entries);
        let run = Run::parse(&value).unwrap();
        assert_eq!(run.len(), 3);
        for (i, id) in ids.iter().enumerate() {
            let entry = run.entry(i).unwrap();
            assert_eq!((entry.event_id, entry.body), (*id, body(i as u64)));
            assert_eq!(entry.created_at, entries[i].created_at);
        }
        assert!(run.entry(3).is_err());
        assert_eq!(run.readable_bodies(), [body(0), body(1), body(2)]);
        // Cut inside the slots: refused whole. Cut inside the event ids: the entry whose id
        // is cut reports it, the others still read.
        assert!(Run::parse(&value[..value.len() - 20]).is_err());
        let cut = Run::parse(&value[..value.len() - 2]).unwrap();
        assert!(cut.entry(2).unwrap_err().contains("out of bounds"));
        assert_eq!(cut.entry(0).unwrap().event_id, "e1");
        assert_eq!(cut.readable_bodies(), [body(0), body(1)]);
    }

    #[test]
    fn queue_front_round_trips() {
        for front in [
            QueueFront::default(),
            QueueFront {
                through: Some(position(3, 9)),
                failure: Some(HeadFailure {
                    seq: position(3, 10),
                    attempts: 4,
                    next_attempt_at: from_millis(1_000).unwrap(),
                    last_error: "HTTP 503: busy".into(),
                }),
            },
        ] {
            assert_eq!(
                decode_queue_front(&encode_queue_front(&front)).unwrap(),
                front
            );
        }
    }
}
