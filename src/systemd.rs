//! Service-manager notifications (`sd_notify(3)`): readiness, reload, stop, status and watchdog.
//!
//! Every call is a no-op outside systemd (no `NOTIFY_SOCKET`), and a failed send is only logged:
//! the daemon's work never depends on the service manager hearing from it.

use std::time::Duration;

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
