//! The store errors the sled engine's parts build from sled and body-log failures.

use crate::store::StoreError;

pub(super) fn engine(action: impl Into<String>, error: ::sled::Error) -> StoreError {
    StoreError::Engine {
        action: action.into(),
        reason: error.to_string(),
    }
}

pub(super) fn corrupt(action: impl Into<String>, reason: String) -> StoreError {
    StoreError::Corrupt {
        action: action.into(),
        reason,
    }
}

/// A body-log failure: damaged, cut short or missing data is corruption; anything else (a full
/// disk, an I/O error) is an engine failure, after which the store is reopened.
pub(super) fn body_error(action: impl Into<String>, error: std::io::Error) -> StoreError {
    match error.kind() {
        std::io::ErrorKind::InvalidData
        | std::io::ErrorKind::NotFound
        | std::io::ErrorKind::UnexpectedEof => corrupt(action, format!("body log: {error}")),
        _ => StoreError::Engine {
            action: action.into(),
            reason: format!("body log: {error}"),
        },
    }
}
