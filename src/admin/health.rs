//! The health of a resource in one word, by the rules the alerts in
//! `packaging/monitoring/pollerd-alerts.yml` use, so that `pollerd status` and Prometheus agree:
//!
//! | word | rule (here, on [`HealthSignals`]) | alert (on the metrics exporting them) |
//! |---|---|---|
//! | `failing since T` | no run completed for 3 × the interval, counted from the start of the poll loop before the first success | `PollerdResourceNotPolled` |
//! | `backlog N (oldest T)` | the oldest queued notification is older than 30 min, or the receiver has failed the queue's head for 15 min | `PollerdOutboxBacklog`, `PollerdReceiverFailing` |
//! | `disabled` | the instance has `event.notification.enabled` false | — |
//! | `ok` | none of these | — |
//!
//! A failing resource that is also backlogged is shown as failing (polling comes first: a
//! resource that is not polled produces no backlog to speak of).

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use super::HealthSignals;

/// A resource is failing once no run completed for this many intervals.
pub const MISSED_INTERVALS: f64 = 3.0;
/// A queue is backlogged once its oldest notification is older than this.
pub const BACKLOG_AGE: Duration = Duration::from_secs(30 * 60);
/// A queue is backlogged once its receiver has failed it for this long.
pub const RECEIVER_FAILING_FOR: Duration = Duration::from_secs(15 * 60);

/// The health word of a resource.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Health {
    #[default]
    Ok,
    /// No run completed for 3 × the interval; `since` is the end of the first failed run (or,
    /// with no failed run, the last success or the start of polling).
    Failing {
        since: DateTime<Utc>,
    },
    /// `queued` notifications wait, the oldest committed at `oldest`.
    Backlog {
        queued: u64,
        oldest: Option<DateTime<Utc>>,
    },
    Disabled,
}

impl Health {
    /// Failing or backlogged: `pollerd status` exits 2.
    pub fn is_unhealthy(&self) -> bool {
        matches!(self, Health::Failing { .. } | Health::Backlog { .. })
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = |t: &DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
        match self {
            Health::Ok => f.write_str("ok"),
            Health::Failing { since } => write!(f, "failing since {}", at(since)),
            Health::Backlog {
                queued,
                oldest: Some(oldest),
            } => write!(f, "backlog {queued} (oldest {})", at(oldest)),
            Health::Backlog {
                queued,
                oldest: None,
            } => write!(f, "backlog {queued}"),
            Health::Disabled => f.write_str("disabled"),
        }
    }
}

/// The health of an enabled instance's resource at `now`, with `queued` notifications in its
/// queue.
pub fn judge(signals: &HealthSignals, queued: u64, now: DateTime<Utc>) -> Health {
    if let Some(since) = failing_since(signals, now) {
        return Health::Failing { since };
    }
    if backlogged(signals, now) {
        return Health::Backlog {
            queued,
            oldest: signals.oldest_queued,
        };
    }
    Health::Ok
}

/// `PollerdResourceNotPolled`: both the last success (none counts as the epoch) and the start of
/// polling are more than 3 intervals ago.
fn failing_since(s: &HealthSignals, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let allowed = s.interval_seconds * MISSED_INTERVALS;
    let older = |t: Option<DateTime<Utc>>| t.is_none_or(|t| seconds_between(t, now) > allowed);
    if !(older(s.last_success) && older(s.polling_since)) {
        return None;
    }
    s.failing_since
        .or(s.last_success)
        .or(s.polling_since)
        .or(Some(now))
}

/// `PollerdOutboxBacklog` or `PollerdReceiverFailing`.
fn backlogged(s: &HealthSignals, now: DateTime<Utc>) -> bool {
    let older_than = |t: Option<DateTime<Utc>>, d: Duration| {
        t.is_some_and(|t| seconds_between(t, now) > d.as_secs_f64())
    };
    older_than(s.oldest_queued, BACKLOG_AGE)
        || older_than(s.receiver_failing_since, RECEIVER_FAILING_FOR)
}

fn seconds_between(earlier: DateTime<Utc>, later: DateTime<Utc>) -> f64 {
    (later - earlier).num_milliseconds() as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("a test date")
    }

    fn polled_every_minute() -> HealthSignals {
        HealthSignals {
            interval_seconds: 60.0,
            polling_since: Some(at("2026-12-03T06:00:00Z")),
            ..HealthSignals::default()
        }
    }

    #[test]
    fn a_resource_is_failing_after_three_intervals_without_a_completed_run() {
        let mut s = polled_every_minute();
        assert_eq!(judge(&s, 0, at("2026-12-03T06:02:59Z")), Health::Ok);
        assert_eq!(
            judge(&s, 0, at("2026-12-03T06:03:01Z")).to_string(),
            "failing since 2026-12-03T06:00:00Z"
        );
        s.last_success = Some(at("2026-12-03T06:10:00Z"));
        s.failing_since = Some(at("2026-12-03T06:11:00Z"));
        assert_eq!(judge(&s, 0, at("2026-12-03T06:12:59Z")), Health::Ok);
        assert_eq!(
            judge(&s, 0, at("2026-12-03T06:13:01Z")).to_string(),
            "failing since 2026-12-03T06:11:00Z"
        );
    }

    #[test]
    fn a_queue_is_backlogged_after_30_minutes_or_a_receiver_failing_for_15() {
        let mut s = polled_every_minute();
        s.last_success = Some(at("2026-12-03T07:00:00Z"));
        s.oldest_queued = Some(at("2026-12-03T06:30:00Z"));
        assert_eq!(judge(&s, 4, at("2026-12-03T06:59:59Z")), Health::Ok);
        assert_eq!(
            judge(&s, 4, at("2026-12-03T07:00:01Z")).to_string(),
            "backlog 4 (oldest 2026-12-03T06:30:00Z)"
        );
        s.oldest_queued = Some(at("2026-12-03T06:55:00Z"));
        s.receiver_failing_since = Some(at("2026-12-03T06:45:00Z"));
        assert_eq!(judge(&s, 2, at("2026-12-03T06:59:59Z")), Health::Ok);
        assert!(judge(&s, 2, at("2026-12-03T07:00:01Z")).is_unhealthy());
    }

    #[test]
    fn the_health_words_read_back_from_json() {
        let words = [
            Health::Ok,
            Health::Failing {
                since: at("2026-12-03T06:00:00Z"),
            },
            Health::Backlog {
                queued: 3,
                oldest: None,
            },
            Health::Disabled,
        ];
        for word in words {
            let json = serde_json::to_string(&word).expect("serializes");
            assert_eq!(serde_json::from_str::<Health>(&json).expect(&json), word);
        }
    }
}
