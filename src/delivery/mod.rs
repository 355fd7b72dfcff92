//! Webhook delivery: workers take notifications from the outbox, one resource queue at a time in
//! creation order, many queues in parallel up to `[delivery] max_in_flight`, over one shared
//! keep-alive client. A failing head holds back its own queue only (SPEC §6): it is retried on
//! the schedule, its next attempt time is stored so a restart keeps the backoff, and it becomes a
//! dead letter when the receiver rejects it or the schedule runs out.

pub mod attempt;
pub mod client;
#[cfg(test)]
mod client_tests;
pub mod proxy;
#[cfg(test)]
mod proxy_tests;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use attempt::{Outcome, Route, Target};
pub use client::{ClientError, WebhookClient};
pub use proxy::ProxySettings;

use crate::config::TlsCa;
use crate::config::settings::DeliverySettings;
use crate::store::{ResourceKey, Store, StoreError};
use crate::task_guard::{Backoff, GuardedTask, TaskKind, TaskPanics, run_restarting};

/// A delivery worker that panicked starts again after 1 s, doubling up to a minute.
const WORKER_RESTART: Backoff = Backoff {
    first: Duration::from_secs(1),
    max: Duration::from_secs(60),
};

/// Told about each delivery, for metrics.
pub trait DeliveryObserver: Send + Sync {
    /// `outcome` is "ok", "retry" or "dead"; latency is from commit to 2xx.
    fn delivered(&self, outcome: &str, latency: Option<Duration>);

    /// A delivery worker panicked (a bug) and is started again.
    fn worker_panicked(&self) {}
}

#[derive(Clone)]
pub struct Deliverer {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    http: Arc<WebhookClient>,
    settings: DeliverySettings,
    /// Read from the environment once, at start; every client uses them.
    proxies: ProxySettings,
    /// Clients of instances with `tls.caFile`, built once per CA bundle.
    ca_clients: RwLock<HashMap<String, (TlsCa, Arc<WebhookClient>)>>,
    /// The client of each CA bundle in use, by its PEM text: instances that trust the same
    /// bundle share one client (its roots, its connection pool).
    clients_by_ca: Mutex<HashMap<Vec<u8>, Weak<WebhookClient>>>,
    schedule: Vec<Duration>,
    grace_period: Duration,
    targets: RwLock<HashMap<String, Arc<Route>>>,
    workers: Mutex<HashMap<ResourceKey, JoinHandle<()>>>,
    permits: Arc<Semaphore>,
    /// Stop taking work (SIGTERM).
    stopping: CancellationToken,
    /// The grace period is over: abandon requests in flight (they stay in the outbox).
    abandon: CancellationToken,
    observer: Option<Arc<dyn DeliveryObserver>>,
    /// Panics of delivery workers, and of the poll tasks the supervisor runs (`status` shows
    /// both, per resource).
    task_panics: TaskPanics,
}

impl Deliverer {
    /// Deliveries through the proxies the environment names (HTTP_PROXY, HTTPS_PROXY,
    /// ALL_PROXY, NO_PROXY, as reqwest read them), told in the log once.
    pub fn new(
        store: Arc<dyn Store>,
        settings: &DeliverySettings,
        observer: Option<Arc<dyn DeliveryObserver>>,
    ) -> Result<Deliverer, ClientError> {
        let proxies = ProxySettings::from_env();
        proxies.log();
        Deliverer::with_proxies(store, settings, observer, proxies)
    }

    /// Deliveries through `proxies` (the environment is not read).
    pub fn with_proxies(
        store: Arc<dyn Store>,
        settings: &DeliverySettings,
        observer: Option<Arc<dyn DeliveryObserver>>,
        proxies: ProxySettings,
    ) -> Result<Deliverer, ClientError> {
        let http = Arc::new(WebhookClient::new(settings, None, &proxies)?);
        Ok(Deliverer {
            inner: Arc::new(Inner {
                store,
                http,
                settings: settings.clone(),
                proxies,
                ca_clients: RwLock::default(),
                clients_by_ca: Mutex::default(),
                schedule: settings.schedule.clone(),
                grace_period: settings.grace_period,
                targets: RwLock::default(),
                workers: Mutex::default(),
                permits: Arc::new(Semaphore::new(settings.max_in_flight.max(1))),
                stopping: CancellationToken::new(),
                abandon: CancellationToken::new(),
                observer,
                task_panics: TaskPanics::default(),
            }),
        })
    }

    /// Sets where an instance's notifications go. Targets of removed instances are kept, so
    /// what they already committed is still delivered.
    pub fn set_target(&self, instance: &str, target: Target) {
        self.inner
            .targets
            .write()
            .expect("targets")
            .insert(instance.to_string(), Arc::new(Route::new(target)));
    }

    /// Makes `instance`'s deliveries also trust `ca` (its `tls.caFile`), or only the system
    /// roots when `None`. A client is built once per CA bundle, not on every reload, and shared
    /// by every instance that trusts the same bundle.
    pub fn set_trusted_ca(&self, instance: &str, ca: Option<&TlsCa>) -> Result<(), ClientError> {
        let mut clients = self.inner.ca_clients.write().expect("ca clients");
        let Some(ca) = ca else {
            clients.remove(instance);
            return Ok(());
        };
        if clients.get(instance).is_some_and(|(known, _)| known == ca) {
            return Ok(());
        }
        let mut by_ca = self.inner.clients_by_ca.lock().expect("clients by CA");
        let client = match by_ca.get(&ca.pem).and_then(Weak::upgrade) {
            Some(shared) => shared,
            None => {
                let built = Arc::new(WebhookClient::new(
                    &self.inner.settings,
                    Some(&ca.pem),
                    &self.inner.proxies,
                )?);
                by_ca.retain(|_, client| client.strong_count() > 0);
                by_ca.insert(ca.pem.clone(), Arc::downgrade(&built));
                built
            }
        };
        clients.insert(instance.to_string(), (ca.clone(), client));
        Ok(())
    }

    /// How many distinct webhook clients instances with `tls.caFile` use (for tests).
    #[cfg(test)]
    fn ca_client_count(&self) -> usize {
        let clients = self.inner.ca_clients.read().expect("ca clients");
        let mut distinct: Vec<*const WebhookClient> =
            clients.values().map(|(_, c)| Arc::as_ptr(c)).collect();
        distinct.sort();
        distinct.dedup();
        distinct.len()
    }

    /// A commit added to `key`'s queue: make sure a worker is on it.
    pub fn wake(&self, key: &ResourceKey) {
        ensure_worker(&self.inner, key);
    }

    /// Starts workers for every non-empty queue (at start, and after targets change).
    pub fn wake_all(&self) -> Result<(), StoreError> {
        for key in self.inner.store.queues()? {
            ensure_worker(&self.inner, &key);
        }
        Ok(())
    }

    /// The daemon's record of task panics: delivery workers' and poll tasks'.
    pub fn task_panics(&self) -> TaskPanics {
        self.inner.task_panics.clone()
    }

    /// Number of queues with a worker running.
    pub fn active_queues(&self) -> usize {
        let workers = self.inner.workers.lock().expect("workers");
        workers.values().filter(|h| !h.is_finished()).count()
    }

    /// Graceful stop: no new attempts; attempts in flight get the grace period; then the store
    /// is flushed. Whatever was not delivered stays in the outbox for the next start.
    pub async fn shutdown(&self) {
        self.inner.stopping.cancel();
        let handles: Vec<JoinHandle<()>> = {
            let mut workers = self.inner.workers.lock().expect("workers");
            workers.drain().map(|(_, h)| h).collect()
        };
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

/// Most queue entries a worker reads from the store at once: one read serves several
/// deliveries when a queue has a backlog.
const PREFETCH_MAX_ENTRIES: usize = 16;
/// Most body bytes a worker reads ahead, so that large notifications are read fewer at a time.
const PREFETCH_MAX_BYTES: usize = 64 * 1024;

/// How many entries to read next, judged by the size of the last body delivered.
fn prefetch_limit(last_body_len: usize) -> usize {
    (PREFETCH_MAX_BYTES / last_body_len.max(1)).clamp(1, PREFETCH_MAX_ENTRIES)
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
    let mut workers = inner.workers.lock().unwrap_or_else(PoisonError::into_inner);
    if workers.get(key).is_some_and(|h| !h.is_finished()) {
        return;
    }
    let handle = tokio::spawn(guarded_work_queue(inner.clone(), key.clone()));
    workers.insert(key.clone(), handle);
}

/// [`work_queue`], started again after a panic (see [`run_restarting`]): the panic is logged,
/// shown by `status` for this resource and counted, and the queue is delivered again. The
/// restarted worker keeps its place in `workers`, so no second worker starts meanwhile.
async fn guarded_work_queue(inner: Arc<Inner>, key: ResourceKey) {
    let poisoned = inner.clone();
    let task = GuardedTask {
        kind: TaskKind::Delivery,
        key: key.clone(),
        panics: inner.task_panics.clone(),
        backoff: WORKER_RESTART,
        on_panic: Box::new(move |_| {
            // The panic may have struck while a lock was held; what they guard is plain data,
            // still whole, so the other workers go on.
            poisoned.workers.clear_poison();
            poisoned.targets.clear_poison();
            poisoned.ca_clients.clear_poison();
            if let Some(observer) = &poisoned.observer {
                observer.worker_panicked();
            }
        }),
    };
    let stopping = inner.stopping.clone();
    run_restarting(task, stopping, move || {
        work_queue(inner.clone(), key.clone())
    })
    .await;
}

/// Delivers one queue's notifications in order until it is empty or delivery stops.
///
/// Entries are read from the store a few at a time into `ahead`. Only this worker changes the
/// front of its queue (commits and replays append behind it), so what it read stays true while
/// its deliveries succeed; after anything else (a retry, a dead letter, a store error, a wait)
/// it drops what it read ahead and reads the queue again.
async fn work_queue(inner: Arc<Inner>, key: ResourceKey) {
    let mut failing = false;
    let mut store_trouble = 0u32;
    let mut ahead: VecDeque<crate::store::OutboxEntry> = VecDeque::new();
    let mut read_limit = 1;
    loop {
        if inner.stopping.is_cancelled() {
            return;
        }
        if ahead.is_empty() {
            match inner.store.outbox_front(&key, read_limit) {
                Ok(front) if front.is_empty() => {
                    // Leave only if still empty while holding the registry: a commit that
                    // lands now will find no worker and start one.
                    let mut workers = inner.workers.lock().expect("workers");
                    if matches!(inner.store.outbox_front(&key, 1), Ok(front) if front.is_empty()) {
                        workers.remove(&key);
                        return;
                    }
                    continue;
                }
                Ok(front) => ahead = front.into(),
                Err(e) => {
                    store_trouble += 1;
                    // Once per outage, not once per retry: the store logs its own failure too.
                    if store_trouble == 1 {
                        tracing::error!(instance = %key.instance, resource = %key.resource, "reading the outbox: {e}; retrying");
                    }
                    if pause(&inner, Duration::from_secs(store_trouble.min(30) as u64)).await {
                        return;
                    }
                    continue;
                }
            }
        }
        let Some(head) = ahead.pop_front() else {
            continue;
        };
        if store_trouble > 0 {
            tracing::info!(instance = %key.instance, resource = %key.resource, "reading the outbox works again");
            store_trouble = 0;
        }
        let now = Utc::now();
        if let Some(at) = head.next_attempt_at.filter(|at| *at > now) {
            ahead.clear();
            if pause(&inner, (at - now).to_std().unwrap_or_default()).await {
                return;
            }
            continue;
        }
        let route = inner
            .targets
            .read()
            .expect("targets")
            .get(&key.instance)
            .cloned();
        let Some(route) = route else {
            tracing::warn!(
                instance = %key.instance, resource = %key.resource,
                "notifications are queued for an instance that is not loaded; they wait until it is"
            );
            inner.workers.lock().expect("workers").remove(&key);
            return;
        };
        // Retries send the very bytes the store holds; `Bytes` shares them without copying.
        let mut head = head;
        let body = bytes::Bytes::from(std::mem::take(&mut head.body));
        read_limit = prefetch_limit(body.len());
        let permit = tokio::select! {
            _ = inner.stopping.cancelled() => return,
            p = inner.permits.clone().acquire_owned() => p.expect("never closed"),
        };
        let http = inner
            .ca_clients
            .read()
            .expect("ca clients")
            .get(&key.instance)
            .map_or_else(|| inner.http.clone(), |(_, client)| client.clone());
        let outcome = tokio::select! {
            _ = inner.abandon.cancelled() => return,
            o = attempt::attempt(&http, &route, &head, &body, Utc::now()) => o,
        };
        drop(permit);
        let span = (
            key.instance.as_str(),
            key.resource.as_str(),
            head.event_id.as_str(),
        );
        let delivered = matches!(outcome, Outcome::Delivered { .. });
        let result = match outcome {
            Outcome::Delivered { .. } => {
                if failing {
                    tracing::info!(
                        instance = span.0,
                        resource = span.1,
                        event_id = span.2,
                        "delivery recovered"
                    );
                    failing = false;
                }
                observe(&inner, "ok", (Utc::now() - head.created_at).to_std().ok());
                inner.store.ack(&key, head.seq)
            }
            Outcome::Retry {
                status,
                error,
                retry_after,
            } => {
                let failures = head.attempts + 1;
                match attempt::next_delay(&inner.schedule, failures, retry_after) {
                    Some(delay) => {
                        if !failing {
                            tracing::warn!(
                                instance = span.0,
                                resource = span.1,
                                event_id = span.2,
                                "delivery to {} failed ({error}); retrying in {:.0?}, later notifications of this resource wait",
                                route.shown_url,
                                delay
                            );
                            failing = true;
                        }
                        observe(&inner, "retry", None);
                        let at = crate::time_math::utc_after(Utc::now(), delay);
                        inner
                            .store
                            .record_failure(&key, head.seq, failures, at, &error)
                    }
                    None => {
                        let why = format!("delivery gave up after {failures} attempts ({error})");
                        bury(&inner, &key, &head, failures, status, &error, &why)
                    }
                }
            }
            Outcome::Reject { status, error } => {
                let why = format!("the receiver rejected the notification ({error})");
                bury(
                    &inner,
                    &key,
                    &head,
                    head.attempts + 1,
                    Some(status),
                    &error,
                    &why,
                )
            }
        };
        if !delivered || result.is_err() {
            ahead.clear();
        }
        if let Err(e) = result {
            tracing::error!(
                instance = span.0,
                resource = span.1,
                event_id = span.2,
                "recording the delivery outcome: {e}"
            );
            if pause(&inner, Duration::from_secs(1)).await {
                return;
            }
        }
    }
}

/// Moves the head to the dead letters, loudly: the queue moves on without it.
fn bury(
    inner: &Inner,
    key: &ResourceKey,
    head: &crate::store::OutboxEntry,
    attempts: u32,
    status: Option<u16>,
    error: &str,
    why: &str,
) -> Result<(), StoreError> {
    tracing::error!(
        instance = %key.instance, resource = %key.resource, event_id = %head.event_id,
        "{why}; moved to dead letters (pollerd dead-letters replay {})", head.event_id
    );
    observe(inner, "dead", None);
    inner
        .store
        .dead_letter(key, head.seq, attempts, status, error)
}

fn observe(inner: &Inner, outcome: &str, latency: Option<Duration>) {
    if let Some(o) = &inner.observer {
        o.delivered(outcome, latency);
    }
}

/// Sleeps, or returns true when delivery is stopping.
async fn pause(inner: &Inner, d: Duration) -> bool {
    tokio::select! {
        _ = inner.stopping.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}
