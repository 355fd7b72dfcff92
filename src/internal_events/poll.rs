//! What a resource's poll loop observes. Each is emitted inside its [`super::poll_span`].

use std::fmt::Display;
use std::time::Duration;

use crate::metrics::{EventType, Metrics, PollOutcome};

/// Where these lines have always been logged from: `RUST_LOG` directives name it.
const POLL_LOOP: &str = "pollerd::poller::schedule";
const SCAN: &str = "pollerd::poller::scan";
const RUN: &str = "pollerd::poller";
const CLIENT: &str = "pollerd::element::client";

/// A run completed: what it read and what it emitted (of a run's report).
pub struct PollFinished {
    /// The resource's first run, which only set its watermark.
    pub baseline: bool,
    pub records: usize,
    pub events: usize,
    /// Of `events`, the CREATED ones (the rest are UPDATED).
    pub created: usize,
    pub notifications: usize,
    /// Records without an id or with an unusable date.
    pub skipped: usize,
    pub took: Duration,
}

impl PollFinished {
    pub fn emit(self, metrics: Option<&Metrics>) {
        let r = self;
        if r.events > 0 {
            tracing::info!(
                target: POLL_LOOP,
                "{} event(s) in {} notification(s) from {} record(s)",
                r.events,
                r.notifications,
                r.records
            );
        }
        let Some(m) = metrics else { return };
        let outcome = if r.baseline {
            PollOutcome::Baseline
        } else {
            PollOutcome::Ok
        };
        m.poll(outcome, r.took);
        m.records_fetched(count(r.records));
        // Counted here rather than as each record is skipped: a failed run is retried and
        // would count its skipped records twice.
        m.records_skipped(count(r.skipped));
        m.events(EventType::Created, count(r.created));
        m.events(
            EventType::Updated,
            count(r.events.saturating_sub(r.created)),
        );
    }
}

/// A run failed. The error is logged once per change of its class (`repeated` says it is the
/// same class as the run before), so a provider that stays down does not fill the log.
pub struct PollFailed<'a> {
    pub error: &'a dyn Display,
    pub repeated: bool,
    pub took: Duration,
}

impl PollFailed<'_> {
    pub fn emit(self, metrics: Option<&Metrics>) {
        let e = self.error;
        if self.repeated {
            tracing::debug!(target: POLL_LOOP, "polling still failing: {e}");
        } else {
            tracing::error!(target: POLL_LOOP, "polling failed: {e}");
        }
        if let Some(m) = metrics {
            m.poll(PollOutcome::Error, self.took);
        }
    }
}

/// A run completed after runs that failed with `was` (the class of their error).
pub struct PollRecovered<'a> {
    pub was: &'a str,
}

impl PollRecovered<'_> {
    pub fn emit(self) {
        tracing::info!(target: POLL_LOOP, "polling recovered (was failing: {})", self.was);
    }
}

/// A run goes on after the last page a failed attempt committed (keyset paging).
pub struct RunResumed;

impl RunResumed {
    pub fn emit(self) {
        tracing::info!(
            target: RUN,
            "resuming the failed run after the last page it committed"
        );
    }
}

/// The provider's `Date` stopped being trusted (it is too far from the local clock).
pub struct ProviderClockUntrusted<'a> {
    /// What the provider's `Date` and the local clock said.
    pub date: &'a dyn Display,
}

impl ProviderClockUntrusted<'_> {
    pub fn emit(self) {
        tracing::warn!(
            target: POLL_LOOP,
            "{}; check the provider's clock or raise [polling] max_clock_skew",
            self.date
        );
    }
}

/// The provider's `Date` is trusted again.
pub struct ProviderClockTrusted;

impl ProviderClockTrusted {
    pub fn emit(self) {
        tracing::info!(
            target: POLL_LOOP,
            "the provider's Date header agrees with the local clock again"
        );
    }
}

/// A record that cannot become an event (no id, an unusable date). The metric counts it with
/// its run's [`PollFinished`].
pub struct RecordSkipped<'a> {
    /// 0-based, in its page.
    pub index: usize,
    /// 1-based.
    pub page: usize,
    pub why: &'a dyn Display,
}

impl RecordSkipped<'_> {
    pub fn emit(self) {
        tracing::warn!(
            target: SCAN,
            "skipped record {} of page {}: {}",
            self.index.saturating_add(1),
            self.page,
            self.why
        );
    }
}

/// A provider request of the resource waits for its tenant's request budget
/// (`[polling] tenant_requests_per_minute`), holding none of the tenant's or host's permits.
pub struct TenantThrottled {
    pub wait: Duration,
}

impl TenantThrottled {
    pub fn emit(self, metrics: Option<&Metrics>) {
        let wait = humantime::format_duration(Duration::from_millis(
            u64::try_from(self.wait.as_millis()).unwrap_or(u64::MAX),
        ));
        // A budget spent steadily makes short waits all the time: only the long ones are news.
        if self.wait >= Duration::from_secs(1) {
            tracing::info!(
                target: CLIENT,
                "waiting {wait} for the tenant's request budget ([polling] tenant_requests_per_minute)"
            );
        } else {
            tracing::debug!(target: CLIENT, "waiting {wait} for the tenant's request budget");
        }
        if let Some(m) = metrics {
            m.tenant_throttle_started();
        }
    }
}

/// The wait of a [`TenantThrottled`] is over (or was cut short: the poll loop stopped).
pub struct TenantThrottleEnded;

impl TenantThrottleEnded {
    pub fn emit(self, metrics: Option<&Metrics>) {
        if let Some(m) = metrics {
            m.tenant_throttle_ended();
        }
    }
}

/// Counts of one run fit a counter; saturating rather than wrapping on a platform where they
/// would not.
fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}
