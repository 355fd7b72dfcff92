//! `pollerd status` health words and exit codes, with the real binary, for each state: ok,
//! failing (a provider that refuses connections), backlogged (a notification queued 31 minutes
//! ago behind a failing receiver), disabled, and a daemon that cannot be reached.

mod support;

use std::sync::Arc;

use chrono::Utc;
use pollerd::sim::connectwise::{ConnectWiseSim, SimConfig};
use pollerd::sim::receiver::{Behaviour, Receiver};
use pollerd::store::{NewNotification, PageCommit, ResourceKey, SledStore, Store};
use serde_json::Value;
use support::{DaemonDir, WAIT, pollerd, seed_instance, status, wait_for};

/// A port nothing listens on (it was free a moment ago).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// The seed instance named `name`, polling every `interval_minutes`.
fn named(sim: &ConnectWiseSim, callback: &str, name: &str, interval_minutes: &str) -> Value {
    let mut v = seed_instance(sim, callback, interval_minutes);
    v["name"] = name.into();
    v
}

/// Queues one notification for `instance`/contacts committed 31 minutes ago, in the daemon's
/// store before it starts.
fn queue_an_old_notification(dd: &DaemonDir, instance: &str) {
    let store: Arc<dyn Store> =
        Arc::new(SledStore::open(&dd.path().join("state"), 8 << 20).unwrap());
    let mut commit = PageCommit::new(ResourceKey::new(instance, "contacts"));
    commit.notifications.push(NewNotification {
        event_id: "old-notification".into(),
        body: b"{\"id\":\"old-notification\"}".to_vec(),
        created_at: Utc::now() - chrono::Duration::minutes(31),
    });
    store.commit(commit).unwrap();
    store.flush().unwrap();
}

/// The health object of `instance`'s first resource in a `status --json` report.
fn health_of<'a>(report: &'a Value, instance: &str) -> &'a Value {
    report["instances"]
        .as_array()
        .and_then(|all| all.iter().find(|i| i["name"] == instance))
        .map_or(&Value::Null, |i| &i["resources"][0]["health"])
}

/// `pollerd status ARGS`: its exit code and what it printed.
fn status_text(dd: &DaemonDir, args: &[&str]) -> (Option<i32>, String) {
    let mut all = vec!["status"];
    all.extend_from_slice(args);
    let out = pollerd(dd, &all);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The table row of `instance` in `text`.
fn row<'a>(text: &'a str, instance: &str) -> Option<&'a str> {
    text.lines()
        .find(|line| line.split_whitespace().next() == Some(instance))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_words_and_exit_codes_for_ok_failing_backlogged_disabled_and_unreachable() {
    let sim = ConnectWiseSim::start(SimConfig::default()).await.unwrap();
    let receiver = Receiver::start().await.unwrap();
    let refusing = Receiver::start().await.unwrap();
    refusing.set_default(Behaviour::Status(503));
    let dd = DaemonDir::new("");
    // Every 6 s: ok unless a run takes 18 s, even on a busy machine.
    dd.write_instance("good.json", &named(&sim, &receiver.url(), "good", "0.1"));
    // Every 0.6 s against a port nothing listens on: failing after 1.8 s.
    let mut down = named(&sim, &receiver.url(), "down", "0.01");
    down["configuration"]["baseUrl"] =
        format!("http://127.0.0.1:{}/v4_6_release/apis/3.0", closed_port()).into();
    dd.write_instance("down.json", &down);
    dd.write_instance("late.json", &named(&sim, &refusing.url(), "late", "0.1"));
    queue_an_old_notification(&dd, "late");
    let mut off = named(&sim, &receiver.url(), "off", "0.1");
    off["configuration"]["event.notification.enabled"] = false.into();
    dd.write_instance("off.json", &off);
    let daemon = dd.start(&[]);

    wait_for("down failing and late backlogged", WAIT, || {
        status(&dd).is_some_and(|report| {
            health_of(&report, "down")["state"] == "failing"
                && health_of(&report, "late")["state"] == "backlog"
        })
    })
    .await;
    let report = status(&dd).unwrap();
    assert_eq!(health_of(&report, "good")["state"], "ok", "{report}");
    assert_eq!(health_of(&report, "late")["queued"], 1, "{report}");

    let (code, text) = status_text(&dd, &[]);
    assert_eq!(code, Some(2), "a resource is failing: exit 2\n{text}");
    assert!(
        text.contains("health: 1 ok, 1 failing, 1 backlogged, 1 disabled"),
        "{text}"
    );
    assert!(
        row(&text, "good").is_some_and(|r| r.ends_with("  ok")),
        "{text}"
    );
    assert!(
        row(&text, "down").is_some_and(|r| r.contains("failing since ")),
        "{text}"
    );
    assert!(
        row(&text, "late").is_some_and(|r| r.contains("backlog 1 (oldest ")),
        "{text}"
    );
    assert!(text.contains("note: instance off"), "{text}");
    assert!(
        row(&text, "off").is_some_and(|r| r.ends_with("  disabled")),
        "{text}"
    );
    assert_eq!(health_of(&report, "off")["state"], "disabled", "{report}");
    // The worst first: failing, then backlogged, then ok.
    let order: Vec<&str> = ["down", "late", "good"]
        .iter()
        .map(|name| row(&text, name).unwrap())
        .collect();
    let at = |line: &str| text.find(line).unwrap();
    assert!(
        at(order[0]) < at(order[1]) && at(order[1]) < at(order[2]),
        "{text}"
    );

    let (code, text) = status_text(&dd, &["--failing"]);
    assert_eq!(code, Some(2));
    assert!(
        row(&text, "down").is_some() && row(&text, "late").is_some(),
        "{text}"
    );
    assert!(
        row(&text, "good").is_none(),
        "--failing leaves ok rows out:\n{text}"
    );

    for (instance, expected) in [("good", 0), ("off", 0), ("down", 2), ("late", 2)] {
        let (code, text) = status_text(&dd, &["--instance", instance]);
        assert_eq!(code, Some(expected), "--instance {instance}:\n{text}");
        for other in ["good", "down", "late", "off"]
            .iter()
            .filter(|o| **o != instance)
        {
            assert!(
                row(&text, other).is_none(),
                "--instance {instance} shows {other}:\n{text}"
            );
        }
    }

    let json = pollerd(&dd, &["status", "--json"]);
    assert_eq!(json.status.code(), Some(2));
    let report: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(
        report["instances"].as_array().unwrap().len(),
        4,
        "--json keeps every instance"
    );
    assert!(health_of(&report, "down")["since"].is_string(), "{report}");
    let down_row = &report["instances"][0]["resources"][0];
    assert!(
        down_row["failed_polls"].as_u64().unwrap_or(0) >= 1,
        "{report}"
    );

    // Without the failing and the backlogged instance, everything is ok: exit 0.
    std::fs::remove_file(dd.instances().join("down.json")).unwrap();
    std::fs::remove_file(dd.instances().join("late.json")).unwrap();
    wait_for("only good and off loaded", WAIT, || {
        status(&dd).is_some_and(|r| r["instances"].as_array().is_some_and(|a| a.len() == 2))
    })
    .await;
    let (code, text) = status_text(&dd, &[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("health: 1 ok, 0 failing, 0 backlogged, 1 disabled"),
        "{text}"
    );

    daemon.signal("TERM");
    assert!(daemon.wait_exit(WAIT).await.success());
    let (code, _) = status_text(&dd, &[]);
    assert_eq!(code, Some(1), "no daemon: exit 1");
}
