//! What the receiver got, read the way a receiver would: every request's payload parsed once
//! and kept, statuses re-read on each refresh (a delayed answer gets its status later).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use pollerd::sim::receiver::Receiver;
use serde_json::Value;

use crate::instant;

/// One notification as a receiver reads it.
#[derive(Debug, Clone)]
pub struct Notification {
    pub event_id: String,
    /// The resource (`raw.objectType`).
    pub resource: String,
    /// `createdDate`: when pollerd queued it.
    pub created: DateTime<Utc>,
    /// (objectId, updated date) of each event, in payload order.
    pub events: Vec<(String, DateTime<Utc>)>,
}

impl Notification {
    fn parse(body: &Value) -> Option<Notification> {
        let message = &body["message"];
        let events = message["events"]
            .as_array()?
            .iter()
            .map(|e| {
                Some((
                    e["objectId"].as_str()?.to_string(),
                    instant(e["date"].as_str()?),
                ))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Notification {
            event_id: body["id"].as_str()?.to_string(),
            resource: message["raw"]["objectType"].as_str()?.to_string(),
            created: instant(body["createdDate"].as_str()?),
            events,
        })
    }

    /// Creation order within a resource: pollerd queues notifications run after run, page
    /// after page, and within a page in ascending id order (keyset paging). `createdDate` is
    /// per page, so the first object id breaks ties inside a page.
    pub fn order_key(&self) -> (DateTime<Utc>, u64) {
        let first = self
            .events
            .first()
            .and_then(|(id, _)| id.parse().ok())
            .unwrap_or(0);
        (self.created, first)
    }
}

/// One request: its payload (when it is one) and the status the receiver answered.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub notification: Option<Notification>,
    pub status: Option<u16>,
}

impl Attempt {
    pub fn accepted(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

#[derive(Default)]
pub struct Ledger {
    attempts: Vec<Attempt>,
}

impl Ledger {
    /// Reads the receiver's records: new payloads are parsed, every status is re-read.
    pub fn refresh(&mut self, receiver: &Receiver) -> &[Attempt] {
        let requests = receiver.requests();
        for (index, request) in requests.iter().enumerate() {
            if index == self.attempts.len() {
                let notification = request
                    .try_json()
                    .ok()
                    .and_then(|body| Notification::parse(&body));
                self.attempts.push(Attempt {
                    notification,
                    status: request.status,
                });
            } else {
                self.attempts[index].status = request.status;
            }
        }
        &self.attempts
    }

    pub fn attempts(&self) -> &[Attempt] {
        &self.attempts
    }

    /// The notifications answered 2xx, in arrival order.
    pub fn accepted(&self) -> impl Iterator<Item = &Notification> {
        self.attempts
            .iter()
            .filter(|a| a.accepted())
            .filter_map(|a| a.notification.as_ref())
    }

    /// (resource, objectId, date) → the event ids of the accepted notifications that carried it.
    pub fn versions(&self) -> BTreeMap<(String, String, DateTime<Utc>), Vec<String>> {
        let mut map: BTreeMap<_, Vec<String>> = BTreeMap::new();
        for n in self.accepted() {
            for (object, date) in &n.events {
                map.entry((n.resource.clone(), object.clone(), *date))
                    .or_default()
                    .push(n.event_id.clone());
            }
        }
        map
    }

    /// Whether each of these versions of `resource` has been accepted.
    pub fn has_all(&self, resource: &str, versions: &[(String, DateTime<Utc>)]) -> bool {
        self.missing(resource, versions).is_empty()
    }

    /// Which of these versions of `resource` have not been accepted.
    pub fn missing<'a>(
        &self,
        resource: &str,
        versions: &'a [(String, DateTime<Utc>)],
    ) -> Vec<&'a (String, DateTime<Utc>)> {
        let got: BTreeSet<(&str, DateTime<Utc>)> = self
            .accepted()
            .filter(|n| n.resource == resource)
            .flat_map(|n| n.events.iter().map(|(o, d)| (o.as_str(), *d)))
            .collect();
        versions
            .iter()
            .filter(|(o, d)| !got.contains(&(o.as_str(), *d)))
            .collect()
    }

    /// Accepted deliveries beyond the first of each event id.
    pub fn duplicate_deliveries(&self) -> usize {
        let mut per_event: HashMap<&str, usize> = HashMap::new();
        for n in self.accepted() {
            *per_event.entry(n.event_id.as_str()).or_default() += 1;
        }
        per_event.values().map(|n| n - 1).sum()
    }

    /// Panics unless every version that arrived more than once came in the same notification
    /// (the same eventId): a re-send, never a second, different event.
    pub fn assert_duplicates_repeat_event_ids(&self) {
        for ((resource, object, date), ids) in self.versions() {
            assert!(
                ids.iter().all(|id| id == &ids[0]),
                "{resource} {object}@{date} arrived in different notifications {ids:?}: a duplicate must repeat its eventId"
            );
        }
    }

    /// Panics unless, per resource, no notification was attempted while one created before it
    /// had not been accepted yet (SPEC §6: a later one waits while an earlier one retries).
    pub fn assert_in_order_per_resource(&self) {
        // Per resource: every notification seen, in creation order, and how many of the first
        // ones have all been accepted.
        struct Queue {
            keys: Vec<(DateTime<Utc>, u64)>,
            accepted: Vec<bool>,
            prefix: usize,
        }
        let mut queues: HashMap<&str, Queue> = HashMap::new();
        for a in &self.attempts {
            if let Some(n) = &a.notification {
                let q = queues.entry(&n.resource).or_insert(Queue {
                    keys: Vec::new(),
                    accepted: Vec::new(),
                    prefix: 0,
                });
                q.keys.push(n.order_key());
            }
        }
        for q in queues.values_mut() {
            q.keys.sort();
            q.keys.dedup();
            q.accepted = vec![false; q.keys.len()];
        }
        for (index, a) in self.attempts.iter().enumerate() {
            let Some(n) = &a.notification else { continue };
            let q = queues
                .get_mut(n.resource.as_str())
                .expect("collected above");
            let position = q
                .keys
                .binary_search(&n.order_key())
                .expect("collected above");
            assert!(
                position <= q.prefix,
                "request #{} sent {} of {} (created {:?}) while the earlier one created {:?} was not yet accepted",
                index + 1,
                n.event_id,
                n.resource,
                n.order_key(),
                q.keys[q.prefix]
            );
            if a.accepted() {
                q.accepted[position] = true;
                while q.prefix < q.keys.len() && q.accepted[q.prefix] {
                    q.prefix += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod checks {
    use super::*;

    fn attempt(id: &str, created_s: i64, first: &str, status: Option<u16>) -> Attempt {
        let created = DateTime::from_timestamp(1_700_000_000 + created_s, 0).unwrap();
        Attempt {
            notification: Some(Notification {
                event_id: id.into(),
                resource: "contacts".into(),
                created,
                events: vec![(first.into(), created)],
            }),
            status,
        }
    }

    #[test]
    fn a_later_notification_may_go_once_the_earlier_one_is_accepted() {
        let ledger = Ledger {
            attempts: vec![
                attempt("a", 0, "1", Some(500)),
                attempt("a", 0, "1", None),
                attempt("a", 0, "1", Some(200)),
                attempt("b", 0, "7", Some(200)),
                attempt("c", 1, "2", Some(200)),
                attempt("b", 0, "7", Some(200)),
            ],
        };
        ledger.assert_in_order_per_resource();
        assert_eq!(ledger.duplicate_deliveries(), 1);
    }

    #[test]
    #[should_panic(expected = "was not yet accepted")]
    fn a_later_notification_sent_while_an_earlier_one_retries_is_caught() {
        let ledger = Ledger {
            attempts: vec![
                attempt("a", 0, "1", Some(500)),
                attempt("b", 1, "2", Some(200)),
                attempt("a", 0, "1", Some(200)),
            ],
        };
        ledger.assert_in_order_per_resource();
    }

    #[test]
    #[should_panic(expected = "different notifications")]
    fn a_version_in_two_different_notifications_is_caught() {
        let ledger = Ledger {
            attempts: vec![
                attempt("a", 0, "1", Some(200)),
                attempt("b", 0, "1", Some(200)),
            ],
        };
        ledger.assert_duplicates_repeat_event_ids();
    }
}
