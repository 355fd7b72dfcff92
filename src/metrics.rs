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

/// A counter family with one label whose expected values are created up front: their series
/// show 0 from the start (so `rate()` and alerts see them) and updating them takes no lock.
#[derive(Clone)]
struct LabelledCounter {
    label: &'static str,
    family: Family<LabelSet, Counter>,
    known: Vec<(&'static str, Counter)>,
}

impl LabelledCounter {
    fn new(label: &'static str, known_values: &[&'static str]) -> LabelledCounter {
        let family = Family::<LabelSet, Counter>::default();
        let known = known_values
            .iter()
            .map(|value| {
                let counter = family.get_or_create_owned(&[(label, (*value).to_string())]);
                (*value, counter)
            })
            .collect();
        LabelledCounter {
            label,
            family,
            known,
        }
    }

    fn inc_by(&self, value: &str, n: u64) {
        match self.known.iter().find(|(known, _)| *known == value) {
            Some((_, counter)) => {
                counter.inc_by(n);
            }
            None => {
                self.family
                    .get_or_create(&[(self.label, value.to_string())])
                    .inc_by(n);
            }
        }
    }
}

struct Instruments {
    registry: Registry,
    polls: LabelledCounter,
    poll_duration: Histogram,
    records_fetched: Counter,
    records_skipped: Counter,
    events: LabelledCounter,
    deliveries: LabelledCounter,
    delivery_latency: Histogram,
    outbox_depth: Gauge,
    dead_letters: Gauge,
    corrupt_set_aside: Gauge,
    reloads: LabelledCounter,
    task_panics: LabelledCounter,
}

/// The daemon's metrics. Cloning is cheap and every clone updates the same values.
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
    /// Long on purpose: one registration per metric, in the order `/metrics` lists them (issue 14
    /// item 2 replaces these with internal events that register themselves).
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("pollerd");
        let polls = LabelledCounter::new("outcome", &["ok", "error", "baseline"]);
        registry.register(
            "polls",
            "Poll runs by outcome (baseline: the first run of a resource, which only sets its watermark)",
            polls.family.clone(),
        );
        let poll_duration = Histogram::new(POLL_DURATION_BUCKETS);
        registry.register(
            "poll_duration_seconds",
            "Duration of poll runs",
            poll_duration.clone(),
        );
        let records_fetched = Counter::default();
        registry.register(
            "records_fetched",
            "Records read from providers",
            records_fetched.clone(),
        );
        let records_skipped = Counter::default();
        registry.register(
            "records_skipped",
            "Records skipped for a missing id or an unparseable date",
            records_skipped.clone(),
        );
        let events = LabelledCounter::new("type", &["CREATED", "UPDATED"]);
        registry.register(
            "events",
            "Events emitted, by event type",
            events.family.clone(),
        );
        let deliveries = LabelledCounter::new("outcome", &["ok", "retry", "dead"]);
        registry.register(
            "deliveries",
            "Notification delivery attempts by outcome",
            deliveries.family.clone(),
        );
        let delivery_latency = Histogram::new(DELIVERY_LATENCY_BUCKETS);
        registry.register(
            "delivery_latency_seconds",
            "Time from a notification's commit to its successful delivery",
            delivery_latency.clone(),
        );
        let outbox_depth = Gauge::default();
        registry.register(
            "outbox_depth",
            "Notifications waiting for delivery",
            outbox_depth.clone(),
        );
        let dead_letters = Gauge::default();
        registry.register(
            "dead_letters",
            "Dead letters kept until replayed or dropped",
            dead_letters.clone(),
        );
        let corrupt_set_aside = Gauge::default();
        registry.register(
            "store_corrupt_set_aside",
            "Store entries found corrupt and moved aside to the dead letters since the daemon started",
            corrupt_set_aside.clone(),
        );
        let reloads = LabelledCounter::new("result", &["ok", "error"]);
        registry.register(
            "reloads",
            "Configuration reloads by result",
            reloads.family.clone(),
        );
        let task_panics = LabelledCounter::new("task", &["poll", "delivery"]);
        registry.register(
            "task_panics",
            "Poll tasks and delivery workers that panicked (a bug) and were started again",
            task_panics.family.clone(),
        );
        Metrics {
            instruments: Arc::new(Instruments {
                registry,
                polls,
                poll_duration,
                records_fetched,
                records_skipped,
                events,
                deliveries,
                delivery_latency,
                outbox_depth,
                dead_letters,
                corrupt_set_aside,
                reloads,
                task_panics,
            }),
        }
    }

    /// One poll run ended: `outcome` is "ok", "error" or "baseline".
    pub fn poll(&self, outcome: &str, duration: Duration) {
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

    /// `event_type` is "CREATED" or "UPDATED".
    pub fn events(&self, event_type: &str, n: u64) {
        self.instruments.events.inc_by(event_type, n);
    }

    /// One delivery attempt ended: `outcome` is "ok", "retry" or "dead". The latency (from the
    /// notification's commit) is recorded when given, normally with "ok".
    pub fn delivery(&self, outcome: &str, latency_from_commit: Option<Duration>) {
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

    /// A reload ended: `result` is "ok" or "error".
    pub fn reload(&self, result: &str) {
        self.instruments.reloads.inc_by(result, 1);
    }

    /// A task panicked and was started again: `task` is "poll" or "delivery".
    pub fn task_panic(&self, task: &str) {
        self.instruments.task_panics.inc_by(task, 1);
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

async fn metrics_page(State(state): State<ServerState>) -> Response {
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        state.metrics.render(),
    )
        .into_response()
}

async fn ready_page(State(state): State<ServerState>) -> Response {
    if (state.ready)() {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
    }
}
