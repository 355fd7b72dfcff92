//! CEQL `where` → ConnectWise `conditions`: arbitrary text translates or fails with an error
//! whose offset lies inside the input, never a panic.

use pollerd::ceql::where_to_conditions;

/// Panics when the input shows a bug; input that is not UTF-8 is skipped.
pub fn check(data: &[u8]) {
    let Ok(ceql) = std::str::from_utf8(data) else {
        return;
    };
    match where_to_conditions(ceql) {
        Ok(conditions) => assert!(!conditions.is_empty() || ceql.trim().is_empty()),
        Err(error) => assert!(
            error.offset <= ceql.len(),
            "offset {} past the end of {ceql:?}",
            error.offset
        ),
    }
}
