//! Reconcile: what one DELETED check of a large resource costs (issue 15). The simulator holds
//! the contacts; a first reconcile fills the known set (its time and store growth), then records
//! are deleted and a second reconcile finds them (requests, bytes received, CPU, wall time).
//!
//! Two ways of listing the same records, each with its own store:
//! - `fields_id`: the seed ConnectWise instance with `deletedCheckInterval`; its scan asks for
//!   `fields=id`, keyset-paged, 1,000 a page.
//! - `full`: the same simulator read as an `http` element resource (same credentials, same
//!   `conditions`, keyset paging asked for by header, 1,000 a page), which has no `fields`
//!   parameter, so every page carries the records in full.
//!
//! The reconciles run in this process through `reconcile_resource`, the function the daemon's
//! poll loop calls. The simulator runs in its own runtime whose threads are named
//! [`SIM_THREADS`], so their CPU is told apart from the rest of the process ("pollerd" CPU).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use pollerd::config::{InstanceSpec, SecretSources, load_instance_file};
use pollerd::element::{Element, ProviderClient};
use pollerd::poller::PollShared;
use pollerd::poller::reconcile::{
    ReconcileOutcome, ReconcileReport, ReconcileRequest, reconcile_resource,
};
use pollerd::sim::connectwise::{ConnectWiseSim, RecordKind, Served, SimConfig};
use pollerd::store::{ResourceKey, SledStore, Store};
use serde_json::{Value, json};

use crate::Bench;
use crate::harness::{dir_size, thread_cpu_seconds};
use crate::report::{Metric, metric};

/// Name of the simulator runtime's threads (at most 15 bytes: Linux cuts thread names there).
const SIM_THREADS: &str = "bench-sim";

const MIB: f64 = 1048576.0;

/// The daemon's defaults: `[store] cache_mb = 16`, `[polling] timeout = "30s"`, `max_per_tenant = 4`.
const STORE_CACHE_BYTES: u64 = 16 << 20;
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(30);
const PROVIDER_CONNECTIONS: usize = 4;

/// How the scan lists the records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Listing {
    FieldsId,
    Full,
}

impl Listing {
    fn prefix(self) -> &'static str {
        match self {
            Listing::FieldsId => "fields_id",
            Listing::Full => "full",
        }
    }
}

/// One listing's instance, store and figures.
struct Variant {
    listing: Listing,
    spec: InstanceSpec,
    store: Arc<dyn Store>,
    shared: PollShared,
    state: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// Runs alternate which listing goes first, so neither always meets a cold or a warm process.
static RUNS: AtomicUsize = AtomicUsize::new(0);

pub async fn run(bench: &Bench) -> anyhow::Result<Vec<Metric>> {
    let scale = bench.scale;
    let sim_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(SIM_THREADS)
        .enable_all()
        .build()
        .context("starting the simulator's runtime")?;
    let mut order = [Listing::FieldsId, Listing::Full];
    if RUNS.fetch_add(1, Ordering::Relaxed) % 2 == 1 {
        order.reverse();
    }
    let mut measured = Vec::new();
    for listing in order {
        let result = measure(
            &sim_runtime,
            listing,
            scale.reconcile_records,
            scale.reconcile_deleted,
        )
        .await;
        match result {
            Ok(m) => measured.push((listing, m)),
            Err(e) => {
                sim_runtime.shutdown_background();
                return Err(e);
            }
        }
    }
    sim_runtime.shutdown_background();
    // The same order of figures whichever listing ran first.
    measured.sort_by_key(|(listing, _)| *listing != Listing::FieldsId);
    let mut metrics = Vec::new();
    for (_, (baseline, _)) in &measured {
        metrics.extend(baseline.iter().cloned());
    }
    for (listing, (_, cost)) in &measured {
        metrics.extend(cost.metrics(*listing));
    }
    if let [(_, (_, ids_only)), (_, (_, full))] = measured.as_slice() {
        metrics.extend(ratios(ids_only, full));
    }
    Ok(metrics)
}

/// One listing on its own simulator and store (no other store's background work in the
/// process while it is measured): the baseline's figures and the second reconcile's cost.
async fn measure(
    sim_runtime: &tokio::runtime::Runtime,
    listing: Listing,
    records: usize,
    deletions: usize,
) -> anyhow::Result<(Vec<Metric>, Cost)> {
    let sim = sim_runtime
        .spawn(ConnectWiseSim::start(SimConfig::default()))
        .await??;
    let dated = Some(sim.now() - chrono::Duration::minutes(30));
    let creating = sim.clone();
    let ids = tokio::task::spawn_blocking(move || {
        creating.create_many(RecordKind::Contact, records, dated)
    })
    .await?;
    let variant = Variant::new(&sim, listing)?;
    let baseline = variant.baseline(records).await?;
    // Spread over the id range, as deletions in a real tenant are.
    let step = (ids.len() / deletions.max(1)).max(1);
    let gone: Vec<u64> = ids.iter().step_by(step).take(deletions).copied().collect();
    if sim.delete_many(RecordKind::Contact, &gone) != deletions {
        bail!("the simulator did not delete {deletions} contacts");
    }
    let cost = variant.second(&sim, deletions).await?;
    drop(variant);
    let _ = sim_runtime.spawn(sim.shutdown()).await;
    Ok((baseline, cost))
}

/// What the second reconcile (the one that finds the deletions) cost.
struct Cost {
    requests: u64,
    bytes: u64,
    pollerd_cpu: f64,
    sim_cpu: f64,
    wall: f64,
    deleted: usize,
    store_growth: u64,
    /// Reading the known set back from the store alone (part of every reconcile), after it.
    known_read: f64,
}

impl Cost {
    fn metrics(&self, listing: Listing) -> Vec<Metric> {
        let p = listing.prefix();
        vec![
            metric(format!("{p}_requests"), "requests", self.requests as f64),
            metric(format!("{p}_received"), "MiB", self.bytes as f64 / MIB),
            metric(format!("{p}_pollerd_cpu"), "s", self.pollerd_cpu),
            metric(format!("{p}_sim_cpu"), "s", self.sim_cpu),
            metric(format!("{p}_wall"), "s", self.wall),
            metric(format!("{p}_deleted"), "events", self.deleted as f64),
            metric(
                format!("{p}_store_growth"),
                "KiB",
                self.store_growth as f64 / 1024.0,
            ),
            metric(format!("{p}_known_set_read"), "s", self.known_read),
        ]
    }
}

/// full ÷ fields_id of this run's figures.
fn ratios(ids_only: &Cost, full: &Cost) -> Vec<Metric> {
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    vec![
        metric(
            "ratio_received",
            "x",
            ratio(full.bytes as f64, ids_only.bytes as f64),
        ),
        metric(
            "ratio_pollerd_cpu",
            "x",
            ratio(full.pollerd_cpu, ids_only.pollerd_cpu),
        ),
        metric("ratio_wall", "x", ratio(full.wall, ids_only.wall)),
    ]
}

impl Variant {
    fn new(sim: &ConnectWiseSim, listing: Listing) -> anyhow::Result<Variant> {
        let dir = tempfile::Builder::new()
            .prefix("pollerd-bench-reconcile-")
            .tempdir()?;
        let instance = match listing {
            Listing::FieldsId => connectwise_instance(sim)?,
            Listing::Full => http_instance(sim),
        };
        let spec = load_spec(&dir.path().join("instance.json"), &instance)?;
        let state = dir.path().join("state");
        let store: Arc<dyn Store> = Arc::new(SledStore::open(&state, STORE_CACHE_BYTES)?);
        let client = ProviderClient::new(PROVIDER_TIMEOUT, PROVIDER_CONNECTIONS)?;
        let shared = PollShared::new(client, store.clone(), 4);
        Ok(Variant {
            listing,
            spec,
            store,
            shared,
            state,
            _dir: dir,
        })
    }

    async fn reconcile(&self) -> anyhow::Result<ReconcileReport> {
        let element = Element::new(&self.spec.element);
        let resource = self
            .spec
            .resource("contacts")
            .context("the instance has contacts")?;
        let request = ReconcileRequest::default();
        reconcile_resource(&self.shared, &self.spec, &element, resource, request)
            .await
            .map_err(|e| anyhow::anyhow!("{} reconcile: {e}", self.listing.prefix()))
    }

    /// Bytes of the state directory once everything committed is on disk.
    async fn flushed_size(&self) -> anyhow::Result<u64> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.flush()).await??;
        Ok(dir_size(&self.state)?.0)
    }

    /// Seconds to read the contacts' known set from the store.
    async fn time_known_read(&self) -> anyhow::Result<f64> {
        let store = self.store.clone();
        let key = ResourceKey::new(&self.spec.name, "contacts");
        let started = Instant::now();
        tokio::task::spawn_blocking(move || store.known_ids(&key)).await??;
        Ok(started.elapsed().as_secs_f64())
    }

    /// The first reconcile: fills the known set with every id, sends nothing.
    async fn baseline(&self, records: usize) -> anyhow::Result<Vec<Metric>> {
        let before = self.flushed_size().await?;
        let started = Instant::now();
        let report = self.reconcile().await?;
        let wall = started.elapsed().as_secs_f64();
        let after = self.flushed_size().await?;
        if report.outcome != ReconcileOutcome::Baseline || report.seen != records {
            bail!(
                "{} baseline saw {} of {records} ids: {report:?}",
                self.listing.prefix(),
                report.seen
            );
        }
        let p = self.listing.prefix();
        Ok(vec![
            metric(format!("{p}_baseline_wall"), "s", wall),
            metric(
                format!("{p}_baseline_store_growth"),
                "MiB",
                after.saturating_sub(before) as f64 / MIB,
            ),
        ])
    }

    /// The reconcile after `deletions` records were deleted: it must report exactly those.
    async fn second(&self, sim: &ConnectWiseSim, deletions: usize) -> anyhow::Result<Cost> {
        let size_before = self.flushed_size().await?;
        let served_before = sim.served(RecordKind::Contact);
        let (process_before, sim_before) = thread_cpu_seconds(SIM_THREADS)?;
        let started = Instant::now();
        let report = self.reconcile().await?;
        let wall = started.elapsed().as_secs_f64();
        let (process_after, sim_after) = thread_cpu_seconds(SIM_THREADS)?;
        let served = served_since(sim.served(RecordKind::Contact), served_before);
        let size_after = self.flushed_size().await?;
        let known_read = self.time_known_read().await?;
        let deleted = match &report.outcome {
            ReconcileOutcome::Deleted { deleted, .. } => deleted.len(),
            other => bail!("{} reconcile: {other:?}", self.listing.prefix()),
        };
        if deleted != deletions {
            bail!(
                "{} reconcile reported {deleted} DELETED, {deletions} were deleted",
                self.listing.prefix()
            );
        }
        let sim_cpu = sim_after - sim_before;
        Ok(Cost {
            requests: served.requests,
            bytes: served.bytes,
            pollerd_cpu: (process_after - process_before) - sim_cpu,
            sim_cpu,
            wall,
            deleted,
            store_growth: size_after.saturating_sub(size_before),
            known_read,
        })
    }
}

fn served_since(now: Served, before: Served) -> Served {
    Served {
        requests: now.requests.saturating_sub(before.requests),
        bytes: now.bytes.saturating_sub(before.bytes),
    }
}

fn load_spec(path: &Path, instance: &Value) -> anyhow::Result<InstanceSpec> {
    std::fs::write(path, serde_json::to_vec_pretty(instance)?)?;
    let loaded = load_instance_file(path, &SecretSources::default());
    match loaded.spec {
        Some(spec) => Ok(spec),
        None => bail!(
            "the bench's instance does not load: {:?}",
            loaded.diagnostics
        ),
    }
}

/// The seed example (etc/instances.d) pointed at the simulator, contacts reconciled every 6 h.
fn connectwise_instance(sim: &ConnectWiseSim) -> anyhow::Result<Value> {
    let seed = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("etc/instances.d/connectwise-contacts.json.example");
    let mut v: Value = serde_json::from_slice(&std::fs::read(&seed)?)?;
    let conf = v["configuration"]
        .as_object_mut()
        .context("the seed example has a configuration")?;
    conf.extend(sim.instance_configuration());
    v["configuration"]["event.poller.configuration"]["contacts"]["deletedCheckInterval"] =
        "6h".into();
    Ok(v)
}

/// The same contacts as an `http` element resource: the query the ConnectWise element sends
/// (`conditions`, 1,000 a page, forward-only paging by header, next page from `Link`), but no
/// `fields`, so the scan reads every record in full.
fn http_instance(sim: &ConnectWiseSim) -> Value {
    let c = sim.config();
    json!({
        "element": {"key": "http"},
        "name": "reconcile-full-records",
        "configuration": {
            "baseUrl": sim.base_url(),
            "auth": {
                "type": "basic",
                "user": format!("{}+{}", c.company, c.public_key),
                "password": c.private_key,
            },
            "headers": {"clientId": c.client_id, "pagination-type": "forward-only"},
            "event.notification.enabled": true,
            "event.notification.callback.url": "http://127.0.0.1:9/hook",
            "event.poller.configuration": {
                "contacts": {
                    "url": "/company/contacts?conditions=lastUpdated>[${gmtDate:yyyy-MM-dd'T'HH:mm:ss'Z'}]&pageSize=1000",
                    "idField": "id",
                    "deletedCheckInterval": "6h",
                    "datesConfiguration": {
                        "updatedDateField": "_info.lastUpdated",
                        "updatedDateFormat": "yyyy-MM-dd'T'HH:mm:ss'Z'",
                        "updatedDateTimezone": "GMT"
                    }
                }
            }
        }
    })
}
