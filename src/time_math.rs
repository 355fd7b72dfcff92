//! Time arithmetic on values from outside (settings, headers, provider clocks) that saturates
//! instead of panicking: `Instant + Duration` and `DateTime + TimeDelta` panic on overflow.

#![deny(clippy::arithmetic_side_effects)]

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};

/// How far "never" is: later than any wait pollerd means.
const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 86_400);

/// `Instant::now() + wait`, at most [`FAR_FUTURE`] ahead.
pub fn deadline_in(wait: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(wait.min(FAR_FUTURE))
        .or_else(|| now.checked_add(Duration::from_secs(86_400)))
        .unwrap_or(now)
}

/// [`deadline_in`] on tokio's clock (which tests may pause and advance).
pub fn tokio_deadline_in(wait: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(wait.min(FAR_FUTURE))
        .or_else(|| now.checked_add(Duration::from_secs(86_400)))
        .unwrap_or(now)
}

/// `at + wait` on the wall clock, saturating at chrono's largest date.
pub fn utc_after(at: DateTime<Utc>, wait: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(wait)
        .ok()
        .and_then(|wait| at.checked_add_signed(wait))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_waits_saturate() {
        assert!(deadline_in(Duration::MAX) > Instant::now() + Duration::from_secs(86_400));
        assert_eq!(
            utc_after(Utc::now(), Duration::MAX),
            DateTime::<Utc>::MAX_UTC
        );
        let later = utc_after(Utc::now(), Duration::from_secs(u64::MAX / 4));
        assert_eq!(later, DateTime::<Utc>::MAX_UTC);
        let now = Utc::now();
        assert_eq!(
            utc_after(now, Duration::from_secs(5)),
            now + TimeDelta::seconds(5)
        );
    }
}
