//! Service-manager notifications (`sd_notify(3)`): readiness, reload, stop, status and watchdog.
//!
//! Every call is a no-op outside systemd (no `NOTIFY_SOCKET`), and a failed send is only logged:
//! the daemon's work never depends on the service manager hearing from it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sd_notify::NotifyState;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Talks to the service manager named by `NOTIFY_SOCKET`, if any.
#[derive(Clone, Debug)]
pub struct Notifier {
    active: bool,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` once. The variables are left
    /// set: pollerd notifies many times over its life, not just once at start-up.
    pub fn from_env() -> Notifier {
        let active = std::env::var_os("NOTIFY_SOCKET").is_some_and(|socket| !socket.is_empty());
        let watchdog = if active {
            watchdog_interval_from(
                std::env::var("WATCHDOG_USEC").ok().as_deref(),
                std::env::var("WATCHDOG_PID").ok().as_deref(),
                std::process::id(),
            )
        } else {
            None
        };
        Notifier { active, watchdog }
    }

    /// A notifier that never sends anything (e.g. for one-shot commands and tests).
    pub fn disabled() -> Notifier {
        Notifier {
            active: false,
            watchdog: None,
        }
    }

    pub fn is_active(&self) -> bool {
        self.active
    }

    /// `READY=1`: start-up (or a reload) is complete.
    pub fn ready(&self) {
        self.send(&[NotifyState::Ready]);
    }

    /// `RELOADING=1` with the `MONOTONIC_USEC=` timestamp systemd ≥ 253 requires to accept it.
    pub fn reloading(&self) {
        if !self.active {
            return;
        }
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&[NotifyState::Reloading, now]),
            Err(error) => {
                tracing::debug!(%error, "cannot read CLOCK_MONOTONIC for RELOADING=1");
                self.send(&[NotifyState::Reloading]);
            }
        }
    }

    /// `STOPPING=1`: shutdown has begun.
    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping]);
    }

    /// `STATUS=`: a one-line summary shown by `systemctl status`. Line breaks would end the
    /// field early, so they become spaces.
    pub fn status(&self, line: &str) {
        if !self.active {
            return;
        }
        let one_line = line.lines().collect::<Vec<_>>().join(" ");
        self.send(&[NotifyState::Status(&one_line)]);
    }

    /// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, as `sd_watchdog_enabled(3)`
    /// advises. `None` when no watchdog is configured, when `WATCHDOG_PID` names another
    /// process, or when this notifier is inactive.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Sends `WATCHDOG=1` every [`watchdog_interval`](Self::watchdog_interval) while `healthy()`
    /// holds, until `cancel` fires. Withholding pings when unhealthy lets systemd restart a
    /// daemon that is alive but stuck. `None` when there is no watchdog. Must be called from
    /// within a Tokio runtime.
    pub fn spawn_watchdog(
        &self,
        cancel: CancellationToken,
        healthy: impl Fn() -> bool + Send + 'static,
    ) -> Option<JoinHandle<()>> {
        let period = self.watchdog?;
        let notifier = self.clone();
        Some(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = cancel.cancelled() => break,
                    _ = ticks.tick() => {
                        if healthy() {
                            notifier.send(&[NotifyState::Watchdog]);
                        } else {
                            tracing::debug!("not healthy: withholding the watchdog ping");
                        }
                    }
                }
            }
        }))
    }

    fn send(&self, states: &[NotifyState]) {
        if !self.active {
            return;
        }
        // `false`: keep NOTIFY_SOCKET for the next notification.
        if let Err(error) = sd_notify::notify(false, states) {
            let what: Vec<String> = states.iter().map(ToString::to_string).collect();
            tracing::debug!(%error, states = ?what, "sd_notify failed");
        }
    }
}

/// The parts of the daemon whose progress the watchdog vouches for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The main loop: signals, reloads, status updates (it runs on the main thread).
    MainLoop,
    /// The poll scheduler: the runtime that runs the poll tasks and fires their timers. Beaten
    /// by a task of its own, so a daemon with no instance (nothing to poll) is alive too.
    Scheduler,
}

/// When each [`Part`] last showed progress, for the watchdog to judge. Cheap to clone; every
/// clone shares the same beats.
#[derive(Clone, Debug)]
pub struct Progress {
    inner: Arc<ProgressInner>,
}

#[derive(Debug)]
struct ProgressInner {
    origin: Instant,
    /// Longest silence of a part that still counts as progress.
    max_silence: Duration,
    /// Nanoseconds after `origin` of each part's last beat, plus one (0: never beaten).
    main_loop: AtomicU64,
    scheduler: AtomicU64,
}

impl Progress {
    /// Parts that beat every [`beat_period`](Self::beat_period) and are judged stuck after
    /// `max_silence` without a beat.
    pub fn new(max_silence: Duration) -> Progress {
        Progress {
            inner: Arc::new(ProgressInner {
                origin: Instant::now(),
                max_silence,
                main_loop: AtomicU64::new(0),
                scheduler: AtomicU64::new(0),
            }),
        }
    }

    /// How often a healthy part beats: a quarter of the silence allowed, so that a busy
    /// machine delaying a beat or two is not taken for a stuck daemon.
    pub fn beat_period(&self) -> Duration {
        (self.inner.max_silence / 4).max(Duration::from_millis(1))
    }

    /// `part` made progress now.
    pub fn beat(&self, part: Part) {
        self.beat_at(part, Instant::now());
    }

    /// `part` made progress at `at` (the clock is a parameter so tests can fake it).
    pub fn beat_at(&self, part: Part, at: Instant) {
        let since = at.saturating_duration_since(self.inner.origin);
        let stamp = u64::try_from(since.as_nanos())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        self.slot(part).fetch_max(stamp, Ordering::Relaxed);
    }

    /// Whether every part has beaten, and none has been silent longer than allowed.
    pub fn healthy(&self) -> bool {
        self.healthy_at(Instant::now())
    }

    /// [`healthy`](Self::healthy) as seen at `now`.
    pub fn healthy_at(&self, now: Instant) -> bool {
        [Part::MainLoop, Part::Scheduler].iter().all(|part| {
            self.silence(*part, now)
                .is_some_and(|s| s <= self.inner.max_silence)
        })
    }

    /// How long `part` has been silent at `now`; `None` if it never beat.
    fn silence(&self, part: Part, now: Instant) -> Option<Duration> {
        let stamp = self.slot(part).load(Ordering::Relaxed).checked_sub(1)?;
        let last = self.inner.origin.checked_add(Duration::from_nanos(stamp))?;
        Some(now.saturating_duration_since(last))
    }

    fn slot(&self, part: Part) -> &AtomicU64 {
        match part {
            Part::MainLoop => &self.inner.main_loop,
            Part::Scheduler => &self.inner.scheduler,
        }
    }

    /// Beats [`Part::Scheduler`] from a task on the current runtime, the one the poll tasks run
    /// on, until `cancel` fires: it stops beating when that runtime no longer runs tasks or
    /// fires timers. Must be called from within a Tokio runtime.
    pub fn spawn_scheduler_beat(&self, cancel: CancellationToken) -> JoinHandle<()> {
        let progress = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(progress.beat_period());
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = cancel.cancelled() => break,
                    _ = ticks.tick() => progress.beat(Part::Scheduler),
                }
            }
        })
    }
}

/// Half of `WATCHDOG_USEC`, unless `WATCHDOG_PID` is set and names another process (the
/// variables were then inherited from a parent and are not meant for us).
fn watchdog_interval_from(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok() != Some(own_pid) {
            return None;
        }
    }
    let usec: u64 = usec?.trim().parse().ok()?;
    if usec == 0 {
        return None;
    }
    Some(Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_interval_is_half_the_configured_timeout() {
        assert_eq!(
            watchdog_interval_from(Some("200000"), None, 42),
            Some(Duration::from_millis(100))
        );
        assert_eq!(
            watchdog_interval_from(Some("30000000"), Some("42"), 42),
            Some(Duration::from_secs(15))
        );
    }

    #[test]
    fn watchdog_meant_for_another_process_is_ignored() {
        assert_eq!(watchdog_interval_from(Some("200000"), Some("41"), 42), None);
        assert_eq!(
            watchdog_interval_from(Some("200000"), Some("nonsense"), 42),
            None
        );
    }

    #[test]
    fn no_or_unusable_watchdog_timeout_means_no_watchdog() {
        assert_eq!(watchdog_interval_from(None, None, 42), None);
        assert_eq!(watchdog_interval_from(None, Some("42"), 42), None);
        assert_eq!(watchdog_interval_from(Some("0"), None, 42), None);
        assert_eq!(watchdog_interval_from(Some("-5"), None, 42), None);
        assert_eq!(watchdog_interval_from(Some("2s"), None, 42), None);
    }

    fn progress_at(origin: Instant) -> (Progress, impl Fn(u64) -> Instant) {
        let progress = Progress::new(Duration::from_secs(10));
        (progress, move |secs| origin + Duration::from_secs(secs))
    }

    #[test]
    fn progress_is_unhealthy_until_both_parts_have_beaten() {
        let (progress, t) = progress_at(Instant::now());
        assert!(!progress.healthy_at(t(1)), "nothing beat yet");
        progress.beat_at(Part::MainLoop, t(1));
        assert!(
            !progress.healthy_at(t(2)),
            "the scheduler has not ticked yet"
        );
        progress.beat_at(Part::Scheduler, t(2));
        assert!(progress.healthy_at(t(3)));
    }

    #[test]
    fn progress_is_unhealthy_when_either_part_is_silent_too_long() {
        let (progress, t) = progress_at(Instant::now());
        progress.beat_at(Part::MainLoop, t(100));
        progress.beat_at(Part::Scheduler, t(100));
        assert!(progress.healthy_at(t(110)), "10 s of silence is allowed");
        assert!(!progress.healthy_at(t(111)));
        // The scheduler goes on, the main loop is stuck.
        progress.beat_at(Part::Scheduler, t(111));
        assert!(!progress.healthy_at(t(111)));
        // The main loop comes back, now the scheduler is the one that stalls.
        progress.beat_at(Part::MainLoop, t(112));
        assert!(progress.healthy_at(t(112)));
        assert!(progress.healthy_at(t(121)));
        assert!(!progress.healthy_at(t(122)));
        progress.beat_at(Part::MainLoop, t(122));
        assert!(
            !progress.healthy_at(t(122)),
            "the scheduler is still silent"
        );
    }

    #[test]
    fn a_late_beat_never_moves_progress_back_and_odd_clocks_do_not_panic() {
        let (progress, t) = progress_at(Instant::now());
        progress.beat_at(Part::MainLoop, t(50));
        progress.beat_at(Part::Scheduler, t(50));
        // A beat taken earlier but stored later (another thread) keeps the newer one.
        progress.beat_at(Part::MainLoop, t(5));
        assert!(progress.healthy_at(t(60)));
        // A "now" before the beats (a clock read before them) is no silence at all.
        assert!(progress.healthy_at(t(0)));
        // Before the tracker existed: clamped, not an overflow.
        let before = Instant::now().checked_sub(Duration::from_secs(1));
        if let Some(before) = before {
            progress.beat_at(Part::Scheduler, before);
        }
        assert!(progress.healthy_at(t(60)));
    }

    #[test]
    fn parts_beat_four_times_per_silence_allowed() {
        assert_eq!(
            Progress::new(Duration::from_secs(15)).beat_period(),
            Duration::from_millis(3750)
        );
        assert_eq!(
            Progress::new(Duration::ZERO).beat_period(),
            Duration::from_millis(1)
        );
    }

    #[test]
    fn a_disabled_notifier_has_no_watchdog_and_sends_nothing() {
        let notifier = Notifier::disabled();
        assert!(!notifier.is_active());
        assert_eq!(notifier.watchdog_interval(), None);
        // Nothing to observe but that these do not panic; the child-process test checks the wire.
        notifier.ready();
        notifier.reloading();
        notifier.status("x");
        notifier.stopping();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let handle =
            runtime.block_on(async { notifier.spawn_watchdog(CancellationToken::new(), || true) });
        assert!(handle.is_none());
    }
}
