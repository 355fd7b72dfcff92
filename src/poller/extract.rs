//! From a provider record to what the poller needs of it: id, dates, event type.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::notification::EventType;
use crate::config::{DateField, ResourceSpec};
use crate::element::id_text;

/// A record that can become an event.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub index: usize,
    pub object_id: String,
    pub updated: DateTime<Utc>,
    pub event_type: EventType,
}

/// Why a record was skipped (it never stops a poll).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    NoId,
    BadDate { field: String, reason: String },
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skip::NoId => write!(f, "no id"),
            Skip::BadDate { field, reason } => write!(f, "unusable {field}: {reason}"),
        }
    }
}

/// Reads id, updated and created dates and classifies the event (Cloud Elements' rule: CREATED
/// when created and updated dates are equal within the tolerance).
pub fn candidate(resource: &ResourceSpec, index: usize, record: &Value) -> Result<Candidate, Skip> {
    let object_id = resource
        .id_field
        .get(record)
        .and_then(id_text)
        .ok_or(Skip::NoId)?;
    let updated = read_date(&resource.updated, record)?;
    let event_type = match &resource.created {
        None => EventType::Updated,
        Some(created_field) => {
            let created = read_date(created_field, record)?;
            let gap = (updated - created).abs().to_std().unwrap_or_default();
            if gap <= resource.created_check_tolerance {
                EventType::Created
            } else {
                EventType::Updated
            }
        }
    };
    Ok(Candidate {
        index,
        object_id,
        updated,
        event_type,
    })
}

fn read_date(field: &DateField, record: &Value) -> Result<DateTime<Utc>, Skip> {
    let bad = |reason: String| Skip::BadDate {
        field: field.field.to_string(),
        reason,
    };
    let text = match field.field.get(record) {
        Some(Value::String(s)) => s.clone(),
        // Epoch formats often arrive as JSON numbers.
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Null) | None => return Err(bad("missing".into())),
        Some(other) => {
            return Err(bad(format!(
                "{} is not a date",
                crate::config::json_kind(other)
            )));
        }
    };
    field
        .pattern
        .parse(&text, &field.zone)
        .map_err(|e| bad(e.to_string()))
}
