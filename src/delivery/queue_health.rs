//! What each queue's worker last saw of its queue and its receiver, kept in memory for `status`
//! and the per-resource metrics (reading the store for it on every scrape would cost a query
//! per queue).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::store::{OutboxEntry, ResourceKey};

/// One queue, as its worker last saw it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueueHealth {
    /// Commit time of the notification at the head of the queue (the oldest queued); `None`
    /// once the worker found the queue empty.
    pub oldest_queued: Option<DateTime<Utc>>,
    /// When the head's first failed attempt ended, while it waits for a retry; cleared by a 2xx
    /// or when the head becomes a dead letter.
    pub failing_since: Option<DateTime<Utc>>,
    /// When the receiver last answered 2xx for this queue (since the daemon started).
    pub last_delivered: Option<DateTime<Utc>>,
    /// Notifications delivered, and their summed latency from commit (for an average).
    pub delivered: u64,
    pub latency_sum: Duration,
}

/// Every queue's [`QueueHealth`]. Cheap to clone; clones share it. One entry per queue the
/// daemon delivered to or tried to.
#[derive(Clone, Debug, Default)]
pub struct QueueHealthBoard {
    by_queue: Arc<Mutex<HashMap<ResourceKey, QueueHealth>>>,
}

impl QueueHealthBoard {
    /// What is known of `key`'s queue (all `None` when its worker never ran).
    pub fn of(&self, key: &ResourceKey) -> QueueHealth {
        self.lock().get(key).cloned().unwrap_or_default()
    }

    /// The worker is at `head` (`None`: the queue is empty). A head that failed before (a
    /// retry the daemon restarted in the middle of) counts as failing from now, if not known
    /// sooner.
    pub(super) fn head(&self, key: &ResourceKey, head: Option<&OutboxEntry>) {
        self.update(key, |q| {
            q.oldest_queued = head.map(|h| h.created_at);
            match head {
                Some(h) if h.attempts > 0 => {
                    q.failing_since.get_or_insert_with(Utc::now);
                }
                Some(_) => {}
                None => q.failing_since = None,
            }
        });
    }

    pub(super) fn delivered(&self, key: &ResourceKey, latency: Option<Duration>) {
        self.update(key, |q| {
            q.failing_since = None;
            q.last_delivered = Some(Utc::now());
            q.delivered = q.delivered.saturating_add(1);
            q.latency_sum = q.latency_sum.saturating_add(latency.unwrap_or_default());
        });
    }

    pub(super) fn failed(&self, key: &ResourceKey) {
        self.update(key, |q| {
            q.failing_since.get_or_insert_with(Utc::now);
        });
    }

    pub(super) fn dead_lettered(&self, key: &ResourceKey) {
        self.update(key, |q| q.failing_since = None);
    }

    fn update(&self, key: &ResourceKey, change: impl FnOnce(&mut QueueHealth)) {
        let mut by_queue = self.lock();
        match by_queue.get_mut(key) {
            Some(queue) => change(queue),
            None => change(by_queue.entry(key.clone()).or_default()),
        }
    }

    /// Plain data, whole after any panic.
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ResourceKey, QueueHealth>> {
        self.by_queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
