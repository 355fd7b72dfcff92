//! What only the PostgreSQL engine has: a schema that several nodes create at once, errors that
//! name the server but not the password, and the real daemon keeping its state in PostgreSQL
//! across a `kill -9`. Ignored like the other PostgreSQL tests (see `support/postgres.rs`).

use std::collections::BTreeMap;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use pollerd::sim::connectwise::{ConnectWiseSim, RecordKind, SimConfig};
use pollerd::sim::receiver::Receiver;
use pollerd::store::{
    Fence, IdleWatermarks, LeaseClaim, PageCommit, PostgresStore, Store, StoreError,
};
use serde_json::Value;
use tokio::sync::mpsc::UnboundedReceiver;

use super::{POSTGRES_POOL_SIZE, key, page};
use crate::support::{
    self, DaemonDir, WAIT, holds_within, seed_instance, wait_for, with_page_size,
};

#[test]
#[ignore = "needs PostgreSQL 15: cargo test --test store -- --ignored postgres_engine"]
fn nodes_opening_a_new_database_at_once_all_get_one_schema() {
    const NODES: usize = 6;
    let url = support::postgres::fresh_database();
    let start = Arc::new(Barrier::new(NODES));
    let nodes: Vec<_> = (0..NODES)
        .map(|_| {
            let (url, start) = (url.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                PostgresStore::open(&url, 1)
            })
        })
        .collect();
    let stores: Vec<PostgresStore> = nodes
        .into_iter()
        .map(|node| node.join().unwrap().expect("every node opens the store"))
        .collect();
    // One schema that all of them use: a page one commits, another reads.
    let k = key("cw", "contacts");
    stores[0].commit(page(&k, &["e1"], super::at(5))).unwrap();
    assert_eq!(stores[NODES - 1].watermark(&k).unwrap(), Some(super::at(5)));
    assert_eq!(stores[NODES - 1].outbox_depth(&k).unwrap(), 1);
    drop(stores);
    // And opening it again migrates nothing and loses nothing.
    let again = PostgresStore::open(&url, POSTGRES_POOL_SIZE).unwrap();
    assert_eq!(again.outbox_depth(&k).unwrap(), 1);
}

#[test]
#[ignore = "needs PostgreSQL 15: cargo test --test store -- --ignored postgres_engine"]
fn an_unreachable_server_is_named_without_the_password() {
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://pollerd:hunter2-very-secret@127.0.0.1:{port}/pollerd_db");
    let error = PostgresStore::open(&url, 2)
        .err()
        .expect("nothing listens there");
    let text = error.to_string();
    assert!(
        text.contains(&format!("127.0.0.1:{port}/pollerd_db")),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
    let bad = PostgresStore::open("postgres://pollerd:hunter2@[::1", 2)
        .err()
        .expect("not a URL");
    assert!(!bad.to_string().contains("hunter2"), "{bad}");
}

fn bodies(receiver: &Receiver) -> Vec<Value> {
    receiver
        .accepted()
        .iter()
        .filter_map(|r| r.try_json().ok())
        .collect()
}

/// Every contact's current version has arrived.
fn all_current_delivered(sim: &ConnectWiseSim, ids: &[u64], receiver: &Receiver) -> bool {
    let got = support::events_by_version(&bodies(receiver));
    ids.iter().all(|id| {
        let record = sim.record(RecordKind::Contact, *id).unwrap();
        let date = record["_info"]["lastUpdated"].as_str().unwrap().to_string();
        got.contains_key(&(id.to_string(), date))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL 15: cargo test --test store -- --ignored postgres_engine"]
async fn the_daemon_keeps_its_state_in_postgres_across_a_kill_9() {
    let url = support::postgres::fresh_database();
    let sim = ConnectWiseSim::start(SimConfig::default()).await.unwrap();
    let receiver = Receiver::start().await.unwrap();
    // The url through a secret reference, as an operator would give it.
    let dd = DaemonDir::new(
        "[store]\nengine = \"postgres\"\nurl = \"${env:POLLERD_TEST_PG_URL}\"\npool_size = 4\n",
    );
    let env = [("POLLERD_TEST_PG_URL", url.as_str())];
    dd.write_instance(
        "contacts.json",
        &with_page_size(seed_instance(&sim, &receiver.url(), "0.01"), 100),
    );
    let daemon = dd.start(&env);
    // The first poll sets the baseline: records from before it are not events.
    wait_for("the first poll", WAIT, || sim.request_count() >= 1).await;
    let later = || Some(sim.now() + chrono::Duration::seconds(1));
    let mut ids = sim.create_many(RecordKind::Contact, 300, later());
    let delivered = holds_within(WAIT, Duration::from_millis(20), || {
        all_current_delivered(&sim, &ids, &receiver)
    })
    .await;
    assert!(
        delivered,
        "the first 300 contacts, in {WAIT:?}:\n{}",
        dd.logs()
    );
    daemon.kill9();
    // Changed while no daemon runs: the next one continues from the stored watermark.
    ids.extend(sim.create_many(RecordKind::Contact, 200, later()));
    for id in ids.iter().step_by(5) {
        sim.update(RecordKind::Contact, *id, later());
    }
    let daemon = dd.start(&env);
    let delivered = holds_within(WAIT, Duration::from_millis(20), || {
        all_current_delivered(&sim, &ids, &receiver)
    })
    .await;
    assert!(
        delivered,
        "the changes made while it was down:\n{}",
        dd.logs()
    );
    daemon.signal("TERM");
    let status = daemon.wait_exit(WAIT).await;
    assert!(status.success(), "{status:?}\n{}", dd.logs());

    let versions = support::events_by_version(&bodies(&receiver));
    for ((object, date), event_ids) in &versions {
        assert!(
            event_ids.iter().all(|e| e == &event_ids[0]),
            "{object}@{date} was sent under different eventIds {event_ids:?}"
        );
    }
    let contacts: BTreeMap<&String, usize> = versions.keys().fold(BTreeMap::new(), |mut m, v| {
        *m.entry(&v.0).or_default() += 1;
        m
    });
    assert_eq!(contacts.len(), 500, "every contact arrived");
    // The state is in the database: a watermark for the resource, and nothing left queued.
    let store = PostgresStore::open(&url, POSTGRES_POOL_SIZE).unwrap();
    let marks = store.watermarks().unwrap();
    assert_eq!(marks.len(), 1, "{marks:?}");
    assert_eq!(store.stats().unwrap().outbox_depth, 0);
    let logs = dd.logs();
    assert!(logs.contains("store: PostgreSQL"), "{logs}");
    assert!(!logs.contains(&url), "the log shows the url: {logs}");
}

#[test]
#[ignore = "needs PostgreSQL 15: cargo test --test store -- --ignored postgres_engine"]
fn an_unreadable_head_is_set_aside_and_the_queue_goes_on() {
    let url = support::postgres::fresh_database();
    let store = PostgresStore::open(&url, POSTGRES_POOL_SIZE).unwrap();
    let k = key("cw", "contacts");
    store.commit(page(&k, &["e1", "e2"], super::at(0))).unwrap();
    // A date no clock reaches: what a hand edit or a bug could leave in the row.
    support::postgres::psql(
        &url,
        "UPDATE pollerd_outbox SET created_ms = 9223372036854775807 WHERE event_id = 'e1'",
    );
    let head = store.outbox_head(&k).unwrap().unwrap();
    assert_eq!(head.event_id, "e2");
    let corrupt = store.corrupt_entries().unwrap();
    assert_eq!(corrupt.len(), 1, "{corrupt:?}");
    let entry = &corrupt[0];
    assert_eq!(
        (
            entry.key.as_ref(),
            entry.event_id.as_deref(),
            entry.created_at
        ),
        (Some(&k), Some("e1"), None)
    );
    assert!(entry.reason.contains("out of range"), "{}", entry.reason);
    assert_eq!(
        store
            .corrupt_entry_bytes(&entry.id)
            .unwrap()
            .map(|b| b.len() as u64),
        Some(entry.size)
    );
    assert_eq!(
        store.stats().unwrap(),
        pollerd::store::StoreStats {
            outbox_depth: 1,
            dead_letters: 1,
            corrupt_set_aside: 1
        }
    );
    let summary = store.dead_letter_summary().unwrap();
    let queue = summary.of(&k).unwrap();
    assert_eq!((queue.count, queue.corrupt), (1, 1));
    let error = store.replay_dead_letter(&entry.id).unwrap_err();
    assert!(
        matches!(error, pollerd::store::StoreError::CorruptDeadLetter { .. }),
        "{error}"
    );
    assert!(store.drop_dead_letter(&entry.id).unwrap());
    assert!(store.corrupt_entries().unwrap().is_empty());
    assert_eq!(store.dead_letter_summary().unwrap().total(), 0);
}

/// Two nodes' handles on one database: `a` holds `instance` at the epoch it claims, with a lease
/// so short that it has expired by the time `b` claims it in turn.
struct TwoNodes {
    url: String,
    a: PostgresStore,
    b: PostgresStore,
    fence_a: Arc<Fence>,
    fence_b: Arc<Fence>,
}

const LONG_TTL: Duration = Duration::from_secs(60);

impl TwoNodes {
    fn open() -> TwoNodes {
        TwoNodes::open_telling_a().0
    }

    /// As `open`, with the channel on which `a` is told of the instances whose writes were
    /// refused to it.
    fn open_telling_a() -> (TwoNodes, UnboundedReceiver<String>) {
        let url = support::postgres::fresh_database();
        let (fence_a, refusals) = Fence::reporting("node-a");
        let fence_b = Fence::new("node-b");
        let a = PostgresStore::open_fenced(&url, 2, fence_a.clone(), LONG_TTL).unwrap();
        let b = PostgresStore::open_fenced(&url, 2, fence_b.clone(), LONG_TTL).unwrap();
        let nodes = TwoNodes {
            url,
            a,
            b,
            fence_a,
            fence_b,
        };
        (nodes, refusals)
    }
}

/// Claims `instance` for the node of `store` and `fence` (up to `WAIT` while someone else's
/// lease has not expired yet), and lets its writes through.
async fn claim(store: &PostgresStore, fence: &Fence, instance: &str, ttl: Duration) -> LeaseClaim {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let claims = store
            .claim(fence.node_id(), vec![instance.to_string()], 1, ttl)
            .await
            .unwrap();
        if let Some(claim) = claims.into_iter().next() {
            fence.hold(&claim.instance, claim.epoch);
            return claim;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} could not claim {instance} in {WAIT:?}",
            fence.node_id()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn assert_lease_lost(result: Result<(), StoreError>, instance: &str) {
    match result {
        Err(StoreError::LeaseLost {
            instance: lost,
            node,
        }) => {
            assert_eq!((lost.as_str(), node.as_str()), (instance, "node-a"));
        }
        other => panic!("a stale write must be refused as lease lost, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL 15: cargo test --test store -- --ignored postgres_engine"]
async fn a_commit_under_a_stale_epoch_is_refused_and_the_new_owners_lands() {
    let nodes = TwoNodes::open();
    let k = key("cw", "contacts");
    // Not claimed yet: no write of the instance passes.
    assert_lease_lost(nodes.a.commit(page(&k, &["e0"], super::at(0))), "cw");
    let first = claim(&nodes.a, &nodes.fence_a, "cw", Duration::from_millis(1)).await;
    assert_eq!((first.epoch, first.expired_owner.as_deref()), (1, None));
    nodes.a.commit(page(&k, &["e1"], super::at(1))).unwrap();

    // Expired, so b takes it over: a's epoch is stale now, though a does not know it yet.
    let taken = claim(&nodes.b, &nodes.fence_b, "cw", LONG_TTL).await;
    assert_eq!(
        (taken.epoch, taken.expired_owner.as_deref()),
        (2, Some("node-a"))
    );
    assert_eq!(
        nodes.fence_a.epoch("cw"),
        Some(1),
        "a still thinks it holds it"
    );
    assert_lease_lost(nodes.a.commit(page(&k, &["stale"], super::at(9))), "cw");
    nodes.b.commit(page(&k, &["e2"], super::at(2))).unwrap();

    // Only b's commits landed, in order; a's watermark and notification did not.
    let head = nodes.b.outbox_front(&k, 10).unwrap();
    assert_eq!(super::event_ids(&head), ["e1", "e2"]);
    assert_eq!(nodes.b.watermark(&k).unwrap(), Some(super::at(2)));
    // Every other write of a's is refused too, and changes nothing.
    let seq = head[0].seq;
    assert_lease_lost(nodes.a.ack(&k, seq), "cw");
    assert_lease_lost(
        nodes.a.record_failure(&k, seq, 1, super::at(5), "HTTP 503"),
        "cw",
    );
    assert_lease_lost(nodes.a.dead_letter(&k, seq, 1, Some(400), "HTTP 400"), "cw");
    assert_lease_lost(nodes.a.forget_known_ids(&k).map(|_| ()), "cw");
    let reconcile = pollerd::store::ReconcileCommit::new(k.clone());
    assert_lease_lost(nodes.a.commit_reconcile(reconcile), "cw");
    let unchanged = nodes.b.outbox_head(&k).unwrap().unwrap();
    assert_eq!((unchanged.seq, unchanged.attempts), (seq, 0));
    assert!(nodes.b.dead_letters().unwrap().is_empty());
    // The owner's own settlement goes through.
    nodes.b.ack(&k, seq).unwrap();
    assert_eq!(
        super::event_ids(&nodes.b.outbox_front(&k, 10).unwrap()),
        ["e2"]
    );

    // A store opened without a fence (tests, diagnostics) is not a node: it is not checked.
    let plain = PostgresStore::open(&nodes.url, 1).unwrap();
    plain.commit(page(&k, &["e3"], super::at(3))).unwrap();
}

/// Delivery's acks are written in groups after the call returns; a stale node's are refused
/// in the same way as its other writes: nothing of them lands, and its node is told to stop
/// the instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL 15: cargo test --test store -- --ignored postgres_engine"]
async fn acks_under_a_stale_epoch_are_refused_and_the_node_is_told() {
    let (nodes, mut refusals) = TwoNodes::open_telling_a();
    let TwoNodes {
        a,
        b,
        fence_a,
        fence_b,
        ..
    } = nodes;
    let k = key("cw", "contacts");
    claim(&a, &fence_a, "cw", Duration::from_millis(1)).await;
    a.commit(page(&k, &["e1", "e2", "e3"], super::at(1)))
        .unwrap();
    let front = a.outbox_front_async(&k, 3).await.unwrap();
    a.ack_async(&k, front[0].seq).await.unwrap();
    a.flush().unwrap();
    assert_eq!(
        super::event_ids(&b.outbox_front(&k, 3).unwrap()),
        ["e2", "e3"]
    );

    // b takes the expired lease over; a delivers e2 and acknowledges it, unaware.
    claim(&b, &fence_b, "cw", LONG_TTL).await;
    a.ack_async(&k, front[1].seq).await.unwrap();
    a.flush().unwrap();
    let told = tokio::time::timeout(WAIT, refusals.recv()).await;
    assert_eq!(told.ok().flatten().as_deref(), Some("cw"), "a must be told");
    assert_eq!(
        super::event_ids(&b.outbox_front(&k, 3).unwrap()),
        ["e2", "e3"],
        "the new owner delivers e2 again"
    );
}

/// The idle watermarks a node held back are written in one transaction that checks each
/// instance's lease: those of an instance it no longer holds are refused (and its node told),
/// the others land, and nothing of the refused ones is tried again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL 15: cargo test --test store -- --ignored postgres_engine"]
async fn idle_watermarks_of_a_lost_lease_are_refused_and_the_others_land() {
    let (nodes, mut refusals) = TwoNodes::open_telling_a();
    let TwoNodes {
        a,
        b,
        fence_a,
        fence_b,
        ..
    } = nodes;
    let a = Arc::new(a);
    let layer = IdleWatermarks::written_by_caller(a.clone());
    let (lost, kept) = (key("cw", "contacts"), key("acme", "contacts"));
    claim(&a, &fence_a, "cw", Duration::from_millis(1)).await;
    claim(&a, &fence_a, "acme", LONG_TTL).await;
    let idle = |k: &pollerd::store::ResourceKey, second: i64| {
        let mut commit = PageCommit::new(k.clone());
        commit.watermark = Some(super::at(second));
        commit
    };
    assert!(layer.defer(idle(&lost, 10)).is_none());
    assert!(layer.defer(idle(&kept, 10)).is_none());
    assert_eq!(layer.write_pending().unwrap(), 2);
    assert_eq!(b.watermark(&lost).unwrap(), Some(super::at(10)));

    // b takes the expired lease of cw over and polls it; a, unaware, holds back a later move.
    claim(&b, &fence_b, "cw", LONG_TTL).await;
    b.commit(page(&lost, &["b1"], super::at(20))).unwrap();
    assert!(layer.defer(idle(&lost, 30)).is_none());
    assert!(layer.defer(idle(&kept, 30)).is_none());
    assert_eq!(layer.write_pending().unwrap(), 1, "only acme's lands");
    assert_eq!(layer.pending(), 0, "a refused move is not tried again");
    assert_eq!(
        b.watermark(&lost).unwrap(),
        Some(super::at(20)),
        "b's stays"
    );
    assert_eq!(b.watermark(&kept).unwrap(), Some(super::at(30)));
    let told = tokio::time::timeout(WAIT, refusals.recv()).await;
    assert_eq!(told.ok().flatten().as_deref(), Some("cw"), "a must be told");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL 15: cargo test --test store -- --ignored postgres_engine"]
async fn leases_are_claimed_within_a_limit_renewed_released_and_counted() {
    let nodes = TwoNodes::open();
    let names: Vec<String> = (0..6).map(|n| format!("i{n}")).collect();
    let beat = nodes
        .a
        .heartbeat("node-a", Vec::new(), names.clone(), LONG_TTL)
        .await
        .unwrap();
    assert_eq!((beat.live_nodes, beat.instances), (1, 6));
    let claimed = nodes
        .a
        .claim("node-a", names.clone(), 4, LONG_TTL)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 4, "{claimed:?}");
    for c in &claimed {
        nodes.fence_a.hold(&c.instance, c.epoch);
    }
    // b joins: it is counted, and finds only the two left free (the others are not expired).
    let beat = nodes
        .b
        .heartbeat("node-b", Vec::new(), names.clone(), LONG_TTL)
        .await
        .unwrap();
    assert_eq!((beat.live_nodes, beat.instances), (2, 6));
    let rest = nodes
        .b
        .claim("node-b", names.clone(), 10, LONG_TTL)
        .await
        .unwrap();
    let mut all: Vec<String> = claimed
        .iter()
        .chain(&rest)
        .map(|c| c.instance.clone())
        .collect();
    all.sort();
    assert_eq!(all, names, "each instance claimed once");
    // a renews what it holds; a lease it does not hold at that epoch is not renewed.
    let mut held = nodes.fence_a.held();
    held.push((rest[0].instance.clone(), rest[0].epoch));
    let beat = nodes
        .a
        .heartbeat("node-a", held, names.clone(), LONG_TTL)
        .await
        .unwrap();
    assert_eq!(beat.renewed.len(), 4, "{:?}", beat.renewed);
    assert!(!beat.renewed.contains(&rest[0].instance));
    // a releases one: b may claim it at once, as a plain claim (not a takeover).
    let given = nodes.fence_a.held()[0].clone();
    let released = nodes
        .a
        .release("node-a", vec![given.clone()])
        .await
        .unwrap();
    assert_eq!(released, std::slice::from_ref(&given.0));
    let again = nodes
        .b
        .claim("node-b", names.clone(), 10, LONG_TTL)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(
        (
            &again[0].instance,
            again[0].epoch,
            again[0].expired_owner.as_deref()
        ),
        (&given.0, given.1 + 1, None)
    );
    // status's picture: both nodes live, each lease with its owner and epoch.
    let view = nodes.a.cluster(LONG_TTL).unwrap();
    let live: Vec<(&str, u64)> = view
        .nodes
        .iter()
        .map(|n| (n.node_id.as_str(), n.leases))
        .collect();
    assert_eq!(live, [("node-a", 3), ("node-b", 3)]);
    assert_eq!(view.leases.len(), 6);
    let moved = view.leases.iter().find(|l| l.instance == given.0).unwrap();
    assert_eq!(
        (moved.owner.as_deref(), moved.epoch),
        (Some("node-b"), given.1 + 1)
    );
    // a leaves: it is no longer counted.
    nodes.a.leave("node-a").await.unwrap();
    let beat = nodes
        .b
        .heartbeat("node-b", nodes.fence_b.held(), names, LONG_TTL)
        .await
        .unwrap();
    assert_eq!(beat.live_nodes, 1);
}

fn seen(commit_key: &pollerd::store::ResourceKey, ids: &[(&str, i64)]) -> PageCommit {
    let mut commit = PageCommit::new(commit_key.clone());
    commit.seen = ids
        .iter()
        .map(|(id, s)| (id.to_string(), super::at(*s)))
        .collect();
    commit
}

fn pruned(commit_key: &pollerd::store::ResourceKey, before: i64) -> PageCommit {
    let mut commit = PageCommit::new(commit_key.clone());
    commit.prune_seen_before = Some(super::at(before));
    commit
}

#[test]
#[ignore = "needs PostgreSQL 15: cargo test --test store -- --ignored postgres_engine"]
fn seen_dates_a_handle_keeps_in_memory_follow_another_handles_writes_and_prunes() {
    // Each handle answers lookups from its copy of the set: what the other writes (a takeover's
    // new owner, a second daemon) must show through it at once, never an old date.
    let url = support::postgres::fresh_database();
    let a = PostgresStore::open(&url, POSTGRES_POOL_SIZE).unwrap();
    let b = PostgresStore::open(&url, POSTGRES_POOL_SIZE).unwrap();
    let k = key("cw", "contacts");
    let ids = ["x", "y", "z"];
    let dates = |store: &PostgresStore| store.seen_dates(&k, &ids).unwrap();
    a.commit(seen(&k, &[("x", 5), ("y", 3), ("z", 10)]))
        .unwrap();
    assert_eq!(
        dates(&b),
        [Some(super::at(5)), Some(super::at(3)), Some(super::at(10))]
    );
    b.commit(seen(&k, &[("x", 7)])).unwrap();
    assert_eq!(
        dates(&a)[0],
        Some(super::at(7)),
        "a missed b's later date of x"
    );
    // A prune that splits a page (y at 3 goes, z at 10 stays in the same page) …
    a.commit(pruned(&k, 4)).unwrap();
    let after = [Some(super::at(7)), None, Some(super::at(10))];
    assert_eq!(dates(&b), after, "b's copy kept a pruned id");
    assert_eq!(dates(&a), after);
    // … as idle watermark moves batch it, too.
    let mut idle = pruned(&k, 8);
    idle.watermark = Some(super::at(20));
    assert!(IdleWatermarks::is_idle(&idle));
    assert!(b.commit_many(vec![idle]).into_iter().all(|r| r.is_ok()));
    assert_eq!(dates(&a), [None, None, Some(super::at(10))]);
    assert_eq!(a.seen_count(&k).unwrap(), 1);
    // Forgetting the resource empties both handles' view, and a later write starts afresh.
    a.forget_resource(&k).unwrap();
    assert_eq!(dates(&b), [None, None, None]);
    b.commit(seen(&k, &[("y", 1)])).unwrap();
    assert_eq!(dates(&a), [None, Some(super::at(1)), None]);
    drop((a, b));
    let again = PostgresStore::open(&url, POSTGRES_POOL_SIZE).unwrap();
    assert_eq!(dates(&again), [None, Some(super::at(1)), None]);
}

#[test]
#[ignore = "needs PostgreSQL 15: cargo test --test store -- --ignored postgres_engine"]
fn a_seen_set_kept_as_rows_by_schema_3_reads_the_same_after_the_migration() {
    let url = support::postgres::fresh_database();
    let k = key("cw", "contacts");
    drop(PostgresStore::open(&url, POSTGRES_POOL_SIZE).unwrap());
    // The database as schema 3 left it: one row per seen id (an id may hold a NUL).
    support::postgres::psql(
        &url,
        "DROP TABLE pollerd_seen_pages, pollerd_seen_state; \
         CREATE TABLE pollerd_seen (instance text NOT NULL, resource text NOT NULL, \
             object_id bytea NOT NULL, seen_ms bigint NOT NULL, \
             PRIMARY KEY (instance, resource, object_id)); \
         INSERT INTO pollerd_seen VALUES \
             ('cw', 'contacts', 'a', 1767225605000), \
             ('cw', 'contacts', '\\x6200'::bytea, 1767225601000), \
             ('cw', 'companies', 'a', 1767225609000); \
         UPDATE pollerd_schema SET version = 3;",
    );
    let store = PostgresStore::open(&url, POSTGRES_POOL_SIZE).unwrap();
    assert_eq!(
        store.seen_dates(&k, &["a", "b\0", "c"]).unwrap(),
        [Some(super::at(5)), Some(super::at(1)), None]
    );
    let other = key("cw", "companies");
    assert_eq!(
        store.seen_dates(&other, &["a"]).unwrap(),
        [Some(super::at(9))]
    );
    store.commit(pruned(&k, 3)).unwrap();
    assert_eq!(store.seen_count(&k).unwrap(), 1);
}
