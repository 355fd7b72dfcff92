//! Byte layout of the store: keys ordered so that prefix and range scans answer the questions
//! asked, and compact versioned values that keep notification bodies as raw bytes.
//!
//! Every key starts with one tag byte, then (for per-resource state) the resource key as two
//! length-prefixed strings, so one resource's keys never share a prefix with another's.
//! Integers are big-endian so byte order is numeric order.

use chrono::{DateTime, Utc};

use super::{DeadLetter, OutboxEntry, ResourceKey};

pub(crate) const TAG_WATERMARK: u8 = b'w';
pub(crate) const TAG_SEEN: u8 = b's';
/// Secondary index of the seen set: (date, id) → (), so pruning is a range scan.
pub(crate) const TAG_SEEN_BY_DATE: u8 = b'd';
pub(crate) const TAG_OUTBOX: u8 = b'o';
pub(crate) const TAG_DEAD: u8 = b'x';

/// First byte of every encoded value; bump when the layout changes.
/// 2: bodies LZ4-compressed (JSON shrinks several times, which keeps sled's leaves small and
/// its files few). 1: bodies raw; still read.
const VALUE_VERSION: u8 = 2;
const RAW_BODY_VERSION: u8 = 1;

pub(crate) fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

pub(crate) fn from_millis(ms: i64) -> Result<DateTime<Utc>, String> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| format!("timestamp {ms} ms is out of range"))
}

/// Maps i64 onto u64 so that big-endian byte order equals numeric order (negatives first).
fn sortable_millis(ms: i64) -> [u8; 8] {
    ((ms as u64) ^ (1 << 63)).to_be_bytes()
}

fn unsortable_millis(bytes: [u8; 8]) -> i64 {
    (u64::from_be_bytes(bytes) ^ (1 << 63)) as i64
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

pub(crate) fn seen_key(key: &ResourceKey, object_id: &str) -> Vec<u8> {
    let mut out = prefixed(TAG_SEEN, key, object_id.len());
    out.extend_from_slice(object_id.as_bytes());
    out
}

/// Index key; `ms` first so one resource's index is ordered by date.
pub(crate) fn seen_by_date_key(key: &ResourceKey, ms: i64, object_id: &str) -> Vec<u8> {
    let mut out = prefixed(TAG_SEEN_BY_DATE, key, 8 + object_id.len());
    out.extend_from_slice(&sortable_millis(ms));
    out.extend_from_slice(object_id.as_bytes());
    out
}

/// Splits the part of an index key after the resource prefix into (date ms, object id).
pub(crate) fn parse_seen_by_date_suffix(suffix: &[u8]) -> Result<(i64, String), String> {
    if suffix.len() < 8 {
        return Err("seen index key too short".into());
    }
    let (date, id) = suffix.split_at(8);
    let ms = unsortable_millis(date.try_into().expect("8 bytes"));
    let id = String::from_utf8(id.to_vec()).map_err(|_| "seen index id is not UTF-8")?;
    Ok((ms, id))
}

pub(crate) fn outbox_key(key: &ResourceKey, seq: u64) -> Vec<u8> {
    let mut out = prefixed(TAG_OUTBOX, key, 8);
    out.extend_from_slice(&seq.to_be_bytes());
    out
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

/// Outbox value: the entry minus its key and sequence (those are in the key). Body last, compressed.
pub(crate) fn encode_outbox(entry: &OutboxEntry) -> Vec<u8> {
    let error_len = entry.last_error.as_ref().map_or(0, |e| e.len());
    let mut out = Vec::with_capacity(40 + entry.event_id.len() + error_len + entry.body.len());
    out.push(VALUE_VERSION);
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
    out.extend_from_slice(&lz4_flex::compress_prepend_size(&entry.body));
    out
}

pub(crate) fn decode_outbox(
    key: ResourceKey,
    seq: u64,
    value: &[u8],
) -> Result<OutboxEntry, String> {
    let mut reader = Reader::new(value);
    let version = reader.version()?;
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
    Ok(OutboxEntry {
        key,
        seq,
        event_id,
        body: body(version, reader.rest())?,
        created_at,
        attempts,
        next_attempt_at,
        last_error,
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
    Ok(DeadLetter {
        id,
        key: ResourceKey { instance, resource },
        event_id,
        body: body(version, reader.rest())?,
        created_at,
        attempts,
        last_status,
        last_error,
        dead_at,
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
            v @ (RAW_BODY_VERSION | VALUE_VERSION) => Ok(v),
            other => Err(format!(
                "value format version {other}, this pollerd reads {RAW_BODY_VERSION} and {VALUE_VERSION}"
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
        let len = self.u32()? as usize;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| "text is not UTF-8".to_string())
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
    fn index_keys_sort_by_date_including_before_1970() {
        let key = ResourceKey::new("i", "r");
        let mut keys = [
            seen_by_date_key(&key, 5_000, "a"),
            seen_by_date_key(&key, -5_000, "b"),
            seen_by_date_key(&key, 0, "c"),
            seen_by_date_key(&key, 1_700_000_000_000, "d"),
        ];
        keys.sort();
        let prefix_len = resource_prefix(TAG_SEEN_BY_DATE, &key).len();
        let dates: Vec<i64> = keys
            .iter()
            .map(|k| parse_seen_by_date_suffix(&k[prefix_len..]).unwrap().0)
            .collect();
        assert_eq!(dates, [-5_000, 0, 5_000, 1_700_000_000_000]);
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
    fn outbox_value_round_trips_with_the_body_compressed() {
        // A realistic body repeats its keys: it must shrink, and come back byte for byte.
        let record = r#"{"id":17,"firstName":"Jane","lastName":"Doe","_info":{"lastUpdated":"2026-01-01T00:00:00Z"}}"#;
        let body = format!(
            r#"{{"id":"e1","message":{{"raw":{{"contacts":[{}]}}}}}}"#,
            [record; 10].join(",")
        )
        .into_bytes();
        let entry = OutboxEntry {
            key: ResourceKey::new("i", "r"),
            seq: 42,
            event_id: "e1".into(),
            body: body.clone(),
            created_at: at(1_534_778_974_827),
            attempts: 3,
            next_attempt_at: Some(at(1_534_778_999_000)),
            last_error: Some("HTTP 503".into()),
        };
        let value = encode_outbox(&entry);
        assert!(
            value.len() < body.len() / 3,
            "{} bytes stored for a {}-byte body",
            value.len(),
            body.len()
        );
        assert_eq!(decode_outbox(entry.key.clone(), 42, &value).unwrap(), entry);
    }

    #[test]
    fn values_written_before_compression_still_read() {
        let mut value = vec![RAW_BODY_VERSION];
        value.extend_from_slice(&1_534_778_974_827i64.to_be_bytes());
        value.extend_from_slice(&0u32.to_be_bytes());
        value.push(0);
        put_str(&mut value, "e1");
        value.push(0);
        value.extend_from_slice(b"{\"raw\":true}");
        let entry = decode_outbox(ResourceKey::new("i", "r"), 1, &value).unwrap();
        assert_eq!(entry.body, b"{\"raw\":true}");
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
    fn unknown_version_and_truncation_are_reported() {
        assert!(
            decode_dead("x".into(), &[9])
                .unwrap_err()
                .contains("version 9")
        );
        assert!(
            decode_outbox(ResourceKey::new("i", "r"), 1, &[VALUE_VERSION, 0, 0])
                .unwrap_err()
                .contains("truncated")
        );
    }
}
