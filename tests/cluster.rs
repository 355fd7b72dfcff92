//! Several `pollerd run` nodes sharing one PostgreSQL store (issue 16), as an operator runs
//! them: 3 nodes, the ConnectWise simulator, a receiver, 100 instances × 3 resources and
//! changes flowing, through a `kill -9`, a SIGSTOP longer than the lease TTL, a SIGTERM, a
//! PostgreSQL restart and a 4th node joining. Nothing may be lost, no record version may go out
//! under two eventIds, and no resource may be polled by two nodes at once while they rebalance.
//!
//! Each node has its own instances directory holding the same 100 instances; only each
//! resource's `pageSize` differs, `100 + 4 × instance + node`, so that the simulator's request
//! log tells which node polled which instance. Every run reads one page (fewer records change
//! between two polls than the smallest page holds).
//!
//! Ignored like the other PostgreSQL tests (see `support/postgres.rs`):
//! `cargo test --test cluster -- --ignored` (`.ci/run` runs it where PostgreSQL is installed).

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pollerd::sim::connectwise::{ConnectWiseSim, RecordKind, RequestLog, SimConfig};
use pollerd::sim::receiver::Receiver;
use pollerd::store::{ClusterView, PostgresStore, Store};
use serde_json::{Map, Value, json};

use support::{Daemon, DaemonDir, METRICS_ANY_PORT, WAIT, holds_within, wait_for};

const INSTANCES: usize = 100;
const RENEW: Duration = Duration::from_secs(1);
const TTL: Duration = Duration::from_secs(5);
/// `event.poller.refresh_interval`, minutes: 3 s.
const INTERVAL_MINUTES: &str = "0.05";
/// The bound on a takeover after a `kill -9`.
const TAKEOVER_MAX: Duration = Duration::from_secs(30);
/// How often the test's background task changes a record.
const CHANGE_EVERY: Duration = Duration::from_millis(1000);

/// The resources of every instance: name, hub URL, created-date field, simulator kind.
const RESOURCES: [(&str, &str, &str, RecordKind); 3] = [
    (
        "contacts",
        "/hubs/crm/contacts",
        "_info.lastUpdated",
        RecordKind::Contact,
    ),
    (
        "companies",
        "/hubs/crm/accounts",
        "_info.dateEntered",
        RecordKind::Company,
    ),
    (
        "tickets",
        "/hubs/crm/incidents",
        "_info.dateEntered",
        RecordKind::Ticket,
    ),
];

fn instance_name(instance: usize) -> String {
    format!("i{instance:03}")
}

fn page_size(instance: usize, node: usize) -> u64 {
    (100 + instance * 4 + node) as u64
}

/// The instance and node a simulator request came from, by its page size.
fn polled_by(request: &RequestLog) -> Option<(usize, usize)> {
    let size = usize::try_from(request.page_size?).ok()?.checked_sub(100)?;
    Some((size / 4, size % 4))
}

fn instance_file(sim: &ConnectWiseSim, callback: &str, instance: usize, node: usize) -> Value {
    let mut resources = Map::new();
    for (name, url, created, _) in RESOURCES {
        let mut resource = ConnectWiseSim::resource_configuration(url, created);
        resource["pageSize"] = page_size(instance, node).into();
        resources.insert(name.to_string(), resource);
    }
    let mut file = json!({
        "element": {"key": "connectwisecrmrest"},
        "name": instance_name(instance),
        "configuration": {
            "event.notification.enabled": true,
            "event.notification.callback.url": callback,
            "event.poller.refresh_interval": INTERVAL_MINUTES,
            "event.poller.configuration": Value::Object(resources)
        }
    });
    file["configuration"]
        .as_object_mut()
        .unwrap()
        .extend(sim.instance_configuration());
    file
}

/// One node: its directory (settings, instances, logs) and its process while it runs.
struct Node {
    id: String,
    dir: DaemonDir,
    daemon: Option<Daemon>,
}

impl Node {
    fn new(number: usize, sim: &ConnectWiseSim, callback: &str) -> Node {
        let id = format!("node-{number}");
        let dir = DaemonDir::new(&format!(
            "{METRICS_ANY_PORT}[delivery]\ngrace_period = \"1s\"\n\
             [store]\nengine = \"postgres\"\nurl = \"${{env:POLLERD_TEST_PG_URL}}\"\n\
             pool_size = 4\nnode_id = \"{id}\"\nlease_renew = \"{}ms\"\nlease_ttl = \"{}ms\"\n",
            RENEW.as_millis(),
            TTL.as_millis()
        ));
        for instance in 0..INSTANCES {
            dir.write_instance(
                &format!("{}.json", instance_name(instance)),
                &instance_file(sim, callback, instance, number),
            );
        }
        Node {
            id,
            dir,
            daemon: None,
        }
    }

    fn start(&mut self, url: &str) {
        self.daemon = Some(self.dir.start(&[("POLLERD_TEST_PG_URL", url)]));
    }

    fn daemon(&self) -> &Daemon {
        self.daemon.as_ref().expect("the node runs")
    }

    fn signal(&self, name: &str) {
        self.daemon().signal(name);
    }
}

/// (instance, resource, object id, date) → the eventIds it was delivered under.
#[derive(Default)]
struct Deliveries {
    read: usize,
    versions: BTreeMap<(String, String, String, String), BTreeSet<String>>,
}

impl Deliveries {
    /// Reads what the receiver accepted since the last call.
    fn update(&mut self, receiver: &Receiver) {
        let answered = receiver.answered_from(self.read);
        self.read += answered.len();
        for request in answered {
            if !request.status.is_some_and(|s| (200..300).contains(&s)) {
                continue;
            }
            let body = request.json();
            let instance = body["message"]["instanceName"]
                .as_str()
                .unwrap()
                .to_string();
            let event_id = body["id"].as_str().unwrap().to_string();
            for event in body["message"]["events"].as_array().unwrap() {
                let version = (
                    instance.clone(),
                    event["objectType"].as_str().unwrap().to_string(),
                    event["objectId"].as_str().unwrap().to_string(),
                    event["date"].as_str().unwrap().to_string(),
                );
                self.versions
                    .entry(version)
                    .or_default()
                    .insert(event_id.clone());
            }
        }
    }

    fn has(&self, instance: &str, resource: &str, id: u64, date: &str) -> bool {
        let version = (
            instance.to_string(),
            resource.to_string(),
            id.to_string(),
            date.to_string(),
        );
        self.versions.contains_key(&version)
    }
}

/// Everything the nodes share, and what the test watches them through.
struct Cluster {
    url: String,
    db: PostgresStore,
    sim: ConnectWiseSim,
    receiver: Receiver,
    nodes: Vec<Node>,
    deliveries: Deliveries,
    /// Records created by the changes, by resource.
    created: Arc<std::sync::Mutex<Vec<(usize, u64)>>>,
}

impl Cluster {
    fn leases(&self) -> ClusterView {
        self.db.cluster(TTL).unwrap()
    }

    /// Instance → owner, as the database has it (expired leases included).
    fn owners(&self) -> HashMap<String, Option<String>> {
        self.leases()
            .leases
            .into_iter()
            .map(|lease| (lease.instance, lease.owner))
            .collect()
    }

    /// Leases each node holds.
    fn held_by(&self) -> BTreeMap<String, usize> {
        let mut held = BTreeMap::new();
        for owner in self.owners().into_values().flatten() {
            *held.entry(owner).or_default() += 1;
        }
        held
    }

    /// Every instance held by one of `live`, none by more than its fair share.
    fn balanced_among(&self, live: &[&str]) -> bool {
        let owners = self.owners();
        let share = INSTANCES.div_ceil(live.len());
        let held = self.held_by();
        owners.len() == INSTANCES
            && owners
                .values()
                .all(|o| o.as_deref().is_some_and(|o| live.contains(&o)))
            && live
                .iter()
                .all(|n| held.get(*n).is_some_and(|h| *h <= share))
    }

    async fn wait_balanced(&self, live: &[&str], what: &str) {
        let balanced = holds_within(WAIT, Duration::from_millis(200), || {
            self.balanced_among(live)
        })
        .await;
        assert!(
            balanced,
            "{what}: the leases never settled among {live:?}: {:?}\n{}",
            self.held_by(),
            self.logs()
        );
    }

    /// The node holding the most leases (the first of them).
    fn biggest(&self) -> usize {
        let held = self.held_by();
        let (id, _) = held
            .iter()
            .max_by_key(|(id, count)| (**count, std::cmp::Reverse((*id).clone())))
            .expect("someone holds leases");
        self.nodes.iter().position(|n| &n.id == id).unwrap()
    }

    fn instances_of(&self, node: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .owners()
            .into_iter()
            .filter(|(_, owner)| owner.as_deref() == Some(node))
            .map(|(instance, _)| instance)
            .collect();
        names.sort();
        names
    }

    /// Creates one record of each resource now (a second ahead, past every watermark); the
    /// (resource, id) of each.
    fn marker(&self) -> Vec<(usize, u64)> {
        let at = Some(self.sim.now() + chrono::Duration::seconds(1));
        let marker: Vec<(usize, u64)> = RESOURCES
            .iter()
            .enumerate()
            .map(|(index, (_, _, _, kind))| (index, self.sim.create(*kind, at)))
            .collect();
        self.created.lock().unwrap().extend(&marker);
        marker
    }

    /// Whether the current version of each record in `records` reached `instances`.
    fn delivered(&mut self, records: &[(usize, u64)], instances: &[String]) -> bool {
        self.deliveries.update(&self.receiver);
        records.iter().all(|(resource, id)| {
            let (name, _, _, kind) = RESOURCES[*resource];
            let record = self.sim.record(kind, *id).unwrap();
            let date = record["_info"]["lastUpdated"].as_str().unwrap().to_string();
            instances
                .iter()
                .all(|instance| self.deliveries.has(instance, name, *id, &date))
        })
    }

    async fn wait_delivered(
        &mut self,
        records: &[(usize, u64)],
        instances: &[String],
        limit: Duration,
    ) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self.delivered(records, instances) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("==== {} ====\n{}", n.id, tail(&n.dir.logs(), 60)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn all_instances() -> Vec<String> {
    (0..INSTANCES).map(instance_name).collect()
}

/// Changes a record every [`CHANGE_EVERY`] until `stop`: creates, and every third change an
/// update of an earlier record, rotating through the resources.
fn start_changes(
    sim: ConnectWiseSim,
    created: Arc<std::sync::Mutex<Vec<(usize, u64)>>>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let mut changes = 0;
        // Bounded: at most an hour of changes, whatever the test does.
        for round in 0..2400usize {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let resource = round % RESOURCES.len();
            let kind = RESOURCES[resource].3;
            let at = Some(sim.now() + chrono::Duration::seconds(1));
            let earlier = created.lock().unwrap().iter().rev().nth(7).copied();
            match earlier {
                Some((resource, id)) if round % 3 == 2 => {
                    sim.update(RESOURCES[resource].3, id, at);
                }
                _ => {
                    let id = sim.create(kind, at);
                    created.lock().unwrap().push((resource, id));
                }
            }
            changes += 1;
            tokio::time::sleep(CHANGE_EVERY).await;
        }
        changes
    })
}

async fn metric_sum(daemon: &Daemon, family: &str) -> f64 {
    let address = support::metrics_address(daemon).await;
    let text = support::metrics_text(address).await;
    text.lines()
        .filter(|line| line.starts_with(family))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL 15: cargo test --test cluster -- --ignored"]
async fn nodes_share_the_instances_and_survive_kill_stop_term_a_restart_and_a_join() {
    let started = Instant::now();
    let url = support::postgres::fresh_database();
    let sim = ConnectWiseSim::start(SimConfig::default()).await.unwrap();
    let receiver = Receiver::start().await.unwrap();
    let nodes: Vec<Node> = (0..4)
        .map(|n| Node::new(n, &sim, &receiver.url()))
        .collect();
    let mut c = Cluster {
        db: PostgresStore::open(&url, 2).unwrap(),
        url,
        sim,
        receiver,
        nodes,
        deliveries: Deliveries::default(),
        created: Arc::default(),
    };
    for n in 0..3 {
        let url = c.url.clone();
        c.nodes[n].start(&url);
    }
    let three = ["node-0", "node-1", "node-2"];
    c.wait_balanced(&three, "at start").await;
    // Every resource's first run sets its baseline (a watermark); changes count from there.
    let baselined = holds_within(WAIT, Duration::from_millis(250), || {
        c.db.watermarks().unwrap().len() == INSTANCES * RESOURCES.len()
    })
    .await;
    assert!(
        baselined,
        "not every resource was polled once:\n{}",
        c.logs()
    );
    check_status(&c, &three).await;
    let stop_changes = Arc::new(AtomicBool::new(false));
    let changes = start_changes(c.sim.clone(), c.created.clone(), stop_changes.clone());

    // kill -9 the node owning the most: the others take its instances over, poll and deliver.
    let victim = c.biggest();
    let victim_id = c.nodes[victim].id.clone();
    let orphans = c.instances_of(&victim_id);
    let killed_at = Instant::now();
    c.nodes[victim].daemon.take().unwrap().kill9();
    let marker = c.marker();
    let taken = c.wait_delivered(&marker, &orphans, TAKEOVER_MAX).await;
    let takeover = killed_at.elapsed();
    println!(
        "kill -9 of {victim_id} ({} instances): polled and delivered by the others after {takeover:?}",
        orphans.len()
    );
    assert!(
        taken,
        "{victim_id}'s instances were not taken over within {TAKEOVER_MAX:?}:\n{}",
        c.logs()
    );
    let survivors: Vec<&str> = three.iter().copied().filter(|n| *n != victim_id).collect();
    c.wait_balanced(&survivors, "after the kill").await;
    let url = c.url.clone();
    c.nodes[victim].start(&url);
    c.wait_balanced(&three, "after the killed node came back")
        .await;

    // SIGSTOP one for 2 × TTL: its leases expire and are taken; woken, it is refused and stops.
    let frozen = c.biggest();
    let frozen_id = c.nodes[frozen].id.clone();
    let stopped_at = Instant::now();
    c.nodes[frozen].signal("STOP");
    let others: Vec<&str> = three.iter().copied().filter(|n| *n != frozen_id).collect();
    c.wait_balanced(&others, "while a node is frozen").await;
    wait_for("2 × TTL of the freeze", WAIT, || {
        stopped_at.elapsed() >= 2 * TTL
    })
    .await;
    let marker = c.marker();
    assert!(
        c.wait_delivered(&marker, &all_instances(), WAIT).await,
        "changes while {frozen_id} is frozen:\n{}",
        c.logs()
    );
    c.nodes[frozen].signal("CONT");
    let daemon = c.nodes[frozen].daemon();
    wait_for("lease lost in the woken node's log", WAIT, || {
        daemon.log_text().contains("lease lost: instance")
    })
    .await;
    let lost = metric_sum(daemon, "pollerd_lease_lost_total").await;
    assert!(
        lost >= 1.0,
        "pollerd_lease_lost_total of {frozen_id}: {lost}"
    );
    println!(
        "SIGSTOP of {frozen_id} for {:?}: {lost} lease(s) lost when it woke (write refused: {})",
        stopped_at.elapsed(),
        daemon.log_text().contains("a write was refused")
    );
    c.wait_balanced(&three, "after the frozen node woke").await;

    // SIGTERM one: it releases its leases, and the others take them at their next round.
    let leaving = c.biggest();
    let leaving_id = c.nodes[leaving].id.clone();
    let term_at = Instant::now();
    c.nodes[leaving].signal("TERM");
    wait_for("the leaving node's leases released", WAIT, || {
        c.instances_of(&leaving_id).is_empty()
    })
    .await;
    let released = term_at.elapsed();
    let remaining: Vec<&str> = three.iter().copied().filter(|n| *n != leaving_id).collect();
    wait_for("every instance owned again", WAIT, || {
        c.owners()
            .values()
            .all(|o| o.as_ref().is_some_and(|o| remaining.contains(&o.as_str())))
    })
    .await;
    let retaken = term_at.elapsed() - released;
    println!("SIGTERM of {leaving_id}: released after {released:?}, all taken {retaken:?} later");
    assert!(
        retaken <= RENEW + Duration::from_secs(2),
        "released leases must be taken within about one renew interval ({RENEW:?}), took {retaken:?}"
    );
    let status = c.nodes[leaving]
        .daemon
        .take()
        .unwrap()
        .wait_exit(WAIT)
        .await;
    assert!(status.success(), "{leaving_id} stopped with {status:?}");
    let url = c.url.clone();
    c.nodes[leaving].start(&url);
    c.wait_balanced(&three, "after the stopped node came back")
        .await;

    // Restart PostgreSQL: every node reconnects by itself, and nothing is lost.
    let restarted_at = Instant::now();
    support::postgres::restart_server();
    let marker = c.marker();
    assert!(
        c.wait_delivered(&marker, &all_instances(), WAIT).await,
        "changes after the PostgreSQL restart:\n{}",
        c.logs()
    );
    c.wait_balanced(&three, "after the PostgreSQL restart")
        .await;
    println!(
        "PostgreSQL restart: delivering again after {:?}",
        restarted_at.elapsed()
    );

    // A 4th node joins: the others release down to the new share and it claims them, with no
    // resource polled by two nodes at once.
    let joined_at = c.sim.now();
    let url = c.url.clone();
    c.nodes[3].start(&url);
    let four = ["node-0", "node-1", "node-2", "node-3"];
    c.wait_balanced(&four, "after a 4th node joined").await;
    let marker = c.marker();
    assert!(
        c.wait_delivered(&marker, &all_instances(), WAIT).await,
        "changes after the join:\n{}",
        c.logs()
    );
    let joined: Vec<usize> = c
        .instances_of("node-3")
        .iter()
        .map(|name| name[1..].parse().unwrap())
        .collect();
    wait_for(
        "the 4th node polling each resource of its instances",
        WAIT,
        || polled_since(&c.sim.requests(), joined_at, 3, &joined) == joined.len() * RESOURCES.len(),
    )
    .await;
    // From two poll intervals before the join: each resource's last runs on its old node too.
    let window = joined_at - chrono::Duration::seconds(6);
    let moved = check_no_overlapping_polls(&c.sim.requests(), window);
    println!(
        "4th node: holds {} instances; {moved} resource(s) changed node, none polled by two at once",
        joined.len()
    );
    assert!(
        moved >= joined.len() * RESOURCES.len(),
        "{moved} moves for the {} resources the 4th node polls",
        joined.len() * RESOURCES.len()
    );

    // A node whose file of an instance is removed releases it, and another node takes it on.
    let owner_of = |c: &Cluster, name: &str| c.owners().get(name).cloned().flatten();
    let holder_id = owner_of(&c, "i000").expect("i000 is held");
    let holder = c.nodes.iter().position(|n| n.id == holder_id).unwrap();
    std::fs::remove_file(c.nodes[holder].dir.instances().join("i000.json")).unwrap();
    wait_for("i000 taken by a node with its file", WAIT, || {
        owner_of(&c, "i000").is_some_and(|owner| owner != holder_id)
    })
    .await;
    let marker = c.marker();
    assert!(
        c.wait_delivered(&marker, &["i000".to_string()], WAIT).await,
        "i000 after its file left {holder_id}:\n{}",
        c.logs()
    );
    let said = "lease released: instance i000 (its file is gone from this node";
    assert!(c.nodes[holder].dir.logs().contains(said), "{}", c.logs());
    println!(
        "i000's file removed from {holder_id}: now held by {:?}",
        owner_of(&c, "i000")
    );

    // Everything changed was delivered to every instance, each version under one eventId.
    stop_changes.store(true, Ordering::Relaxed);
    let made = changes.await.unwrap();
    let created = c.created.lock().unwrap().clone();
    assert!(
        c.wait_delivered(&created, &all_instances(), WAIT).await,
        "not every change reached every instance:\n{}",
        c.logs()
    );
    for (version, event_ids) in &c.deliveries.versions {
        assert_eq!(
            event_ids.len(),
            1,
            "{version:?} went out under {event_ids:?}"
        );
    }
    for node in &mut c.nodes {
        node.signal("TERM");
        let status = node.daemon.take().unwrap().wait_exit(WAIT).await;
        assert!(status.success(), "{} stopped with {status:?}", node.id);
        assert!(
            !node.dir.logs().contains(&c.url),
            "{}'s log shows the url",
            node.id
        );
    }
    let left = c.db.stats().unwrap().outbox_depth;
    println!(
        "{made} changes of {} records, {} versions delivered, {left} left queued, in {:?}",
        created.len(),
        c.deliveries.versions.len(),
        started.elapsed()
    );
}

/// `pollerd status` on the first node lists the live nodes, every instance's owner and epoch,
/// and runs exactly the instances the database says it holds.
async fn check_status(c: &Cluster, live: &[&str]) {
    let status_of = |args: &[&str]| {
        let mut command = support::pollerd_command(&c.nodes[0].dir, args);
        command.env("POLLERD_TEST_PG_URL", &c.url);
        support::output_async(command)
    };
    let out = status_of(&["status", "--json"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    let cluster = &status["cluster"];
    assert_eq!(cluster["node_id"], "node-0", "{cluster}");
    let nodes: Vec<&str> = cluster["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node_id"].as_str().unwrap())
        .collect();
    assert_eq!(nodes, live, "{cluster}");
    let leases = cluster["leases"].as_array().unwrap();
    assert_eq!(leases.len(), INSTANCES);
    for lease in leases {
        assert!(live.contains(&lease["owner"].as_str().unwrap()), "{lease}");
        assert!(lease["epoch"].as_i64().unwrap() >= 1, "{lease}");
    }
    let running: Vec<&str> = status["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    let held: Vec<&str> = leases
        .iter()
        .filter(|l| l["owner"] == "node-0")
        .map(|l| l["instance"].as_str().unwrap())
        .collect();
    assert_eq!(running, held, "node-0 runs what it holds, and only that");
    let text = status_of(&["status"]).await;
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(&format!("{} live nodes", live.len())),
        "{text}"
    );
    // A reconcile asked of a node that does not hold the instance names the node that does.
    let elsewhere = leases
        .iter()
        .find(|l| l["owner"] != "node-0")
        .expect("another node holds some");
    let instance = elsewhere["instance"].as_str().unwrap();
    let out = status_of(&["reconcile", instance, "--dry-run"]).await;
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    let owner = elsewhere["owner"].as_str().unwrap();
    assert!(
        said.contains(&format!("runs on node {owner}, which holds its lease")),
        "{said}"
    );
}

/// How many resources (instance, path) of `instances` `node` polled from `since` on.
fn polled_since(
    requests: &[RequestLog],
    since: chrono::DateTime<chrono::Utc>,
    node: usize,
    instances: &[usize],
) -> usize {
    let polled: BTreeSet<(usize, &str)> = requests
        .iter()
        .filter(|r| r.received_at >= since)
        .filter_map(|r| polled_by(r).map(|(instance, by)| (instance, by, r.path.as_str())))
        .filter(|(instance, by, _)| *by == node && instances.contains(instance))
        .map(|(instance, _, path)| (instance, path))
        .collect();
    polled.len()
}

/// From `since` on, every resource's runs (one request each) by one node end before another
/// node's start; the number of resources that changed node.
fn check_no_overlapping_polls(
    requests: &[RequestLog],
    since: chrono::DateTime<chrono::Utc>,
) -> usize {
    let mut by_resource: BTreeMap<(usize, String), Vec<(&RequestLog, usize)>> = BTreeMap::new();
    for request in requests.iter().filter(|r| r.received_at >= since) {
        if let Some((instance, node)) = polled_by(request) {
            by_resource
                .entry((instance, request.path.clone()))
                .or_default()
                .push((request, node));
        }
    }
    let mut moved = 0;
    for ((instance, path), mut runs) in by_resource {
        runs.sort_by_key(|(r, _)| r.received_at);
        for pair in runs.windows(2) {
            let ((before, from), (after, to)) = (pair[0], pair[1]);
            if from == to {
                continue;
            }
            moved += 1;
            assert!(
                before.at <= after.received_at,
                "{} {path} was polled by node-{to} at {} while node-{from}'s run (from {}) was not answered until {}",
                instance_name(instance),
                after.received_at,
                before.received_at,
                before.at
            );
        }
    }
    moved
}
