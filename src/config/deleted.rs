//! A resource's DELETED check (`deletedCheckInterval`, `deletedMaxFraction`, `idsUrl`): opt-in, so
//! an instance file written for Cloud Elements, which has no such check, sends no DELETED events.

use std::time::Duration;

use serde_json::{Map, Value};

use super::fields::Ctx;
use super::source::child_pointer;
use super::spec::{DeletedCheck, ElementKind};
use crate::template::UrlTemplate;

const MIN_INTERVAL: Duration = Duration::from_secs(1);
const MAX_INTERVAL: Duration = Duration::from_secs(30 * 24 * 3600);
const DEFAULT_MAX_FRACTION: f64 = 0.5;

/// The DELETED check of the resource object `obj` at `pointer`.
/// `Some(None)`: off. `None`: errors were reported.
pub fn deleted_check(
    cx: &mut Ctx,
    pointer: &str,
    obj: &Map<String, Value>,
    kind: ElementKind,
) -> Option<Option<DeletedCheck>> {
    let at = |key: &str| child_pointer(pointer, key);
    let Some(interval_value) = obj.get("deletedCheckInterval") else {
        for key in ["deletedMaxFraction", "idsUrl"] {
            if obj.contains_key(key) {
                cx.key_error(
                    &at(key),
                    format!("{key} has no effect without deletedCheckInterval"),
                );
                return None;
            }
        }
        return Some(None);
    };
    let interval = interval(cx, &at("deletedCheckInterval"), interval_value);
    let max_fraction = match obj.get("deletedMaxFraction") {
        Some(v) => cx.number(&at("deletedMaxFraction"), "deletedMaxFraction", v, 0.0, 1.0),
        None => Some(DEFAULT_MAX_FRACTION),
    };
    let ids_url = ids_url(cx, &at("idsUrl"), obj.get("idsUrl"), kind)?;
    Some(Some(DeletedCheck {
        interval: interval?,
        max_fraction: max_fraction?,
        ids_url,
    }))
}

fn interval(cx: &mut Ctx, pointer: &str, v: &Value) -> Option<Duration> {
    let text = cx.required_string(pointer, "deletedCheckInterval", v)?;
    let interval = match humantime::parse_duration(text.trim()) {
        Ok(d) => d,
        Err(e) => {
            cx.error(
                pointer,
                format!(
                    "invalid deletedCheckInterval {text:?} ({e}); write e.g. \"6h\" or \"30m\""
                ),
            );
            return None;
        }
    };
    if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&interval) {
        cx.error(
            pointer,
            format!("deletedCheckInterval must be between 1s and 30days, not {text:?}"),
        );
        return None;
    }
    Some(interval)
}

/// `idsUrl`: only the `http` element has one (ConnectWise asks its own URL for `fields=id`).
fn ids_url(
    cx: &mut Ctx,
    pointer: &str,
    value: Option<&Value>,
    kind: ElementKind,
) -> Option<Option<UrlTemplate>> {
    let Some(v) = value else {
        return Some(None);
    };
    if kind != ElementKind::Http {
        cx.key_error(
            pointer,
            format!(
                "idsUrl is for the http element; {} reconciles through its own url with fields=<idField>",
                kind.key()
            ),
        );
        return None;
    }
    let text = cx.required_string(pointer, "idsUrl", v)?;
    match UrlTemplate::parse(&text) {
        Ok(t) => Some(Some(t)),
        Err(e) => {
            cx.error(pointer, format!("invalid idsUrl template: {e}"));
            None
        }
    }
}
