//! DELETED events through the real binary (issue 15): `pollerd reconcile`, the mass-delete guard
//! in `status` and the log, reloads that keep or drop the known ids, and `kill -9` during
//! reconciles and deliveries. A real receiver on loopback gets what the daemon sends.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use pollerd::sim::connectwise::{ConnectWiseSim, RecordKind, SimConfig};
use pollerd::sim::receiver::Receiver;
use serde_json::Value;
use support::*;

const INSTANCE: &str = "acme-contacts";

/// Retries come fast, so a test never waits long for a delivery.
const FAST_RETRIES: &str = "[delivery]\nschedule = [\"200ms\", \"400ms\", \"800ms\", \"1s\", \"1s\", \"1s\", \"1s\", \"1s\", \"1s\"]\n";

/// The seed instance polling every `interval_minutes`, its contacts reconciled every `check`.
fn instance(
    sim: &ConnectWiseSim,
    receiver: &Receiver,
    interval_minutes: &str,
    check: Option<&str>,
) -> Value {
    let mut v = seed_instance(sim, &receiver.url(), interval_minutes);
    v["name"] = INSTANCE.into();
    let contacts = &mut v["configuration"]["event.poller.configuration"]["contacts"];
    contacts["pageSize"] = 100.into();
    if let Some(check) = check {
        contacts["deletedCheckInterval"] = check.into();
    }
    v
}

/// `pollerd reconcile acme-contacts ARGS`: (exit code, stdout + stderr).
fn reconcile(dd: &DaemonDir, args: &[&str]) -> (i32, String) {
    let mut all = vec!["reconcile", INSTANCE];
    all.extend_from_slice(args);
    let out = pollerd(dd, &all);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// objectId → the eventIds of the DELETED events that named it, from every accepted request.
fn deleted_events(receiver: &Receiver) -> BTreeMap<u64, BTreeSet<String>> {
    let mut out: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    for request in receiver.accepted() {
        let body = request.json();
        let event_id = body["id"].as_str().unwrap().to_string();
        for event in body["message"]["events"].as_array().unwrap() {
            if event["eventType"] == "DELETED" {
                let id = event["objectId"].as_str().unwrap().parse().unwrap();
                out.entry(id).or_default().insert(event_id.clone());
            }
        }
    }
    out
}

/// Waits until the receiver has had DELETED events for exactly `expected`.
async fn wait_for_deleted(
    receiver: &Receiver,
    what: &str,
    expected: &BTreeSet<u64>,
    limit: Duration,
) {
    wait_for(what, limit, || {
        deleted_events(receiver)
            .keys()
            .copied()
            .collect::<BTreeSet<_>>()
            == *expected
    })
    .await;
}

fn contacts_status(dd: &DaemonDir) -> Option<Value> {
    let report = status(dd)?;
    let instance = report["instances"]
        .as_array()?
        .iter()
        .find(|i| i["name"] == INSTANCE)?
        .clone();
    instance["resources"]
        .as_array()?
        .iter()
        .find(|r| r["name"] == "contacts")
        .cloned()
}

/// When the daemon last applied the instance files.
fn last_reload(dd: &DaemonDir) -> Value {
    status(dd).map_or(Value::Null, |report| report["last_reload"]["at"].clone())
}

async fn started(dd: &DaemonDir) -> Daemon {
    let daemon = dd.start(&[]);
    wait_for("the contacts resource to run", WAIT, || {
        contacts_status(dd).is_some_and(|r| r["pollers"] == 1)
    })
    .await;
    daemon
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mass_delete_is_refused_shown_in_status_and_sent_once_confirmed() {
    let sim = ConnectWiseSim::start(SimConfig::default()).await.unwrap();
    let receiver = Receiver::start().await.unwrap();
    let ids = sim.create_many(RecordKind::Contact, 100, None);
    let dd = DaemonDir::new(&format!("{FAST_RETRIES}{METRICS_ANY_PORT}"));
    // A month between scheduled reconciles: in this test only `pollerd reconcile` runs them.
    dd.write_instance("acme.json", &instance(&sim, &receiver, "5", Some("30days")));
    let daemon = started(&dd).await;
    let metrics = format!("http://{}/metrics", metrics_address(&daemon).await);

    let (code, text) = reconcile(&dd, &[]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("first reconcile: 100 records now known"),
        "{text}"
    );

    sim.delete_many(RecordKind::Contact, &ids[..60]);
    let (code, text) = reconcile(&dd, &[]);
    assert_eq!(code, 1, "a refused reconcile fails: {text}");
    assert!(text.contains("would delete 60 of 100 known"), "{text}");
    assert!(text.contains("--allow-mass-delete"), "{text}");
    let shown = contacts_status(&dd).unwrap();
    assert_eq!(
        shown["reconcile"]["mass_delete_refused"]["would_delete"], 60,
        "{shown}"
    );
    let human = String::from_utf8_lossy(&pollerd(&dd, &["status"]).stdout).to_string();
    assert!(human.contains("reconcile refused"), "{human}");
    let logs = dd.logs();
    assert!(
        logs.contains("would report 60 of 100 known record(s) as deleted")
            && logs.contains(INSTANCE),
        "the error names the instance and counts: {logs}"
    );
    let scraped = reqwest::get(&metrics).await.unwrap().text().await.unwrap();
    assert!(
        scraped.contains("pollerd_reconciles_total{outcome=\"mass_delete_refused\"} 1"),
        "{scraped}"
    );

    let (code, text) = reconcile(&dd, &["--dry-run", "--allow-mass-delete"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("dry run: would report 60 records as deleted"),
        "{text}"
    );
    for id in &ids[..60] {
        assert!(text.contains(&id.to_string()), "{id} listed: {text}");
    }
    assert!(
        deleted_events(&receiver).is_empty(),
        "a dry run sends nothing"
    );

    let (code, text) = reconcile(&dd, &["--allow-mass-delete"]);
    assert_eq!(code, 0, "{text}");
    let expected: BTreeSet<u64> = ids[..60].iter().copied().collect();
    wait_for_deleted(&receiver, "60 DELETED events", &expected, WAIT).await;
    assert!(contacts_status(&dd).unwrap()["reconcile"]["mass_delete_refused"].is_null());
    let scraped = reqwest::get(&metrics).await.unwrap().text().await.unwrap();
    assert!(
        scraped.contains("pollerd_events_total{type=\"DELETED\"} 60"),
        "{scraped}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_keeps_the_known_ids_and_removing_the_interval_stops_reconciles() {
    let sim = ConnectWiseSim::start(SimConfig::default()).await.unwrap();
    let receiver = Receiver::start().await.unwrap();
    let ids = sim.create_many(RecordKind::Contact, 50, None);
    let dd = DaemonDir::new(FAST_RETRIES);
    dd.write_instance("acme.json", &instance(&sim, &receiver, "5", Some("30days")));
    let _daemon = started(&dd).await;
    let (code, text) = reconcile(&dd, &[]);
    assert_eq!(code, 0, "{text}");

    // Edited: another poll interval. The resource restarts; what it knows stays.
    sim.delete_many(RecordKind::Contact, &ids[..2]);
    let reloaded = last_reload(&dd);
    dd.write_instance("acme.json", &instance(&sim, &receiver, "4", Some("30days")));
    wait_for("the edit to be applied", WAIT, || {
        last_reload(&dd) != reloaded
    })
    .await;
    wait_for("the contacts resource to run again", WAIT, || {
        contacts_status(&dd).is_some_and(|r| r["pollers"] == 1)
    })
    .await;
    let (code, text) = reconcile(&dd, &[]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("reported 2 records as deleted"),
        "not a new first reconcile: {text}"
    );

    // Without deletedCheckInterval: no reconcile, none shown.
    let reloaded = last_reload(&dd);
    dd.write_instance("acme.json", &instance(&sim, &receiver, "4", None));
    wait_for("the check to be gone from status", WAIT, || {
        last_reload(&dd) != reloaded
            && contacts_status(&dd).is_some_and(|r| r["reconcile"].is_null() && r["pollers"] == 1)
    })
    .await;
    let (code, text) = reconcile(&dd, &[]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("no resource of instance"), "{text}");
    let expected: BTreeSet<u64> = ids[..2].iter().copied().collect();
    wait_for_deleted(&receiver, "the 2 DELETED events", &expected, WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_reconciles_and_deliveries_loses_no_deletion_and_invents_none() {
    let sim = ConnectWiseSim::start(SimConfig::default()).await.unwrap();
    let receiver = Receiver::start().await.unwrap();
    let mut live: BTreeSet<u64> = sim
        .create_many(RecordKind::Contact, 600, None)
        .into_iter()
        .collect();
    let dd = DaemonDir::new(FAST_RETRIES);
    // Reconciles every second, polls every 0.6 s: kills land inside both, and inside deliveries.
    dd.write_instance("acme.json", &instance(&sim, &receiver, "0.01", Some("1s")));
    let mut daemon = started(&dd).await;
    wait_for("the first reconcile", WAIT, || {
        contacts_status(&dd).is_some_and(|r| !r["reconcile"]["last"].is_null())
    })
    .await;

    let mut deleted = BTreeSet::new();
    for kill in 0..10u64 {
        // A few deletions each round, well inside the mass-delete guard.
        let gone: Vec<u64> = live
            .iter()
            .copied()
            .skip(kill as usize * 7)
            .take(5)
            .collect();
        sim.delete_many(RecordKind::Contact, &gone);
        for id in gone {
            live.remove(&id);
            deleted.insert(id);
        }
        // Not synchronisation: a moment to kill at, spread over a reconcile or two.
        tokio::time::sleep(Duration::from_millis(200 + (kill * 137) % 1600)).await;
        daemon.kill9();
        daemon = dd.start(&[]);
        wait_for("the restarted daemon to answer", WAIT, || {
            status(&dd).is_some()
        })
        .await;
    }
    wait_for_deleted(
        &receiver,
        "every deletion to be delivered",
        &deleted,
        WAIT * 3,
    )
    .await;
    let events = deleted_events(&receiver);
    for (id, event_ids) in &events {
        assert!(!live.contains(id), "live record {id} reported as deleted");
        assert_eq!(
            event_ids.len(),
            1,
            "{id}: duplicates only as the same eventId: {event_ids:?}"
        );
    }
    daemon.signal("TERM");
    assert!(daemon.wait_exit(WAIT).await.success());
    println!(
        "kill -9 × 10 during reconciles: {} deletions, each delivered, {} deliveries in all",
        deleted.len(),
        receiver.accepted().len()
    );
}
