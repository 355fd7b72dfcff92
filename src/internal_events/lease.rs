//! Leases of a node sharing a PostgreSQL store: claimed (a takeover when another node's had
//! expired), released, lost. Each line names the instance, its epoch and the leases now held.

use crate::metrics::{LeaseLossCause, Metrics};

/// Where the lease manager logs: `RUST_LOG` directives name it.
const LEASE: &str = "pollerd::daemon::lease";

/// This node claimed an instance's lease; it starts polling and delivering it.
pub struct LeaseClaimed<'a> {
    pub instance: &'a str,
    pub epoch: i64,
    /// The node whose lease had expired, for a takeover.
    pub expired_owner: Option<&'a str>,
    pub held: usize,
}

impl LeaseClaimed<'_> {
    pub fn emit(self, metrics: &Metrics) {
        match self.expired_owner {
            Some(owner) => {
                tracing::warn!(
                    target: LEASE,
                    instance = %self.instance,
                    "lease takeover: instance {} from node {owner}, whose lease expired (epoch {}, {} held)",
                    self.instance,
                    self.epoch,
                    self.held
                );
                metrics.lease_takeover();
            }
            None => tracing::info!(
                target: LEASE,
                instance = %self.instance,
                "lease claimed: instance {} (epoch {}, {} held)",
                self.instance,
                self.epoch,
                self.held
            ),
        }
        metrics.set_leases_held(self.held as u64);
    }
}

/// Why a node gave a lease up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReleaseReason {
    /// It held more than its share (a node joined).
    Rebalance,
    /// Its file is gone from this node.
    NoFile,
    /// The node is stopping.
    Stopping,
}

/// This node released an instance's lease after stopping it: another node may claim it now.
pub struct LeaseReleased<'a> {
    pub instance: &'a str,
    pub epoch: i64,
    pub reason: ReleaseReason,
    pub held: usize,
}

impl LeaseReleased<'_> {
    pub fn emit(self, metrics: &Metrics) {
        let why = match self.reason {
            ReleaseReason::Rebalance => "more than this node's share",
            ReleaseReason::NoFile => "its file is gone from this node",
            ReleaseReason::Stopping => "the node is stopping",
        };
        tracing::info!(
            target: LEASE,
            instance = %self.instance,
            "lease released: instance {} ({why}; epoch {}, {} held)",
            self.instance,
            self.epoch,
            self.held
        );
        metrics.set_leases_held(self.held as u64);
    }
}

/// This node lost an instance's lease without releasing it; it stops the instance at once.
pub struct LeaseLost<'a> {
    pub instance: &'a str,
    pub cause: LeaseLossCause,
    pub held: usize,
}

impl LeaseLost<'_> {
    pub fn emit(self, metrics: &Metrics) {
        let why = match self.cause {
            LeaseLossCause::Write => "a write was refused: another node holds it now",
            LeaseLossCause::Renewal => "the renewal found another node holding it",
            LeaseLossCause::Expired => {
                "not renewed within the lease TTL (PostgreSQL unreachable, or this node paused)"
            }
        };
        tracing::error!(
            target: LEASE,
            instance = %self.instance,
            "lease lost: instance {} ({why}); its polling and delivery stop here ({} held)",
            self.instance,
            self.held
        );
        metrics.lease_lost(self.cause);
        metrics.set_leases_held(self.held as u64);
    }
}
