//! Prometheus metrics: counters and histograms updated from the hot paths, and a small HTTP
//! server for `/metrics`, `/healthz` and `/ready`.
//!
//! The exposition is OpenMetrics text (what the official Rust client writes, and what Prometheus
//! asks for first): counter families are declared without their `_total` suffix, and the body
//! ends with `# EOF`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::listener::Limits;
use crate::task_guard::TaskKind;

mod per_resource;

pub use per_resource::{CallbackSample, ResourceSample, Snapshot, SnapshotSource};

/// Content type of the OpenMetrics text exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Poll runs last from milliseconds (one page) to minutes (a large backfill).
const POLL_DURATION_BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// From commit to a 2xx: milliseconds when the receiver is up, up to days through the retry
/// schedule (its last step is about three days).
const DELIVERY_LATENCY_BUCKETS: [f64; 14] = [
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0, 3600.0, 21600.0, 86400.0, 345600.0,
];

type LabelSet = [(&'static str, String); 1];

/// The values of a metric label, every one known in advance: their series are created up front
/// (they show 0 from the start, so `rate()` and alerts see them), and no value from outside can
/// become a series.
pub trait LabelValue: Copy + PartialEq + 'static {
    /// Every value, in the order `/metrics` lists their series.
    const ALL: &'static [Self];

    /// The value as the label shows it.
    fn as_label(self) -> &'static str;
}

/// How a poll run ended (`pollerd_polls_total{outcome}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PollOutcome {
    Ok,
    Error,
    /// The first run of a resource, which only sets its watermark.
    Baseline,
}

impl LabelValue for PollOutcome {
    const ALL: &'static [PollOutcome] =
        &[PollOutcome::Ok, PollOutcome::Error, PollOutcome::Baseline];

    fn as_label(self) -> &'static str {
        match self {
            PollOutcome::Ok => "ok",
            PollOutcome::Error => "error",
            PollOutcome::Baseline => "baseline",
        }
    }
}

/// The type of the events counted by `pollerd_events_total{type}`: SPEC §5's event types, as
/// the envelope writes them. (`poller::EventType` is the envelope's own; `metrics` sits below the
/// poller, so it names the types itself.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Created,
    Updated,
    Deleted,
}

impl LabelValue for EventType {
    const ALL: &'static [EventType] = &[EventType::Created, EventType::Updated, EventType::Deleted];

    fn as_label(self) -> &'static str {
        match self {
            EventType::Created => "CREATED",
            EventType::Updated => "UPDATED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// How a reconcile (the DELETED check) ended (`pollerd_reconciles_total{outcome}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReconcileOutcome {
    /// Compared and committed (DELETED events, if any, queued).
    Ok,
    /// The resource's first reconcile: it only learned which records exist.
    Baseline,
    /// Would have deleted more than `deletedMaxFraction`: nothing changed.
    MassDeleteRefused,
    /// A page failed (or a record had no id): nothing changed.
    Error,
}

impl LabelValue for ReconcileOutcome {
    const ALL: &'static [ReconcileOutcome] = &[
        ReconcileOutcome::Ok,
        ReconcileOutcome::Baseline,
        ReconcileOutcome::MassDeleteRefused,
        ReconcileOutcome::Error,
    ];

    fn as_label(self) -> &'static str {
        match self {
            ReconcileOutcome::Ok => "ok",
            ReconcileOutcome::Baseline => "baseline",
            ReconcileOutcome::MassDeleteRefused => "mass_delete_refused",
            ReconcileOutcome::Error => "error",
        }
    }
}

/// How a delivery attempt settled (`pollerd_deliveries_total{outcome}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// A 2xx: the notification left its queue.
    Ok,
    /// Failed, tried again later.
    Retry,
    /// Moved to the dead letters.
    Dead,
}

impl LabelValue for DeliveryOutcome {
    const ALL: &'static [DeliveryOutcome] = &[
        DeliveryOutcome::Ok,
        DeliveryOutcome::Retry,
        DeliveryOutcome::Dead,
    ];

    fn as_label(self) -> &'static str {
        match self {
            DeliveryOutcome::Ok => "ok",
            DeliveryOutcome::Retry => "retry",
            DeliveryOutcome::Dead => "dead",
        }
    }
}

/// How a reload of the instance files ended (`pollerd_reloads_total{result}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReloadOutcome {
    Ok,
    /// At least one file, or the directory, could not be used.
    Error,
}

impl LabelValue for ReloadOutcome {
    const ALL: &'static [ReloadOutcome] = &[ReloadOutcome::Ok, ReloadOutcome::Error];

    fn as_label(self) -> &'static str {
        match self {
            ReloadOutcome::Ok => "ok",
            ReloadOutcome::Error => "error",
        }
    }
}

/// Why this node lost a lease (`pollerd_lease_lost_total{cause}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseLossCause {
    /// A write of the instance was refused: another node holds the lease now.
    Write,
    /// The renewal found the lease held by another node, or at another epoch.
    Renewal,
    /// Not renewed in time (PostgreSQL unreachable, or this node paused): given up unrenewed.
    Expired,
}

impl LabelValue for LeaseLossCause {
    const ALL: &'static [LeaseLossCause] = &[
        LeaseLossCause::Write,
        LeaseLossCause::Renewal,
        LeaseLossCause::Expired,
    ];

    fn as_label(self) -> &'static str {
        match self {
            LeaseLossCause::Write => "write",
            LeaseLossCause::Renewal => "renewal",
            LeaseLossCause::Expired => "expired",
        }
    }
}

/// `pollerd_task_panics_total{task}`.
impl LabelValue for TaskKind {
    const ALL: &'static [TaskKind] = &[TaskKind::Poll, TaskKind::Delivery];

    fn as_label(self) -> &'static str {
        self.name()
    }
}

/// A counter family with one label, its series created for every value of `L` up front;
/// updating them takes no lock.
#[derive(Clone)]
struct LabelledCounter<L> {
    label: &'static str,
    family: Family<LabelSet, Counter>,
    series: Vec<(L, Counter)>,
}

impl<L: LabelValue> LabelledCounter<L> {
    fn register(
        registry: &mut Registry,
        name: &str,
        help: &str,
        label: &'static str,
    ) -> LabelledCounter<L> {
        let family = Family::<LabelSet, Counter>::default();
        let series = L::ALL
            .iter()
            .map(|value| {
                let labels = [(label, value.as_label().to_string())];
                (*value, family.get_or_create_owned(&labels))
            })
            .collect();
        registry.register(name, help, family.clone());
        LabelledCounter {
            label,
            family,
            series,
        }
    }

    fn inc_by(&self, value: L, n: u64) {
        match self.series.iter().find(|(known, _)| *known == value) {
            Some((_, counter)) => {
                counter.inc_by(n);
            }
            // A value `ALL` forgot is still counted, from its first update on.
            None => {
                let labels = [(self.label, value.as_label().to_string())];
                self.family.get_or_create(&labels).inc_by(n);
            }
        }
    }
}

/// Registers `metric` as `name` and returns it (a clone shares its values).
fn register<M>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M
where
    M: prometheus_client::registry::Metric + Clone,
{
    registry.register(name, help, metric.clone());
    metric
}

struct Instruments {
    registry: Registry,
    polls: LabelledCounter<PollOutcome>,
    poll_duration: Histogram,
    records_fetched: Counter,
    records_skipped: Counter,
    events: LabelledCounter<EventType>,
    reconciles: LabelledCounter<ReconcileOutcome>,
    deliveries: LabelledCounter<DeliveryOutcome>,
    delivery_latency: Histogram,
    outbox_depth: Gauge,
    dead_letters: Gauge,
    corrupt_set_aside: Gauge,
    reloads: LabelledCounter<ReloadOutcome>,
    last_reload_ok: Gauge,
    task_panics: LabelledCounter<TaskKind>,
    leases_held: Gauge,
    lease_takeovers: Counter,
    lease_lost: LabelledCounter<LeaseLossCause>,
    tenant_throttled: Counter,
    tenant_throttled_waiting: Gauge,
    per_resource: per_resource::PerResource,
}

/// The daemon's metrics. Cloning is cheap and every clone updates the same values. What updates
/// them is the internal events (`crate::internal_events`), which write the log line too.
#[derive(Clone)]
pub struct Metrics {
    instruments: Arc<Instruments>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// Long on purpose: one registration per metric, in the order `/metrics` lists them.
    #[allow(clippy::too_many_lines)]
    pub fn new() -> Metrics {
        let mut r = Registry::with_prefix("pollerd");
        let instruments = Instruments {
            polls: LabelledCounter::register(
                &mut r,
                "polls",
                "Poll runs by outcome (baseline: the first run of a resource, which only sets its watermark)",
                "outcome",
            ),
            poll_duration: register(
                &mut r,
                "poll_duration_seconds",
                "Duration of poll runs",
                Histogram::new(POLL_DURATION_BUCKETS),
            ),
            records_fetched: register(
                &mut r,
                "records_fetched",
                "Records read from providers",
                Counter::default(),
            ),
            records_skipped: register(
                &mut r,
                "records_skipped",
                "Records skipped for a missing id or an unparseable date",
                Counter::default(),
            ),
            events: LabelledCounter::register(
                &mut r,
                "events",
                "Events emitted, by event type",
                "type",
            ),
            reconciles: LabelledCounter::register(
                &mut r,
                "reconciles",
                "Reconciles of known ids (the DELETED check) by outcome",
                "outcome",
            ),
            deliveries: LabelledCounter::register(
                &mut r,
                "deliveries",
                "Notification delivery attempts by outcome",
                "outcome",
            ),
            delivery_latency: register(
                &mut r,
                "delivery_latency_seconds",
                "Time from a notification's commit to its successful delivery",
                Histogram::new(DELIVERY_LATENCY_BUCKETS),
            ),
            outbox_depth: register(
                &mut r,
                "outbox_depth",
                "Notifications waiting for delivery",
                Gauge::default(),
            ),
            dead_letters: register(
                &mut r,
                "dead_letters",
                "Dead letters kept until replayed or dropped",
                Gauge::default(),
            ),
            corrupt_set_aside: register(
                &mut r,
                "store_corrupt_set_aside",
                "Store entries found corrupt and moved aside to the dead letters since the daemon started",
                Gauge::default(),
            ),
            reloads: LabelledCounter::register(
                &mut r,
                "reloads",
                "Configuration reloads by result",
                "result",
            ),
            last_reload_ok: register(
                &mut r,
                "config_last_reload_successful",
                "1 when the last reload of the instance files used every file, 0 when one could not be used",
                Gauge::default(),
            ),
            task_panics: LabelledCounter::register(
                &mut r,
                "task_panics",
                "Poll tasks and delivery workers that panicked (a bug) and were started again",
                "task",
            ),
            leases_held: register(
                &mut r,
                "leases_held",
                "Instance leases this node holds (PostgreSQL store)",
                Gauge::default(),
            ),
            lease_takeovers: register(
                &mut r,
                "lease_takeovers",
                "Expired leases of other nodes this node took over",
                Counter::default(),
            ),
            lease_lost: LabelledCounter::register(
                &mut r,
                "lease_lost",
                "Leases this node lost before releasing them, by cause",
                "cause",
            ),
            tenant_throttled: register(
                &mut r,
                "tenant_throttled",
                "Provider requests that waited for their tenant's request budget ([polling] tenant_requests_per_minute)",
                Counter::default(),
            ),
            tenant_throttled_waiting: register(
                &mut r,
                "tenant_throttled_waiting",
                "Provider requests waiting for their tenant's request budget now",
                Gauge::default(),
            ),
            per_resource: {
                let collector = per_resource::PerResource::default();
                r.register_collector(Box::new(collector.clone()));
                collector
            },
            // Last: every registration above borrowed it.
            registry: r,
        };
        Metrics {
            instruments: Arc::new(instruments),
        }
    }

    /// One poll run ended.
    pub fn poll(&self, outcome: PollOutcome, duration: Duration) {
        self.instruments.polls.inc_by(outcome, 1);
        self.instruments
            .poll_duration
            .observe(duration.as_secs_f64());
    }

    pub fn records_fetched(&self, n: u64) {
        self.instruments.records_fetched.inc_by(n);
    }

    pub fn records_skipped(&self, n: u64) {
        self.instruments.records_skipped.inc_by(n);
    }

    pub fn events(&self, event_type: EventType, n: u64) {
        self.instruments.events.inc_by(event_type, n);
    }

    /// One delivery attempt ended. The latency (from the notification's commit) is recorded
    /// when given, normally with [`DeliveryOutcome::Ok`].
    /// One reconcile ended.
    pub fn reconcile(&self, outcome: ReconcileOutcome) {
        self.instruments.reconciles.inc_by(outcome, 1);
    }

    pub fn delivery(&self, outcome: DeliveryOutcome, latency_from_commit: Option<Duration>) {
        self.instruments.deliveries.inc_by(outcome, 1);
        if let Some(latency) = latency_from_commit {
            self.instruments
                .delivery_latency
                .observe(latency.as_secs_f64());
        }
    }

    pub fn set_outbox_depth(&self, n: u64) {
        self.instruments.outbox_depth.set(gauge_value(n));
    }

    pub fn set_dead_letters(&self, n: u64) {
        self.instruments.dead_letters.set(gauge_value(n));
    }

    pub fn set_corrupt_set_aside(&self, n: u64) {
        self.instruments.corrupt_set_aside.set(gauge_value(n));
    }

    /// A reload of the instance files ended.
    pub fn reload(&self, outcome: ReloadOutcome) {
        self.instruments.reloads.inc_by(outcome, 1);
        let ok = i64::from(outcome == ReloadOutcome::Ok);
        self.instruments.last_reload_ok.set(ok);
    }

    /// Where each scrape reads the per-instance and per-resource series (the daemon's state for
    /// `status`); without one they are described with no samples.
    pub fn set_snapshot_source(&self, source: SnapshotSource) {
        self.instruments.per_resource.set_source(source);
    }

    /// A task panicked and was started again.
    pub fn task_panic(&self, task: TaskKind) {
        self.instruments.task_panics.inc_by(task, 1);
    }

    pub fn set_leases_held(&self, n: u64) {
        self.instruments.leases_held.set(gauge_value(n));
    }

    pub fn lease_takeover(&self) {
        self.instruments.lease_takeovers.inc();
    }

    pub fn lease_lost(&self, cause: LeaseLossCause) {
        self.instruments.lease_lost.inc_by(cause, 1);
    }

    /// A provider request started waiting for its tenant's request budget.
    pub fn tenant_throttle_started(&self) {
        self.instruments.tenant_throttled.inc();
        self.instruments.tenant_throttled_waiting.inc();
    }

    /// A wait for a tenant's request budget ended.
    pub fn tenant_throttle_ended(&self) {
        self.instruments.tenant_throttled_waiting.dec();
    }

    /// The OpenMetrics text exposition of every metric.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail; the encoder's only errors come from the writer.
        encode(&mut text, &self.instruments.registry).expect("writing to a String never fails");
        text
    }
}

/// Gauges hold i64; a count beyond that is not a real case, so it saturates.
fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Whether the daemon is ready (store open, instances loaded); asked on every `/ready`.
pub type ReadyCheck = Arc<dyn Fn() -> bool + Send + Sync>;

#[derive(Clone)]
struct ServerState {
    metrics: Metrics,
    ready: ReadyCheck,
}

/// Serves `/metrics`, `/healthz` (200 "ok") and `/ready` (200 when `ready()` is true, else 503)
/// on `listen` until `cancel` fires, within the daemon's [`Limits`]. Returns the bound address
/// (useful with port 0).
pub async fn serve(
    listen: SocketAddr,
    metrics: Metrics,
    ready: ReadyCheck,
    cancel: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    serve_within(listen, metrics, ready, Limits::DAEMON, cancel).await
}

/// [`serve`] within other limits.
pub async fn serve_within(
    listen: SocketAddr,
    metrics: Metrics,
    ready: ReadyCheck,
    limits: Limits,
    cancel: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|cause| MetricsServerError::Bind { listen, cause })?;
    let bound = listener
        .local_addr()
        .map_err(|cause| MetricsServerError::Bind { listen, cause })?;
    let router = Router::new()
        .route("/metrics", get(metrics_page))
        .route("/healthz", get(|| async { "ok" }))
        .route("/ready", get(ready_page))
        .with_state(ServerState { metrics, ready });
    tokio::spawn(crate::listener::serve(
        listener, router, limits, "metrics", cancel,
    ));
    tracing::debug!(%bound, "metrics server listening");
    Ok(bound)
}

/// Why the metrics server could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsServerError {
    #[error("cannot listen for metrics on {listen}: {cause}")]
    Bind {
        listen: SocketAddr,
        cause: std::io::Error,
    },
}

/// Rendered on a blocking thread: the per-resource series read the daemon's state and store.
async fn metrics_page(State(state): State<ServerState>) -> Response {
    let metrics = state.metrics.clone();
    match tokio::task::spawn_blocking(move || metrics.render()).await {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "rendering the metrics failed",
        )
            .into_response(),
    }
}

async fn ready_page(State(state): State<ServerState>) -> Response {
    if (state.ready)() {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
    }
}
