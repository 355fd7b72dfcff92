//! Provider records kept as the provider's own JSON text, from the page body to the notification.
//!
//! A page is split into its records once, by one strict pass that validates the whole body as
//! serde_json would ([`validate`]); afterwards only the few fields the poller needs are read, by
//! scanning a record's top level once and descending into the values that hold them ([`scan`], a
//! byte-level reader for text already validated). Nothing builds a `serde_json::Value` tree of a
//! record: that would be most of the cost of ingesting a page (allocation per value,
//! re-serialisation into the envelope).

mod scan;
mod validate;

use serde_json::value::RawValue;

pub use validate::{JsonError, JsonErrorKind, SplitArray, split_array};

use crate::config::FieldPath;

/// One record, as the provider sent it (whitespace around it trimmed).
pub type RawRecord = Box<RawValue>;

/// What kind of JSON value the text `value` is, worded like [`crate::config::json_kind`].
pub fn raw_kind(value: &str) -> &'static str {
    match value.as_bytes().first() {
        Some(b'n') => "null",
        Some(b't' | b'f') => "a boolean",
        Some(b'"') => "a string",
        Some(b'[') => "an array",
        Some(b'{') => "an object",
        _ => "a number",
    }
}

/// The records of a page body that is a JSON array, validated as serde_json validates it (same
/// errors, same messages) in one pass, each kept as its own text.
pub fn split_records(body: &[u8]) -> Result<Vec<RawRecord>, JsonError> {
    let page = split_array(body)?;
    Ok(page
        .elements
        .iter()
        .map(|element| {
            let text = page.text[element.clone()].to_owned();
            // SAFETY: `split_array` accepted the body exactly as serde_json's parse does, and an
            // element is one whole value with no whitespace around it, which is what a
            // `RawValue` must hold (debug builds re-check it inside `from_string_unchecked`).
            unsafe { RawValue::from_string_unchecked(text) }
        })
        .collect())
}

/// The elements of `value` when it is an array; `None` for any other kind.
pub fn array_items(value: &str) -> Option<Vec<RawRecord>> {
    if !value.starts_with('[') {
        return None;
    }
    split_records(value.as_bytes()).ok()
}

/// A text value: a non-empty string as it reads, or a number as serde_json prints it (ids are
/// numbers in ConnectWise, strings elsewhere).
pub fn id_text(value: &str) -> Option<String> {
    match scalar(value) {
        Scalar::Text(s) if !s.is_empty() => Some(s),
        Scalar::Number(n) => Some(n),
        _ => None,
    }
}

/// A scalar read from raw JSON; numbers are printed the way `serde_json::Number` prints them, so
/// `1.50` reads as `1.5`, as it would from a `serde_json::Value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scalar {
    Null,
    Text(String),
    Number(String),
    /// An array, object or boolean: its kind, for messages.
    Other(&'static str),
}

pub fn scalar(value: &str) -> Scalar {
    match value.as_bytes().first() {
        // Most strings have no escapes: their text is what lies between the quotes.
        Some(b'"') if !value.contains('\\') && value.len() >= 2 => {
            Scalar::Text(value[1..value.len() - 1].to_string())
        }
        Some(b'"') => serde_json::from_str::<String>(value)
            .map(Scalar::Text)
            .unwrap_or(Scalar::Other("a string")),
        Some(b'-' | b'0'..=b'9') => serde_json::from_str::<serde_json::Number>(value)
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

/// The text of the value at one dotted path, as [`FieldPath::get`] finds it in the parsed value.
pub fn select_path<'a>(value: &'a str, path: &FieldPath) -> Option<&'a str> {
    let segments = segments(path);
    select(value, &[&segments]).pop().flatten()
}

/// The texts of the values at dotted `paths` (already split into segments) inside the JSON text
/// `value`, in the order of `paths`; a segment indexes an object by key or an array by position,
/// as [`FieldPath::get`] does. Each level on the way is scanned once for all paths.
///
/// `value` must be text a validating parse accepted (a [`RawValue`]'s): it is read with a
/// scanner that does not check it again.
pub fn select<'a>(value: &'a str, paths: &[&[&str]]) -> Vec<Option<&'a str>> {
    let mut found = vec![None; paths.len()];
    let pending: Vec<(usize, &[&str])> = paths.iter().copied().enumerate().collect();
    select_into(value, &pending, &mut found);
    found
}

fn select_into<'a>(value: &'a str, paths: &[(usize, &[&str])], found: &mut [Option<&'a str>]) {
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
    let mut children = vec![None; wanted.len()];
    scan::children(value, &wanted, &mut children);
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// `select` must find exactly what `FieldPath::get` finds in the parsed record.
    fn agrees_with_field_path(record: &str, paths: &[&str]) {
        let value: Value = serde_json::from_str(record).unwrap();
        let split: Vec<Vec<&str>> = paths.iter().map(|p| p.split('.').collect()).collect();
        let split: Vec<&[&str]> = split.iter().map(Vec::as_slice).collect();
        let selected = select(record, &split);
        for (path, got) in paths.iter().zip(selected) {
            let expected = FieldPath::parse(path).unwrap().get(&value).cloned();
            let got = got.map(|text| serde_json::from_str::<Value>(text).unwrap());
            assert_eq!(got, expected, "path {path} in {record}");
        }
    }

    /// Every path to every value of `value` (keys without dots), and one missing below each.
    fn all_paths(value: &Value, prefix: &str, out: &mut Vec<String>) {
        let join = |k: &str| {
            if prefix.is_empty() {
                k.to_string()
            } else {
                format!("{prefix}.{k}")
            }
        };
        out.push(join("missing"));
        match value {
            Value::Object(m) => {
                for (k, v) in m {
                    out.push(join(k));
                    all_paths(v, &join(k), out);
                }
            }
            Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    out.push(join(&i.to_string()));
                    all_paths(v, &join(&i.to_string()), out);
                }
                out.push(join(&a.len().to_string()));
            }
            _ => {}
        }
    }

    const TRICKY: &str = "{ \"id\" :7 ,\"name\":\"a}]\\\"{[\\\\\",\"_info\":{\"lastUpdated\":\"2024-01-02T03:04:05Z\",\r\n\t\"dateEntered\":1700000000000},\"list\":[ 1 ,{\"b\":[true,null,false, -1.5e+3]},[],{}] ,\"e\":{},\"n\":null,\"u\":\"\\u00e9\\n\"}";

    #[test]
    fn select_reads_what_field_paths_read() {
        let value: Value = serde_json::from_str(TRICKY).unwrap();
        let mut paths = Vec::new();
        all_paths(&value, "", &mut paths);
        assert!(paths.len() > 30, "{paths:?}");
        let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
        agrees_with_field_path(TRICKY, &paths);
        // All at once and one by one give the same answers.
        for path in &paths {
            agrees_with_field_path(TRICKY, &[path]);
        }
        agrees_with_field_path(
            r#"[{"a": 1}, {"a": 2}]"#,
            &["1.a", "0", "+1.a", "01.a", "2", "x"],
        );
        agrees_with_field_path("[]", &["0"]);
        agrees_with_field_path("{}", &["a", "a.b"]);
        agrees_with_field_path("\"text\"", &["a", "0"]);
    }

    #[test]
    fn escaped_keys_and_repeated_keys_match_the_parsed_object() {
        // `\u0069d` is "id"; a repeated key keeps its last value, as a parsed object does.
        agrees_with_field_path(
            r#"{"\u0069d": "a\"b", "x": 1, "x": 2, "q\"": 3}"#,
            &["id", "x", "q\""],
        );
    }

    #[test]
    fn broken_text_reads_as_missing_without_panicking() {
        let paths: [&[&str]; 3] = [&["_info", "dateEntered"], &["list", "1", "b", "3"], &["u"]];
        for end in 0..TRICKY.len() {
            if let Some(cut) = TRICKY.get(..end) {
                let _ = select(cut, &paths);
            }
        }
        assert_eq!(select("{\"a\" 1}", &[&["a"]]), [None]);
        assert_eq!(select("[1 2]", &[&["1"]]), [None]);
    }

    #[test]
    fn ids_read_as_text_from_strings_and_numbers() {
        assert_eq!(id_text(r#""C-17""#).as_deref(), Some("C-17"));
        assert_eq!(id_text(r#""a\u00e9\"""#).as_deref(), Some("aé\""));
        assert_eq!(id_text("17").as_deref(), Some("17"));
        assert_eq!(id_text("-3").as_deref(), Some("-3"));
        // As serde_json prints the number it parsed (what a `Value` record gave).
        assert_eq!(id_text("1.50").as_deref(), Some("1.5"));
        assert_eq!(id_text(r#""""#), None);
        assert_eq!(id_text("null"), None);
        assert_eq!(id_text("true"), None);
        assert_eq!(id_text("{\"id\": 1}"), None);
    }

    #[test]
    fn kinds_and_arrays() {
        assert_eq!(raw_kind("{}"), "an object");
        assert_eq!(raw_kind("[]"), "an array");
        assert_eq!(raw_kind("false"), "a boolean");
        assert_eq!(raw_kind("-0.5"), "a number");
        assert_eq!(scalar("[1]"), Scalar::Other("an array"));
        let items = array_items(r#"[ {"a": [1, 2]} , 3,"x"]"#).unwrap();
        let texts: Vec<&str> = items.iter().map(|r| r.get()).collect();
        assert_eq!(texts, [r#"{"a": [1, 2]}"#, "3", r#""x""#]);
        assert!(array_items(r#"{"a": []}"#).is_none());
    }
}
