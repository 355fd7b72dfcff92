//! Running resources on their intervals: one task per resource, a global bound on polls at
//! once, a little jitter so a thousand instances do not poll in the same millisecond, and a
//! log line only when a resource's state changes (failing → recovered), not once per poll.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use tracing::Instrument as _;

use super::reconcile::{
    ReconcileAsk, ReconcileOutcome, ReconcileReport, ReconcileRequest, reconcile_resource,
};
use super::{PollError, PollShared, Resume, RunReport, run_resource};
use crate::config::{InstanceSpec, ResourceSpec};
use crate::element::{Element, ThrottleWatch};
use crate::internal_events::{
    MassDeleteRefused, PollFailed, PollFinished, PollRecovered, ProviderClockTrusted,
    ProviderClockUntrusted, ReconcileFailed, ReconcileFinished, TenantThrottleEnded,
    TenantThrottled, poll_span,
};
use crate::store::ResourceKey;

/// What the daemon can tell about a resource (for `pollerd status` and the per-resource
/// metrics).
#[derive(Clone, Debug, Default)]
pub struct ResourceStatus {
    /// When its poll loop started: the health rules count from here until a run succeeds.
    pub started_at: Option<DateTime<Utc>>,
    pub last_poll: Option<DateTime<Utc>>,
    pub next_poll: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_report: Option<RunReport>,
    pub events_emitted: u64,
    pub runs: u64,
    /// When a run last completed (a baseline run included).
    pub last_success: Option<DateTime<Utc>>,
    /// Runs failed since the last that completed.
    pub failed_in_a_row: u64,
    /// When the first of those failed runs ended.
    pub failing_since: Option<DateTime<Utc>>,
    /// Runs by how they ended, and events by type, since the loop started.
    pub counts: RunCounts,
    /// The DELETED check, when the resource has one.
    pub reconcile: Option<ReconcileStatus>,
    /// Until when a request of the resource waits for its tenant's request budget, while one
    /// does.
    pub throttled_until: Option<DateTime<Utc>>,
}

/// What `pollerd status` shows of a resource's reconciles.
#[derive(Clone, Debug, Default)]
pub struct ReconcileStatus {
    pub last: Option<DateTime<Utc>>,
    pub next: Option<DateTime<Utc>>,
    /// What the last one did, in words (`3 deleted`, `first: 1000 known`, …).
    pub last_outcome: Option<String>,
    pub last_error: Option<String>,
    /// The last reconcile was stopped by the mass-delete guard: (would delete, known).
    pub mass_delete_refused: Option<(usize, usize)>,
    pub deleted_total: u64,
}

/// What a resource's runs produced since its poll loop started (the per-resource counters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunCounts {
    pub ok: u64,
    pub error: u64,
    pub baseline: u64,
    pub created: u64,
    pub updated: u64,
}

impl ResourceStatus {
    /// The status of a poll loop starting now.
    pub fn starting_now() -> ResourceStatus {
        ResourceStatus {
            started_at: Some(Utc::now()),
            ..ResourceStatus::default()
        }
    }
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

/// Polls one resource until `cancel` fires. Runs are never overlapped: the next starts an
/// interval after the previous one ended. Each run and reconcile (and what is logged of it) runs
/// in a [`poll_span`] of its own, made when it starts: a span held for the loop's life cost
/// ~700 bytes per resource (the registry's slot and the fields formatted for the log), idle
/// nearly all the time.
///
/// Not an `async fn`: the loop is built here and only its own future is returned, so the task
/// does not also keep these arguments (ten thousand resources wait in such futures at once).
pub fn poll_loop(
    mut shared: PollShared,
    instance: Arc<InstanceSpec>,
    element: Element,
    resource: Arc<ResourceSpec>,
    status: SharedStatus,
    cancel: CancellationToken,
) -> impl Future<Output = ()> + Send + 'static {
    let throttle = Arc::new(ThrottleShown {
        status: status.clone(),
        metrics: shared.metrics.clone(),
        slot: PollSlot::of(&shared.permits),
    });
    shared.client = shared.client.watched_by(throttle.clone());
    let key = ResourceKey::new(&instance.name, &resource.name);
    let alive = AliveGuard::enter(&shared, key.clone());
    let reconciling = Reconciling::start(&shared, &resource, key, &status);
    let mut poll = ResourcePoll {
        shared,
        instance,
        element,
        resource,
        status,
        failing: None,
        clock_untrusted: false,
        resume: None,
        reconciling,
        throttle,
        _alive: alive,
    };
    // `poll` is captured by the block and borrowed by `run`: held once. (An `async fn` taking
    // it by value would keep it twice, as its argument and as its local.)
    async move { poll.run(&cancel).await }
}

/// A resource's DELETED check while its poll loop runs: when the next reconcile is due, and the
/// reconciles `pollerd reconcile` asks for.
struct Reconciling {
    interval: Duration,
    next_at: tokio::time::Instant,
    asks: tokio::sync::mpsc::Receiver<ReconcileAsk>,
    _desk: DeskEntry,
}

impl Reconciling {
    /// `None` for a resource without a DELETED check, whose known ids (if the check was turned
    /// off) are dropped: turned on again, it starts over with a first reconcile.
    fn start(
        shared: &PollShared,
        resource: &ResourceSpec,
        key: ResourceKey,
        status: &SharedStatus,
    ) -> Option<Reconciling> {
        let Some(check) = &resource.deleted_check else {
            forget_known_ids(shared, key);
            return None;
        };
        let (sender, asks) = tokio::sync::mpsc::channel(4);
        let desk = DeskEntry::register(shared, key, sender);
        // The first at a random point of the interval, so a thousand instances started together
        // do not reconcile together.
        let first = random_below(check.interval);
        status.lock().expect("status").reconcile = Some(ReconcileStatus {
            next: Some(crate::time_math::utc_after(Utc::now(), first)),
            ..ReconcileStatus::default()
        });
        Some(Reconciling {
            interval: check.interval,
            next_at: crate::time_math::tokio_deadline_in(first),
            asks,
            _desk: desk,
        })
    }
}

fn forget_known_ids(shared: &PollShared, key: ResourceKey) {
    let store = shared.store.clone();
    tokio::task::spawn_blocking(move || match store.forget_known_ids(&key) {
        Ok(true) => tracing::info!(
            instance = %key.instance, resource = %key.resource,
            "deletedCheckInterval is off: the known ids of the resource were dropped"
        ),
        Ok(false) => {}
        Err(e) => tracing::warn!("cannot drop the known ids of {key}: {e}"),
    });
}

/// This loop's place in the [`super::reconcile::ReconcileDesk`], left when the loop ends (unless
/// a newer loop of the resource has taken it).
struct DeskEntry {
    desk: super::reconcile::ReconcileDesk,
    key: ResourceKey,
    sender: tokio::sync::mpsc::Sender<ReconcileAsk>,
}

impl DeskEntry {
    fn register(
        shared: &PollShared,
        key: ResourceKey,
        sender: tokio::sync::mpsc::Sender<ReconcileAsk>,
    ) -> DeskEntry {
        let desk = shared.reconcile_desk.clone();
        desk.lock()
            .expect("reconcile desk")
            .insert(key.clone(), sender.clone());
        DeskEntry { desk, key, sender }
    }
}

impl Drop for DeskEntry {
    fn drop(&mut self) {
        let mut desk = self.desk.lock().expect("reconcile desk");
        if desk
            .get(&self.key)
            .is_some_and(|s| s.same_channel(&self.sender))
        {
            desk.remove(&self.key);
        }
    }
}

/// One resource's poll loop, and what it remembers from one run to the next.
struct ResourcePoll {
    shared: PollShared,
    instance: Arc<InstanceSpec>,
    element: Element,
    resource: Arc<ResourceSpec>,
    status: SharedStatus,
    /// The class of the error the last runs failed with: logged once, until they recover.
    failing: Option<String>,
    /// The provider's `Date` is not trusted: warned once, until it is again.
    clock_untrusted: bool,
    /// Where a failed run stopped, for the next attempt (see `Resume`).
    resume: Option<Resume>,
    reconciling: Option<Reconciling>,
    /// Holds the resource's poll slot, which its client's waits for budget give up meanwhile.
    throttle: Arc<ThrottleShown>,
    /// Counts this loop among the resource's pollers while it lives.
    _alive: AliveGuard,
}

impl ResourcePoll {
    async fn run(&mut self, cancel: &CancellationToken) {
        let interval = self.instance.refresh_interval;
        let mut delay = first_run_delay(interval);
        loop {
            set_next(&self.status, delay);
            let poll_at = crate::time_math::tokio_deadline_in(delay);
            if !self.reconcile_until(poll_at, cancel).await {
                return;
            }
            let span = self.span();
            // Boxed: a run's state is large and lives only while it runs, so the loop, idle
            // between runs for nearly all its life, stays small (thousands of them wait at once).
            if !Box::pin(self.poll_once(cancel)).instrument(span).await {
                return;
            }
            delay = interval.saturating_add(jitter(interval));
        }
    }

    /// The span of one run or reconcile of this resource.
    fn span(&self) -> tracing::Span {
        poll_span(&self.instance.name, &self.resource.name)
    }

    /// One run under a poll slot, observed and recorded. False when cancelled.
    async fn poll_once(&mut self, cancel: &CancellationToken) -> bool {
        tokio::select! {
            _ = cancel.cancelled() => return false,
            () = self.throttle.slot.take() => {}
        };
        // Stopping may cut a run between or inside page fetches: every commit is atomic, and
        // the watermark only moves when a run completes, so nothing is lost or doubled.
        let started = std::time::Instant::now();
        let run = run_resource(
            &self.shared,
            &self.instance,
            &self.element,
            &self.resource,
            &mut self.resume,
        );
        let result = tokio::select! {
            _ = cancel.cancelled() => return false,
            r = run => r,
        };
        self.throttle.slot.give_up();
        self.observe(&result, started.elapsed());
        self.record(result);
        true
    }

    /// Waits until `poll_at`, running the reconciles that fall due or are asked for meanwhile
    /// (never beside a poll of the resource). False when cancelled.
    async fn reconcile_until(
        &mut self,
        poll_at: tokio::time::Instant,
        cancel: &CancellationToken,
    ) -> bool {
        loop {
            let due = self
                .reconciling
                .as_ref()
                .map(|r| r.next_at)
                .filter(|at| *at < poll_at);
            let asks = self.reconciling.as_mut().map(|r| &mut r.asks);
            tokio::select! {
                _ = cancel.cancelled() => return false,
                _ = tokio::time::sleep_until(due.unwrap_or(poll_at)) => {
                    if due.is_none() {
                        return true;
                    }
                    // Boxed, like the runs: rare, and large.
                    let span = self.span();
                    let reconcile = self.reconcile(ReconcileRequest::default(), None, cancel);
                    if !Box::pin(reconcile).instrument(span).await {
                        return false;
                    }
                }
                Some(ask) = next_ask(asks) => {
                    let span = self.span();
                    let reconcile = self.reconcile(ask.request, Some(ask.reply), cancel);
                    if !Box::pin(reconcile).instrument(span).await {
                        return false;
                    }
                }
            }
        }
    }

    /// One reconcile, under a poll permit; the next is due an interval after it ends. False when
    /// cancelled (a reconcile cut short commits nothing).
    async fn reconcile(
        &mut self,
        request: ReconcileRequest,
        reply: Option<tokio::sync::oneshot::Sender<Result<ReconcileReport, String>>>,
        cancel: &CancellationToken,
    ) -> bool {
        tokio::select! {
            _ = cancel.cancelled() => return false,
            () = self.throttle.slot.take() => {}
        };
        // Boxed, as a poll run is.
        let run = Box::pin(reconcile_resource(
            &self.shared,
            &self.instance,
            &self.element,
            &self.resource,
            request,
        ));
        let result = tokio::select! {
            _ = cancel.cancelled() => return false,
            r = run => r,
        };
        self.throttle.slot.give_up();
        self.observe_reconcile(&result, request);
        if let Some(reconciling) = self.reconciling.as_mut() {
            reconciling.next_at = crate::time_math::tokio_deadline_in(reconciling.interval);
            let next = crate::time_math::utc_after(Utc::now(), reconciling.interval);
            if let Some(r) = self.status.lock().expect("status").reconcile.as_mut() {
                r.next = Some(next);
            }
        }
        if let Some(reply) = reply {
            let _ = reply.send(result.map_err(|e| e.to_string()));
        }
        true
    }

    /// Emits and records what a reconcile did (a dry run only answers its caller).
    fn observe_reconcile(
        &self,
        result: &Result<ReconcileReport, PollError>,
        request: ReconcileRequest,
    ) {
        if request.dry_run {
            return;
        }
        let metrics = self.shared.metrics.as_ref();
        let mut status = self.status.lock().expect("status");
        let status = status
            .reconcile
            .get_or_insert_with(ReconcileStatus::default);
        status.last = Some(Utc::now());
        let report = match result {
            Ok(report) => report,
            Err(error) => {
                ReconcileFailed { error }.emit(metrics);
                status.last_error = Some(error.to_string());
                return;
            }
        };
        status.last_error = None;
        status.mass_delete_refused = None;
        match &report.outcome {
            ReconcileOutcome::Baseline => {
                status.last_outcome = Some(format!("first reconcile: {} known", report.seen));
                ReconcileFinished {
                    baseline: true,
                    seen: report.seen,
                    known: report.known,
                    deleted: 0,
                    notifications: 0,
                }
                .emit(metrics);
            }
            ReconcileOutcome::Deleted {
                deleted,
                notifications,
                ..
            } => {
                status.deleted_total = status.deleted_total.saturating_add(deleted.len() as u64);
                status.last_outcome = Some(format!(
                    "{} deleted of {} known",
                    deleted.len(),
                    report.known
                ));
                ReconcileFinished {
                    baseline: false,
                    seen: report.seen,
                    known: report.known,
                    deleted: deleted.len(),
                    notifications: *notifications,
                }
                .emit(metrics);
            }
            ReconcileOutcome::MassDeleteRefused { would_delete } => {
                status.mass_delete_refused = Some((*would_delete, report.known));
                status.last_outcome = Some(format!(
                    "refused: would delete {would_delete} of {} known",
                    report.known
                ));
                MassDeleteRefused {
                    instance: &self.instance.name,
                    resource: &self.resource.name,
                    would_delete: *would_delete,
                    known: report.known,
                    max_fraction: self
                        .resource
                        .deleted_check
                        .as_ref()
                        .map_or(super::reconcile::DEFAULT_MAX_FRACTION, |c| c.max_fraction),
                }
                .emit(metrics);
            }
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

    /// What `status` and the per-resource metrics show of the run.
    fn record(&self, result: Result<RunReport, PollError>) {
        let now = Utc::now();
        let mut s = self.status.lock().expect("status");
        s.last_poll = Some(now);
        s.runs = s.runs.saturating_add(1);
        match result {
            Ok(report) => {
                let events = report.events as u64;
                let created = report.created as u64;
                let counts = &mut s.counts;
                match report.baseline {
                    true => counts.baseline = counts.baseline.saturating_add(1),
                    false => counts.ok = counts.ok.saturating_add(1),
                }
                counts.created = counts.created.saturating_add(created);
                counts.updated = counts
                    .updated
                    .saturating_add(events.saturating_sub(created));
                s.events_emitted = s.events_emitted.saturating_add(events);
                s.last_error = None;
                s.last_success = Some(now);
                s.failed_in_a_row = 0;
                s.failing_since = None;
                s.last_report = Some(report);
            }
            Err(e) => {
                s.counts.error = s.counts.error.saturating_add(1);
                s.failed_in_a_row = s.failed_in_a_row.saturating_add(1);
                s.failing_since.get_or_insert(now);
                s.last_error = Some(e.to_string());
            }
        }
    }
}

/// Shows a resource's waits for its tenant's request budget in its status and the metrics, and
/// gives up its poll slot meanwhile: a tenant over its budget must not hold the slots
/// (`[polling] max_concurrent`) that other tenants' polls need.
struct ThrottleShown {
    status: SharedStatus,
    metrics: Option<crate::metrics::Metrics>,
    slot: PollSlot,
}

impl ThrottleWatch for ThrottleShown {
    fn waiting(&self, wait: Duration) {
        let until = crate::time_math::utc_after(Utc::now(), wait);
        self.status.lock().expect("status").throttled_until = Some(until);
        TenantThrottled { wait }.emit(self.metrics.as_ref());
        self.slot.give_up();
    }

    fn done(&self) {
        self.status.lock().expect("status").throttled_until = None;
        TenantThrottleEnded.emit(self.metrics.as_ref());
    }

    fn resume(&self) -> futures_util::future::BoxFuture<'_, ()> {
        Box::pin(self.slot.take())
    }
}

/// One of the `[polling] max_concurrent` slots, held by a resource's run or reconcile.
struct PollSlot {
    permits: Arc<tokio::sync::Semaphore>,
    held: Mutex<Option<tokio::sync::OwnedSemaphorePermit>>,
}

impl PollSlot {
    fn of(permits: &Arc<tokio::sync::Semaphore>) -> PollSlot {
        PollSlot {
            permits: permits.clone(),
            held: Mutex::new(None),
        }
    }

    /// Waits for a slot, unless one is held already.
    async fn take(&self) {
        if self.held.lock().expect("poll slot").is_some() {
            return;
        }
        let permit = self.permits.clone().acquire_owned().await;
        *self.held.lock().expect("poll slot") = Some(permit.expect("never closed"));
    }

    fn give_up(&self) {
        self.held.lock().expect("poll slot").take();
    }
}

/// Counts this task in `active_pollers` while it lives.
struct AliveGuard {
    active: Arc<std::sync::Mutex<std::collections::HashMap<ResourceKey, u32>>>,
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
            active: shared.active_pollers.clone(),
            key,
        }
    }
}

impl Drop for AliveGuard {
    fn drop(&mut self) {
        let mut active = self.active.lock().expect("pollers");
        if let Some(n) = active.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                active.remove(&self.key);
            }
        }
    }
}

/// The next reconcile asked for; never, for a resource without a DELETED check.
async fn next_ask(
    asks: Option<&mut tokio::sync::mpsc::Receiver<ReconcileAsk>>,
) -> Option<ReconcileAsk> {
    match asks {
        Some(asks) => asks.recv().await,
        None => std::future::pending().await,
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
