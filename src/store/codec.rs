//! Byte layout of the store: keys ordered so that prefix and range scans answer the questions
//! asked, and compact versioned values that keep notification bodies as raw bytes.
//!
//! Every key starts with one tag byte, then (for per-resource state) the resource key as two
//! length-prefixed strings, so one resource's keys never share a prefix with another's.
//! Integers are big-endian so byte order is numeric order.

mod runs;

use chrono::{DateTime, Utc};

pub(crate) use self::runs::{
    HeadFailure, NewRunEntry, QueueFront, RUN_MAX_BYTES, RUN_MAX_ENTRIES, Run, RunEntry, consumed,
    decode_queue_front, encode_queue_front, encode_run, position, run_entry_bytes, split_position,
};
use super::bodylog::BodyRef;
use super::{DeadLetter, OutboxEntry, ResourceKey};

pub(crate) const TAG_WATERMARK: u8 = b'w';
/// A resource's seen set, as chunks of (id, date) pairs: one value per page written, so a page
/// of 1,000 records costs one write, not 1,000. Stores written before chunks may still hold
/// per-id keys under `s` and `d`, which nothing reads: those tags stay unused.
pub(crate) const TAG_SEEN_CHUNK: u8 = b'c';
/// Outbox runs (see `codec/runs.rs`); single entries before version 4.
pub(crate) const TAG_OUTBOX: u8 = b'o';
/// How far a queue's front run has been consumed, and the head's failure.
pub(crate) const TAG_QUEUE_FRONT: u8 = b'q';
pub(crate) const TAG_DEAD: u8 = b'x';

/// First byte of every encoded value; bump when the layout changes.
/// 4: outbox values are runs of entries, plus one queue-front value per queue; older outbox
/// values (one entry each) are rewritten as runs when a store is opened.
/// 3: outbox bodies in the body log, the value holds a [`BodyRef`].
/// 2: bodies LZ4-compressed (JSON shrinks several times, which keeps sled's leaves small and
/// its files few); dead letters still are. 1: bodies raw. All still read.
const VALUE_VERSION: u8 = 4;
const RAW_BODY_VERSION: u8 = 1;
const INLINE_BODY_VERSION: u8 = 2;
const LOGGED_BODY_VERSION: u8 = 3;

pub(crate) fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

pub(crate) fn from_millis(ms: i64) -> Result<DateTime<Utc>, String> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| format!("timestamp {ms} ms is out of range"))
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as u32).to_be_bytes());
    out.extend_from_slice(text.as_bytes());
}

fn prefixed(tag: u8, key: &ResourceKey, extra: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + key.instance.len() + key.resource.len() + extra);
    out.push(tag);
    put_str(&mut out, &key.instance);
    put_str(&mut out, &key.resource);
    out
}

pub(crate) fn resource_prefix(tag: u8, key: &ResourceKey) -> Vec<u8> {
    prefixed(tag, key, 0)
}

pub(crate) fn watermark_key(key: &ResourceKey) -> Vec<u8> {
    prefixed(TAG_WATERMARK, key, 0)
}

/// One chunk of a resource's seen set; chunks of a resource sort by `chunk` number.
pub(crate) fn seen_chunk_key(key: &ResourceKey, chunk: u64) -> Vec<u8> {
    let mut out = prefixed(TAG_SEEN_CHUNK, key, 8);
    out.extend_from_slice(&chunk.to_be_bytes());
    out
}

pub(crate) fn parse_seen_chunk_key(key_bytes: &[u8]) -> Result<u64, String> {
    let (_, rest) = parse_resource_key(key_bytes)?;
    let chunk: [u8; 8] = rest
        .try_into()
        .map_err(|_| "seen chunk key without a number")?;
    Ok(u64::from_be_bytes(chunk))
}

/// Seen-chunk value: the version, then (id, updated ms) pairs.
pub(crate) fn encode_seen_chunk<S: AsRef<str>>(entries: impl Iterator<Item = (S, i64)>) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + entries.size_hint().0 * 24);
    out.push(VALUE_VERSION);
    for (object_id, ms) in entries {
        put_str(&mut out, object_id.as_ref());
        out.extend_from_slice(&ms.to_be_bytes());
    }
    out
}

/// Calls `each` with every (id, updated ms) pair of a seen chunk, in stored order.
pub(crate) fn decode_seen_chunk(
    value: &[u8],
    mut each: impl FnMut(&str, i64),
) -> Result<(), String> {
    let mut reader = Reader::new(value);
    reader.version()?;
    while !reader.rest().is_empty() {
        let object_id = reader.str()?;
        each(object_id, reader.i64()?);
    }
    Ok(())
}

pub(crate) fn outbox_key(key: &ResourceKey, seq: u64) -> Vec<u8> {
    let mut out = prefixed(TAG_OUTBOX, key, 8);
    out.extend_from_slice(&seq.to_be_bytes());
    out
}

pub(crate) fn queue_front_key(key: &ResourceKey) -> Vec<u8> {
    prefixed(TAG_QUEUE_FRONT, key, 0)
}

pub(crate) fn dead_key(id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + id.len());
    out.push(TAG_DEAD);
    out.extend_from_slice(id.as_bytes());
    out
}

/// Reads back the resource key that follows the tag byte, and whatever comes after it.
pub(crate) fn parse_resource_key(key_bytes: &[u8]) -> Result<(ResourceKey, &[u8]), String> {
    let mut reader = Reader::new(key_bytes.get(1..).ok_or("empty key")?);
    let instance = reader.string()?;
    let resource = reader.string()?;
    Ok((ResourceKey { instance, resource }, reader.rest()))
}

pub(crate) fn parse_outbox_key(key_bytes: &[u8]) -> Result<(ResourceKey, u64), String> {
    let (key, rest) = parse_resource_key(key_bytes)?;
    let seq: [u8; 8] = rest
        .try_into()
        .map_err(|_| "outbox key without a sequence")?;
    Ok((key, u64::from_be_bytes(seq)))
}

pub(crate) fn encode_millis(at: DateTime<Utc>) -> [u8; 8] {
    millis(at).to_be_bytes()
}

pub(crate) fn decode_millis(bytes: &[u8]) -> Result<DateTime<Utc>, String> {
    let raw: [u8; 8] = bytes
        .try_into()
        .map_err(|_| format!("timestamp of {} bytes, expected 8", bytes.len()))?;
    from_millis(i64::from_be_bytes(raw))
}

/// A version-3 outbox value (one entry, its body in the body log), as older builds wrote them:
/// for the tests of reading and rewriting them.
#[cfg(test)]
pub(crate) fn encode_single_entry(entry: &OutboxEntry, body: &BodyRef) -> Vec<u8> {
    let error_len = entry.last_error.as_ref().map_or(0, |e| e.len());
    let mut out = Vec::with_capacity(64 + entry.event_id.len() + error_len);
    out.push(LOGGED_BODY_VERSION);
    out.extend_from_slice(&millis(entry.created_at).to_be_bytes());
    out.extend_from_slice(&entry.attempts.to_be_bytes());
    match entry.next_attempt_at {
        Some(at) => {
            out.push(1);
            out.extend_from_slice(&millis(at).to_be_bytes());
        }
        None => out.push(0),
    }
    put_str(&mut out, &entry.event_id);
    match &entry.last_error {
        Some(error) => {
            out.push(1);
            put_str(&mut out, error);
        }
        None => out.push(0),
    }
    out.extend_from_slice(&body.segment.to_be_bytes());
    out.extend_from_slice(&body.offset.to_be_bytes());
    out.extend_from_slice(&body.len.to_be_bytes());
    out.extend_from_slice(&body.crc.to_be_bytes());
    out
}

/// Whether an outbox value is a run (version 4 on) rather than one entry of an older build.
pub(crate) fn is_run(value: &[u8]) -> Result<bool, String> {
    Ok(Reader::new(value).version()? > LOGGED_BODY_VERSION)
}

/// A single-entry outbox value of an older build (versions 1–3): the entry, and where its
/// body is: `None` for values written before the body log, whose body is in `entry.body`.
pub(crate) fn decode_single_entry(
    key: ResourceKey,
    seq: u64,
    value: &[u8],
) -> Result<(OutboxEntry, Option<BodyRef>), String> {
    let mut reader = Reader::new(value);
    let version = reader.version()?;
    if version > LOGGED_BODY_VERSION {
        return Err(format!("single outbox entry of version {version}"));
    }
    let created_at = from_millis(reader.i64()?)?;
    let attempts = reader.u32()?;
    let next_attempt_at = match reader.flag()? {
        true => Some(from_millis(reader.i64()?)?),
        false => None,
    };
    let event_id = reader.string()?;
    let last_error = match reader.flag()? {
        true => Some(reader.string()?),
        false => None,
    };
    let mut entry = OutboxEntry {
        key,
        seq,
        event_id,
        body: Vec::new(),
        created_at,
        attempts,
        next_attempt_at,
        last_error,
    };
    if version <= INLINE_BODY_VERSION {
        entry.body = body(version, reader.rest())?;
        return Ok((entry, None));
    }
    Ok((entry, Some(read_body_ref(&mut reader)?)))
}

/// A [`BodyRef`] as stored: segment, offset, length, CRC.
const BODY_REF_BYTES: usize = 8 + 8 + 4 + 4;

fn read_body_ref(reader: &mut Reader<'_>) -> Result<BodyRef, String> {
    Ok(BodyRef {
        segment: u64::from_be_bytes(reader.array()?),
        offset: u64::from_be_bytes(reader.array()?),
        len: reader.u32()?,
        crc: reader.u32()?,
    })
}

/// Dead-letter value: everything but the id (that is the key). Body last, compressed.
pub(crate) fn encode_dead(letter: &DeadLetter) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        48 + letter.key.instance.len()
            + letter.key.resource.len()
            + letter.event_id.len()
            + letter.last_error.len()
            + letter.body.len(),
    );
    out.push(VALUE_VERSION);
    put_str(&mut out, &letter.key.instance);
    put_str(&mut out, &letter.key.resource);
    put_str(&mut out, &letter.event_id);
    out.extend_from_slice(&millis(letter.created_at).to_be_bytes());
    out.extend_from_slice(&letter.attempts.to_be_bytes());
    match letter.last_status {
        Some(status) => {
            out.push(1);
            out.extend_from_slice(&status.to_be_bytes());
        }
        None => out.push(0),
    }
    put_str(&mut out, &letter.last_error);
    out.extend_from_slice(&millis(letter.dead_at).to_be_bytes());
    out.extend_from_slice(&lz4_flex::compress_prepend_size(&letter.body));
    out
}

fn body(version: u8, stored: &[u8]) -> Result<Vec<u8>, String> {
    match version {
        RAW_BODY_VERSION => Ok(stored.to_vec()),
        _ => lz4_flex::decompress_size_prepended(stored)
            .map_err(|e| format!("body does not decompress: {e}")),
    }
}

pub(crate) fn decode_dead(id: String, value: &[u8]) -> Result<DeadLetter, String> {
    let mut reader = Reader::new(value);
    let version = reader.version()?;
    let header = read_dead_header(&mut reader)?;
    Ok(DeadLetter {
        id,
        key: header.key,
        event_id: header.event_id,
        body: body(version, reader.rest())?,
        created_at: header.created_at,
        attempts: header.attempts,
        last_status: header.last_status,
        last_error: header.last_error,
        dead_at: header.dead_at,
    })
}

/// A dead letter's fields before its body.
struct DeadHeader {
    key: ResourceKey,
    event_id: String,
    created_at: DateTime<Utc>,
    attempts: u32,
    last_status: Option<u16>,
    last_error: String,
    dead_at: DateTime<Utc>,
}

fn read_dead_header(reader: &mut Reader<'_>) -> Result<DeadHeader, String> {
    let instance = reader.string()?;
    let resource = reader.string()?;
    let event_id = reader.string()?;
    let created_at = from_millis(reader.i64()?)?;
    let attempts = reader.u32()?;
    let last_status = match reader.flag()? {
        true => Some(u16::from_be_bytes(reader.array()?)),
        false => None,
    };
    let last_error = reader.string()?;
    let dead_at = from_millis(reader.i64()?)?;
    Ok(DeadHeader {
        key: ResourceKey { instance, resource },
        event_id,
        created_at,
        attempts,
        last_status,
        last_error,
        dead_at,
    })
}

/// What the dead-letter summary counts of one stored value under a dead-letter key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DeadHead {
    /// Its queue, when readable.
    pub key: Option<ResourceKey>,
    /// When it was dead-lettered or set aside, when readable.
    pub at: Option<DateTime<Utc>>,
    /// A set-aside record, or a value whose fields before the body do not read.
    pub corrupt: bool,
}

/// Reads `value` up to the body, never the body itself: a dead letter, a set-aside record, or
/// something unreadable (corrupt, with its queue when that much reads).
pub(crate) fn peek_dead(value: &[u8]) -> DeadHead {
    if let Some(record) = decode_set_aside(value) {
        return match record {
            Ok(record) => DeadHead {
                key: record.key,
                at: Some(record.found_at),
                corrupt: true,
            },
            Err(_) => DeadHead {
                key: None,
                at: None,
                corrupt: true,
            },
        };
    }
    let mut reader = Reader::new(value);
    match reader.version().and_then(|_| read_dead_header(&mut reader)) {
        Ok(header) => DeadHead {
            key: Some(header.key),
            at: Some(header.dead_at),
            corrupt: false,
        },
        Err(_) => DeadHead {
            key: peek_dead_letter_key(value),
            at: None,
            corrupt: true,
        },
    }
}

/// First byte of a corrupt value kept aside among the dead letters: never a value version, so
/// no dead letter reads as one.
const SET_ASIDE_MARKER: u8 = 0xC0;

/// A stored value that could not be read, kept under a dead-letter key with what is known of
/// it and its raw bytes, so nothing is lost and it can be inspected or dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SetAside<'a> {
    pub found_at: DateTime<Utc>,
    /// The queue it came from, when known.
    pub key: Option<ResourceKey>,
    pub event_id: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    /// What was unreadable and why.
    pub reason: String,
    /// The bytes as they were found.
    pub raw: &'a [u8],
}

pub(crate) fn encode_set_aside(record: &SetAside<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + record.reason.len() + record.raw.len());
    out.push(SET_ASIDE_MARKER);
    out.extend_from_slice(&millis(record.found_at).to_be_bytes());
    match &record.key {
        Some(key) => {
            out.push(1);
            put_str(&mut out, &key.instance);
            put_str(&mut out, &key.resource);
        }
        None => out.push(0),
    }
    match &record.event_id {
        Some(event_id) => {
            out.push(1);
            put_str(&mut out, event_id);
        }
        None => out.push(0),
    }
    match record.created_at {
        Some(at) => {
            out.push(1);
            out.extend_from_slice(&millis(at).to_be_bytes());
        }
        None => out.push(0),
    }
    put_str(&mut out, &record.reason);
    out.extend_from_slice(record.raw);
    out
}

/// A set-aside record, or `None` when `value` is not one (a dead letter, or unreadable).
pub(crate) fn decode_set_aside(value: &[u8]) -> Option<Result<SetAside<'_>, String>> {
    let rest = value.strip_prefix(&[SET_ASIDE_MARKER])?;
    let mut reader = Reader::new(rest);
    let mut read = || -> Result<SetAside<'_>, String> {
        let found_at = from_millis(reader.i64()?)?;
        let key = match reader.flag()? {
            true => Some(ResourceKey {
                instance: reader.string()?,
                resource: reader.string()?,
            }),
            false => None,
        };
        let event_id = match reader.flag()? {
            true => Some(reader.string()?),
            false => None,
        };
        let created_at = match reader.flag()? {
            true => Some(from_millis(reader.i64()?)?),
            false => None,
        };
        let reason = reader.string()?;
        Ok(SetAside {
            found_at,
            key,
            event_id,
            created_at,
            reason,
            raw: reader.rest(),
        })
    };
    Some(read())
}

/// The instance and resource at the start of a dead-letter value that does not decode as a
/// whole, when those at least are readable.
pub(crate) fn peek_dead_letter_key(value: &[u8]) -> Option<ResourceKey> {
    let mut reader = Reader::new(value);
    reader.version().ok()?;
    Some(ResourceKey {
        instance: reader.string().ok()?,
        resource: reader.string().ok()?,
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes }
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], String> {
        if self.bytes.len() < len {
            return Err(format!(
                "truncated: wanted {len} more bytes, {} left",
                self.bytes.len()
            ));
        }
        let (head, tail) = self.bytes.split_at(len);
        self.bytes = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }

    fn version(&mut self) -> Result<u8, String> {
        match self.array::<1>()?[0] {
            v @ RAW_BODY_VERSION..=VALUE_VERSION => Ok(v),
            other => Err(format!(
                "value format version {other}, this pollerd reads {RAW_BODY_VERSION} to {VALUE_VERSION}"
            )),
        }
    }

    fn flag(&mut self) -> Result<bool, String> {
        match self.array::<1>()?[0] {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(format!("flag byte {other}")),
        }
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    fn string(&mut self) -> Result<String, String> {
        self.str().map(str::to_string)
    }

    fn str(&mut self) -> Result<&'a str, String> {
        let len = self.u32()? as usize;
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes).map_err(|_| "text is not UTF-8".to_string())
    }

    fn rest(&self) -> &'a [u8] {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> DateTime<Utc> {
        from_millis(ms).unwrap()
    }

    #[test]
    fn seen_chunks_sort_by_number_and_round_trip() {
        let key = ResourceKey::new("i", "r");
        let mut keys = [300u64, 2, 1 << 40].map(|n| seen_chunk_key(&key, n));
        keys.sort();
        let numbers: Vec<u64> = keys
            .iter()
            .map(|k| parse_seen_chunk_key(k).unwrap())
            .collect();
        assert_eq!(numbers, [2, 300, 1 << 40]);

        let entries = [("17", -5_000i64), ("é", 1_700_000_000_000)];
        let value = encode_seen_chunk(entries.iter().map(|(id, ms)| (*id, *ms)));
        let mut back = Vec::new();
        decode_seen_chunk(&value, |id, ms| back.push((id.to_string(), ms))).unwrap();
        assert_eq!(
            back,
            [
                ("17".to_string(), -5_000),
                ("é".to_string(), 1_700_000_000_000)
            ]
        );
        assert!(
            decode_seen_chunk(&value[..value.len() - 1], |_, _| {})
                .unwrap_err()
                .contains("truncated")
        );
    }

    #[test]
    fn resource_prefixes_do_not_overlap_when_names_share_a_start() {
        // "ab"/"c" and "a"/"bc" concatenate alike; the length prefixes keep them apart.
        let one = resource_prefix(TAG_OUTBOX, &ResourceKey::new("ab", "c"));
        let two = resource_prefix(TAG_OUTBOX, &ResourceKey::new("a", "bc"));
        assert!(!one.starts_with(&two) && !two.starts_with(&one));
        let (parsed, seq) = parse_outbox_key(&outbox_key(&ResourceKey::new("a", "bc"), 7)).unwrap();
        assert_eq!((parsed, seq), (ResourceKey::new("a", "bc"), 7));
    }

    #[test]
    fn single_entry_values_of_older_builds_read_with_their_body_reference() {
        let entry = OutboxEntry {
            key: ResourceKey::new("i", "r"),
            seq: 42,
            event_id: "e1".into(),
            body: Vec::new(),
            created_at: at(1_534_778_974_827),
            attempts: 3,
            next_attempt_at: Some(at(1_534_778_999_000)),
            last_error: Some("HTTP 503".into()),
        };
        let body = BodyRef {
            segment: 7,
            offset: 1 << 33,
            len: 1_579,
            crc: 0xdead_beef,
        };
        let value = encode_single_entry(&entry, &body);
        assert!(!is_run(&value).unwrap());
        assert_eq!(
            decode_single_entry(entry.key.clone(), 42, &value).unwrap(),
            (entry, Some(body))
        );
    }

    #[test]
    fn values_with_the_body_inline_still_read() {
        // Versions 1 (raw) and 2 (LZ4) kept the body in the value itself.
        let head = |version: u8| {
            let mut value = vec![version];
            value.extend_from_slice(&1_534_778_974_827i64.to_be_bytes());
            value.extend_from_slice(&0u32.to_be_bytes());
            value.push(0);
            put_str(&mut value, "e1");
            value.push(0);
            value
        };
        let mut raw = head(RAW_BODY_VERSION);
        raw.extend_from_slice(b"{\"raw\":true}");
        let mut compressed = head(INLINE_BODY_VERSION);
        compressed.extend_from_slice(&lz4_flex::compress_prepend_size(b"{\"lz4\":true}"));
        let key = ResourceKey::new("i", "r");
        let (entry, body) = decode_single_entry(key.clone(), 1, &raw).unwrap();
        assert_eq!(
            (entry.body.as_slice(), body),
            (&b"{\"raw\":true}"[..], None)
        );
        assert!(!is_run(&compressed).unwrap());
        let (entry, body) = decode_single_entry(key, 1, &compressed).unwrap();
        assert_eq!(
            (entry.body.as_slice(), body),
            (&b"{\"lz4\":true}"[..], None)
        );
    }

    #[test]
    fn dead_letter_value_round_trips() {
        let letter = DeadLetter {
            id: "e9".into(),
            key: ResourceKey::new("i", "r"),
            event_id: "e9".into(),
            body: b"{}".to_vec(),
            created_at: at(1_000),
            attempts: 10,
            last_status: Some(410),
            last_error: "gone".into(),
            dead_at: at(2_000),
        };
        assert_eq!(
            decode_dead("e9".into(), &encode_dead(&letter)).unwrap(),
            letter
        );
    }

    #[test]
    fn set_aside_records_round_trip_and_are_never_dead_letters() {
        let full = SetAside {
            found_at: at(5_000),
            key: Some(ResourceKey::new("i", "r")),
            event_id: Some("e7".into()),
            created_at: Some(at(1_000)),
            reason: "outbox run 3: truncated".into(),
            raw: b"\x04\x00\x00",
        };
        let bare = SetAside {
            key: None,
            event_id: None,
            created_at: None,
            raw: b"",
            ..full.clone()
        };
        for record in [full, bare] {
            let value = encode_set_aside(&record);
            assert_eq!(decode_set_aside(&value), Some(Ok(record)));
            assert!(decode_dead("x".into(), &value).is_err());
        }
        let letter = DeadLetter {
            id: "e9".into(),
            key: ResourceKey::new("i", "r"),
            event_id: "e9".into(),
            body: b"{}".to_vec(),
            created_at: at(1_000),
            attempts: 10,
            last_status: None,
            last_error: "gone".into(),
            dead_at: at(2_000),
        };
        let value = encode_dead(&letter);
        assert_eq!(decode_set_aside(&value), None);
        // A letter cut after its names still tells whose it was.
        assert_eq!(
            peek_dead_letter_key(&value[..20]),
            Some(ResourceKey::new("i", "r"))
        );
        assert_eq!(peek_dead_letter_key(&[9, 9]), None);
    }

    #[test]
    fn unknown_version_and_truncation_are_reported() {
        assert!(
            decode_dead("x".into(), &[9])
                .unwrap_err()
                .contains("version 9")
        );
        assert!(
            decode_single_entry(ResourceKey::new("i", "r"), 1, &[LOGGED_BODY_VERSION, 0, 0])
                .unwrap_err()
                .contains("truncated")
        );
    }
}
