//! The dead-letter summary kept in memory: per queue, how many letters and when they died, so
//! `status` never reads the letters (each holds its whole body). Built from one scan when the
//! store opens, then changed with every value written or removed under a dead-letter key, from
//! that value itself ([`codec::peek_dead`]), so it counts exactly what the scan would.

use std::collections::BTreeMap;

use chrono::DateTime;

use crate::store::codec::{self, DeadHead};
use crate::store::{DeadLetterSummary, QueueDeadLetters, ResourceKey};

#[derive(Debug, Default)]
pub(super) struct DeadIndex {
    /// Corrupt entries whose queue is unknown are under `None`.
    queues: BTreeMap<Option<ResourceKey>, QueueDead>,
    total: u64,
}

#[derive(Debug, Default)]
struct QueueDead {
    count: u64,
    corrupt: u64,
    /// Second → letters of the queue dead in it (to the second: letters dead-lettered together
    /// share an entry, so this stays far smaller than the letters). Undated ones are not here.
    seconds: BTreeMap<i64, u64>,
}

impl DeadIndex {
    /// Dead letters kept, corrupt entries included.
    pub(super) fn total(&self) -> u64 {
        self.total
    }

    /// Counts the value just stored under a dead-letter key.
    pub(super) fn add_value(&mut self, value: &[u8]) {
        self.add(codec::peek_dead(value));
    }

    /// Uncounts the value just removed from (or overwritten under) a dead-letter key.
    pub(super) fn remove_value(&mut self, value: &[u8]) {
        self.remove(codec::peek_dead(value));
    }

    fn add(&mut self, head: DeadHead) {
        let queue = self.queues.entry(head.key).or_default();
        queue.count += 1;
        queue.corrupt += u64::from(head.corrupt);
        if let Some(at) = head.at {
            *queue.seconds.entry(at.timestamp()).or_default() += 1;
        }
        self.total += 1;
    }

    fn remove(&mut self, head: DeadHead) {
        let Some(queue) = self.queues.get_mut(&head.key) else {
            return;
        };
        queue.count = queue.count.saturating_sub(1);
        queue.corrupt = queue.corrupt.saturating_sub(u64::from(head.corrupt));
        if let Some(second) = head.at.map(|at| at.timestamp())
            && let Some(letters) = queue.seconds.get_mut(&second)
        {
            *letters = letters.saturating_sub(1);
            if *letters == 0 {
                queue.seconds.remove(&second);
            }
        }
        if queue.count == 0 {
            self.queues.remove(&head.key);
        }
        self.total = self.total.saturating_sub(1);
    }

    pub(super) fn summary(&self) -> DeadLetterSummary {
        let at = |second: Option<(&i64, &u64)>| {
            second.and_then(|(second, _)| DateTime::from_timestamp(*second, 0))
        };
        DeadLetterSummary {
            queues: self
                .queues
                .iter()
                .map(|(key, queue)| QueueDeadLetters {
                    key: key.clone(),
                    count: queue.count,
                    corrupt: queue.corrupt,
                    oldest: at(queue.seconds.first_key_value()),
                    newest: at(queue.seconds.last_key_value()),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::store::DeadLetter;

    fn letter(id: &str, resource: &str, second: i64) -> Vec<u8> {
        codec::encode_dead(&DeadLetter {
            id: id.into(),
            key: ResourceKey::new("cw", resource),
            event_id: id.into(),
            body: vec![b'x'; 1000],
            created_at: Utc.timestamp_opt(second, 0).unwrap(),
            attempts: 3,
            last_status: Some(500),
            last_error: "HTTP 500".into(),
            dead_at: Utc.timestamp_opt(second, 250_000_000).unwrap(),
        })
    }

    #[test]
    fn counts_and_dates_follow_what_is_added_and_removed() {
        let mut index = DeadIndex::default();
        let (a, b, c) = (
            letter("a", "contacts", 100),
            letter("b", "contacts", 300),
            letter("c", "tickets", 200),
        );
        for value in [&a, &b, &c] {
            index.add_value(value);
        }
        index.add_value(b"\x04\x00\x00"); // unreadable, its queue too
        let summary = index.summary();
        assert_eq!(
            (summary.total(), summary.corrupt(), index.total()),
            (4, 1, 4)
        );
        assert_eq!(summary.queues[0].key, None);
        let contacts = summary.of(&ResourceKey::new("cw", "contacts")).unwrap();
        assert_eq!(contacts.count, 2);
        assert_eq!(contacts.oldest.map(|at| at.timestamp()), Some(100));
        assert_eq!(contacts.newest.map(|at| at.timestamp()), Some(300));
        assert_eq!(summary.newest().map(|at| at.timestamp()), Some(300));

        index.remove_value(&b);
        index.remove_value(&c);
        let summary = index.summary();
        let contacts = summary.of(&ResourceKey::new("cw", "contacts")).unwrap();
        assert_eq!((contacts.count, contacts.newest), (1, contacts.oldest));
        assert_eq!(summary.of(&ResourceKey::new("cw", "tickets")), None);
        assert_eq!(summary.total(), 2);
    }
}
