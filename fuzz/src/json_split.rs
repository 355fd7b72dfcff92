//! Page splitting: `pollerd::element::raw::split_array` must accept exactly the bodies that
//! `serde_json::from_slice::<Vec<Box<RawValue>>>` accepts, split them into the same element
//! texts, and refuse the others with serde_json's message; `split_records` must give the same
//! records.

use pollerd::element::raw::{JsonErrorKind, split_array, split_records};
use serde_json::value::RawValue;

/// Panics when `data` shows a bug.
pub fn check(data: &[u8]) {
    let theirs = serde_json::from_slice::<Vec<Box<RawValue>>>(data);
    let ours = split_array(data);
    let shown = String::from_utf8_lossy(data);
    match (theirs, ours) {
        (Ok(values), Ok(split)) => {
            let expected: Vec<&str> = values.iter().map(|v| v.get()).collect();
            let got: Vec<&str> = split
                .elements
                .iter()
                .map(|range| &split.text[range.clone()])
                .collect();
            assert_eq!(got, expected, "elements of {shown:?}");
            let records = split_records(data).expect("split_array accepted it");
            assert!(
                records.iter().map(|r| r.get()).eq(expected.iter().copied()),
                "records of {shown:?}"
            );
        }
        (Err(theirs), Err(ours)) => {
            let starts_with_bracket = data
                .iter()
                .find(|b| !matches!(b, b' ' | b'\n' | b'\r' | b'\t'))
                .is_some_and(|b| *b == b'[');
            if starts_with_bracket {
                assert_eq!(ours.to_string(), theirs.to_string(), "error for {shown:?}");
            } else {
                assert_eq!(ours.kind, JsonErrorKind::NotAnArray, "{shown:?}");
            }
        }
        (Ok(_), Err(ours)) => panic!("serde_json accepts {shown:?}, split_array says {ours}"),
        (Err(theirs), Ok(_)) => {
            panic!("serde_json refuses {shown:?} ({theirs}), split_array accepts it")
        }
    }
}
