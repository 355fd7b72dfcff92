//! What a resource's reconcile (the DELETED check) observes. Emitted inside the resource's
//! [`super::poll_span`], so each line names the instance and resource.

use std::fmt::Display;

use crate::metrics::{EventType, Metrics, ReconcileOutcome};

const RECONCILE: &str = "pollerd::poller::reconcile";

/// A reconcile compared and committed: `deleted` DELETED events queued (none in a baseline).
pub struct ReconcileFinished {
    pub baseline: bool,
    pub seen: usize,
    pub known: usize,
    pub deleted: usize,
    pub notifications: usize,
}

impl ReconcileFinished {
    pub fn emit(self, metrics: Option<&Metrics>) {
        let r = &self;
        if r.baseline {
            tracing::info!(
                target: RECONCILE,
                "first reconcile: {} record(s) now known; later reconciles report the ones deleted",
                r.seen
            );
        } else if r.deleted > 0 {
            tracing::info!(
                target: RECONCILE,
                "{} DELETED event(s) in {} notification(s): known {}, seen {}",
                r.deleted,
                r.notifications,
                r.known,
                r.seen
            );
        } else {
            tracing::debug!(target: RECONCILE, "reconcile found nothing deleted ({} seen)", r.seen);
        }
        let Some(m) = metrics else { return };
        let outcome = match r.baseline {
            true => ReconcileOutcome::Baseline,
            false => ReconcileOutcome::Ok,
        };
        m.reconcile(outcome);
        m.events(EventType::Deleted, r.deleted as u64);
    }
}

/// The mass-delete guard stopped a reconcile: nothing was sent or changed.
pub struct MassDeleteRefused<'a> {
    pub instance: &'a str,
    pub resource: &'a str,
    pub would_delete: usize,
    pub known: usize,
    pub max_fraction: f64,
}

impl MassDeleteRefused<'_> {
    pub fn emit(self, metrics: Option<&Metrics>) {
        let r = &self;
        tracing::error!(
            target: RECONCILE,
            "reconcile would report {} of {} known record(s) as deleted, more than \
             deletedMaxFraction {} allows: nothing was sent. If the records really are gone, run \
             `pollerd reconcile {} --resource {} --allow-mass-delete` (add --dry-run to list them \
             first); if not, check the URL's filter and the API member's permissions",
            r.would_delete,
            r.known,
            r.max_fraction,
            r.instance,
            r.resource
        );
        if let Some(m) = metrics {
            m.reconcile(ReconcileOutcome::MassDeleteRefused);
        }
    }
}

/// A reconcile failed (a page, a record without an id, the store): nothing changed.
pub struct ReconcileFailed<'a> {
    pub error: &'a dyn Display,
}

impl ReconcileFailed<'_> {
    pub fn emit(self, metrics: Option<&Metrics>) {
        tracing::error!(
            target: RECONCILE,
            "reconcile failed, nothing reported: {}",
            self.error
        );
        if let Some(m) = metrics {
            m.reconcile(ReconcileOutcome::Error);
        }
    }
}
