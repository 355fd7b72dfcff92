//! The daemon's answers on the admin socket: status from the supervisor's registry and the
//! store, dead letters from the store.

use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Utc};

use crate::admin::health;
use crate::admin::{
    AdminBackend, ClusterStatus, CorruptView, DeadLetterSummaryView, DeadLetterView, Health,
    HealthSignals, InstanceStatus, LeaseStatusView, MassDeleteView, NodeStatusView,
    ReconcileCommand, ReconcileStatusView, ReconcileView, ReloadStatus, ResourceStatusView,
    RunCountsView, StatusReport, TaskPanicView, ThrottleView,
};
use crate::delivery::{Deliverer, QueueHealth, QueueHealthBoard};
use crate::metrics::{CallbackSample, ResourceSample, Snapshot};
use crate::poller::PollShared;
use crate::poller::reconcile::{ReconcileAsk, ReconcileOutcome, ReconcileReport, ReconcileRequest};
use crate::poller::schedule::{ReconcileStatus, ResourceStatus};
use crate::store::{DeadLetterSummary, ResourceKey, Store, StoreError};
use crate::supervisor::InstanceView;

/// What the admin socket reads; the daemon's main loop keeps it current.
pub struct DaemonAdmin {
    pub started_at: DateTime<Utc>,
    pub registry: Arc<RwLock<Vec<InstanceView>>>,
    pub last_reload: Arc<Mutex<Option<ReloadStatus>>>,
    pub store: Arc<dyn Store>,
    pub shared: PollShared,
    pub deliverer: Deliverer,
    /// On a node sharing a PostgreSQL store: its leases.
    pub leases: Option<Arc<super::lease::Leases>>,
}

impl DaemonAdmin {
    fn task_panics(&self, key: &ResourceKey) -> Vec<TaskPanicView> {
        self.deliverer
            .task_panics()
            .of(key)
            .into_iter()
            .map(|p| TaskPanicView {
                task: p.kind.name().to_string(),
                panics: p.count,
                last_at: p.last_at,
                last_message: p.last_message,
            })
            .collect()
    }

    /// Every dead letter and every corrupt entry kept among them.
    fn rows(&self) -> Result<Vec<Row>, String> {
        let letters = self.store.dead_letters().map_err(|e| e.to_string())?;
        let corrupt = self.store.corrupt_entries().map_err(|e| e.to_string())?;
        let letters = letters.into_iter().map(|d| Row {
            id: d.id,
            key: Some(d.key),
            corrupt: None,
        });
        let corrupt = corrupt.into_iter().map(|c| Row {
            id: c.id,
            key: c.key,
            corrupt: Some(c.reason),
        });
        Ok(letters.chain(corrupt).collect())
    }

    /// Checks every id first so an unknown one changes nothing.
    fn select(&self, ids: Option<Vec<String>>) -> Result<Vec<Row>, String> {
        let all = self.rows()?;
        let Some(ids) = ids else {
            return Ok(all);
        };
        let unknown: Vec<&str> = ids
            .iter()
            .filter(|id| !all.iter().any(|row| &row.id == *id))
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            return Err(format!("no dead letter with id {}", unknown.join(", ")));
        }
        Ok(all
            .into_iter()
            .filter(|row| ids.contains(&row.id))
            .collect())
    }
}

impl DaemonAdmin {
    /// The per-instance and per-resource series of a scrape: the status rows of the enabled
    /// instances, and their queues' deliveries.
    pub fn metrics_snapshot(&self) -> Snapshot {
        // The rows only: not the store's totals or the cluster's leases, which `status` adds.
        let dead = self.store.dead_letter_summary().unwrap_or_default();
        let context = self.row_context(&dead);
        let instances = self.instance_statuses(&context);
        let (queues, now) = (&context.queues, context.now);
        let mut snapshot = Snapshot::default();
        for instance in instances.iter().filter(|i| i.enabled) {
            let mut callback = CallbackSample {
                instance: instance.name.clone(),
                ..CallbackSample::default()
            };
            for resource in &instance.resources {
                let queue = queues.of(&ResourceKey::new(&instance.name, &resource.name));
                add_queue(&mut callback, &queue);
                snapshot
                    .resources
                    .push(resource_sample(&instance.name, resource, now));
            }
            snapshot.callbacks.push(callback);
        }
        snapshot
    }
}

/// Unix seconds, 0 for never (what the alert rules expect).
fn unix_seconds(t: Option<DateTime<Utc>>) -> f64 {
    t.map_or(0.0, |t| t.timestamp_millis() as f64 / 1000.0)
}

fn seconds_since(t: DateTime<Utc>, now: DateTime<Utc>) -> f64 {
    ((now - t).num_milliseconds() as f64 / 1000.0).max(0.0)
}

fn resource_sample(instance: &str, r: &ResourceStatusView, now: DateTime<Utc>) -> ResourceSample {
    let s = &r.signals;
    ResourceSample {
        instance: instance.to_string(),
        resource: r.name.clone(),
        poll_interval_seconds: s.interval_seconds,
        poll_started_at: unix_seconds(s.polling_since),
        last_success_at: unix_seconds(s.last_success),
        failed_polls: s.failed_polls,
        watermark_lag_seconds: r.watermark.map(|w| seconds_since(w, now)),
        outbox_depth: r.outbox_depth,
        oldest_queued_age_seconds: s.oldest_queued.map_or(0.0, |t| seconds_since(t, now)),
        dead_letters: r.dead_letters,
        polls_ok: r.counts.polls_ok,
        polls_error: r.counts.polls_failed,
        polls_baseline: r.counts.polls_baseline,
        events_created: r.counts.created,
        events_updated: r.counts.updated,
        events_deleted: r.reconcile.as_ref().map_or(0, |c| c.deleted_total),
    }
}

/// One more queue of the instance in its callback's sample: the latest 2xx, the earliest
/// failing head, the sums.
fn add_queue(callback: &mut CallbackSample, queue: &QueueHealth) {
    let c = callback;
    c.last_success_at = c.last_success_at.max(unix_seconds(queue.last_delivered));
    if let Some(since) = queue.failing_since {
        let since = unix_seconds(Some(since));
        c.failing_since = match c.failing_since > 0.0 {
            true => c.failing_since.min(since),
            false => since,
        };
    }
    c.delivered = c.delivered.saturating_add(queue.delivered);
    c.latency_sum_seconds += queue.latency_sum.as_secs_f64();
}

fn reconcile_view(s: &ReconcileStatus) -> ReconcileStatusView {
    ReconcileStatusView {
        last: s.last,
        next: s.next,
        last_outcome: s.last_outcome.clone(),
        last_error: s.last_error.clone(),
        mass_delete_refused: s
            .mass_delete_refused
            .map(|(would_delete, known)| MassDeleteView {
                would_delete,
                known,
            }),
        deleted_total: s.deleted_total,
    }
}

impl DaemonAdmin {
    /// Why `instance` does not run on this node: not loaded, or (on a shared store) another
    /// node holds its lease, named so the operator asks that one.
    fn not_running_here(&self, instance: &str) -> String {
        let owner = self.leases.as_deref().and_then(|leases| {
            let view = leases.store().cluster(leases.ttl()).ok()?;
            let lease = view.leases.into_iter().find(|l| l.instance == instance)?;
            Some((leases.node_id().to_string(), lease.owner))
        });
        match owner {
            Some((here, Some(owner))) if owner != here => format!(
                "instance {instance:?} runs on node {owner}, which holds its lease (this is node {here}): ask that node"
            ),
            Some((here, _)) => format!(
                "instance {instance:?} does not run on node {here}: no node holds its lease now"
            ),
            None => format!("no instance {instance:?} is loaded"),
        }
    }

    /// The running resources a reconcile command names, with where to ask each; an error names
    /// what is not there.
    fn reconcile_targets(
        &self,
        command: &ReconcileCommand,
    ) -> Result<Vec<(String, tokio::sync::mpsc::Sender<ReconcileAsk>)>, String> {
        let registry = self.registry.read().expect("registry");
        let Some(view) = registry.iter().find(|v| v.spec.name == command.instance) else {
            return Err(self.not_running_here(&command.instance));
        };
        let checked: Vec<&str> = view
            .spec
            .resources
            .iter()
            .filter(|r| r.deleted_check.is_some())
            .map(|r| r.name.as_str())
            .filter(|name| {
                command
                    .resource
                    .as_deref()
                    .is_none_or(|wanted| wanted == *name)
            })
            .collect();
        if checked.is_empty() {
            return Err(match &command.resource {
                Some(r) if view.spec.resource(r).is_none() => {
                    format!("instance {:?} has no resource {r:?}", command.instance)
                }
                Some(r) => format!(
                    "resource {r:?} of instance {:?} has no deletedCheckInterval",
                    command.instance
                ),
                None => format!(
                    "no resource of instance {:?} has a deletedCheckInterval",
                    command.instance
                ),
            });
        }
        let desk = self.shared.reconcile_desk.lock().expect("reconcile desk");
        checked
            .into_iter()
            .map(|name| {
                let key = ResourceKey::new(&command.instance, name);
                desk.get(&key)
                    .map(|sender| (name.to_string(), sender.clone()))
                    .ok_or_else(|| {
                        format!(
                            "{key} is not running (is the instance disabled or just reloading?)"
                        )
                    })
            })
            .collect()
    }
}

/// What one resource's reconcile answered, for the CLI.
fn reconcile_answer(resource: String, answer: Result<ReconcileReport, String>) -> ReconcileView {
    let mut view = ReconcileView {
        resource,
        outcome: "error".into(),
        dry_run: false,
        seen: 0,
        known: 0,
        deleted: Vec::new(),
        error: None,
    };
    let report = match answer {
        Ok(report) => report,
        Err(error) => {
            view.error = Some(error);
            return view;
        }
    };
    view.dry_run = report.dry_run;
    view.seen = report.seen;
    view.known = report.known;
    view.outcome = match report.outcome {
        ReconcileOutcome::Baseline => "baseline".into(),
        ReconcileOutcome::Deleted { deleted, .. } => {
            view.deleted = deleted.iter().map(ToString::to_string).collect();
            "deleted".into()
        }
        ReconcileOutcome::MassDeleteRefused { would_delete } => {
            view.error = Some(format!(
                "would delete {would_delete} of {} known: refused by deletedMaxFraction; \
                 --allow-mass-delete confirms",
                report.known
            ));
            "mass_delete_refused".into()
        }
    };
    view
}

/// A row of the dead-letter list, as replay and drop select them.
struct Row {
    id: String,
    /// The queue it came from; unknown for some corrupt entries.
    key: Option<ResourceKey>,
    /// Why it is corrupt, when it is.
    corrupt: Option<String>,
}

/// The summary shown beside the status rows; `None` when there are no dead letters.
fn summary_view(
    dead: &DeadLetterSummary,
    instances: &[InstanceStatus],
) -> Option<DeadLetterSummaryView> {
    let total = dead.total();
    if total == 0 {
        return None;
    }
    let in_rows: u64 = instances
        .iter()
        .flat_map(|instance| instance.resources.iter())
        .map(|resource| resource.dead_letters)
        .sum();
    Some(DeadLetterSummaryView {
        corrupt: dead.corrupt(),
        oldest: dead.oldest(),
        newest: dead.newest(),
        not_loaded: total.saturating_sub(in_rows),
    })
}

/// Corrupt entries named in a replay's error, at most; the rest are counted.
const CORRUPT_NAMED_MAX: usize = 10;

/// The error of a replay that met corrupt entries: the others were replayed.
fn corrupt_replay_error(replayed: usize, refused: &[(String, String)]) -> String {
    let mut named: Vec<String> = refused
        .iter()
        .take(CORRUPT_NAMED_MAX)
        .map(|(id, reason)| format!("{id} ({reason})"))
        .collect();
    if refused.len() > CORRUPT_NAMED_MAX {
        named.push(format!("and {} more", refused.len() - CORRUPT_NAMED_MAX));
    }
    format!(
        "replayed {replayed} dead letter(s); {} corrupt, cannot be replayed: {}; `pollerd dead-letters drop ID` removes a corrupt one",
        refused.len(),
        named.join("; ")
    )
}

/// The live nodes and every lease, as the database has them.
fn cluster_status(leases: &super::lease::Leases) -> ClusterStatus {
    let node_id = leases.node_id().to_string();
    let view = match leases.store().cluster(leases.ttl()) {
        Ok(view) => view,
        Err(e) => {
            return ClusterStatus {
                node_id,
                error: Some(e.to_string()),
                ..ClusterStatus::default()
            };
        }
    };
    ClusterStatus {
        node_id,
        nodes: view
            .nodes
            .into_iter()
            .map(|n| NodeStatusView {
                node_id: n.node_id,
                started_at: n.started_at,
                heartbeat_at: n.heartbeat_at,
                leases: n.leases,
            })
            .collect(),
        leases: view
            .leases
            .into_iter()
            .map(|l| LeaseStatusView {
                instance: l.instance,
                owner: l.owner,
                epoch: l.epoch,
                expires_at: l.expires_at,
            })
            .collect(),
        error: None,
    }
}

/// What every status row of one report reads.
struct RowContext<'a> {
    dead: &'a DeadLetterSummary,
    active: std::collections::HashMap<ResourceKey, u32>,
    queues: QueueHealthBoard,
    now: DateTime<Utc>,
}

impl DaemonAdmin {
    fn row_context<'a>(&self, dead: &'a DeadLetterSummary) -> RowContext<'a> {
        RowContext {
            dead,
            active: self.shared.active_pollers.lock().expect("pollers").clone(),
            queues: self.deliverer.queue_health(),
            now: Utc::now(),
        }
    }

    /// Every loaded instance with its resource rows (what `status` and `/metrics` both show).
    fn instance_statuses(&self, context: &RowContext) -> Vec<InstanceStatus> {
        let registry = self.registry.read().expect("registry").clone();
        registry
            .iter()
            .map(|view| InstanceStatus {
                name: view.spec.name.clone(),
                file: view.spec.file.display().to_string(),
                element: view.spec.element.key().to_string(),
                enabled: view.spec.notifications.is_some(),
                resources: self.resource_rows(view, context),
                error: view.error.clone(),
            })
            .collect()
    }

    /// The rows of an instance: its running resources, or, for a disabled instance (which runs
    /// none), each resource of its file as `disabled`.
    fn resource_rows(&self, view: &InstanceView, context: &RowContext) -> Vec<ResourceStatusView> {
        if view.spec.notifications.is_none() {
            return view
                .spec
                .resources
                .iter()
                .map(|r| self.resource_row(view, &r.name, None, context))
                .collect();
        }
        view.resources
            .iter()
            .map(|(name, status)| {
                let status = status.lock().expect("status").clone();
                self.resource_row(view, name, Some(status), context)
            })
            .collect()
    }

    fn resource_row(
        &self,
        view: &InstanceView,
        name: &str,
        status: Option<ResourceStatus>,
        context: &RowContext,
    ) -> ResourceStatusView {
        let key = ResourceKey::new(&view.spec.name, name);
        let running = status.is_some();
        let s = status.unwrap_or_default();
        let queue = context.queues.of(&key);
        let signals = HealthSignals {
            interval_seconds: view.spec.refresh_interval.as_secs_f64(),
            polling_since: s.started_at,
            last_success: s.last_success,
            failed_polls: s.failed_in_a_row,
            failing_since: s.failing_since,
            oldest_queued: queue.oldest_queued,
            receiver_failing_since: queue.failing_since,
            last_delivered: queue.last_delivered,
        };
        let outbox_depth = self.store.outbox_depth(&key).unwrap_or(0);
        let health = match running {
            true => health::judge(&signals, outbox_depth, context.now),
            false => Health::Disabled,
        };
        ResourceStatusView {
            health,
            counts: RunCountsView {
                polls_ok: s.counts.ok,
                polls_failed: s.counts.error,
                polls_baseline: s.counts.baseline,
                created: s.counts.created,
                updated: s.counts.updated,
            },
            signals,
            name: name.to_string(),
            watermark: self.store.watermark(&key).ok().flatten(),
            last_poll: s.last_poll,
            next_poll: s.next_poll,
            last_error: s.last_error,
            events_emitted: s.events_emitted,
            outbox_depth,
            dead_letters: context.dead.of(&key).map_or(0, |queue| queue.count),
            pollers: context.active.get(&key).copied().unwrap_or(0),
            task_panics: self.task_panics(&key),
            reconcile: s.reconcile.as_ref().map(reconcile_view),
            throttled: s
                .throttled_until
                .map(|until| ThrottleView::tenant_budget(until, context.now)),
        }
    }
}

impl AdminBackend for DaemonAdmin {
    fn status(&self) -> StatusReport {
        // Served from counts: the letters themselves (each with its body) are not read.
        let dead = self.store.dead_letter_summary().unwrap_or_default();
        let instances = self.instance_statuses(&self.row_context(&dead));
        let stats = self.store.stats().unwrap_or_default();
        let dead_letter_summary = summary_view(&dead, &instances);
        StatusReport {
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            started_at: self.started_at,
            instances,
            outbox_depth: stats.outbox_depth,
            dead_letters: stats.dead_letters,
            dead_letter_summary,
            last_reload: self.last_reload.lock().expect("reload").clone(),
            cluster: self.leases.as_deref().map(cluster_status),
        }
    }

    fn dead_letters(&self) -> Result<Vec<DeadLetterView>, String> {
        let letters = self.store.dead_letters().map_err(|e| e.to_string())?;
        let corrupt = self.store.corrupt_entries().map_err(|e| e.to_string())?;
        let mut views: Vec<DeadLetterView> = letters
            .into_iter()
            .map(|d| DeadLetterView {
                id: d.id,
                instance: d.key.instance,
                resource: d.key.resource,
                event_id: d.event_id,
                attempts: d.attempts,
                last_status: d.last_status,
                last_error: d.last_error,
                created_at: d.created_at,
                dead_at: d.dead_at,
                corrupt: None,
            })
            .collect();
        views.extend(corrupt.into_iter().map(|c| {
            let (instance, resource) = c
                .key
                .map_or_else(Default::default, |key| (key.instance, key.resource));
            DeadLetterView {
                id: c.id,
                instance,
                resource,
                event_id: c.event_id.unwrap_or_default(),
                attempts: 0,
                last_status: None,
                last_error: c.reason.clone(),
                created_at: c.created_at.unwrap_or(c.found_at),
                dead_at: c.found_at,
                corrupt: Some(CorruptView {
                    size: c.size,
                    reason: c.reason,
                }),
            }
        }));
        views.sort_by(|a, b| (a.dead_at, &a.id).cmp(&(b.dead_at, &b.id)));
        Ok(views)
    }

    /// Replays every selected dead letter it can: a corrupt one is not replayed, and makes the
    /// answer an error naming it once the others are.
    fn replay(&self, ids: Option<Vec<String>>) -> Result<usize, String> {
        let selected = self.select(ids)?;
        let mut replayed = 0;
        let mut refused = Vec::new();
        for row in selected {
            if let Some(reason) = row.corrupt {
                refused.push((row.id, reason));
                continue;
            }
            match self.store.replay_dead_letter(&row.id) {
                Ok(_) => replayed += 1,
                Err(StoreError::CorruptDeadLetter { id, reason }) => {
                    refused.push((id, reason));
                    continue;
                }
                Err(error) => return Err(format!("replayed {replayed} dead letter(s); {error}")),
            }
            if let Some(key) = &row.key {
                tracing::info!(instance = %key.instance, resource = %key.resource, "dead letter {} replayed", row.id);
                self.deliverer.wake(key);
            }
        }
        match refused.is_empty() {
            true => Ok(replayed),
            false => Err(corrupt_replay_error(replayed, &refused)),
        }
    }

    fn reconcile(&self, command: ReconcileCommand) -> Result<Vec<ReconcileView>, String> {
        let request = ReconcileRequest {
            dry_run: command.dry_run,
            allow_mass_delete: command.allow_mass_delete,
        };
        let mut waiting = Vec::new();
        for (resource, sender) in self.reconcile_targets(&command)? {
            let (reply, answer) = tokio::sync::oneshot::channel();
            let ask = ReconcileAsk { request, reply };
            if sender.blocking_send(ask).is_err() {
                return Err(format!("{}/{resource} stopped", command.instance));
            }
            waiting.push((resource, answer));
        }
        // One after another, as each resource's loop gets to it (between its polls).
        Ok(waiting
            .into_iter()
            .map(|(resource, answer)| {
                let answer = answer
                    .blocking_recv()
                    .unwrap_or_else(|_| Err("the resource stopped before it answered".into()));
                reconcile_answer(resource, answer)
            })
            .collect())
    }

    fn drop_dead_letters(&self, ids: Option<Vec<String>>) -> Result<usize, String> {
        let selected = self.select(ids)?;
        for row in &selected {
            self.store
                .drop_dead_letter(&row.id)
                .map_err(|e| e.to_string())?;
            match &row.key {
                Some(key) => {
                    tracing::info!(instance = %key.instance, resource = %key.resource, "dead letter {} dropped", row.id)
                }
                None => tracing::info!("dead letter {} dropped", row.id),
            }
        }
        Ok(selected.len())
    }
}
