//! What an operator does with the running binary: systemd notifications, `status`,
//! `dead-letters`, `poll`, `demo`, and the metrics endpoint (SPEC §8, §9).

mod support;

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pollerd::sim::connectwise::RecordKind;
use pollerd::sim::receiver::Behaviour;
use serde_json::Value;
use support::*;

/// Datagrams received on a fake NOTIFY_SOCKET, in order.
struct NotifySocket {
    socket: UnixDatagram,
    seen: Vec<String>,
}

impl NotifySocket {
    fn bind(path: &std::path::Path) -> NotifySocket {
        let socket = UnixDatagram::bind(path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        NotifySocket {
            socket,
            seen: Vec::new(),
        }
    }

    /// Reads until a datagram with a line `wanted` arrives; returns that datagram.
    fn expect(&mut self, wanted: &str) -> String {
        let deadline = Instant::now() + WAIT;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.socket.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.seen.push(msg.clone());
                if msg.lines().any(|l| l == wanted) {
                    return msg;
                }
            }
        }
        panic!("no {wanted:?} within {WAIT:?}; seen {:?}", self.seen);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_hears_ready_reloading_ready_stopping_and_watchdog_pings() {
    let (_sim, _receiver, dd) = seed_daemon_dir("", "10").await;
    let path = dd.path().join("notify.sock");
    let mut notify = NotifySocket::bind(&path);
    let daemon = dd.start(&[
        ("NOTIFY_SOCKET", path.to_str().unwrap()),
        ("WATCHDOG_USEC", "400000"),
    ]);
    notify.expect("READY=1");
    assert!(
        status(&dd).is_some(),
        "READY=1 comes after the admin socket is up"
    );
    notify.expect("WATCHDOG=1");
    notify.expect("WATCHDOG=1");
    daemon.signal("HUP");
    let reloading = notify.expect("RELOADING=1");
    let usec = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("RELOADING=1 without MONOTONIC_USEC: {reloading:?}"));
    assert!(usec.parse::<u64>().unwrap() > 0);
    notify.expect("READY=1");
    daemon.signal("TERM");
    notify.expect("STOPPING=1");
    assert!(daemon.wait_exit(WAIT).await.success());
    let order: Vec<&str> = notify
        .seen
        .iter()
        .flat_map(|m| m.lines())
        .filter(|l| ["READY=1", "RELOADING=1", "STOPPING=1"].contains(l))
        .collect();
    assert_eq!(order, ["READY=1", "RELOADING=1", "READY=1", "STOPPING=1"]);
    assert!(
        notify
            .seen
            .iter()
            .any(|m| m.starts_with("STATUS=") && m.contains("1 instance(s), 1 resource(s)")),
        "{:?}",
        notify.seen
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_dead_letters_work_end_to_end() {
    let (sim, receiver, dd) = seed_daemon_dir("", "0.01").await;
    let out = pollerd(&dd, &["status"]);
    assert_eq!(out.status.code(), Some(1), "no daemon: exit 1");
    assert!(String::from_utf8_lossy(&out.stderr).contains("is it running?"));

    let daemon = dd.start(&[]);
    wait_for("the first poll", WAIT, || sim.request_count() >= 1).await;
    receiver.respond_next(Behaviour::Status(400), 1);
    let ids = sim.create_many(RecordKind::Contact, 2, None);
    wait_for("a dead letter", WAIT, || {
        status(&dd).is_some_and(|s| s["dead_letters"] == 1)
    })
    .await;
    let s = status(&dd).unwrap();
    let r = &s["instances"][0]["resources"][0];
    assert_eq!(s["instances"][0]["name"], "API_Polling");
    assert_eq!(r["name"], "contacts");
    assert_eq!(r["pollers"], 1);
    assert_eq!(r["dead_letters"], 1);
    assert_eq!(r["events_emitted"], 2, "{s}");
    assert!(
        r["watermark"].is_string() && r["last_poll"].is_string() && r["next_poll"].is_string(),
        "{s}"
    );

    let table = String::from_utf8(pollerd(&dd, &["status"]).stdout).unwrap();
    assert!(
        table.contains("API_Polling") && table.contains("contacts"),
        "{table}"
    );

    let list = pollerd(&dd, &["dead-letters", "list"]);
    assert!(list.status.success());
    let listing = String::from_utf8(list.stdout).unwrap();
    let dead_id = receiver.requests()[0]
        .header("webhook-id")
        .unwrap()
        .to_string();
    assert!(
        listing.contains(&dead_id) && listing.contains("400"),
        "{listing}"
    );

    let replay = pollerd(&dd, &["dead-letters", "replay", &dead_id]);
    assert!(
        replay.status.success(),
        "{}",
        String::from_utf8_lossy(&replay.stderr)
    );
    wait_for("the replayed notification", WAIT, || {
        receiver
            .accepted()
            .iter()
            .any(|r| r.header("webhook-id") == Some(dead_id.as_str()))
    })
    .await;
    let delivered: Vec<String> = receiver
        .accepted()
        .iter()
        .flat_map(|r| r.json()["message"]["events"].as_array().unwrap().clone())
        .map(|e| e["objectId"].as_str().unwrap().to_string())
        .collect();
    for id in &ids {
        assert!(
            delivered.contains(&id.to_string()),
            "{id} not delivered: {delivered:?}"
        );
    }
    wait_for("no dead letters", WAIT, || {
        status(&dd).is_some_and(|s| s["dead_letters"] == 0)
    })
    .await;
    let unknown = pollerd(&dd, &["dead-letters", "drop", "no-such-id"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no-such-id"));
    daemon.signal("TERM");
    assert!(daemon.wait_exit(WAIT).await.success());
}

/// Every file under `dir`, with its bytes.
fn snapshot(dir: &std::path::Path) -> BTreeMap<std::path::PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_prints_what_it_would_send_and_touches_no_state() {
    let (sim, receiver, dd) = seed_daemon_dir("", "10").await;
    // A state directory the daemon made.
    let daemon = dd.start(&[]);
    wait_for("the first poll", WAIT, || sim.request_count() >= 1).await;
    let since = (sim.now() - chrono::Duration::seconds(5))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let ids = sim.create_many(RecordKind::Contact, 3, None);
    // Safe beside the running daemon: it opens no store.
    let beside = pollerd(&dd, &["poll", "API_Polling", "--since", &since]);
    assert!(
        beside.status.success(),
        "{}",
        String::from_utf8_lossy(&beside.stderr)
    );
    daemon.signal("TERM");
    assert!(daemon.wait_exit(WAIT).await.success());

    let before = snapshot(&dd.path().join("state"));
    let sent = receiver.request_count();
    let out = pollerd(
        &dd,
        &[
            "poll",
            "API_Polling",
            "--resource",
            "contacts",
            "--since",
            &since,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let objects: Vec<String> = lines
        .iter()
        .flat_map(|n| n["message"]["events"].as_array().unwrap().clone())
        .map(|e| e["objectId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        objects,
        ids.iter().map(|i| i.to_string()).collect::<Vec<_>>()
    );
    assert_eq!(lines[0]["message"]["instanceName"], "API_Polling");
    assert_eq!(
        snapshot(&dd.path().join("state")),
        before,
        "the store is byte-identical"
    );
    assert_eq!(receiver.request_count(), sent, "poll delivers nothing");

    let missing = pollerd(&dd, &["poll", "nope"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("API_Polling"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_shows_created_updated_and_deleted_events() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pollerd"))
        .arg("demo")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    // Read to its end (the demo's exit closes it) beside the rest, so it never fills.
    let warnings = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let mut buf = [0u8; 4096];
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline
            && !(text.contains(" CREATED ")
                && text.contains(" UPDATED ")
                && text.contains(" DELETED "))
        {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
        text
    });
    let text = tokio::task::spawn_blocking(move || reader.join().unwrap())
        .await
        .unwrap();
    let ok = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(text.contains(" CREATED "), "{text}");
    assert!(text.contains(" UPDATED "), "{text}");
    assert!(text.contains(" DELETED "), "{text}");
    assert_eq!(status.code(), Some(0), "Ctrl-C ends the demo with 0");
    // Neither its own instance (both resources have a creation date) nor its stop (the file
    // watcher) warns about anything.
    let warnings = tokio::task::spawn_blocking(move || warnings.join().unwrap())
        .await
        .unwrap();
    assert!(warnings.is_empty(), "the demo printed:\n{warnings}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_happened() {
    let (sim, receiver, dd) = seed_daemon_dir(METRICS_ANY_PORT, "0.01").await;
    let daemon = dd.start(&[]);
    let addr = metrics_address(&daemon).await.to_string();
    wait_for("the first poll", WAIT, || sim.request_count() >= 1).await;
    sim.create_many(RecordKind::Contact, 4, None);
    wait_for("four events delivered", WAIT, || {
        receiver.accepted().len() == 1
    })
    .await;
    let client = reqwest::Client::new();
    let get = |path: &'static str| {
        let client = client.clone();
        let url = format!("http://{addr}{path}");
        async move { client.get(url).send().await.unwrap() }
    };
    assert_eq!(get("/healthz").await.status(), 200);
    assert_eq!(get("/ready").await.status(), 200);
    let deadline = Instant::now() + WAIT;
    let samples = loop {
        let text = get("/metrics").await.text().await.unwrap();
        let samples = parse_metrics(&text);
        if samples
            .get("pollerd_deliveries_total{outcome=\"ok\"}")
            .copied()
            .unwrap_or(0.0)
            >= 1.0
            || Instant::now() > deadline
        {
            break samples;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        samples["pollerd_events_total{type=\"CREATED\"}"], 4.0,
        "{samples:#?}"
    );
    assert_eq!(samples["pollerd_deliveries_total{outcome=\"ok\"}"], 1.0);
    assert!(samples["pollerd_polls_total{outcome=\"ok\"}"] >= 1.0);
    assert!(samples["pollerd_records_fetched_total"] >= 4.0);
    daemon.signal("TERM");
    assert!(daemon.wait_exit(WAIT).await.success());
}

/// `name{labels} value` lines; comments must be HELP/TYPE/UNIT/EOF.
fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if let Some(comment) = line.strip_prefix("# ") {
            assert!(
                ["HELP ", "TYPE ", "UNIT ", "EOF"]
                    .iter()
                    .any(|p| comment.starts_with(p)),
                "bad comment line {line:?}"
            );
            continue;
        }
        let (name, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad sample line {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        out.insert(name.to_string(), value);
    }
    out
}
