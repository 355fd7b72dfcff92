//! Provider records kept as the provider's own JSON text, from the page body to the notification.
//!
//! A page is split into its records once (validating the whole body); afterwards only the few
//! fields the poller needs are read, by scanning a record's top level once and descending into
//! the values that hold them. Nothing builds a `serde_json::Value` tree of a record, which was
//! most of the cost of ingesting a page (allocation per value, re-serialisation into the envelope).

use std::fmt;

use serde::Deserializer as _;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::config::FieldPath;

/// One record, as the provider sent it (whitespace around it trimmed).
pub type RawRecord = Box<RawValue>;

/// What kind of JSON value `value` is, worded like [`crate::config::json_kind`].
pub fn raw_kind(value: &RawValue) -> &'static str {
    match value.get().as_bytes().first() {
        Some(b'n') => "null",
        Some(b't' | b'f') => "a boolean",
        Some(b'"') => "a string",
        Some(b'[') => "an array",
        Some(b'{') => "an object",
        _ => "a number",
    }
}

/// The elements of `value` when it is an array; `None` for any other kind.
pub fn array_items(value: &RawValue) -> Option<Vec<RawRecord>> {
    if !value.get().starts_with('[') {
        return None;
    }
    serde_json::from_str(value.get()).ok()
}

/// A text value: a non-empty string as it reads, or a number as serde_json prints it (ids are
/// numbers in ConnectWise, strings elsewhere).
pub fn id_text(value: &RawValue) -> Option<String> {
    match scalar(value) {
        Scalar::Text(s) if !s.is_empty() => Some(s),
        Scalar::Number(n) => Some(n),
        _ => None,
    }
}

/// A scalar read from raw JSON; numbers are printed the way `serde_json::Number` prints them, so
/// `1.50` reads as `1.5` exactly as it did when records were `Value`s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scalar {
    Null,
    Text(String),
    Number(String),
    /// An array, object or boolean: its kind, for messages.
    Other(&'static str),
}

pub fn scalar(value: &RawValue) -> Scalar {
    let text = value.get();
    match text.as_bytes().first() {
        Some(b'"') => serde_json::from_str::<String>(text)
            .map(Scalar::Text)
            .unwrap_or(Scalar::Other("a string")),
        Some(b'-' | b'0'..=b'9') => serde_json::from_str::<serde_json::Number>(text)
            .map(|n| Scalar::Number(n.to_string()))
            .unwrap_or(Scalar::Other("a number")),
        Some(b'n') => Scalar::Null,
        _ => Scalar::Other(raw_kind(value)),
    }
}

/// The segments of a dotted path (`_info.lastUpdated` → `_info`, `lastUpdated`).
pub fn segments(path: &FieldPath) -> Vec<&str> {
    path.as_str().split('.').collect()
}

/// The value at one dotted path, as [`FieldPath::get`] finds it in the parsed value.
pub fn select_path<'a>(value: &'a RawValue, path: &FieldPath) -> Option<&'a RawValue> {
    let segments = segments(path);
    select(value, &[&segments]).pop().flatten()
}

/// The values at dotted `paths` (already split into segments) inside `value`, in the order of
/// `paths`; a segment indexes an object by key or an array by position, as
/// [`FieldPath::get`] does. Each level on the way is scanned once for all paths.
pub fn select<'a>(value: &'a RawValue, paths: &[&[&str]]) -> Vec<Option<&'a RawValue>> {
    let mut found = vec![None; paths.len()];
    let pending: Vec<(usize, &[&str])> = paths.iter().copied().enumerate().collect();
    select_into(value, &pending, &mut found);
    found
}

fn select_into<'a>(
    value: &'a RawValue,
    paths: &[(usize, &[&str])],
    found: &mut [Option<&'a RawValue>],
) {
    let mut wanted: Vec<&str> = Vec::with_capacity(paths.len());
    for &(slot, segments) in paths {
        match segments.first() {
            None => found[slot] = Some(value),
            Some(first) if !wanted.contains(first) => wanted.push(first),
            Some(_) => {}
        }
    }
    if wanted.is_empty() {
        return;
    }
    let children = children(value, &wanted);
    for (name, child) in wanted.iter().zip(children) {
        let Some(child) = child else { continue };
        let below: Vec<(usize, &[&str])> = paths
            .iter()
            .filter(|(_, segments)| segments.first() == Some(name))
            .map(|&(slot, segments)| (slot, &segments[1..]))
            .collect();
        select_into(child, &below, found);
    }
}

/// One scan of `value`'s top level: the members named `names` of an object (the last one when a
/// key repeats, as a parsed object keeps it), or the elements at those positions of an array.
fn children<'a>(value: &'a RawValue, names: &[&str]) -> Vec<Option<&'a RawValue>> {
    let mut found = vec![None; names.len()];
    let first = value.get().as_bytes().first();
    if matches!(first, Some(b'{' | b'[')) {
        let mut de = serde_json::Deserializer::from_str(value.get());
        // The text was validated when the page was split, so a failure here cannot happen; if
        // it did, the fields read as missing and the record is skipped with a reason.
        let _ = de.deserialize_any(Children {
            names,
            found: &mut found,
        });
    }
    found
}

struct Children<'n, 'f, 'a> {
    names: &'n [&'n str],
    found: &'f mut [Option<&'a RawValue>],
}

impl<'a> Visitor<'a> for Children<'_, '_, 'a> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object or array")
    }

    fn visit_map<M: MapAccess<'a>>(self, mut map: M) -> Result<(), M::Error> {
        while let Some(position) = map.next_key_seed(KeyPosition(self.names))? {
            match position {
                Some(i) => self.found[i] = Some(map.next_value::<&'a RawValue>()?),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    fn visit_seq<S: SeqAccess<'a>>(self, mut seq: S) -> Result<(), S::Error> {
        let positions: Vec<Option<usize>> = self.names.iter().map(|n| n.parse().ok()).collect();
        let mut index = 0usize;
        loop {
            let wanted = positions.iter().position(|p| *p == Some(index));
            match wanted {
                Some(_) => {
                    let Some(element) = seq.next_element::<&'a RawValue>()? else {
                        break;
                    };
                    for (slot, p) in positions.iter().enumerate() {
                        if *p == Some(index) {
                            self.found[slot] = Some(element);
                        }
                    }
                }
                None => {
                    if seq.next_element::<IgnoredAny>()?.is_none() {
                        break;
                    }
                }
            }
            index += 1;
        }
        Ok(())
    }
}

/// Deserialises an object key into its position among the wanted names, borrowing the key when
/// it has no escapes.
struct KeyPosition<'n>(&'n [&'n str]);

impl<'de> DeserializeSeed<'de> for KeyPosition<'_> {
    type Value = Option<usize>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyPosition<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, key: &str) -> Result<Option<usize>, E> {
        Ok(self.0.iter().position(|name| *name == key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn raw(text: &str) -> RawRecord {
        RawValue::from_string(text.to_string()).unwrap()
    }

    /// `select` must find exactly what `FieldPath::get` finds in the parsed record.
    fn agrees_with_field_path(record: &str, paths: &[&str]) {
        let value: Value = serde_json::from_str(record).unwrap();
        let split: Vec<Vec<&str>> = paths.iter().map(|p| p.split('.').collect()).collect();
        let split: Vec<&[&str]> = split.iter().map(Vec::as_slice).collect();
        let raw = raw(record);
        let selected = select(&raw, &split);
        for (path, got) in paths.iter().zip(selected) {
            let expected = FieldPath::parse(path).unwrap().get(&value).cloned();
            let got = got.map(|r| serde_json::from_str::<Value>(r.get()).unwrap());
            assert_eq!(got, expected, "path {path} in {record}");
        }
    }

    #[test]
    fn select_reads_what_field_paths_read() {
        let record = r#"{"id": 7, "name": "x", "_info": {"lastUpdated": "2024-01-02T03:04:05Z",
            "dateEntered": 1700000000000}, "list": [1, {"b": [true, null]}], "n": null}"#;
        agrees_with_field_path(
            record,
            &[
                "id",
                "_info.lastUpdated",
                "_info.dateEntered",
                "list.1.b.1",
                "list.0",
                "list.9",
                "list.x",
                "name.first",
                "n",
                "missing",
                "_info.missing.deeper",
            ],
        );
        agrees_with_field_path(r#"[{"a": 1}, {"a": 2}]"#, &["1.a", "0", "+1.a", "01.a"]);
    }

    #[test]
    fn escaped_keys_and_repeated_keys_match_the_parsed_object() {
        // `\u0069d` is "id"; a repeated key keeps its last value, as a parsed object does.
        agrees_with_field_path(r#"{"\u0069d": "a\"b", "x": 1, "x": 2}"#, &["id", "x"]);
    }

    #[test]
    fn ids_read_as_text_from_strings_and_numbers() {
        assert_eq!(id_text(&raw(r#""C-17""#)).as_deref(), Some("C-17"));
        assert_eq!(id_text(&raw(r#""a\u00e9""#)).as_deref(), Some("aé"));
        assert_eq!(id_text(&raw("17")).as_deref(), Some("17"));
        assert_eq!(id_text(&raw("-3")).as_deref(), Some("-3"));
        // As serde_json prints the number it parsed (what a `Value` record gave).
        assert_eq!(id_text(&raw("1.50")).as_deref(), Some("1.5"));
        assert_eq!(id_text(&raw(r#""""#)), None);
        assert_eq!(id_text(&raw("null")), None);
        assert_eq!(id_text(&raw("true")), None);
        assert_eq!(id_text(&raw("{\"id\": 1}")), None);
    }

    #[test]
    fn kinds_and_arrays() {
        assert_eq!(raw_kind(&raw("{}")), "an object");
        assert_eq!(raw_kind(&raw("[]")), "an array");
        assert_eq!(raw_kind(&raw("false")), "a boolean");
        assert_eq!(raw_kind(&raw("-0.5")), "a number");
        assert_eq!(scalar(&raw("[1]")), Scalar::Other("an array"));
        let items = array_items(&raw(r#"[ {"a": [1, 2]} , 3,"x"]"#)).unwrap();
        let texts: Vec<&str> = items.iter().map(|r| r.get()).collect();
        assert_eq!(texts, [r#"{"a": [1, 2]}"#, "3", r#""x""#]);
        assert!(array_items(&raw(r#"{"a": []}"#)).is_none());
    }
}
