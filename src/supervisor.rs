//! Keeps the running set of instances equal to the files, touching only what changed.
//!
//! Each file's last good spec is remembered: a file that turns invalid keeps its old version
//! running (the error is reported), a removed file stops its instance, and an instance whose
//! spec changed is stopped — its tasks awaited — before the new version starts, so two pollers
//! never run for the same resource.
//!
//! On a node sharing a PostgreSQL store, only the instances whose lease the node holds run
//! ([`Supervisor::lease_gated`], [`Supervisor::set_held`]): files ∩ held leases. One that stops
//! for its lease stops its deliveries too, since another node delivers its queue now.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{self, Diagnostic, InstanceSpec, SecretSources};
use crate::delivery::{Deliverer, Target};
use crate::element::Element;
use crate::http_util::error_chain;
use crate::poller::PollShared;
use crate::poller::schedule::{ResourceStatus, SharedStatus, poll_loop};
use crate::store::ResourceKey;
use crate::task_guard::{Backoff, GuardedTask, TaskKind, TaskPanics, run_restarting};

/// A poll task that panicked starts again after 5 s, then 10 s, … up to the resource's
/// refresh interval (at least this first step): a panic that repeats on every run costs the
/// provider no more requests than normal polling does.
const POLL_RESTART_FIRST: Duration = Duration::from_secs(5);

/// A running instance: one poll task per resource.
struct Running {
    spec: Arc<InstanceSpec>,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    statuses: Vec<(String, SharedStatus)>,
}

/// What a file last gave.
#[derive(Clone)]
struct FileState {
    /// The last version of this file that validated.
    good: Option<Arc<InstanceSpec>>,
    /// Errors of the current version, when it does not validate.
    errors: Vec<Diagnostic>,
}

/// The outcome of applying a set of files.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadSummary {
    pub started: Vec<String>,
    pub restarted: Vec<String>,
    pub stopped: Vec<String>,
    pub unchanged: usize,
    pub errors: Vec<String>,
}

/// One running instance as status output sees it: live handles, cheap to clone.
#[derive(Clone)]
pub struct InstanceView {
    pub spec: Arc<InstanceSpec>,
    pub resources: Vec<(String, SharedStatus)>,
    /// The current file's first error, when an older good version is what runs.
    pub error: Option<String>,
}

pub struct Supervisor {
    shared: PollShared,
    deliverer: Deliverer,
    sources: SecretSources,
    files: BTreeMap<PathBuf, FileState>,
    running: HashMap<String, Running>,
    /// The instances whose lease this node holds, on a node sharing its store; `None` when every
    /// loaded instance runs.
    held: Option<HashSet<String>>,
}

impl Supervisor {
    pub fn new(shared: PollShared, deliverer: Deliverer, sources: SecretSources) -> Supervisor {
        Supervisor {
            shared,
            deliverer,
            sources,
            files: BTreeMap::new(),
            running: HashMap::new(),
            held: None,
        }
    }

    /// From now on only instances whose lease is held run (none until [`Supervisor::set_held`]).
    pub fn lease_gated(&mut self) {
        self.held = Some(HashSet::new());
    }

    /// The leases held changed: starts the instances newly held, and stops (their deliveries
    /// too) those no longer held.
    pub async fn set_held(&mut self, held: HashSet<String>) -> ReloadSummary {
        self.held = Some(held);
        let mut summary = ReloadSummary::default();
        let desired = self.desired(&mut summary);
        self.apply(desired, &mut summary).await;
        summary
    }

    /// The names of the instances this node has a valid file for, held or not.
    pub fn file_instances(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .files
            .values()
            .filter_map(|f| f.good.as_ref().map(|spec| spec.name.clone()))
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Re-reads `changed` files (or every file of `dir` when `None`) and applies the result.
    pub async fn reload(&mut self, dir: &Path, changed: Option<&[PathBuf]>) -> ReloadSummary {
        let mut summary = ReloadSummary::default();
        let listed = match config::list_instance_files(dir) {
            Ok(files) => files,
            Err(e) => {
                let message = format!(
                    "{}: cannot read the instances directory: {e}",
                    dir.display()
                );
                tracing::error!("{message}");
                summary.errors.push(message);
                // Keep everything running: a vanished directory is more likely a mistake.
                return summary;
            }
        };
        self.files.retain(|path, _| listed.contains(path));
        let to_read: Vec<PathBuf> = match changed {
            None => listed.clone(),
            // Also any listed file never read (a missed event must not hide a file forever).
            Some(paths) => listed
                .iter()
                .filter(|p| paths.contains(p) || !self.files.contains_key(*p))
                .cloned()
                .collect(),
        };
        for path in to_read {
            let loaded = config::load_instance_file(&path, &self.sources);
            for d in &loaded.diagnostics {
                if d.is_error() {
                    tracing::error!("{d}");
                } else {
                    tracing::warn!("{d}");
                }
            }
            let errors: Vec<Diagnostic> = loaded
                .diagnostics
                .into_iter()
                .filter(Diagnostic::is_error)
                .collect();
            let previous = self.files.get(&path).and_then(|f| f.good.clone());
            let good = loaded.spec.map(Arc::new).or(previous);
            if !errors.is_empty() && good.is_some() {
                tracing::warn!(
                    "{}: keeping the last valid version of this file running",
                    path.display()
                );
            }
            summary
                .errors
                .extend(errors.iter().map(ToString::to_string));
            self.files.insert(path, FileState { good, errors });
        }
        let desired = self.desired(&mut summary);
        self.apply(desired, &mut summary).await;
        summary
    }

    /// One spec per name: files in name order; a later file with a taken name is rejected.
    fn desired(&self, summary: &mut ReloadSummary) -> HashMap<String, Arc<InstanceSpec>> {
        let mut desired: HashMap<String, Arc<InstanceSpec>> = HashMap::new();
        for (path, state) in &self.files {
            let Some(spec) = &state.good else { continue };
            if let Some(first) = desired.get(&spec.name) {
                let message = config::duplicate_name(path, &spec.name, &first.file).to_string();
                tracing::error!("{message}");
                summary.errors.push(message);
                continue;
            }
            desired.insert(spec.name.clone(), spec.clone());
        }
        if let Some(held) = &self.held {
            desired.retain(|name, _| held.contains(name));
        }
        desired
    }

    async fn apply(
        &mut self,
        desired: HashMap<String, Arc<InstanceSpec>>,
        summary: &mut ReloadSummary,
    ) {
        let before: Vec<String> = self.running.keys().cloned().collect();
        for name in before.clone() {
            let same_behaviour = desired
                .get(&name)
                .filter(|d| d.fingerprint == self.running[&name].spec.fingerprint);
            if let Some(spec) = same_behaviour {
                // Same definition, maybe from another file now (renamed, or a copy taking over):
                // no restart, but status and its errors must name the file that defines it.
                self.running.get_mut(&name).expect("listed").spec = spec.clone();
                summary.unchanged += 1;
                continue;
            }
            let running = self.running.remove(&name).expect("listed");
            stop(running).await;
            if desired.contains_key(&name) {
                continue;
            }
            if self.held.is_some() {
                // Another node may own it next: no watermark of it is written from here on.
                self.shared.idle.discard_instance(&name);
                self.deliverer.stop_instance(&name).await;
                tracing::info!(instance = %name, "instance stopped: this node no longer holds its lease");
            } else {
                tracing::info!(instance = %name, "instance stopped (its file is gone); queued notifications are still delivered");
            }
            summary.stopped.push(name);
        }
        let mut names: Vec<&String> = desired.keys().collect();
        names.sort();
        for name in names {
            let spec = &desired[name];
            if let Some(n) = &spec.notifications {
                self.deliverer.set_target(name, target(n));
                if let Err(e) = self.deliverer.set_trusted_ca(name, spec.tls_ca.as_ref()) {
                    tracing::error!(instance = %name, "cannot trust tls.caFile for deliveries: {}", error_chain(&e));
                }
            }
            if self.running.contains_key(name) {
                continue;
            }
            match self.start(spec.clone()) {
                Ok(running) => {
                    self.running.insert(name.clone(), running);
                    if before.contains(name) {
                        summary.restarted.push(name.clone());
                    } else {
                        summary.started.push(name.clone());
                    }
                }
                Err(e) => {
                    let message = format!("instance {name}: {e}");
                    tracing::error!("{message}");
                    summary.errors.push(message);
                }
            }
        }
        if let Err(e) = self.deliverer.wake_all() {
            tracing::error!("reading the outbox queues: {e}");
        }
    }

    fn start(&self, spec: Arc<InstanceSpec>) -> Result<Running, crate::element::FetchError> {
        let cancel = CancellationToken::new();
        let mut tasks = Vec::new();
        let mut statuses = Vec::new();
        if spec.notifications.is_some() {
            let element = Element::new(&spec.element);
            let shared = match &spec.tls_ca {
                Some(ca) => PollShared {
                    client: self.shared.client.trusting(ca).map_err(|e| {
                        crate::element::FetchError::Config(format!(
                            "cannot trust tls.caFile {}: {}",
                            ca.path.display(),
                            error_chain(&e)
                        ))
                    })?,
                    ..self.shared.clone()
                },
                None => self.shared.clone(),
            };
            for resource in &spec.resources {
                let status: SharedStatus = Arc::new(Mutex::new(ResourceStatus::starting_now()));
                statuses.push((resource.name.clone(), status.clone()));
                tasks.push(tokio::spawn(guarded_poll_loop(
                    shared.clone(),
                    spec.clone(),
                    element.clone(),
                    resource.clone(),
                    status,
                    self.deliverer.task_panics(),
                    cancel.child_token(),
                )));
            }
            tracing::info!(instance = %spec.name, "polling {} resource(s) every {:?}", spec.resources.len(), spec.refresh_interval);
        } else {
            tracing::info!(instance = %spec.name, "loaded; events are not enabled, so it does not poll");
        }
        Ok(Running {
            spec,
            cancel,
            tasks,
            statuses,
        })
    }

    /// Stops every instance and waits for its tasks.
    pub async fn stop_all(&mut self) {
        for (_, running) in self.running.drain() {
            stop(running).await;
        }
    }

    /// The running instances and their resources' states, by name.
    pub fn views(&self) -> Vec<InstanceView> {
        let mut views: Vec<InstanceView> = self
            .running
            .values()
            .map(|r| InstanceView {
                spec: r.spec.clone(),
                resources: r.statuses.clone(),
                error: self
                    .files
                    .get(&r.spec.file)
                    .and_then(|f| f.errors.first())
                    .map(ToString::to_string),
            })
            .collect();
        views.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        views
    }
}

/// [`poll_loop`], started again after a panic (see [`run_restarting`]): the panic is logged
/// and shown by `status` for this resource, counted in `pollerd_task_panics_total`, and the
/// resource is polled again. Not an `async fn`, for the reason [`poll_loop`] gives.
fn guarded_poll_loop(
    shared: PollShared,
    instance: Arc<InstanceSpec>,
    element: Element,
    resource: Arc<config::ResourceSpec>,
    status: SharedStatus,
    panics: TaskPanics,
    cancel: CancellationToken,
) -> impl Future<Output = ()> + Send + 'static {
    let metrics = shared.metrics.clone();
    let poisoned = status.clone();
    let task = GuardedTask {
        kind: TaskKind::Poll,
        key: ResourceKey::new(&instance.name, &resource.name),
        panics,
        backoff: Backoff {
            first: POLL_RESTART_FIRST,
            max: instance.refresh_interval.max(POLL_RESTART_FIRST),
        },
        on_panic: Box::new(move |kind| {
            // The panic may have struck while the status lock was held; what it guards is
            // plain data, still whole, so status goes on being shown.
            poisoned.clear_poison();
            if let Some(metrics) = &metrics {
                metrics.task_panic(kind);
            }
        }),
    };
    let guard_cancel = cancel.clone();
    run_restarting(task, guard_cancel, move || {
        poll_loop(
            shared.clone(),
            instance.clone(),
            element.clone(),
            resource.clone(),
            status.clone(),
            cancel.clone(),
        )
    })
}

async fn stop(running: Running) {
    running.cancel.cancel();
    for task in running.tasks {
        let _ = task.await;
    }
}

/// Where `n` sends to, from what config parsed.
fn target(n: &config::NotificationSpec) -> Target {
    Target {
        callback: n.callback.clone(),
        signature_key: n.signature_key.clone(),
        webhook_secret: n.webhook_secret.clone(),
    }
}
