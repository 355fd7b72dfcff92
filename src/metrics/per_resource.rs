//! The per-instance and per-resource series, built at each scrape from what the daemon keeps
//! for `pollerd status` (a [`Snapshot`] the daemon hands over), so they always agree with it and
//! a removed instance's series go with it. Labels: `pollerd_instance` (not `instance`, which
//! Prometheus sets to the scraped target) and `resource`, both from the operator's own files;
//! never a URL (a callback URL may hold credentials).

use std::sync::{Arc, RwLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder};
use prometheus_client::metrics::MetricType;

/// What the daemon knows of one resource of an enabled instance when `/metrics` is asked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResourceSample {
    pub instance: String,
    pub resource: String,
    pub poll_interval_seconds: f64,
    /// Unix seconds; 0 when never.
    pub poll_started_at: f64,
    pub last_success_at: f64,
    pub failed_polls: u64,
    /// Now − the watermark; `None` before the first run set one.
    pub watermark_lag_seconds: Option<f64>,
    pub outbox_depth: u64,
    /// 0 when the queue is empty.
    pub oldest_queued_age_seconds: f64,
    pub dead_letters: u64,
    pub polls_ok: u64,
    pub polls_error: u64,
    pub polls_baseline: u64,
    pub events_created: u64,
    pub events_updated: u64,
    pub events_deleted: u64,
}

/// What the daemon knows of one enabled instance's callback (all its resource queues).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CallbackSample {
    pub instance: String,
    /// Unix seconds of the last 2xx since the daemon started; 0 when none.
    pub last_success_at: f64,
    /// Unix seconds since which a queue's head has been failing; 0 when none is.
    pub failing_since: f64,
    pub delivered: u64,
    pub latency_sum_seconds: f64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub resources: Vec<ResourceSample>,
    pub callbacks: Vec<CallbackSample>,
}

/// Called at each scrape, on a blocking thread (it may read the store).
pub type SnapshotSource = Arc<dyn Fn() -> Snapshot + Send + Sync>;

/// The collector registered in the registry; the daemon sets its source once it has one.
#[derive(Clone, Default)]
pub(super) struct PerResource {
    source: Arc<RwLock<Option<SnapshotSource>>>,
}

impl std::fmt::Debug for PerResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PerResource")
    }
}

impl PerResource {
    pub(super) fn set_source(&self, source: SnapshotSource) {
        *self.source.write().unwrap_or_else(|e| e.into_inner()) = Some(source);
    }

    fn snapshot(&self) -> Snapshot {
        let source = self
            .source
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        source.map(|source| source()).unwrap_or_default()
    }
}

type Labels<'a> = Vec<(&'static str, &'a str)>;

fn of_resource(r: &ResourceSample) -> Labels<'_> {
    vec![
        ("pollerd_instance", r.instance.as_str()),
        ("resource", r.resource.as_str()),
    ]
}

fn of_callback(c: &CallbackSample) -> Labels<'_> {
    vec![("pollerd_instance", c.instance.as_str())]
}

/// How one family is described and what each of its rows writes.
struct Family<'a, T> {
    name: &'a str,
    help: &'a str,
    kind: MetricType,
    rows: &'a [T],
}

impl<T> Family<'_, T> {
    /// The descriptor, then the samples of every row (none: the family is still described, so
    /// `/metrics` lists it from the start).
    fn encode(
        self,
        encoder: &mut DescriptorEncoder,
        mut sample: impl FnMut(&mut MetricEncoder, &T) -> Result<(), std::fmt::Error>,
    ) -> Result<(), std::fmt::Error> {
        let mut metric = encoder.encode_descriptor(self.name, self.help, None, self.kind)?;
        for row in self.rows {
            sample(&mut metric, row)?;
        }
        Ok(())
    }
}

fn gauge<'a, T>(name: &'a str, help: &'a str, rows: &'a [T]) -> Family<'a, T> {
    Family {
        name,
        help,
        kind: MetricType::Gauge,
        rows,
    }
}

fn counter<'a, T>(name: &'a str, help: &'a str, rows: &'a [T]) -> Family<'a, T> {
    Family {
        name,
        help,
        kind: MetricType::Counter,
        rows,
    }
}

fn set(m: &mut MetricEncoder, labels: &Labels, value: f64) -> Result<(), std::fmt::Error> {
    m.encode_family(labels)?.encode_gauge(&value)
}

fn count(m: &mut MetricEncoder, labels: &Labels, value: u64) -> Result<(), std::fmt::Error> {
    m.encode_family(labels)?
        .encode_counter::<Labels, u64, f64>(&value, None)
}

/// Counts as f64 for a gauge: exact up to 2^53, far beyond any queue.
fn float(n: u64) -> f64 {
    n as f64
}

impl Collector for PerResource {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snapshot = self.snapshot();
        encode_resources(&mut e, &snapshot.resources)?;
        encode_callbacks(&mut e, &snapshot.callbacks)
    }
}

/// Long on purpose: one family per metric, in the order `/metrics` lists them.
#[allow(clippy::too_many_lines)]
fn encode_resources(
    e: &mut DescriptorEncoder,
    rows: &[ResourceSample],
) -> Result<(), std::fmt::Error> {
    gauge(
        "resource_poll_interval_seconds",
        "The refresh interval of the resource's instance",
        rows,
    )
    .encode(e, |m, r| set(m, &of_resource(r), r.poll_interval_seconds))?;
    gauge(
        "resource_poll_started_timestamp_seconds",
        "When the resource's poll loop started (its instance was loaded or changed)",
        rows,
    )
    .encode(e, |m, r| set(m, &of_resource(r), r.poll_started_at))?;
    gauge(
        "resource_last_success_timestamp_seconds",
        "When a poll run of the resource last completed; 0 before the first",
        rows,
    )
    .encode(e, |m, r| set(m, &of_resource(r), r.last_success_at))?;
    gauge(
        "resource_consecutive_failed_polls",
        "Poll runs of the resource failed since the last that completed",
        rows,
    )
    .encode(e, |m, r| set(m, &of_resource(r), float(r.failed_polls)))?;
    gauge(
        "resource_watermark_lag_seconds",
        "Now minus the resource's watermark (absent before its first run sets one)",
        rows,
    )
    .encode(e, |m, r| match r.watermark_lag_seconds {
        Some(lag) => set(m, &of_resource(r), lag),
        None => Ok(()),
    })?;
    gauge(
        "resource_outbox_depth",
        "Notifications of the resource waiting for delivery",
        rows,
    )
    .encode(e, |m, r| set(m, &of_resource(r), float(r.outbox_depth)))?;
    gauge(
        "resource_outbox_oldest_age_seconds",
        "Age of the resource's oldest queued notification; 0 when none waits",
        rows,
    )
    .encode(e, |m, r| {
        set(m, &of_resource(r), r.oldest_queued_age_seconds)
    })?;
    gauge(
        "resource_dead_letters",
        "Dead letters of the resource",
        rows,
    )
    .encode(e, |m, r| set(m, &of_resource(r), float(r.dead_letters)))?;
    counter(
        "resource_polls",
        "Poll runs of the resource since its poll loop started, by outcome",
        rows,
    )
    .encode(e, |m, r| {
        let outcomes = [
            ("ok", r.polls_ok),
            ("error", r.polls_error),
            ("baseline", r.polls_baseline),
        ];
        for (outcome, n) in outcomes {
            let mut labels = of_resource(r);
            labels.push(("outcome", outcome));
            count(m, &labels, n)?;
        }
        Ok(())
    })?;
    counter(
        "resource_events",
        "Events of the resource since its poll loop started, by type",
        rows,
    )
    .encode(e, |m, r| {
        let types = [
            ("CREATED", r.events_created),
            ("UPDATED", r.events_updated),
            ("DELETED", r.events_deleted),
        ];
        for (kind, n) in types {
            let mut labels = of_resource(r);
            labels.push(("type", kind));
            count(m, &labels, n)?;
        }
        Ok(())
    })
}

fn encode_callbacks(
    e: &mut DescriptorEncoder,
    rows: &[CallbackSample],
) -> Result<(), std::fmt::Error> {
    gauge("callback_last_success_timestamp_seconds", "When the instance's callback last answered 2xx since the daemon started; 0 before the first", rows)
        .encode(e, |m, c| set(m, &of_callback(c), c.last_success_at))?;
    gauge(
        "callback_failing_since_timestamp_seconds",
        "Since when a queue of the instance has had its head waiting for a retry; 0 when none has",
        rows,
    )
    .encode(e, |m, c| set(m, &of_callback(c), c.failing_since))?;
    counter(
        "callback_delivered",
        "Notifications the instance's callback accepted since the daemon started",
        rows,
    )
    .encode(e, |m, c| count(m, &of_callback(c), c.delivered))?;
    counter("callback_delivery_latency_seconds", "Summed time from commit to 2xx of those notifications (divided by callback_delivered: the average)", rows)
        .encode(e, |m, c| {
            m.encode_family(&of_callback(c))?
                .encode_counter::<Labels, f64, f64>(&c.latency_sum_seconds, None)
        })
}
