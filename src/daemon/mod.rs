//! `pollerd run`: the daemon assembled from its components, and its life cycle — start
//! (store open, instances loaded, READY), reload (files or SIGHUP), graceful stop (SIGTERM).

mod admin;
mod lease;
mod memory;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc::{Receiver, UnboundedReceiver};
use tokio_util::sync::CancellationToken;

use crate::admin::{AdminServer, ReloadStatus};
use crate::config::settings::StoreEngine;
use crate::config::{Environment, SecretSources, Settings};
use crate::delivery::Deliverer;
use crate::element::ProviderClient;
use crate::internal_events::ReloadFinished;
use crate::metrics::Metrics;
use crate::poller::PollShared;
use crate::store::{Fence, PostgresStore, SledStore, Store, StoreStats};
use crate::supervisor::{InstanceView, ReloadSummary, Supervisor};
use crate::systemd::{Notifier, Part, Progress};
use crate::watch::{Changes, watch_instances};
use lease::{LeaseChange, LeaseManager, LeaseSettings};

/// Everything the running daemon holds.
pub struct Daemon {
    pub settings: Settings,
    pub store: Arc<dyn Store>,
    pub deliverer: Deliverer,
    pub supervisor: Supervisor,
    pub metrics: Metrics,
    registry: Arc<RwLock<Vec<InstanceView>>>,
    last_reload: Arc<Mutex<Option<ReloadStatus>>>,
    shared: PollShared,
    /// On a node sharing a PostgreSQL store: its leases, and the instances it holds.
    cluster: Option<Cluster>,
}

/// A node's part in a cluster sharing a PostgreSQL store.
struct Cluster {
    manager: LeaseManager,
    changes: UnboundedReceiver<LeaseChange>,
    held: HashSet<String>,
}

/// What a PostgreSQL store needs besides the store: the leases' own connections and fence.
struct LeaseParts {
    store: Arc<PostgresStore>,
    fence: Arc<Fence>,
    refusals: UnboundedReceiver<String>,
    settings: LeaseSettings,
}

/// Connections of the lease manager, apart from the store's pool: a busy pool must not delay
/// a renewal past the TTL.
const LEASE_POOL_SIZE: usize = 2;

/// The store engine the settings choose: sled in the state directory, or PostgreSQL shared with
/// other nodes (then with what its lease manager needs).
async fn open_store(
    settings: &Settings,
    env: &Environment,
) -> anyhow::Result<(Arc<dyn Store>, Option<LeaseParts>)> {
    let postgres = match &settings.store_engine {
        StoreEngine::Sled => {
            let store = SledStore::open(&settings.state_dir, settings.store_cache_bytes)?;
            return Ok((Arc::new(store), None));
        }
        StoreEngine::Postgres(postgres) => postgres,
    };
    let url = postgres
        .url
        .resolve(env)
        .map_err(|reason| anyhow::anyhow!("[store] url: {reason}"))?;
    let (pool_size, ttl) = (postgres.pool_size, postgres.lease_ttl);
    let (fence, refusals) = Fence::reporting(&postgres.node_id);
    let fenced = fence.clone();
    // Connecting and migrating the schema block: off the async workers.
    let (store, lease_store) = tokio::task::spawn_blocking(move || {
        let store = PostgresStore::open_fenced(url.expose(), pool_size, fenced, ttl)?;
        let lease_store = PostgresStore::open(url.expose(), LEASE_POOL_SIZE)?;
        Ok::<_, crate::store::StoreError>((store, lease_store))
    })
    .await
    .context("opening the PostgreSQL store")??;
    tracing::info!(
        database = store.target(),
        node = %postgres.node_id,
        "store: PostgreSQL, shared: node {} runs the instances whose lease it holds",
        postgres.node_id
    );
    let parts = LeaseParts {
        store: Arc::new(lease_store),
        fence,
        refusals,
        settings: LeaseSettings {
            node_id: postgres.node_id.clone(),
            renew: postgres.lease_renew,
            ttl,
        },
    };
    Ok((Arc::new(store), Some(parts)))
}

impl Daemon {
    /// Opens the store and loads every instance file.
    pub async fn start(settings: Settings, env: &Environment) -> anyhow::Result<Daemon> {
        std::fs::create_dir_all(&settings.state_dir).with_context(|| {
            format!(
                "cannot create the state directory {}",
                settings.state_dir.display()
            )
        })?;
        let (store, lease_parts) = open_store(&settings, env).await?;
        let metrics = Metrics::new();
        let deliverer = Deliverer::new(store.clone(), &settings.delivery, Some(metrics.clone()))
            .context("building the webhook client")?;
        let client = ProviderClient::from_settings(&settings.polling)
            .context("building the provider client")?;
        let wake = deliverer.clone();
        let mut shared = PollShared::new(client, store.clone(), settings.polling.max_concurrent);
        shared.on_commit = Some(Arc::new(move |key| wake.wake(key)));
        shared.metrics = Some(metrics.clone());
        let sources = SecretSources {
            credentials_dir: env.credentials_directory.clone(),
            unverified_credentials_ok: false,
        };
        let mut supervisor = Supervisor::new(shared.clone(), deliverer.clone(), sources);
        let cluster = lease_parts.map(|parts| {
            supervisor.lease_gated();
            deliverer.deliver_routed_only();
            let (manager, changes) = LeaseManager::start(
                parts.store,
                parts.fence,
                parts.refusals,
                parts.settings,
                metrics.clone(),
            );
            Cluster {
                manager,
                changes,
                held: HashSet::new(),
            }
        });
        let mut daemon = Daemon {
            settings,
            store,
            deliverer,
            supervisor,
            metrics,
            registry: Arc::default(),
            last_reload: Arc::default(),
            shared,
            cluster,
        };
        let summary = daemon.reload_instances(None).await;
        tracing::info!(
            "started: {} instance(s) loaded, {} file error(s); state in {}",
            summary.started.len(),
            summary.errors.len(),
            daemon.settings.state_dir.display()
        );
        daemon.deliverer.wake_all()?;
        Ok(daemon)
    }

    /// Re-reads the given instance files (all when `None`).
    pub async fn reload_instances(&mut self, changed: Option<&[PathBuf]>) -> ReloadSummary {
        let summary = self
            .supervisor
            .reload(&self.settings.instances_dir, changed)
            .await;
        if let Some(cluster) = &self.cluster {
            cluster.manager.set_wanted(self.supervisor.file_instances());
        }
        *self.registry.write().expect("registry") = self.supervisor.views();
        *self.last_reload.lock().expect("reload") = Some(ReloadStatus {
            at: Utc::now(),
            ok: summary.errors.is_empty(),
            errors: summary.errors.clone(),
        });
        ReloadFinished {
            started: &summary.started,
            restarted: &summary.restarted,
            stopped: &summary.stopped,
            unchanged: summary.unchanged,
            errors: summary.errors.len(),
        }
        .emit(&self.metrics);
        summary
    }

    /// Runs what the lease manager says: start the instances gained, stop those lost at once,
    /// stop those to release and then release them.
    async fn apply_lease_change(&mut self, change: LeaseChange) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        let release = match change {
            LeaseChange::Gained(names) => {
                cluster.held.extend(names);
                None
            }
            LeaseChange::Lost(names) => {
                for name in &names {
                    cluster.held.remove(name);
                }
                None
            }
            LeaseChange::Release(names, reason) => {
                for name in &names {
                    cluster.held.remove(name);
                }
                Some((names, reason))
            }
        };
        self.supervisor.set_held(cluster.held.clone()).await;
        *self.registry.write().expect("registry") = self.supervisor.views();
        if let Some((names, reason)) = release {
            cluster.manager.leases().release(&names, reason).await;
        }
    }

    /// SIGHUP: settings and every instance file. Settings that only apply at start are reported.
    pub async fn reload_all(&mut self, config_path: Option<&Path>, env: &Environment) {
        match Settings::load(config_path, env) {
            Ok(new) if new != self.settings => {
                tracing::warn!(
                    "{}: settings changed; they apply at the next restart (instances are reloaded now)",
                    new.file
                        .as_deref()
                        .unwrap_or(Path::new("pollerd.toml"))
                        .display()
                );
            }
            Ok(_) => {}
            Err(d) => tracing::error!("{d}"),
        }
        self.reload_instances(None).await;
    }

    /// The admin socket's view of this daemon.
    fn admin(&self) -> admin::DaemonAdmin {
        admin::DaemonAdmin {
            started_at: Utc::now(),
            registry: self.registry.clone(),
            last_reload: self.last_reload.clone(),
            store: self.store.clone(),
            shared: self.shared.clone(),
            deliverer: self.deliverer.clone(),
            leases: self
                .cluster
                .as_ref()
                .map(|cluster| cluster.manager.leases().clone()),
        }
    }

    /// A one-line summary (systemd's STATUS=, logs), with the store's counts as last read.
    pub fn summary_line(&self, stats: &StoreStats) -> String {
        let registry = self.registry.read().expect("registry");
        let resources: usize = registry.iter().map(|v| v.resources.len()).sum();
        let last_error = registry
            .iter()
            .flat_map(|v| v.resources.iter())
            .find_map(|(_, s)| s.lock().expect("status").last_error.clone());
        let mut line = format!(
            "{} instance(s), {resources} resource(s), outbox {}, dead letters {}",
            registry.len(),
            stats.outbox_depth,
            stats.dead_letters
        );
        if let Some(e) = last_error {
            line.push_str(&format!(
                ", last error: {}",
                e.chars().take(120).collect::<String>()
            ));
        }
        line
    }

    /// Graceful stop: polling first, then deliveries within the grace period, then the store;
    /// on a shared store, the leases are released last (renewed until then), so the other nodes
    /// take the instances over at their next round.
    pub async fn stop(mut self) {
        if let Some(cluster) = &self.cluster {
            cluster.manager.stop_claiming();
        }
        self.supervisor.stop_all().await;
        self.deliverer.shutdown().await;
        let idle = self.shared.idle.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || idle.write_pending()).await {
            tracing::error!("writing the idle watermarks held back: {e}");
        }
        if let Err(e) = self.store.flush() {
            tracing::error!("flushing the store: {e}");
        }
        if let Some(cluster) = self.cluster.take() {
            cluster.manager.stop().await;
        }
    }
}

/// Threads for the store calls run off the async workers (commits, reads for `status`): one per
/// poll that may run at once (`[polling] max_concurrent`, each waits on at most one commit) and
/// some to spare. Tokio's default, 512, let each resource's start-up call (30,000 of them for
/// 10,000 instances) start a thread of its own: 533 threads at once, each with its own
/// allocator heap (BENCHMARKS.md, 2026-12-07).
fn blocking_threads(settings: &Settings) -> usize {
    settings.polling.max_concurrent.saturating_add(16)
}

/// The `run` command.
pub fn run(config_path: Option<&Path>) -> std::process::ExitCode {
    let env = Environment::from_process();
    let settings = match Settings::load(config_path, &env) {
        Ok(s) => s,
        Err(d) => {
            eprintln!("{d}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if let Err(e) = crate::logging::init(settings.log_format, &settings.log_level) {
        eprintln!("pollerd: {e:#}");
        return std::process::ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(blocking_threads(&settings))
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pollerd: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(settings, config_path, env)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("pollerd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// How long the main loop may be silent when no watchdog watches (only the heartbeat's pace
/// depends on it then).
const UNWATCHED_MAX_SILENCE: Duration = Duration::from_secs(60);

/// Runs `work` while beating for the main loop: a graceful stop may rightly take the delivery
/// grace period, and `TimeoutStopSec=`, not the watchdog, bounds it.
async fn beating_while<F: std::future::Future>(progress: &Progress, work: F) -> F::Output {
    tokio::pin!(work);
    let mut heartbeat = tokio::time::interval(progress.beat_period());
    loop {
        tokio::select! {
            output = &mut work => return output,
            _ = heartbeat.tick() => progress.beat(Part::MainLoop),
        }
    }
}

/// The daemon from start to stop: READY once the admin socket (and metrics, if set) listen,
/// then the main loop until SIGTERM or SIGINT, then the graceful stop.
pub async fn serve(
    settings: Settings,
    config_path: Option<&Path>,
    env: Environment,
) -> anyhow::Result<()> {
    let mut signals = Signals::install()?;
    let notifier = Notifier::from_env();
    // Watch before the first read of the directory, so no change in between is missed.
    let (_watcher, mut changes) =
        watch_instances(&settings.instances_dir, Duration::from_millis(250))
            .with_context(|| format!("watching {}", settings.instances_dir.display()))?;
    let cancel = CancellationToken::new();
    let _trimmer = memory::spawn_trimmer(cancel.child_token());
    let mut daemon = Daemon::start(settings, &env).await?;
    let admin = start_admin_socket(&daemon, &cancel).await?;
    let ready = Arc::new(AtomicBool::new(false));
    serve_metrics(&daemon, &ready, &cancel).await?;
    ready.store(true, Ordering::Relaxed);
    notifier.ready();
    let stats = store_stats(&daemon.store).await;
    notifier.status(&daemon.summary_line(&stats));
    let progress = Progress::new(
        notifier
            .watchdog_interval()
            .unwrap_or(UNWATCHED_MAX_SILENCE),
    );
    let _scheduler_beat = progress.spawn_scheduler_beat(cancel.child_token());
    let healthy = progress.clone();
    let _watchdog = notifier.spawn_watchdog(cancel.child_token(), move || healthy.healthy());
    MainLoop {
        daemon: &mut daemon,
        notifier: &notifier,
        progress: &progress,
        config_path,
        env: &env,
        stats,
    }
    .run_until_stopped(&mut signals, &mut changes)
    .await;
    tracing::info!("stopping");
    notifier.stopping();
    ready.store(false, Ordering::Relaxed);
    beating_while(&progress, daemon.stop()).await;
    cancel.cancel();
    admin.stopped().await;
    tracing::info!("stopped");
    Ok(())
}

/// The signals the daemon answers: SIGTERM and SIGINT stop it, SIGHUP reloads everything.
struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }
}

async fn start_admin_socket(
    daemon: &Daemon,
    cancel: &CancellationToken,
) -> anyhow::Result<AdminServer> {
    AdminServer::start(
        &daemon.settings.admin_socket,
        Arc::new(daemon.admin()),
        cancel.child_token(),
    )
    .await
    .with_context(|| format!("admin socket {}", daemon.settings.admin_socket.display()))
}

/// The metrics endpoint, when `metrics_listen` is set; it reports ready while `ready` is set.
async fn serve_metrics(
    daemon: &Daemon,
    ready: &Arc<AtomicBool>,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    let Some(listen) = daemon.settings.metrics_listen else {
        return Ok(());
    };
    let admin = daemon.admin();
    daemon
        .metrics
        .set_snapshot_source(Arc::new(move || admin.metrics_snapshot()));
    let r = ready.clone();
    let bound = crate::metrics::serve(
        listen,
        daemon.metrics.clone(),
        Arc::new(move || r.load(Ordering::Relaxed)),
        cancel.child_token(),
    )
    .await?;
    tracing::info!("metrics on http://{bound}/metrics");
    Ok(())
}

/// The lease manager's next word; never, without a cluster.
async fn next_lease_change(cluster: &mut Option<Cluster>) -> Option<LeaseChange> {
    match cluster {
        Some(cluster) => cluster.changes.recv().await,
        None => std::future::pending().await,
    }
}

/// What the main loop acts on between READY and the stop.
struct MainLoop<'a> {
    daemon: &'a mut Daemon,
    notifier: &'a Notifier,
    progress: &'a Progress,
    config_path: Option<&'a Path>,
    env: &'a Environment,
    /// The store's counts as the gauge timer last read them: the status line shows these, so
    /// a pass of the loop never waits on the store (a count of a large PostgreSQL outbox takes
    /// a while).
    stats: StoreStats,
}

/// The store's counts, read off the async runtime (a PostgreSQL store asks its server); the
/// default (zeros) when the store cannot answer, as before.
async fn store_stats(store: &Arc<dyn Store>) -> StoreStats {
    let store = store.clone();
    match tokio::task::spawn_blocking(move || store.stats()).await {
        Ok(Ok(stats)) => stats,
        _ => StoreStats::default(),
    }
}

impl MainLoop<'_> {
    /// Answers SIGHUP, instance file changes and the gauge timer until SIGTERM or SIGINT.
    async fn run_until_stopped(&mut self, signals: &mut Signals, changes: &mut Receiver<Changes>) {
        let mut gauges = tokio::time::interval(Duration::from_secs(5));
        let mut heartbeat = tokio::time::interval(self.progress.beat_period());
        loop {
            // Every pass of this loop is progress; the heartbeat makes sure there is a pass often
            // enough even when nothing else happens.
            self.progress.beat(Part::MainLoop);
            tokio::select! {
                _ = heartbeat.tick() => continue,
                _ = signals.term.recv() => break,
                _ = signals.int.recv() => break,
                _ = signals.hup.recv() => self.reload_all().await,
                Some(batch) = changes.recv() => self.reload_changed(batch, changes).await,
                Some(change) = next_lease_change(&mut self.daemon.cluster) => {
                    self.daemon.apply_lease_change(change).await;
                }
                _ = gauges.tick() => self.update_store_gauges().await,
            }
            self.notifier.status(&self.daemon.summary_line(&self.stats));
        }
    }

    async fn reload_all(&mut self) {
        self.notifier.reloading();
        self.daemon.reload_all(self.config_path, self.env).await;
        self.notifier.ready();
    }

    async fn reload_changed(&mut self, mut batch: Changes, changes: &mut Receiver<Changes>) {
        // Take whatever else is already waiting, as one reload.
        while let Ok(more) = changes.try_recv() {
            batch.merge(more);
        }
        let paths: Vec<PathBuf> = batch.paths.into_iter().collect();
        self.daemon
            .reload_instances(if batch.rescan { None } else { Some(&paths) })
            .await;
    }

    async fn update_store_gauges(&mut self) {
        let stats = store_stats(&self.daemon.store).await;
        self.stats = stats;
        self.daemon.metrics.set_outbox_depth(stats.outbox_depth);
        self.daemon.metrics.set_dead_letters(stats.dead_letters);
        self.daemon
            .metrics
            .set_corrupt_set_aside(stats.corrupt_set_aside);
    }
}
