//! Takeover: three `pollerd run` nodes share one fresh PostgreSQL database (as tests/cluster.rs
//! runs them) and [`INSTANCES`] one-resource instances on a 3 s interval, lease renew 1 s, TTL
//! 5 s. [`KILLS`] times: `kill -9` the node holding the most leases, time until each of its
//! instances is polled again by another node (the simulator's request log), start a fresh node
//! in its place, wait until the leases are balanced again.
//!
//! Which node polled which instance is told by the request's page size, as in the cluster test:
//! every node's copy of an instance file asks for a page size of its own.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use pollerd::sim::connectwise::{ConnectWiseSim, SimConfig};
use pollerd::store::{ClusterView, PostgresStore};

use crate::Bench;
use crate::harness::{BenchDaemon, DaemonDir, WAIT_LIMIT};
use crate::instances::{InstanceShape, instance};
use crate::postgres::{POOL_SIZE, PgServer, StoreChoice};
use crate::receiver::FastReceiver;
use crate::report::{Metric, Target, metric, quantile, targeted};

const INSTANCES: usize = 30;
const NODES: usize = 3;
const KILLS: usize = 10;
/// Page sizes 100 + instance × NODE_SLOTS + node tell the poller apart: every node ever
/// started (the first three and one per kill) has a slot.
const NODE_SLOTS: usize = 16;
const RENEW: Duration = Duration::from_secs(1);
const TTL: Duration = Duration::from_secs(5);
/// `event.poller.refresh_interval`, minutes: 3 s.
const INTERVAL_MINUTES: f64 = 0.05;
/// The bound on a takeover after a `kill -9`.
const TAKEOVER_MAX_S: f64 = 30.0;

const _: () = assert!(NODES + KILLS <= NODE_SLOTS);

pub async fn run(bench: &Bench) -> anyhow::Result<Vec<Metric>> {
    let server = bench
        .postgres
        .as_ref()
        .context("takeover needs --store-url (checked before it runs)")?;
    let mut cluster = Cluster::start(bench, server).await?;
    let result = cluster.kill_rounds(bench).await;
    cluster.close().await;
    let (per_instance, per_kill) = result?;
    Ok(metrics(per_instance, per_kill))
}

fn page_size(instance: usize, node: usize) -> u32 {
    (100 + instance * NODE_SLOTS + node) as u32
}

fn instance_name(instance: usize) -> String {
    format!("t{instance:03}")
}

/// (instance, node) of a request's page size.
fn polled_by(page_size: u64) -> Option<(usize, usize)> {
    let slot = usize::try_from(page_size).ok()?.checked_sub(100)?;
    Some((slot / NODE_SLOTS, slot % NODE_SLOTS))
}

struct Node {
    number: usize,
    _dir: DaemonDir,
    daemon: BenchDaemon,
}

impl Node {
    fn id(&self) -> String {
        format!("node-{}", self.number)
    }
}

struct Cluster {
    sim: ConnectWiseSim,
    _receiver: FastReceiver,
    callback: String,
    url: String,
    /// The bench's view of the leases; a blocking client, called off the async runtime.
    db: Option<Arc<PostgresStore>>,
    nodes: Vec<Node>,
    started: usize,
}

impl Cluster {
    async fn start(bench: &Bench, server: &PgServer) -> anyhow::Result<Cluster> {
        let StoreChoice::Postgres { url } = StoreChoice::fresh(Some(server)).await? else {
            bail!("a PostgreSQL server was given");
        };
        let sim = ConnectWiseSim::start(SimConfig::default()).await?;
        let receiver = FastReceiver::start().await?;
        let db_url = url.clone();
        // Opening creates the schema before any node starts.
        let db = tokio::task::spawn_blocking(move || PostgresStore::open(&db_url, 1)).await??;
        let mut cluster = Cluster {
            sim,
            callback: receiver.url(),
            _receiver: receiver,
            url,
            db: Some(Arc::new(db)),
            nodes: Vec::new(),
            started: 0,
        };
        for _ in 0..NODES {
            cluster.start_node(bench).await?;
        }
        cluster.wait_balanced("the first three nodes").await?;
        Ok(cluster)
    }

    async fn start_node(&mut self, bench: &Bench) -> anyhow::Result<()> {
        let number = self.started;
        self.started += 1;
        let dir = DaemonDir::new(&format!(
            "[delivery]\ngrace_period = \"1s\"\n[store]\nengine = \"postgres\"\nurl = {}\n\
             pool_size = {POOL_SIZE}\nnode_id = \"node-{number}\"\nlease_renew = \"{}ms\"\n\
             lease_ttl = \"{}ms\"\n",
            toml::Value::String(self.url.clone()),
            RENEW.as_millis(),
            TTL.as_millis()
        ))?;
        for i in 0..INSTANCES {
            let name = instance_name(i);
            let shape = InstanceShape {
                name: &name,
                callback: &self.callback,
                interval_minutes: INTERVAL_MINUTES,
                resources: 1,
                batch_size: 1,
                page_size: page_size(i, number),
                backfill_since: None,
            };
            dir.write_instance(&name, &instance(&self.sim, &shape))?;
        }
        let mut daemon = dir.start(&bench.pollerd).await?;
        daemon.wait_ready().await?;
        self.nodes.push(Node {
            number,
            _dir: dir,
            daemon,
        });
        Ok(())
    }

    async fn leases(&self) -> anyhow::Result<ClusterView> {
        let db = self.db.clone().context("the cluster is closed")?;
        Ok(tokio::task::spawn_blocking(move || db.cluster(TTL)).await??)
    }

    /// Instance → owner, as the database has it.
    async fn owners(&self) -> anyhow::Result<HashMap<String, Option<String>>> {
        Ok(self
            .leases()
            .await?
            .leases
            .into_iter()
            .map(|l| (l.instance, l.owner))
            .collect())
    }

    fn live(&self) -> Vec<String> {
        self.nodes.iter().map(Node::id).collect()
    }

    /// Every instance held by a live node, none holding more than its fair share.
    async fn balanced(&self) -> anyhow::Result<bool> {
        let live = self.live();
        let owners = self.owners().await?;
        let share = INSTANCES.div_ceil(live.len());
        let mut held: BTreeMap<&str, usize> = BTreeMap::new();
        for owner in owners.values() {
            match owner {
                Some(o) if live.contains(o) => *held.entry(o.as_str()).or_default() += 1,
                _ => return Ok(false),
            }
        }
        Ok(owners.len() == INSTANCES && held.values().all(|h| *h <= share))
    }

    async fn wait_balanced(&self, what: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + WAIT_LIMIT;
        while !self.balanced().await? {
            if Instant::now() > deadline {
                bail!("{what}: the leases never settled within {WAIT_LIMIT:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// The position in `nodes` of the node holding the most leases, and its instances.
    async fn biggest(&self) -> anyhow::Result<(usize, Vec<usize>)> {
        let owners = self.owners().await?;
        let mut best: Option<(usize, Vec<usize>)> = None;
        for (position, node) in self.nodes.iter().enumerate() {
            let id = node.id();
            let mine: Vec<usize> = (0..INSTANCES)
                .filter(|i| owners.get(&instance_name(*i)) == Some(&Some(id.clone())))
                .collect();
            if best.as_ref().is_none_or(|(_, b)| mine.len() > b.len()) {
                best = Some((position, mine));
            }
        }
        best.context("no node is running")
    }

    /// [`KILLS`] rounds; every instance's takeover time and every kill's (its last instance).
    async fn kill_rounds(&mut self, bench: &Bench) -> anyhow::Result<(Vec<i64>, Vec<i64>)> {
        let mut per_instance = Vec::new();
        let mut per_kill = Vec::new();
        for round in 1..=KILLS {
            let (position, instances) = self.biggest().await?;
            let victim = self.nodes.remove(position);
            let victim_number = victim.number;
            let killed_at = Utc::now();
            // Dropping a BenchDaemon is SIGKILL and a wait for the exit.
            drop(victim.daemon);
            let times = self
                .wait_repolled(&instances, victim_number, killed_at)
                .await
                .with_context(|| format!("kill {round} (node-{victim_number})"))?;
            let slowest = times.iter().copied().max().unwrap_or(0);
            eprintln!(
                "    kill {round}: node-{victim_number}'s {} instances polled elsewhere after {:.2}–{:.2} s",
                instances.len(),
                times.iter().copied().min().unwrap_or(0) as f64 / 1e6,
                slowest as f64 / 1e6
            );
            per_instance.extend(times);
            per_kill.push(slowest);
            self.start_node(bench).await?;
            self.wait_balanced(&format!("after kill {round}")).await?;
        }
        Ok((per_instance, per_kill))
    }

    /// Waits until each of `instances` was polled after `killed_at` by a node other than
    /// `victim`; each one's time from the kill, in microseconds.
    async fn wait_repolled(
        &self,
        instances: &[usize],
        victim: usize,
        killed_at: DateTime<Utc>,
    ) -> anyhow::Result<Vec<i64>> {
        let deadline = Instant::now() + WAIT_LIMIT;
        loop {
            let mut first: HashMap<usize, DateTime<Utc>> = HashMap::new();
            for request in self.sim.requests() {
                let Some((instance, node)) = request.page_size.and_then(polled_by) else {
                    continue;
                };
                if node != victim && request.received_at > killed_at {
                    let at = first.entry(instance).or_insert(request.received_at);
                    *at = (*at).min(request.received_at);
                }
            }
            let times: Vec<i64> = instances
                .iter()
                .filter_map(|i| first.get(i))
                .map(|at| (*at - killed_at).num_microseconds().unwrap_or(i64::MAX))
                .collect();
            if times.len() == instances.len() {
                return Ok(times);
            }
            if Instant::now() > deadline {
                bail!(
                    "only {} of {} instances were polled by another node within {WAIT_LIMIT:?}",
                    times.len(),
                    instances.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops every node (SIGKILL: nothing is measured any more) and closes the bench's client
    /// off the async runtime, since it owns a runtime of its own.
    async fn close(&mut self) {
        self.nodes.clear();
        if let Some(db) = self.db.take() {
            let _ = tokio::task::spawn_blocking(move || drop(db)).await;
        }
    }
}

fn metrics(mut per_instance: Vec<i64>, mut per_kill: Vec<i64>) -> Vec<Metric> {
    let s = |us: f64| us / 1e6;
    vec![
        targeted(
            "kill_all_polled_max",
            "s",
            s(quantile(&mut per_kill, 1.0)),
            Target::AtMost(TAKEOVER_MAX_S),
        ),
        metric("kill_all_polled_p50", "s", s(quantile(&mut per_kill, 0.5))),
        metric("kill_all_polled_min", "s", s(quantile(&mut per_kill, 0.0))),
        metric(
            "instance_takeover_p50",
            "s",
            s(quantile(&mut per_instance, 0.5)),
        ),
        metric(
            "instance_takeover_p90",
            "s",
            s(quantile(&mut per_instance, 0.9)),
        ),
        metric(
            "instance_takeover_min",
            "s",
            s(quantile(&mut per_instance, 0.0)),
        ),
        metric(
            "instance_takeover_max",
            "s",
            s(quantile(&mut per_instance, 1.0)),
        ),
        metric("kills", "kills", per_kill.len() as f64),
        metric(
            "instances_taken_over",
            "instances",
            per_instance.len() as f64,
        ),
    ]
}
