//! One queue's worker, as named steps: the next head that is due → its instance's route → one
//! attempt → how the outcome settles the head (ack, retry later, dead letter) → that settlement
//! recorded in the store.

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;

use super::Inner;
use tracing::Instrument as _;

use super::attempt::{self, Outcome, Route};
use crate::internal_events::{DeadLettered, DeliveryFailed, NotificationDelivered, delivery_span};
use crate::store::{OutboxEntry, ResourceKey, StoreError};

/// Most queue entries a worker reads from the store at once: one read serves several
/// deliveries when a queue has a backlog (on PostgreSQL each read is a query: 64 entries a
/// query instead of 16 took a third off the server's CPU per notification).
const PREFETCH_MAX_ENTRIES: usize = 64;
/// Most body bytes a worker reads ahead, so that large notifications are read fewer at a time.
/// A worker that has to wait for a delivery slot drops what it read ahead (see `attempt`), so
/// about `max_in_flight` workers hold this much, not every queue with a backlog.
const PREFETCH_MAX_BYTES: usize = 256 * 1024;

/// How many entries to read next, judged by the size of the last body delivered.
fn prefetch_limit(last_body_len: usize) -> usize {
    (PREFETCH_MAX_BYTES / last_body_len.max(1)).clamp(1, PREFETCH_MAX_ENTRIES)
}

/// Delivers one queue's notifications in order until it is empty or delivery stops, inside the
/// queue's [`delivery_span`].
///
/// Entries are read from the store a few at a time into `ahead`. Only this worker changes the
/// front of its queue (commits and replays append behind it), so what it read stays true while
/// its deliveries succeed; after anything else (a retry, a dead letter, a store error, a wait)
/// it drops what it read ahead and reads the queue again.
pub(super) async fn work_queue(inner: Arc<Inner>, key: ResourceKey) {
    let span = delivery_span(&key.instance, &key.resource);
    let worker = QueueWorker {
        inner,
        key,
        failing: false,
        store_trouble: 0,
        ahead: VecDeque::new(),
        read_limit: 1,
    };
    worker.run().instrument(span).await;
}

/// A queue's worker: what it read ahead, and what it logged of failures so far.
struct QueueWorker {
    inner: Arc<Inner>,
    key: ResourceKey,
    /// A head of this queue is being retried: its failure was logged, its recovery will be.
    failing: bool,
    /// Reads of the outbox that failed in a row.
    store_trouble: u32,
    /// Entries read from the front of the queue and not yet delivered.
    ahead: VecDeque<OutboxEntry>,
    /// How many entries the next read of the queue takes.
    read_limit: usize,
}

/// What reading ahead found.
enum ReadAhead {
    /// `ahead` holds the front of the queue.
    Ready,
    /// Nothing yet: read again.
    Again,
    /// The queue is empty, or delivery stops: the worker leaves.
    Leave,
}

impl QueueWorker {
    /// The worker's loop: next head → route → attempt → settle → record.
    async fn run(mut self) {
        while let Some(mut head) = self.next_head().await {
            let Some(route) = self.route() else {
                return;
            };
            // Retries send the very bytes the store holds; `Bytes` shares them without copying.
            let body = Bytes::from(std::mem::take(&mut head.body));
            self.read_limit = prefetch_limit(body.len());
            let Some(outcome) = self.attempt(&route, &head, &body).await else {
                return;
            };
            let settlement = settle(outcome, head.attempts, &self.inner.schedule);
            if self.record(&head, &route, settlement).await.is_break() {
                return;
            }
        }
    }

    /// The next entry, once it is due; `None` when the worker leaves (the queue is empty, or
    /// delivery stops).
    async fn next_head(&mut self) -> Option<OutboxEntry> {
        loop {
            if self.inner.stopping.is_cancelled() {
                return None;
            }
            match self.read_ahead().await {
                ReadAhead::Ready => {}
                ReadAhead::Again => continue,
                ReadAhead::Leave => return None,
            }
            let Some(head) = self.ahead.pop_front() else {
                continue;
            };
            self.inner.health.head(&self.key, Some(&head));
            self.store_works_again();
            let now = Utc::now();
            let Some(at) = head.next_attempt_at.filter(|at| *at > now) else {
                return Some(head);
            };
            self.ahead.clear();
            if pause(&self.inner, (at - now).to_std().unwrap_or_default()).await {
                return None;
            }
        }
    }

    /// Reads the front of the queue when nothing is left ahead; a store error is retried after
    /// a pause that grows with each failure in a row, up to 30 s.
    async fn read_ahead(&mut self) -> ReadAhead {
        if !self.ahead.is_empty() {
            return ReadAhead::Ready;
        }
        let read = self
            .inner
            .store
            .outbox_front_async(&self.key, self.read_limit);
        match read.await {
            Ok(front) if front.is_empty() => {
                self.inner.health.head(&self.key, None);
                if self.leave_if_empty() {
                    ReadAhead::Leave
                } else {
                    ReadAhead::Again
                }
            }
            Ok(front) => {
                self.ahead = front.into();
                ReadAhead::Ready
            }
            Err(e) => {
                self.store_trouble = self.store_trouble.saturating_add(1);
                // Once per outage, not once per retry: the store logs its own failure too.
                if self.store_trouble == 1 {
                    tracing::error!("reading the outbox: {e}; retrying");
                }
                let wait = Duration::from_secs(self.store_trouble.min(30) as u64);
                if pause(&self.inner, wait).await {
                    ReadAhead::Leave
                } else {
                    ReadAhead::Again
                }
            }
        }
    }

    /// Leaves the worker registry, if the queue is still empty while holding it: a commit that
    /// lands now will find no worker and start one.
    fn leave_if_empty(&self) -> bool {
        let store = &self.inner.store;
        self.inner.workers.leave_if(
            &self.key,
            || matches!(store.outbox_front(&self.key, 1), Ok(front) if front.is_empty()),
        )
    }

    fn store_works_again(&mut self) {
        if self.store_trouble > 0 {
            tracing::info!("reading the outbox works again");
            self.store_trouble = 0;
        }
    }

    /// Where the queue's instance sends; without a route (the instance is not loaded) the worker
    /// leaves the registry and the queue waits.
    fn route(&self) -> Option<Arc<Route>> {
        let key = &self.key;
        let route = self.inner.routes.get(&key.instance);
        if route.is_none() {
            tracing::warn!(
                "notifications are queued for an instance that is not loaded; they wait until it is"
            );
            self.inner.workers.leave(key);
        }
        route
    }

    /// One attempt, holding a permit of `max_in_flight`; `None` when delivery stops before it
    /// starts, or abandons it once the grace period is over.
    async fn attempt(
        &mut self,
        route: &Route,
        head: &OutboxEntry,
        body: &Bytes,
    ) -> Option<Outcome> {
        let permit = match self.inner.workers.try_permit() {
            Some(permit) => permit,
            None => {
                // Every slot is busy, so this queue waits: it does so holding only its head.
                // Thousands of queues waiting with what they read ahead would add up; it
                // reads one entry at a time until it finds a slot free at once again.
                self.ahead.clear();
                self.read_limit = 1;
                tokio::select! {
                    _ = self.inner.stopping.cancelled() => return None,
                    p = self.inner.workers.permit() => p,
                }
            }
        };
        let inner = &self.inner;
        let http = inner.clients.for_instance(&self.key.instance);
        let outcome = tokio::select! {
            _ = inner.abandon.cancelled() => return None,
            o = attempt::attempt(&http, route, head, body, Utc::now()) => o,
        };
        drop(permit);
        Some(outcome)
    }

    /// Records `settlement` in the store. After anything but a delivery, or when the store
    /// fails, what was read ahead is read again; a store failure is retried after a second.
    /// `Break` when delivery stops meanwhile.
    async fn record(
        &mut self,
        head: &OutboxEntry,
        route: &Route,
        settlement: Settlement,
    ) -> ControlFlow<()> {
        let delivered = matches!(settlement, Settlement::Ack);
        let result = self.store_settlement(head, route, settlement).await;
        if !delivered || result.is_err() {
            self.ahead.clear();
        }
        let Err(e) = result else {
            return ControlFlow::Continue(());
        };
        tracing::error!(
            event_id = %head.event_id,
            "recording the delivery outcome: {e}"
        );
        if pause(&self.inner, Duration::from_secs(1)).await {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    /// Emits the settlement (a failure is logged once until the queue recovers) and writes it
    /// to the store.
    async fn store_settlement(
        &mut self,
        head: &OutboxEntry,
        route: &Route,
        settlement: Settlement,
    ) -> Result<(), StoreError> {
        let (inner, key) = (&self.inner, &self.key);
        let metrics = inner.metrics.as_ref();
        let event_id = head.event_id.as_str();
        let write = match settlement {
            Settlement::Ack => {
                let latency = (Utc::now() - head.created_at).to_std().ok();
                inner.health.delivered(key, latency);
                NotificationDelivered {
                    event_id,
                    latency,
                    recovered: std::mem::take(&mut self.failing),
                }
                .emit(metrics);
                inner.store.ack_async(key, head.seq)
            }
            Settlement::Retry {
                failures,
                delay,
                error,
            } => {
                inner.health.failed(key);
                DeliveryFailed {
                    event_id,
                    url: &route.shown_url,
                    error: &error,
                    attempt: failures,
                    retry_in: delay,
                    repeated: std::mem::replace(&mut self.failing, true),
                }
                .emit(metrics);
                let at = crate::time_math::utc_after(Utc::now(), delay);
                inner
                    .store
                    .record_failure_async(key, head.seq, failures, at, &error)
            }
            Settlement::Dead {
                attempts,
                status,
                error,
                why,
            } => {
                inner.health.dead_lettered(key);
                DeadLettered {
                    event_id,
                    why: &why,
                }
                .emit(metrics);
                inner
                    .store
                    .dead_letter_async(key, head.seq, attempts, status, &error)
            }
        };
        write.await
    }
}

/// What becomes of a head after an attempt.
#[derive(Debug, PartialEq)]
enum Settlement {
    /// Delivered: it leaves the queue.
    Ack,
    /// Tried again after `delay`; the queue waits behind it.
    Retry {
        failures: u32,
        delay: Duration,
        error: String,
    },
    /// Moved to the dead letters, saying `why`: the queue moves on without it.
    Dead {
        attempts: u32,
        status: Option<u16>,
        error: String,
        why: String,
    },
}

/// How `outcome` settles a head that failed `attempts` times before, on the retry `schedule`.
fn settle(outcome: Outcome, attempts: u32, schedule: &[Duration]) -> Settlement {
    let failures = attempts.saturating_add(1);
    match outcome {
        Outcome::Delivered { .. } => Settlement::Ack,
        Outcome::Retry {
            status,
            error,
            retry_after,
        } => match attempt::next_delay(schedule, failures, retry_after) {
            Some(delay) => Settlement::Retry {
                failures,
                delay,
                error,
            },
            None => Settlement::Dead {
                attempts: failures,
                status,
                why: format!("delivery gave up after {failures} attempts ({error})"),
                error,
            },
        },
        Outcome::Reject { status, error } => Settlement::Dead {
            attempts: failures,
            status: Some(status),
            why: format!("the receiver rejected the notification ({error})"),
            error,
        },
    }
}

/// Sleeps, or returns true when delivery is stopping.
async fn pause(inner: &Inner, d: Duration) -> bool {
    tokio::select! {
        _ = inner.stopping.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEDULE: [Duration; 2] = [Duration::from_secs(10), Duration::from_secs(60)];

    fn unavailable() -> Outcome {
        Outcome::Retry {
            status: Some(503),
            error: "HTTP 503".into(),
            retry_after: None,
        }
    }

    #[test]
    fn a_2xx_is_acked() {
        let settled = settle(Outcome::Delivered { status: 204 }, 3, &SCHEDULE);
        assert_eq!(settled, Settlement::Ack);
    }

    #[test]
    fn a_5xx_is_retried_after_the_next_step_of_the_schedule() {
        let Settlement::Retry {
            failures,
            delay,
            error,
        } = settle(unavailable(), 1, &SCHEDULE)
        else {
            panic!("a 503 with a step left must be retried");
        };
        assert_eq!((failures, error.as_str()), (2, "HTTP 503"));
        // The second step, 60 s, with up to 20 % jitter on top.
        assert!(
            (Duration::from_secs(60)..=Duration::from_secs(72)).contains(&delay),
            "{delay:?}"
        );
    }

    #[test]
    fn a_5xx_once_the_schedule_is_spent_is_a_dead_letter_saying_so() {
        let settled = settle(unavailable(), 2, &SCHEDULE);
        assert_eq!(
            settled,
            Settlement::Dead {
                attempts: 3,
                status: Some(503),
                error: "HTTP 503".into(),
                why: "delivery gave up after 3 attempts (HTTP 503)".into(),
            }
        );
    }

    #[test]
    fn a_rejection_is_a_dead_letter_at_once() {
        let rejected = Outcome::Reject {
            status: 400,
            error: "HTTP 400: bad event".into(),
        };
        assert_eq!(
            settle(rejected, 0, &SCHEDULE),
            Settlement::Dead {
                attempts: 1,
                status: Some(400),
                error: "HTTP 400: bad event".into(),
                why: "the receiver rejected the notification (HTTP 400: bad event)".into(),
            }
        );
    }

    #[test]
    fn reads_ahead_fewer_entries_as_bodies_grow() {
        assert_eq!(prefetch_limit(0), PREFETCH_MAX_ENTRIES);
        assert_eq!(prefetch_limit(1024), PREFETCH_MAX_ENTRIES);
        assert_eq!(prefetch_limit(16 * 1024), 16);
        assert_eq!(prefetch_limit(100 * 1024), 2);
        assert_eq!(prefetch_limit(1 << 20), 1);
    }
}
