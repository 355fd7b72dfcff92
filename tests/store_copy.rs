//! `pollerd store copy` end to end (issue 16 item 7): a sled store filled by a real daemon
//! (watermark, seen ids, a backlog queued behind a 503, a dead letter) is copied into
//! PostgreSQL by the real binary, and a `pollerd run` on the postgres engine carries on from it.
//! Needs PostgreSQL 15: `cargo test --test store_copy -- --ignored`.

mod support;

use pollerd::sim::connectwise::{ConnectWiseSim, RecordKind, SimConfig};
use pollerd::sim::receiver::{Behaviour, Receiver};
use pollerd::store::{PostgresStore, ResourceKey, SledStore, Store};
use support::{DaemonDir, WAIT, pollerd_command, seed_instance, status, wait_for};

/// In the target URL: it must never be printed.
const PASSWORD: &str = "copy-secret-pw";

fn copy_command(dd: &DaemonDir, url: &str, extra: &[&str]) -> std::process::Output {
    let from = format!("sled:{}", dd.path().join("state").display());
    let mut args = vec!["store", "copy", "--from", &from, "--to", "${env:PG_URL}"];
    args.extend_from_slice(extra);
    let mut command = pollerd_command(dd, &args);
    command.env("PG_URL", url);
    command.output().unwrap()
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The webhook ids the receiver got answered with `status`, in order.
fn ids_answered(receiver: &Receiver, from: usize, status: u16) -> Vec<String> {
    receiver
        .answered_from(from)
        .iter()
        .filter(|r| r.status == Some(status))
        .filter_map(|r| r.header("webhook-id").map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL 15: cargo test --test store_copy -- --ignored"]
async fn a_sled_store_copied_into_postgres_carries_on_where_it_stopped() {
    let plain = support::postgres::fresh_database();
    let url = plain.replacen("postgres@", &format!("postgres:{PASSWORD}@"), 1);
    let sim = ConnectWiseSim::start(SimConfig::default()).await.unwrap();
    let receiver = Receiver::start().await.unwrap();
    let dd = DaemonDir::new("");
    let instance = seed_instance(&sim, &receiver.url(), "0.01");
    dd.write_instance("contacts.json", &instance);

    // A dead letter (a 400), one delivered notification, then a backlog behind 503s.
    let daemon = dd.start(&[]);
    wait_for("the first poll", WAIT, || sim.request_count() >= 1).await;
    // One record a poll, so that each is its own notification (a page's records share one).
    receiver.respond_next(Behaviour::Status(400), 1);
    sim.create(RecordKind::Contact, None);
    wait_for("a dead letter", WAIT, || {
        status(&dd).is_some_and(|s| s["dead_letters"] == 1)
    })
    .await;
    sim.create(RecordKind::Contact, None);
    wait_for("a delivery", WAIT, || receiver.accepted().len() == 1).await;
    receiver.set_default(Behaviour::Status(503));
    for depth in 1..=3 {
        sim.create(RecordKind::Contact, None);
        wait_for("the backlog to grow", WAIT, || {
            status(&dd).is_some_and(|s| s["instances"][0]["resources"][0]["outbox_depth"] == depth)
        })
        .await;
    }
    wait_for("a refused attempt", WAIT, || {
        receiver.requests().iter().any(|r| r.status == Some(503))
    })
    .await;
    let delivered_before = ids_answered(&receiver, 0, 200);
    let dead_id = ids_answered(&receiver, 0, 400);
    assert_eq!(dead_id.len(), 1, "one dead letter");

    // Refused while the daemon runs: sled's lock; nothing written.
    let live = copy_command(&dd, &url, &[]);
    assert_eq!(live.status.code(), Some(1), "{}", text(&live));
    assert!(
        text(&live).contains("is another pollerd running?"),
        "{}",
        text(&live)
    );
    let target = PostgresStore::open(&plain, 2).unwrap();
    assert!(
        target.queues().unwrap().is_empty(),
        "nothing written while live"
    );

    daemon.signal("TERM");
    assert!(daemon.wait_exit(WAIT).await.success());
    let key = ResourceKey::new("API_Polling", "contacts");
    let queued: Vec<String> = {
        let sled = SledStore::open(&dd.path().join("state"), 1 << 20).unwrap();
        let front = sled.outbox_front(&key, 10).unwrap();
        front.iter().map(|e| e.event_id.clone()).collect()
    };
    assert_eq!(queued.len(), 3, "the backlog survived the stop");

    let dry = copy_command(&dd, &url, &["--dry-run"]);
    assert!(dry.status.success(), "{}", text(&dry));
    assert!(text(&dry).contains("dry run"), "{}", text(&dry));
    assert!(
        target.queues().unwrap().is_empty(),
        "a dry run writes nothing"
    );

    let copied = copy_command(&dd, &url, &[]);
    let said = text(&copied);
    assert!(copied.status.success(), "{said}");
    for line in [
        "instances     1",
        "watermarks    1",
        "queued        3",
        "dead letters  1",
    ] {
        assert!(said.contains(line), "{line:?} in {said}");
    }
    assert!(said.contains("seen ids "), "{said}");
    assert!(!said.contains(PASSWORD), "the password was printed: {said}");
    assert_eq!(target.outbox_depth(&key).unwrap(), 3);
    assert!(target.watermark(&key).unwrap().is_some());

    // Refused into a target that holds the instance; nothing changes.
    let again = copy_command(&dd, &url, &[]);
    let said = text(&again);
    assert_eq!(again.status.code(), Some(1), "{said}");
    assert!(
        said.contains("already holds state for instance(s) API_Polling"),
        "{said}"
    );
    assert!(!said.contains(PASSWORD), "the password was printed: {said}");
    assert_eq!(target.outbox_depth(&key).unwrap(), 3);
    assert_eq!(target.dead_letters().unwrap().len(), 1);
    drop(target);

    // The postgres engine on the copy: the backlog in order, nothing re-emitted.
    receiver.set_default(Behaviour::Ok);
    let after = receiver.request_count();
    let pg = DaemonDir::new(
        "[store]\nengine = \"postgres\"\nurl = \"${env:PG_URL}\"\nnode_id = \"copy-node\"\n",
    );
    pg.write_instance("contacts.json", &instance);
    let polls_before = sim.request_count();
    let node = pg.start(&[("PG_URL", url.as_str())]);
    wait_for("the backlog delivered", WAIT, || {
        ids_answered(&receiver, after, 200).len() >= 3
    })
    .await;
    wait_for("two more polls", WAIT, || {
        sim.request_count() >= polls_before + 2
    })
    .await;
    let target = PostgresStore::open(&plain, 2).unwrap();
    wait_for("an empty outbox", WAIT, || {
        target.outbox_depth(&key).is_ok_and(|depth| depth == 0)
    })
    .await;
    let delivered_after = ids_answered(&receiver, after, 200);
    assert_eq!(
        delivered_after, queued,
        "the backlog, in order, and nothing else"
    );
    for id in &delivered_before {
        assert!(!delivered_after.contains(id), "{id} was sent again");
    }
    let mut list = pollerd_command(&pg, &["dead-letters", "list"]);
    let list = list.env("PG_URL", &url).output().unwrap();
    let listing = text(&list);
    assert!(
        list.status.success() && listing.contains(&dead_id[0]),
        "{listing}"
    );
    assert!(!pg.logs().contains(PASSWORD), "the password was logged");
    node.signal("TERM");
    assert!(node.wait_exit(WAIT).await.success());
}
