//! Delivery: notifications already in the outbox (written with the library's store before the
//! daemon starts, bodies built by the poller's own envelope code from simulator contacts),
//! delivered to the fast receiver; then the ceiling: the same bodies posted to a fresh receiver
//! by a bare keep-alive reqwest client at the same concurrency, no store.
//!
//! The outbox is spread over as many resource queues as `[delivery] max_in_flight`, since each
//! queue is sent in order, one at a time (SPEC §6).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use chrono::Utc;
use pollerd::config::{InstanceSpec, SecretSources, load_instance_file};
use pollerd::poller::EventType;
use pollerd::poller::notification::{EventRecord, envelope, event_id};
use pollerd::sim::connectwise::{ConnectWiseSim, RecordKind, SimConfig};
use pollerd::store::{NewNotification, PageCommit, ResourceKey};
use serde_json::value::RawValue;

use crate::Bench;
use crate::harness::{DaemonDir, WAIT_LIMIT};
use crate::instances::{InstanceShape, instance};
use crate::postgres::StoreChoice;
use crate::receiver::{FastReceiver, Seen};
use crate::report::{Metric, Target, metric, quantile, targeted};

/// Notifications per store commit while filling, as one page's worth.
const FILL_COMMIT: usize = 1000;
/// Distinct contact records the bodies are made of.
const TEMPLATES: usize = 1000;

pub async fn run(bench: &Bench) -> anyhow::Result<Vec<Metric>> {
    let scale = bench.scale;
    let mut out = Vec::new();
    for batch in [1u32, 10] {
        let shape = DeliveryShape {
            notifications: scale.delivery_notifications,
            queues: scale.delivery_queues,
            max_in_flight: scale.max_in_flight,
            batch,
            answer_delay: None,
            ceiling: true,
        };
        let delivered = measure(bench, &shape).await?;
        let target = StoreChoice::delivery_ratio_target(bench.postgres.is_some(), batch);
        out.extend(batch_metrics(batch, delivered, target));
    }
    Ok(out)
}

/// The `delivery-variants` scenario (issue 17): ONE queue (`max_in_flight = 1`) to the fastest
/// receiver, beside the bare client at concurrency 1; then one queue to a receiver that answers
/// after [`SLOW_ANSWER`], where the daemon's CPU per notification is what counts.
pub async fn run_variants(bench: &Bench) -> anyhow::Result<Vec<Metric>> {
    let one_queue = |answer_delay, ceiling| DeliveryShape {
        notifications: bench.scale.delivery_variant_notifications,
        queues: 1,
        max_in_flight: 1,
        batch: 1,
        answer_delay,
        ceiling,
    };
    let fastest = measure(bench, &one_queue(None, true)).await?;
    let slow = measure(bench, &one_queue(Some(SLOW_ANSWER), false)).await?;
    let mut out = variant_metrics("one_queue", &fastest, None);
    out.extend(variant_metrics("one_queue_2ms", &slow, Some(40.0)));
    Ok(out)
}

/// How long the slow variant's receiver works on each notification before it answers.
const SLOW_ANSWER: Duration = Duration::from_millis(2);

/// One delivery measurement: the outbox, the daemon's delivery settings, the receiver.
pub struct DeliveryShape {
    pub notifications: usize,
    /// Resource queues holding the outbox (each is sent in order, one at a time).
    pub queues: usize,
    pub max_in_flight: usize,
    /// Events per notification (`batch.size`).
    pub batch: u32,
    /// The receiver answers this long after reading a body (`None`: at once).
    pub answer_delay: Option<Duration>,
    /// Also post the same bodies with a bare client at concurrency `max_in_flight`.
    pub ceiling: bool,
}

/// What one delivery measurement saw.
pub struct Delivered {
    notifications: usize,
    daemon: DaemonRun,
    ceiling: Option<CeilingRun>,
    fill_seconds: f64,
}

impl Delivered {
    pub fn notifications_per_s(&self) -> f64 {
        self.daemon.seen.notifications as f64 / self.daemon.seen.span.as_secs_f64()
    }

    /// The bare client's rate, when the shape asked for it.
    pub fn ceiling_per_s(&self) -> Option<f64> {
        self.ceiling.as_ref().map(|c| c.notifications_per_s)
    }

    /// The daemon's user + system CPU over the drain, per notification, in µs.
    pub fn cpu_per_notification_us(&self) -> f64 {
        self.daemon.cpu_seconds / self.notifications as f64 * 1e6
    }
}

/// Fills the outbox as `shape` says, starts the daemon on it and waits until the receiver has
/// everything; then the ceiling, if asked for.
pub async fn measure(bench: &Bench, shape: &DeliveryShape) -> anyhow::Result<Delivered> {
    let n = shape.notifications;
    let sim = ConnectWiseSim::start(SimConfig::default()).await?;
    let templates = contact_templates(&sim).await?;
    let receiver = FastReceiver::answering_after(shape.answer_delay).await?;
    let store = StoreChoice::fresh(bench.postgres.as_ref()).await?;
    let dir = DaemonDir::new(&format!(
        "[delivery]\nmax_in_flight = {}\n{}",
        shape.max_in_flight,
        store.settings()
    ))?;
    let specs = write_instances(&sim, &dir, &receiver.url(), shape.queues, shape.batch)?;
    let state = dir.state();
    let batch = shape.batch as usize;
    let fill_started = Instant::now();
    let bodies =
        tokio::task::spawn_blocking(move || fill(&store, &state, &specs, &templates, n, batch))
            .await??;
    let fill_seconds = fill_started.elapsed().as_secs_f64();
    let daemon = deliver_outbox(bench, &dir, &receiver, n).await?;
    let ceiling = if shape.ceiling {
        Some(ceiling_run(Arc::new(bodies), shape.max_in_flight).await?)
    } else {
        None
    };
    Ok(Delivered {
        notifications: n,
        daemon,
        ceiling,
        fill_seconds,
    })
}

/// A variant's rate, CPU per notification (with its target in µs, if any) and, where measured,
/// the ceiling and the ratio to it.
fn variant_metrics(label: &str, d: &Delivered, cpu_target_us: Option<f64>) -> Vec<Metric> {
    let cpu_name = format!("{label}_cpu_per_notification");
    let cpu = d.cpu_per_notification_us();
    let mut out = vec![
        metric(
            format!("{label}_notifications_per_s"),
            "notif/s",
            d.notifications_per_s(),
        ),
        match cpu_target_us {
            Some(t) => targeted(cpu_name, "µs", cpu, Target::AtMost(t)),
            None => metric(cpu_name, "µs", cpu),
        },
    ];
    if let Some(ceiling) = d.ceiling_per_s() {
        out.push(metric(
            format!("{label}_ceiling_notifications_per_s"),
            "notif/s",
            ceiling,
        ));
        out.push(metric(
            format!("{label}_ratio_to_ceiling"),
            "x",
            d.notifications_per_s() / ceiling,
        ));
    }
    out
}

/// [`TEMPLATES`] contacts created in the simulator, as the poller holds records: the
/// provider's JSON text. Dated well before the watermark the fill sets, so the daemon's polls
/// emit nothing.
async fn contact_templates(sim: &ConnectWiseSim) -> anyhow::Result<Vec<Box<RawValue>>> {
    let dated = Utc::now() - chrono::Duration::hours(1);
    let templates_sim = sim.clone();
    let ids = tokio::task::spawn_blocking(move || {
        templates_sim.create_many(RecordKind::Contact, TEMPLATES, Some(dated))
    })
    .await?;
    Ok(ids
        .iter()
        .map(|id| {
            let record = sim.record(RecordKind::Contact, *id).expect("created");
            serde_json::value::to_raw_value(&record).expect("a JSON value serialises")
        })
        .collect())
}

/// One instance per queue, one contacts resource each, notifying `callback` in batches of
/// `batch`; returns their specs as the daemon loads them.
fn write_instances(
    sim: &ConnectWiseSim,
    dir: &DaemonDir,
    callback: &str,
    queues: usize,
    batch: u32,
) -> anyhow::Result<Vec<InstanceSpec>> {
    let mut specs = Vec::new();
    for q in 0..queues {
        let name = format!("delivery-{q:03}");
        let shape = InstanceShape {
            name: &name,
            callback,
            interval_minutes: 15.0,
            resources: 1,
            batch_size: batch,
            page_size: 1000,
            backfill_since: None,
        };
        let path = dir.write_instance(&name, &instance(sim, &shape))?;
        let loaded = load_instance_file(&path, &SecretSources::default());
        specs.push(
            loaded
                .spec
                .with_context(|| format!("{}: {:?}", path.display(), loaded.diagnostics))?,
        );
    }
    Ok(specs)
}

/// What the daemon's delivery of the filled outbox showed.
pub struct DaemonRun {
    seen: Seen,
    cpu_seconds: f64,
}

/// Starts the daemon on the filled outbox and waits until `receiver` has all `n` notifications.
async fn deliver_outbox(
    bench: &Bench,
    dir: &DaemonDir,
    receiver: &FastReceiver,
    n: usize,
) -> anyhow::Result<DaemonRun> {
    let mut daemon = dir.start(&bench.pollerd).await?;
    daemon.wait_ready().await?;
    let cpu_before = daemon.sample()?.cpu_seconds;
    wait_count(receiver, n, || daemon.sample().is_ok()).await?;
    let sample = daemon.sample()?;
    daemon.stop().await?;
    Ok(DaemonRun {
        seen: receiver.seen(),
        cpu_seconds: sample.cpu_seconds - cpu_before,
    })
}

/// The ceiling's rate and request latencies.
pub struct CeilingRun {
    notifications_per_s: f64,
    latencies_us: Vec<i64>,
}

/// The same bodies posted by [`ceiling`] to a fresh receiver.
async fn ceiling_run(bodies: Arc<Vec<Bytes>>, concurrency: usize) -> anyhow::Result<CeilingRun> {
    let receiver = FastReceiver::start().await?;
    let latencies_us = ceiling(&receiver.url(), bodies, concurrency).await?;
    let seen = receiver.seen();
    Ok(CeilingRun {
        notifications_per_s: seen.notifications as f64 / seen.span.as_secs_f64(),
        latencies_us,
    })
}

/// One batch size's metrics, in the order the report prints them; the ratio to the ceiling
/// judged against `ratio_target`.
fn batch_metrics(batch: u32, delivered: Delivered, ratio_target: Target) -> Vec<Metric> {
    let Delivered {
        daemon,
        ceiling,
        fill_seconds,
        ..
    } = delivered;
    let mut ceiling = ceiling.expect("the batch shapes measure the ceiling");
    let seen = daemon.seen;
    let rate = seen.notifications as f64 / seen.span.as_secs_f64();
    let mut latencies = seen.latencies_us;
    let b = format!("batch{batch}");
    let ratio = rate / ceiling.notifications_per_s;
    let mut metrics = vec![
        metric(format!("{b}_notifications_per_s"), "notif/s", rate),
        metric(
            format!("{b}_events_per_s"),
            "events/s",
            seen.events as f64 / seen.span.as_secs_f64(),
        ),
        metric(
            format!("{b}_commit_to_2xx_p50"),
            "ms",
            quantile(&mut latencies, 0.5) / 1000.0,
        ),
        metric(
            format!("{b}_commit_to_2xx_p99"),
            "ms",
            quantile(&mut latencies, 0.99) / 1000.0,
        ),
        metric(
            format!("{b}_ceiling_notifications_per_s"),
            "notif/s",
            ceiling.notifications_per_s,
        ),
        metric(
            format!("{b}_ceiling_request_p50"),
            "ms",
            quantile(&mut ceiling.latencies_us, 0.5) / 1000.0,
        ),
        metric(
            format!("{b}_ceiling_request_p99"),
            "ms",
            quantile(&mut ceiling.latencies_us, 0.99) / 1000.0,
        ),
    ];
    let ratio_name = format!("{b}_ratio_to_ceiling");
    metrics.push(targeted(ratio_name, "x", ratio, ratio_target));
    metrics.push(metric(format!("{b}_daemon_cpu"), "s", daemon.cpu_seconds));
    metrics.push(metric(format!("{b}_fill"), "s", fill_seconds));
    metrics
}

/// Waits until the receiver has `n` notifications; `alive` says whether to keep waiting.
async fn wait_count(
    receiver: &FastReceiver,
    n: usize,
    alive: impl Fn() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT_LIMIT;
    while receiver.notifications() < n as u64 {
        if !alive() {
            bail!(
                "pollerd died with {} of {n} delivered",
                receiver.notifications()
            );
        }
        if Instant::now() > deadline {
            bail!(
                "only {} of {n} notifications arrived within {WAIT_LIMIT:?}",
                receiver.notifications()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Writes `n` notifications of `batch` events each, round-robin over the instances' contacts
/// queues, in commits of [`FILL_COMMIT`] (each atomic and flushed, as the poller's). Returns the
/// bodies, for the ceiling. The store is closed before it returns, so the daemon can open it.
fn fill(
    store: &StoreChoice,
    state: &Path,
    specs: &[InstanceSpec],
    templates: &[Box<RawValue>],
    n: usize,
    batch: usize,
) -> anyhow::Result<Vec<Bytes>> {
    let store = store.open(state)?;
    let mut bodies = Vec::with_capacity(n);
    let mut object = 0usize;
    let per_queue = n.div_ceil(specs.len());
    for spec in specs {
        let key = ResourceKey::new(&spec.name, "contacts");
        let mut left = per_queue.min(n - bodies.len());
        while left > 0 {
            let now = Utc::now();
            let mut commit = PageCommit::new(key.clone());
            commit.watermark = Some(now);
            for _ in 0..left.min(FILL_COMMIT) {
                let events: Vec<EventRecord<'_>> = (0..batch)
                    .map(|_| {
                        object += 1;
                        let record = &templates[object % templates.len()];
                        EventRecord {
                            object_id: object.to_string(),
                            updated: now - chrono::Duration::minutes(30),
                            event_type: EventType::Created,
                            record,
                        }
                    })
                    .collect();
                let id = event_id(&spec.name, "contacts", &events);
                let body = envelope(spec, "contacts", &id, &events, now, now);
                bodies.push(Bytes::from(body.clone()));
                commit.notifications.push(NewNotification {
                    event_id: id,
                    body,
                    created_at: now,
                });
            }
            left -= commit.notifications.len();
            store.commit(commit)?;
        }
    }
    store.flush()?;
    Ok(bodies)
}

/// Posts every body once, `concurrency` at a time over one keep-alive client; returns each
/// request's latency in microseconds.
async fn ceiling(
    url: &str,
    bodies: Arc<Vec<Bytes>>,
    concurrency: usize,
) -> anyhow::Result<Vec<i64>> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, next, bodies, url) = (
            client.clone(),
            next.clone(),
            bodies.clone(),
            url.to_string(),
        );
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else {
                    return Ok::<_, anyhow::Error>(latencies);
                };
                let sent = Instant::now();
                let response = client
                    .post(&url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone())
                    .send()
                    .await?;
                if !response.status().is_success() {
                    bail!("the receiver answered {}", response.status());
                }
                response.bytes().await?;
                latencies.push(sent.elapsed().as_micros() as i64);
            }
        });
    }
    let mut all = Vec::with_capacity(bodies.len());
    while let Some(done) = tasks.join_next().await {
        all.extend(done??);
    }
    Ok(all)
}
