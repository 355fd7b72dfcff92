//! The admin socket: JSON over HTTP/1.1 on a unix socket (SPEC §2, §8).
//!
//! The daemon implements [`AdminBackend`]; [`AdminServer`] serves it; the CLI calls the client
//! functions ([`get_status`], [`list_dead_letters`], [`replay_dead_letters`],
//! [`drop_dead_letters`]).
//!
//! Routes (all answers are JSON):
//!
//! | method and path                 | request body                      | answer                |
//! |---------------------------------|-----------------------------------|-----------------------|
//! | `GET /v1/status`                | —                                 | [`StatusReport`]      |
//! | `GET /v1/dead-letters`          | —                                 | `[DeadLetterView…]`   |
//! | `POST /v1/dead-letters/replay`  | `{"ids": ["…"]}` or `{"all": true}` | `{"count": N}`      |
//! | `POST /v1/dead-letters/drop`    | `{"ids": ["…"]}` or `{"all": true}` | `{"count": N}`      |
//! | `POST /v1/reconcile`            | [`ReconcileCommand`]              | `[ReconcileView…]`    |
//!
//! A request the server cannot make sense of answers 400, a backend failure (an unknown dead
//! letter id included) answers 500; both with `{"error": "…"}`. Dead-letter bodies never cross
//! the socket (they may be large), and no view holds a secret: the daemon only fills in names,
//! dates, counts and error texts.

mod client;
pub mod health;
mod server;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use self::client::{
    AdminClientError, drop_dead_letters, get_status, list_dead_letters, reconcile,
    replay_dead_letters,
};
pub use self::health::Health;
pub use self::server::{AdminServer, AdminStartError};

/// Path prefix of every route; bumped if the JSON shapes ever change incompatibly.
const API_PREFIX: &str = "/v1";

/// Implemented by the daemon; the admin server only calls it.
///
/// Calls run on a blocking thread, so an implementation may touch the store directly.
pub trait AdminBackend: Send + Sync + 'static {
    fn status(&self) -> StatusReport;
    fn dead_letters(&self) -> Result<Vec<DeadLetterView>, String>;
    /// `ids = None` → all. Returns how many were replayed; unknown ids are an error naming them.
    fn replay(&self, ids: Option<Vec<String>>) -> Result<usize, String>;
    /// `ids = None` → all. Returns how many were dropped; unknown ids are an error naming them.
    fn drop_dead_letters(&self, ids: Option<Vec<String>>) -> Result<usize, String>;
    /// Runs one reconcile of each resource the command names, through their poll loops, and
    /// waits for them (this may take as long as reading every record). A backend without poll
    /// loops (a test's) cannot.
    fn reconcile(&self, command: ReconcileCommand) -> Result<Vec<ReconcileView>, String> {
        Err(format!(
            "this admin backend cannot reconcile (instance {:?})",
            command.instance
        ))
    }
}

/// `pollerd reconcile INSTANCE [--resource R] [--dry-run] [--allow-mass-delete]`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ReconcileCommand {
    pub instance: String,
    /// Every resource of the instance with a DELETED check when `None`.
    #[serde(default)]
    pub resource: Option<String>,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub allow_mass_delete: bool,
}

/// What one resource's reconcile did.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ReconcileView {
    pub resource: String,
    /// `baseline`, `deleted`, `mass_delete_refused` or `error`.
    pub outcome: String,
    pub dry_run: bool,
    pub seen: usize,
    pub known: usize,
    /// The ids reported as deleted (or, in a dry run or when refused, that would be).
    pub deleted: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What `pollerd status` shows: the daemon and every loaded instance.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct StatusReport {
    pub version: String,
    pub pid: u32,
    pub started_at: DateTime<Utc>,
    pub instances: Vec<InstanceStatus>,
    /// Notifications waiting for delivery, all resources together.
    pub outbox_depth: u64,
    /// Dead letters kept, all resources together.
    pub dead_letters: u64,
    /// More on them, when there are any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_summary: Option<DeadLetterSummaryView>,
    pub last_reload: Option<ReloadStatus>,
    /// On a node sharing a PostgreSQL store: the live nodes and each instance's lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterStatus>,
}

/// The nodes sharing the store and who holds each instance, as the database has them.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct ClusterStatus {
    /// The node answering.
    pub node_id: String,
    /// Nodes whose heartbeat is younger than the lease TTL.
    pub nodes: Vec<NodeStatusView>,
    /// Every instance's lease, by name.
    pub leases: Vec<LeaseStatusView>,
    /// Why the rest is empty, when the database could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct NodeStatusView {
    pub node_id: String,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    /// Unexpired leases it holds.
    pub leases: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct LeaseStatusView {
    pub instance: String,
    /// `None` when free: released, or never claimed.
    pub owner: Option<String>,
    pub epoch: i64,
    pub expires_at: DateTime<Utc>,
}

/// The dead letters at a glance (`GET /v1/dead-letters` lists each).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct DeadLetterSummaryView {
    /// Of the dead letters, the corrupt entries (which can be dropped, not replayed).
    pub corrupt: u64,
    /// When the first and the last were dead-lettered, to the second.
    pub oldest: Option<DateTime<Utc>>,
    pub newest: Option<DateTime<Utc>>,
    /// Dead letters of queues no loaded resource has (a removed instance or resource, or a
    /// corrupt entry whose queue is unknown): counted in no status row.
    pub not_loaded: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct InstanceStatus {
    pub name: String,
    pub file: String,
    pub element: String,
    pub enabled: bool,
    pub resources: Vec<ResourceStatusView>,
    /// Last load error of the instance's file when the running version is an older good one.
    pub error: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ResourceStatusView {
    pub name: String,
    pub watermark: Option<DateTime<Utc>>,
    pub last_poll: Option<DateTime<Utc>>,
    pub next_poll: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub events_emitted: u64,
    pub outbox_depth: u64,
    pub dead_letters: u64,
    /// Running poll tasks for this resource: 1 for an enabled instance; anything else is a bug
    /// (two pollers would emit every event twice).
    pub pollers: u32,
    /// This resource's tasks that panicked (a bug) and were started again, since the daemon
    /// started.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub task_panics: Vec<TaskPanicView>,
    /// The DELETED check, for a resource with `deletedCheckInterval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconcile: Option<ReconcileStatusView>,
    /// Set while a request of the resource waits for its tenant's request budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttled: Option<ThrottleView>,
    /// What the health rules (and the alert rules) read; `#[serde(default)]` so that a newer
    /// `pollerd status` still reads an older daemon's report.
    #[serde(flatten)]
    pub signals: HealthSignals,
    /// The health word, from [`health::judge`] on `signals` when the report was made.
    #[serde(default)]
    pub health: Health,
    /// Runs and events since the poll loop started.
    #[serde(default)]
    pub counts: RunCountsView,
}

/// A request of a resource waiting for its tenant's limit.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ThrottleView {
    /// What it waits for: `tenant request budget` (`[polling] tenant_requests_per_minute`).
    pub reason: String,
    pub until: DateTime<Utc>,
    /// From when the report was made, rounded up.
    pub waiting_seconds: u64,
}

impl ThrottleView {
    /// What a budget wait ending at `until` shows at `now`.
    pub fn tenant_budget(until: DateTime<Utc>, now: DateTime<Utc>) -> ThrottleView {
        let left = until.signed_duration_since(now).num_milliseconds().max(0);
        ThrottleView {
            reason: "tenant request budget".to_string(),
            until,
            waiting_seconds: u64::try_from(left).unwrap_or(0).div_ceil(1000),
        }
    }
}

/// A resource's runs by outcome and events by type, since its poll loop started.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(default)]
pub struct RunCountsView {
    pub polls_ok: u64,
    pub polls_failed: u64,
    /// First runs, which only set the watermark.
    pub polls_baseline: u64,
    pub created: u64,
    pub updated: u64,
}

/// What the health of a resource is judged from: the same values the per-resource metrics
/// export and the alert rules read.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct HealthSignals {
    /// The instance's refresh interval, in seconds.
    pub interval_seconds: f64,
    /// When the resource's poll loop started (the instance was loaded or changed).
    pub polling_since: Option<DateTime<Utc>>,
    /// When a poll run last completed.
    pub last_success: Option<DateTime<Utc>>,
    /// Runs failed since the last that completed, and when the first of them ended.
    pub failed_polls: u64,
    pub failing_since: Option<DateTime<Utc>>,
    /// Commit time of the oldest queued notification of this resource.
    pub oldest_queued: Option<DateTime<Utc>>,
    /// When the receiver started failing this resource's queue (its head waits for a retry).
    pub receiver_failing_since: Option<DateTime<Utc>>,
    /// When the receiver last answered 2xx for this resource, since the daemon started.
    pub last_delivered: Option<DateTime<Utc>>,
}

/// A resource's reconciles at a glance.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct ReconcileStatusView {
    pub last: Option<DateTime<Utc>>,
    pub next: Option<DateTime<Utc>>,
    pub last_outcome: Option<String>,
    pub last_error: Option<String>,
    /// Set while the last reconcile was stopped by the mass-delete guard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mass_delete_refused: Option<MassDeleteView>,
    /// DELETED events reported since the daemon started.
    pub deleted_total: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct MassDeleteView {
    pub would_delete: usize,
    pub known: usize,
}

/// Panics of one task of a resource: `task` is "poll" (its poll task) or "delivery" (its
/// queue's delivery worker).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct TaskPanicView {
    pub task: String,
    pub panics: u64,
    pub last_at: DateTime<Utc>,
    pub last_message: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ReloadStatus {
    pub at: DateTime<Utc>,
    pub ok: bool,
    pub errors: Vec<String>,
}

/// A dead letter without its body.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct DeadLetterView {
    pub id: String,
    pub instance: String,
    pub resource: String,
    pub event_id: String,
    pub attempts: u32,
    pub last_status: Option<u16>,
    pub last_error: String,
    pub created_at: DateTime<Utc>,
    pub dead_at: DateTime<Utc>,
    /// Set for a corrupt entry (an outbox entry or dead letter that could not be read, moved
    /// aside): it can be dropped, not replayed. What is unknown of it is empty, and its dates
    /// are when it was found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrupt: Option<CorruptView>,
}

/// What is known of a corrupt entry besides its id.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CorruptView {
    /// Raw bytes kept in the store for inspection.
    pub size: u64,
    pub reason: String,
}

/// Body of the replay and drop routes: exactly one of `ids` (non-empty) or `all: true`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
struct DeadLetterSelection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ids: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    all: bool,
}

impl DeadLetterSelection {
    fn from_ids(ids: Option<Vec<String>>) -> DeadLetterSelection {
        match ids {
            Some(ids) => DeadLetterSelection {
                ids: Some(ids),
                all: false,
            },
            None => DeadLetterSelection {
                ids: None,
                all: true,
            },
        }
    }

    /// The backend's argument: `None` means every dead letter.
    fn into_ids(self) -> Result<Option<Vec<String>>, &'static str> {
        match (self.ids, self.all) {
            (Some(_), true) => Err("give either \"ids\" or \"all\": true, not both"),
            (Some(ids), false) if ids.is_empty() => Err("\"ids\" is empty"),
            (Some(ids), false) => Ok(Some(ids)),
            (None, true) => Ok(None),
            (None, false) => Err("give \"ids\": [...] or \"all\": true"),
        }
    }
}

/// Answer of the replay and drop routes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
struct CountAnswer {
    count: usize,
}

/// Answer of any refused request.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct ErrorAnswer {
    error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_needs_exactly_one_of_ids_or_all() {
        let ids = DeadLetterSelection {
            ids: Some(vec!["a".into()]),
            all: false,
        };
        assert_eq!(ids.into_ids(), Ok(Some(vec!["a".to_string()])));
        let all = DeadLetterSelection {
            ids: None,
            all: true,
        };
        assert_eq!(all.into_ids(), Ok(None));
        assert!(DeadLetterSelection::default().into_ids().is_err());
        let both = DeadLetterSelection {
            ids: Some(vec!["a".into()]),
            all: true,
        };
        assert!(both.into_ids().is_err());
        let empty = DeadLetterSelection {
            ids: Some(Vec::new()),
            all: false,
        };
        assert!(empty.into_ids().is_err());
    }

    #[test]
    fn selection_wire_form_is_ids_or_all() {
        let ids = serde_json::to_value(DeadLetterSelection::from_ids(Some(vec!["x".into()])))
            .expect("serializes");
        assert_eq!(ids, serde_json::json!({"ids": ["x"]}));
        let all = serde_json::to_value(DeadLetterSelection::from_ids(None)).expect("serializes");
        assert_eq!(all, serde_json::json!({"all": true}));
    }
}
