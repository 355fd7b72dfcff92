//! What a resource queue's delivery worker observes. Each is emitted inside its
//! [`super::delivery_span`]; the notification's `event_id` is a field of its own.

use std::time::Duration;

use crate::metrics::{DeliveryOutcome, Metrics};

/// Where these lines have always been logged from: `RUST_LOG` directives name it.
const QUEUE: &str = "pollerd::delivery::queue";

/// A notification got a 2xx and left its queue. `recovered`: the queue was failing before.
pub struct NotificationDelivered<'a> {
    pub event_id: &'a str,
    /// From its commit; `None` when the clock went back meanwhile.
    pub latency: Option<Duration>,
    pub recovered: bool,
}

impl NotificationDelivered<'_> {
    pub fn emit(self, metrics: Option<&Metrics>) {
        if self.recovered {
            tracing::info!(target: QUEUE, event_id = %self.event_id, "delivery recovered");
        }
        if let Some(m) = metrics {
            m.delivery(DeliveryOutcome::Ok, self.latency);
        }
    }
}

/// An attempt failed and will be tried again after `retry_in`; the queue waits behind it. Logged
/// as a warning for the first failure of a run of them, then only at debug level until the
/// queue recovers.
pub struct DeliveryFailed<'a> {
    pub event_id: &'a str,
    /// The callback URL as `url_display` shows it.
    pub url: &'a str,
    pub error: &'a str,
    /// How many attempts of this notification failed, this one included.
    pub attempt: u32,
    pub retry_in: Duration,
    /// An earlier notification (or attempt) of this queue already failed, and was logged.
    pub repeated: bool,
}

impl DeliveryFailed<'_> {
    pub fn emit(self, metrics: Option<&Metrics>) {
        let (url, error, delay) = (self.url, self.error, self.retry_in);
        if self.repeated {
            tracing::debug!(
                target: QUEUE,
                event_id = %self.event_id,
                attempt = self.attempt,
                "delivery to {url} failed again ({error}); retrying in {delay:.0?}"
            );
        } else {
            tracing::warn!(
                target: QUEUE,
                event_id = %self.event_id,
                "delivery to {url} failed ({error}); retrying in {delay:.0?}, later notifications of this resource wait"
            );
        }
        if let Some(m) = metrics {
            m.delivery(DeliveryOutcome::Retry, None);
        }
    }
}

/// A notification was moved to the dead letters (rejected, or out of retries), saying `why`; the
/// queue moves on without it.
pub struct DeadLettered<'a> {
    pub event_id: &'a str,
    pub why: &'a str,
}

impl DeadLettered<'_> {
    pub fn emit(self, metrics: Option<&Metrics>) {
        let event_id = self.event_id;
        tracing::error!(
            target: QUEUE,
            event_id = %event_id,
            "{}; moved to dead letters (pollerd dead-letters replay {event_id})",
            self.why
        );
        if let Some(m) = metrics {
            m.delivery(DeliveryOutcome::Dead, None);
        }
    }
}
