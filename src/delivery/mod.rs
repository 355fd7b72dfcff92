//! Webhook delivery: workers take notifications from the outbox, one resource queue at a time in
//! creation order, many queues in parallel up to `[delivery] max_in_flight`, over one shared
//! keep-alive client. A failing head holds back its own queue only (SPEC §6): it is retried on
//! the schedule, its next attempt time is stored so a restart keeps the backoff, and it becomes a
//! dead letter when the receiver rejects it or the schedule runs out.

pub mod attempt;
pub mod client;
mod client_pool;
#[cfg(test)]
mod client_tests;
pub mod proxy;
#[cfg(test)]
mod proxy_tests;
mod queue;
mod queue_health;
#[cfg(test)]
mod tests;
mod worker_set;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use attempt::{Outcome, Route, Target};
pub use client::{ClientError, WebhookClient};
pub use proxy::ProxySettings;
pub use queue_health::{QueueHealth, QueueHealthBoard};

use crate::config::TlsCa;
use crate::config::settings::DeliverySettings;
use crate::metrics::Metrics;
use crate::store::{ResourceKey, Store, StoreError};
use crate::task_guard::{Backoff, GuardedTask, TaskKind, TaskPanics, run_restarting};
use client_pool::ClientPool;
use worker_set::WorkerSet;

/// A delivery worker that panicked starts again after 1 s, doubling up to a minute.
const WORKER_RESTART: Backoff = Backoff {
    first: Duration::from_secs(1),
    max: Duration::from_secs(60),
};

#[derive(Clone)]
pub struct Deliverer {
    inner: Arc<Inner>,
}

/// What every queue's worker shares.
struct Inner {
    store: Arc<dyn Store>,
    clients: ClientPool,
    routes: RouteTable,
    workers: WorkerSet,
    schedule: Vec<Duration>,
    grace_period: Duration,
    /// Stop taking work (SIGTERM).
    stopping: CancellationToken,
    /// The grace period is over: abandon requests in flight (they stay in the outbox).
    abandon: CancellationToken,
    /// Where the internal events of delivery count (none in tests and `pollerd poll`).
    metrics: Option<Metrics>,
    /// Panics of delivery workers, and of the poll tasks the supervisor runs (`status` shows
    /// both, per resource).
    task_panics: TaskPanics,
    /// Wake only the queues of instances with a route: on a node sharing its store, the other
    /// queues are other nodes' to deliver.
    routed_only: std::sync::atomic::AtomicBool,
    /// What each queue's worker last saw (`status` and the per-resource metrics).
    health: QueueHealthBoard,
}

/// Where each instance's notifications go, by instance name.
#[derive(Default)]
struct RouteTable(RwLock<HashMap<String, Arc<Route>>>);

impl RouteTable {
    fn set(&self, instance: &str, target: Target) {
        self.0
            .write()
            .expect("targets")
            .insert(instance.to_string(), Arc::new(Route::new(target)));
    }

    fn get(&self, instance: &str) -> Option<Arc<Route>> {
        self.0.read().expect("targets").get(instance).cloned()
    }

    fn remove(&self, instance: &str) {
        self.0.write().expect("targets").remove(instance);
    }

    /// After a worker's panic: the routes are plain data, still whole.
    fn clear_poison(&self) {
        self.0.clear_poison();
    }
}

impl Deliverer {
    /// Deliveries through the proxies the environment names (HTTP_PROXY, HTTPS_PROXY,
    /// ALL_PROXY, NO_PROXY, as reqwest reads them), told in the log once.
    pub fn new(
        store: Arc<dyn Store>,
        settings: &DeliverySettings,
        metrics: Option<Metrics>,
    ) -> Result<Deliverer, ClientError> {
        let proxies = ProxySettings::from_env();
        proxies.log();
        Deliverer::with_proxies(store, settings, metrics, proxies)
    }

    /// Deliveries through `proxies` (the environment is not read).
    pub fn with_proxies(
        store: Arc<dyn Store>,
        settings: &DeliverySettings,
        metrics: Option<Metrics>,
        proxies: ProxySettings,
    ) -> Result<Deliverer, ClientError> {
        Ok(Deliverer {
            inner: Arc::new(Inner {
                store,
                clients: ClientPool::new(settings, proxies)?,
                routes: RouteTable::default(),
                workers: WorkerSet::new(settings.max_in_flight),
                schedule: settings.schedule.clone(),
                grace_period: settings.grace_period,
                stopping: CancellationToken::new(),
                abandon: CancellationToken::new(),
                metrics,
                task_panics: TaskPanics::default(),
                routed_only: std::sync::atomic::AtomicBool::new(false),
                health: QueueHealthBoard::default(),
            }),
        })
    }

    /// Sets where an instance's notifications go. Targets of removed instances are kept, so
    /// what they already committed is still delivered.
    pub fn set_target(&self, instance: &str, target: Target) {
        self.inner.routes.set(instance, target);
    }

    /// Makes `instance`'s deliveries also trust `ca` (its `tls.caFile`), or only the system
    /// roots when `None`. A client is built once per CA bundle, not on every reload, and shared
    /// by every instance that trusts the same bundle.
    pub fn set_trusted_ca(&self, instance: &str, ca: Option<&TlsCa>) -> Result<(), ClientError> {
        self.inner.clients.set_trusted_ca(instance, ca)
    }

    /// How many distinct webhook clients instances with `tls.caFile` use (for tests).
    #[cfg(test)]
    fn ca_client_count(&self) -> usize {
        self.inner.clients.ca_client_count()
    }

    /// A commit added to `key`'s queue: make sure a worker is on it.
    pub fn wake(&self, key: &ResourceKey) {
        if self.delivers(key) {
            ensure_worker(&self.inner, key);
        }
    }

    /// Starts workers for every non-empty queue (at start, and after targets change).
    pub fn wake_all(&self) -> Result<(), StoreError> {
        for key in self.inner.store.queues()? {
            if self.delivers(&key) {
                ensure_worker(&self.inner, &key);
            }
        }
        Ok(())
    }

    /// Whether this node delivers `key`'s queue: every queue, or with
    /// [`Deliverer::deliver_routed_only`] those of instances with a target.
    fn delivers(&self, key: &ResourceKey) -> bool {
        !self.inner.routed_only.load(Ordering::Relaxed)
            || self.inner.routes.get(&key.instance).is_some()
    }

    /// Delivers only the queues of instances given a target (on a node sharing its store with
    /// others, the instances whose lease it holds), instead of every queue in the store.
    pub fn deliver_routed_only(&self) {
        self.inner.routed_only.store(true, Ordering::Relaxed);
    }

    /// Stops delivering `instance` at once: its target is dropped and its workers are aborted
    /// (an attempt in flight is abandoned; its entry stays queued, for whoever delivers the
    /// queue next, under the same event id).
    pub async fn stop_instance(&self, instance: &str) {
        self.inner.routes.remove(instance);
        for worker in self.inner.workers.take_instance(instance) {
            worker.abort();
            let _ = worker.await;
        }
    }

    /// The daemon's record of task panics: delivery workers' and poll tasks'.
    pub fn task_panics(&self) -> TaskPanics {
        self.inner.task_panics.clone()
    }

    /// What each queue's worker last saw of its queue and receiver.
    pub fn queue_health(&self) -> QueueHealthBoard {
        self.inner.health.clone()
    }

    /// Graceful stop: no new attempts; attempts in flight get the grace period; then the store
    /// is flushed. Whatever was not delivered stays in the outbox for the next start.
    pub async fn shutdown(&self) {
        self.inner.stopping.cancel();
        let handles = self.inner.workers.drain();
        let all = futures_join_all(handles);
        tokio::pin!(all);
        if tokio::time::timeout(self.inner.grace_period, &mut all)
            .await
            .is_err()
        {
            tracing::warn!(
                "deliveries still in flight after the {:?} grace period were abandoned; they stay queued",
                self.inner.grace_period
            );
            self.inner.abandon.cancel();
            all.await;
        }
        if let Err(e) = self.inner.store.flush() {
            tracing::error!("flushing the store at shutdown: {e}");
        }
    }
}

async fn futures_join_all(handles: Vec<JoinHandle<()>>) {
    for h in handles {
        let _ = h.await;
    }
}

fn ensure_worker(inner: &Arc<Inner>, key: &ResourceKey) {
    if inner.stopping.is_cancelled() {
        return;
    }
    inner.workers.ensure(key, || {
        tokio::spawn(guarded_work_queue(inner.clone(), key.clone()))
    });
}

/// [`queue::work_queue`], started again after a panic (see [`run_restarting`]): the panic is
/// logged, shown by `status` for this resource and counted, and the queue is delivered again. The
/// restarted worker keeps its place in `workers`, so no second worker starts meanwhile.
async fn guarded_work_queue(inner: Arc<Inner>, key: ResourceKey) {
    let poisoned = inner.clone();
    let task = GuardedTask {
        kind: TaskKind::Delivery,
        key: key.clone(),
        panics: inner.task_panics.clone(),
        backoff: WORKER_RESTART,
        on_panic: Box::new(move |kind| {
            // The panic may have struck while a lock was held; what they guard is plain data,
            // still whole, so the other workers go on.
            poisoned.workers.clear_poison();
            poisoned.routes.clear_poison();
            poisoned.clients.clear_poison();
            if let Some(metrics) = &poisoned.metrics {
                metrics.task_panic(kind);
            }
        }),
    };
    let stopping = inner.stopping.clone();
    run_restarting(task, stopping, move || {
        queue::work_queue(inner.clone(), key.clone())
    })
    .await;
}
