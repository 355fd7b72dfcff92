//! Internal events, after Vector's: one type per thing an operator can observe (a poll run
//! finished, a delivery failed, a reload ended, …). Its `emit` writes the log line *and* updates
//! the metric, so the two cannot drift apart, and label values are enums
//! ([`crate::metrics::LabelValue`]), never text.
//!
//! Events that have a metric take `Option<&Metrics>` (`pollerd poll` and the tests run without a
//! registry); the few without one take nothing. Each logs under the target of the code that
//! observes it (`pollerd::poller::schedule`, `pollerd::delivery::queue`, …), so `RUST_LOG`
//! directives keep selecting what they selected.
//!
//! A poll loop and a delivery queue run inside a span ([`poll_span`], [`delivery_span`])
//! carrying `instance` and `resource`: every line logged inside shows them (`crate::logging`
//! makes sure in each output format), and no event repeats them by hand.
//!
//! *Never*: import the pipeline (`poller`, `delivery`, `supervisor`, `store`, …). Events hold
//! plain values, so the poller, delivery and the daemon emit them without an import cycle. (The
//! store cannot yet: `metrics` names `task_guard::TaskKind`, and `task_guard` the store's
//! `ResourceKey`; its set-aside lines are its own, their gauge read from its stats.)

mod delivery;
mod lease;
mod poll;
mod reconcile;
mod reload;
#[cfg(test)]
mod tests;

pub use delivery::{DeadLettered, DeliveryFailed, NotificationDelivered};
pub use lease::{LeaseClaimed, LeaseLost, LeaseReleased, ReleaseReason};
pub use poll::{
    PollFailed, PollFinished, PollRecovered, ProviderClockTrusted, ProviderClockUntrusted,
    RecordSkipped, RunResumed, TenantThrottleEnded, TenantThrottled,
};
pub use reconcile::{MassDeleteRefused, ReconcileFailed, ReconcileFinished};
pub use reload::ReloadFinished;

use crate::logging::CONTEXT_SPAN_TARGET;

/// The span one resource's poll loop runs in, for the task's life.
pub fn poll_span(instance: &str, resource: &str) -> tracing::Span {
    tracing::info_span!(
        target: CONTEXT_SPAN_TARGET,
        "poll",
        instance = %instance,
        resource = %resource
    )
}

/// The span one resource queue's delivery worker runs in, for the task's life (queues are per
/// resource).
pub fn delivery_span(instance: &str, resource: &str) -> tracing::Span {
    tracing::info_span!(
        target: CONTEXT_SPAN_TARGET,
        "delivery",
        instance = %instance,
        resource = %resource
    )
}
