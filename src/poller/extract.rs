//! From a provider record to what the poller needs of it: id, dates, event type.
//!
//! Records stay raw JSON text: only the id and date fields are read from each one, by one scan of
//! the record's top level (and of `_info`-style objects on a dotted path), never a full parse.

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;

use super::notification::EventType;
use crate::config::{DateField, ResourceSpec};
use crate::element::raw::{self, Scalar};

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

/// Reads candidates from the records of one resource; the field paths are split once.
pub struct Extractor<'r> {
    resource: &'r ResourceSpec,
    /// id, updated and (when configured) created, in that order.
    paths: Vec<Vec<&'r str>>,
}

impl<'r> Extractor<'r> {
    pub fn new(resource: &'r ResourceSpec) -> Extractor<'r> {
        let mut paths = vec![
            raw::segments(&resource.id_field),
            raw::segments(&resource.updated.field),
        ];
        if let Some(created) = &resource.created {
            paths.push(raw::segments(&created.field));
        }
        Extractor { resource, paths }
    }

    /// Reads id, updated and created dates and classifies the event (Cloud Elements' rule:
    /// CREATED when created and updated dates are equal within the tolerance).
    pub fn candidate(&self, index: usize, record: &RawValue) -> Result<Candidate, Skip> {
        let paths: Vec<&[&str]> = self.paths.iter().map(Vec::as_slice).collect();
        let fields = raw::select(record.get(), &paths);
        let object_id = fields[0].and_then(raw::id_text).ok_or(Skip::NoId)?;
        let updated = read_date(&self.resource.updated, fields[1])?;
        let event_type = match &self.resource.created {
            None => EventType::Updated,
            Some(created_field) => {
                let created = read_date(created_field, fields[2])?;
                let gap = updated
                    .signed_duration_since(created)
                    .abs()
                    .to_std()
                    .unwrap_or_default();
                if gap <= self.resource.created_check_tolerance {
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
}

fn read_date(field: &DateField, value: Option<&str>) -> Result<DateTime<Utc>, Skip> {
    let bad = |reason: String| Skip::BadDate {
        field: field.field.to_string(),
        reason,
    };
    let text = match value.map(raw::scalar) {
        Some(Scalar::Text(s)) => s,
        // Epoch formats often arrive as JSON numbers.
        Some(Scalar::Number(n)) => n,
        Some(Scalar::Null) | None => return Err(bad("missing".into())),
        Some(Scalar::Other(kind)) => return Err(bad(format!("{kind} is not a date"))),
    };
    field
        .pattern
        .parse(&text, &field.zone)
        .map_err(|e| bad(e.to_string()))
}
