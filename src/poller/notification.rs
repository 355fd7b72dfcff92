//! The notification envelope receivers get (SPEC §5, Cloud Elements' shape), serialised once
//! into the exact bytes that are stored, signed and POSTed.

use chrono::{DateTime, SecondsFormat, Timelike, Utc};
use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::config::InstanceSpec;
use crate::object_id::ObjectId;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum EventType {
    Created,
    Updated,
    /// A known record that a complete reconcile scan no longer found ([`super::reconcile`]).
    Deleted,
}

/// One record that became an event.
#[derive(Debug, Clone)]
pub struct EventRecord<'a> {
    pub object_id: String,
    pub updated: DateTime<Utc>,
    pub event_type: EventType,
    /// The provider's JSON text of the record, written into `raw` byte for byte.
    pub record: &'a RawValue,
}

/// A stable id for a notification: the same events (instance, resource, object ids and their
/// dates) always give the same id, shaped like a UUID. A DELETED event also hashes its type, so it
/// never shares an id with an update stamped at the reconcile's start; CREATED and UPDATED do
/// not, so their ids stay what they have always been.
pub fn event_id(instance: &str, resource: &str, events: &[EventRecord<'_>]) -> String {
    let mut h = Sha256::new();
    for part in [instance, resource] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    for e in events {
        h.update((e.object_id.len() as u64).to_be_bytes());
        h.update(e.object_id.as_bytes());
        h.update(e.updated.timestamp_millis().to_be_bytes());
        if e.event_type == EventType::Deleted {
            h.update(b"DELETED");
        }
    }
    let d = h.finalize();
    let hex: String = d[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// RFC 3339 in UTC with `Z`, to the millisecond, and milliseconds only when there are some.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    let ms = t.timestamp_subsec_millis();
    let t = t.with_nanosecond(ms.saturating_mul(1_000_000)).unwrap_or(t);
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

#[derive(Serialize)]
struct Envelope<'a> {
    topic: String,
    action: &'static str,
    id: &'a str,
    #[serde(rename = "createdDate")]
    created_date: String,
    message: Message<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Message<'a> {
    element_key: &'static str,
    event_id: &'a str,
    instance_id: u64,
    #[serde(rename = "instance_id")]
    instance_id_snake: u64,
    instance_name: &'a str,
    instance_tags: &'a [String],
    raw: Raw<'a>,
    events: Vec<Event<'a>>,
}

/// `{"<objectType>": [records…], "pollDate": ms, "objectType": "<objectType>"}`
struct Raw<'a> {
    object_type: &'a str,
    records: Vec<&'a RawValue>,
    poll_date_ms: i64,
}

impl Serialize for Raw<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry(self.object_type, &self.records)?;
        m.serialize_entry("pollDate", &self.poll_date_ms)?;
        m.serialize_entry("objectType", self.object_type)?;
        m.end()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Event<'a> {
    date: String,
    element_key: &'static str,
    poll_date: String,
    event_type: EventType,
    hub_key: &'static str,
    object_id: &'a str,
    object_type: &'a str,
}

/// The body of one notification: `events` of one resource from one poll.
pub fn envelope(
    instance: &InstanceSpec,
    resource: &str,
    event_id: &str,
    events: &[EventRecord<'_>],
    poll_started: DateTime<Utc>,
    created: DateTime<Utc>,
) -> Vec<u8> {
    let element_key = instance.element.key();
    let hub_key = instance.element.hub_key();
    let poll_date = rfc3339(poll_started);
    let body = Envelope {
        topic: format!("instance-{}-{element_key}-events", instance.id),
        action: "create",
        id: event_id,
        created_date: rfc3339(created),
        message: Message {
            element_key,
            event_id,
            instance_id: instance.id,
            instance_id_snake: instance.id,
            instance_name: &instance.name,
            instance_tags: &instance.tags,
            raw: Raw {
                object_type: resource,
                records: events.iter().map(|e| e.record).collect(),
                poll_date_ms: poll_started.timestamp_millis(),
            },
            events: events
                .iter()
                .map(|e| Event {
                    date: rfc3339(e.updated),
                    element_key,
                    poll_date: poll_date.clone(),
                    event_type: e.event_type,
                    hub_key,
                    object_id: &e.object_id,
                    object_type: resource,
                })
                .collect(),
        },
    };
    // Sized up front: the records are most of the body, and growing by doubling copies them.
    let records: usize = events.iter().fold(0usize, |n, e| {
        n.saturating_add(e.record.get().len()).saturating_add(1)
    });
    let mut out = Vec::with_capacity(
        records
            .saturating_add(512)
            .saturating_add(events.len().saturating_mul(256)),
    );
    serde_json::to_writer(&mut out, &body).expect("serialising to memory cannot fail");
    out
}

/// What `raw.<objectType>` holds for a deleted record: only its id, under the resource's id field
/// (`{"id": 42}`; a dotted field nests: `{"_info": {"id": 42}}`).
pub fn deleted_record(id_field: &str, id: &ObjectId) -> Box<RawValue> {
    let value = id_field.rsplit('.').fold(
        id.to_json(),
        |inner, name| serde_json::json!({ name: inner }),
    );
    serde_json::value::to_raw_value(&value).expect("a JSON value always serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_stable_and_depend_on_content() {
        let r = RawValue::from_string(r#"{"id": 1}"#.to_string()).unwrap();
        let t = DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
            .unwrap()
            .to_utc();
        let ev = |id: &str, t| EventRecord {
            object_id: id.into(),
            updated: t,
            event_type: EventType::Created,
            record: &r,
        };
        let a = event_id("i", "contacts", &[ev("1", t)]);
        assert_eq!(a, event_id("i", "contacts", &[ev("1", t)]));
        assert_eq!(a.len(), 36);
        assert_ne!(a, event_id("i", "contacts", &[ev("2", t)]));
        assert_ne!(a, event_id("i", "companies", &[ev("1", t)]));
        assert_ne!(
            a,
            event_id(
                "i",
                "contacts",
                &[ev("1", t + chrono::Duration::seconds(1))]
            )
        );
    }

    #[test]
    fn a_deleted_record_holds_only_its_id_under_the_id_field() {
        let id = ObjectId::from_text("42");
        assert_eq!(deleted_record("id", &id).get(), r#"{"id":42}"#);
        assert_eq!(
            deleted_record("_info.id", &ObjectId::from_text("a7")).get(),
            r#"{"_info":{"id":"a7"}}"#
        );
    }

    #[test]
    fn a_deleted_event_never_shares_the_id_of_an_update_at_the_same_instant() {
        let r = RawValue::from_string(r#"{"id": 1}"#.to_string()).unwrap();
        let t = DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
            .unwrap()
            .to_utc();
        let ev = |event_type| EventRecord {
            object_id: "1".into(),
            updated: t,
            event_type,
            record: &r,
        };
        let updated = event_id("i", "contacts", &[ev(EventType::Updated)]);
        assert_eq!(
            updated,
            event_id("i", "contacts", &[ev(EventType::Created)])
        );
        assert_ne!(
            updated,
            event_id("i", "contacts", &[ev(EventType::Deleted)])
        );
    }
}
