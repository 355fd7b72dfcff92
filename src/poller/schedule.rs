//! Running resources on their intervals: one task per resource, a global bound on polls at
//! once, a little jitter so a thousand instances do not poll in the same millisecond, and a
//! log line only when a resource's state changes (failing → recovered), not once per poll.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use tracing::Instrument as _;

use super::{PollError, PollShared, Resume, RunReport, run_resource};
use crate::config::{InstanceSpec, ResourceSpec};
use crate::element::Element;
use crate::internal_events::{
    PollFailed, PollFinished, PollRecovered, ProviderClockTrusted, ProviderClockUntrusted,
    poll_span,
};
use crate::store::ResourceKey;

/// What the daemon can tell about a resource (for `pollerd status`).
#[derive(Clone, Debug, Default)]
pub struct ResourceStatus {
    pub last_poll: Option<DateTime<Utc>>,
    pub next_poll: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_report: Option<RunReport>,
    pub events_emitted: u64,
    pub runs: u64,
}

pub type SharedStatus = Arc<Mutex<ResourceStatus>>;

/// The first run of a new or edited instance comes within this long, at a random point in it, so
/// that many starting together (a daemon start, a package upgrade) do not all ask at once.
const FIRST_RUN_WITHIN: Duration = Duration::from_millis(250);

/// A spread of up to a tenth of the interval (at most 5 s), different for every resource.
pub fn jitter(interval: Duration) -> Duration {
    random_below(interval.div_f64(10.0).min(Duration::from_secs(5)))
}

/// When the first run of a resource polled every `interval` comes: soon, spread over
/// [`FIRST_RUN_WITHIN`] (a tenth of the interval when that is shorter). Taking the smaller of a
/// jitter and 250 ms, as before, gave 250 ms almost every time: no spread at all.
fn first_run_delay(interval: Duration) -> Duration {
    random_below(interval.div_f64(10.0).min(FIRST_RUN_WITHIN))
}

fn random_below(max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    Duration::from_nanos(fastrand::u64(0..max.as_nanos() as u64))
}

/// Polls one resource until `cancel` fires, inside the resource's [`poll_span`]. Runs are never
/// overlapped: the next starts an interval after the previous one ended.
pub async fn poll_loop(
    shared: PollShared,
    instance: Arc<InstanceSpec>,
    element: Element,
    resource: ResourceSpec,
    status: SharedStatus,
    cancel: CancellationToken,
) {
    let span = poll_span(&instance.name, &resource.name);
    let key = ResourceKey::new(&instance.name, &resource.name);
    let _alive = AliveGuard::enter(&shared, key);
    let poll = ResourcePoll {
        shared,
        instance,
        element,
        resource,
        status,
        failing: None,
        clock_untrusted: false,
        resume: None,
    };
    poll.run(cancel).instrument(span).await;
}

/// One resource's poll loop, and what it remembers from one run to the next.
struct ResourcePoll {
    shared: PollShared,
    instance: Arc<InstanceSpec>,
    element: Element,
    resource: ResourceSpec,
    status: SharedStatus,
    /// The class of the error the last runs failed with: logged once, until they recover.
    failing: Option<String>,
    /// The provider's `Date` is not trusted: warned once, until it is again.
    clock_untrusted: bool,
    /// Where a failed run stopped, for the next attempt (see `Resume`).
    resume: Option<Resume>,
}

impl ResourcePoll {
    async fn run(mut self, cancel: CancellationToken) {
        let interval = self.instance.refresh_interval;
        let mut delay = first_run_delay(interval);
        loop {
            set_next(&self.status, delay);
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            let permit = tokio::select! {
                _ = cancel.cancelled() => return,
                p = self.shared.permits.clone().acquire_owned() => p.expect("never closed"),
            };
            // Stopping may cut a run between or inside page fetches: every commit is atomic,
            // and the watermark only moves when a run completes, so nothing is lost or doubled.
            let started = std::time::Instant::now();
            let run = run_resource(
                &self.shared,
                &self.instance,
                &self.element,
                &self.resource,
                &mut self.resume,
            );
            let result = tokio::select! {
                _ = cancel.cancelled() => return,
                r = run => r,
            };
            drop(permit);
            self.observe(&result, started.elapsed());
            self.record(result);
            delay = interval.saturating_add(jitter(interval));
        }
    }

    /// Emits what the run tells: its end, and a change of state (failing, recovered, the
    /// provider's clock trusted or not).
    fn observe(&mut self, result: &Result<RunReport, PollError>, took: Duration) {
        match result {
            Ok(report) => {
                self.warn_of_clock_changes(report);
                if let Some(class) = self.failing.take() {
                    PollRecovered { was: &class }.emit();
                }
                PollFinished {
                    baseline: report.baseline,
                    records: report.records,
                    events: report.events,
                    created: report.created,
                    notifications: report.notifications,
                    skipped: report.skipped,
                    took,
                }
                .emit(self.shared.metrics.as_ref());
            }
            Err(error) => {
                let class = error.class();
                let repeated = self.failing.as_deref() == Some(class.as_str());
                PollFailed {
                    error,
                    repeated,
                    took,
                }
                .emit(self.shared.metrics.as_ref());
                self.failing = Some(class);
            }
        }
    }

    /// One warning when a provider's `Date` stops being trusted, one line when it is again.
    fn warn_of_clock_changes(&mut self, report: &RunReport) {
        match (&report.untrusted_date, self.clock_untrusted) {
            (Some(date), false) => {
                ProviderClockUntrusted { date }.emit();
                self.clock_untrusted = true;
            }
            (None, true) => {
                ProviderClockTrusted.emit();
                self.clock_untrusted = false;
            }
            _ => {}
        }
    }

    /// What `status` shows of the run.
    fn record(&self, result: Result<RunReport, PollError>) {
        let mut s = self.status.lock().expect("status");
        s.last_poll = Some(Utc::now());
        s.runs = s.runs.saturating_add(1);
        match result {
            Ok(report) => {
                s.events_emitted = s.events_emitted.saturating_add(report.events as u64);
                s.last_error = None;
                s.last_report = Some(report);
            }
            Err(e) => s.last_error = Some(e.to_string()),
        }
    }
}

/// Counts this task in `active_pollers` while it lives.
struct AliveGuard {
    shared: PollShared,
    key: ResourceKey,
}

impl AliveGuard {
    fn enter(shared: &PollShared, key: ResourceKey) -> AliveGuard {
        {
            let mut active = shared.active_pollers.lock().expect("pollers");
            let n = active.entry(key.clone()).or_insert(0);
            *n = n.saturating_add(1);
        }
        AliveGuard {
            shared: shared.clone(),
            key,
        }
    }
}

impl Drop for AliveGuard {
    fn drop(&mut self) {
        let mut active = self.shared.active_pollers.lock().expect("pollers");
        if let Some(n) = active.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                active.remove(&self.key);
            }
        }
    }
}

fn set_next(status: &SharedStatus, delay: Duration) {
    let next = crate::time_math::utc_after(Utc::now(), delay);
    status.lock().expect("status").next_poll = Some(next);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_runs_are_spread_over_a_quarter_second() {
        let delays: Vec<Duration> = (0..200)
            .map(|_| first_run_delay(Duration::from_secs(900)))
            .collect();
        assert!(delays.iter().all(|d| *d < FIRST_RUN_WITHIN));
        // Spread, not all at one instant: 200 uniform draws all in one half would be a 2^-199
        // chance.
        let half = FIRST_RUN_WITHIN / 2;
        assert!(delays.iter().any(|d| *d < half) && delays.iter().any(|d| *d >= half));
        // A very short interval starts within a tenth of itself.
        assert!(first_run_delay(Duration::from_secs(1)) < Duration::from_millis(100));
    }
}
