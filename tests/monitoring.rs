//! The monitoring kit of `packaging/monitoring/` against the real Prometheus (Debian package
//! `prometheus`): `promtool` checks the rules and runs their unit tests, and a Prometheus
//! started here scrapes a real `pollerd run` while its receiver fails.
//!
//! Ignored by plain `cargo test` (they need `prometheus` and `promtool` on the PATH); `.ci/run`
//! installs the package and runs them with `--ignored`, and fails if they did not run.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use pollerd::sim::connectwise::RecordKind;
use pollerd::sim::receiver::Behaviour;
use serde_json::Value;
use support::{METRICS_ANY_PORT, WAIT, metrics_address, seed_daemon_dir, wait_for};

fn monitoring_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/monitoring")
}

/// `tool ARGS`, or a panic saying the package is missing (`.ci/run` installs it).
fn run_tool(tool: &str, args: &[&str]) -> std::process::Output {
    Command::new(tool)
        .args(args)
        .current_dir(monitoring_dir())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {tool} ({e}): install the Debian package `prometheus`")
        })
}

#[test]
#[ignore = "needs promtool (Debian package prometheus); .ci/run runs it"]
fn promtool_accepts_the_rules_and_their_unit_tests_pass() {
    let check = run_tool(
        "promtool",
        &["check", "rules", "alerts.yml", "recording.yml"],
    );
    let said = String::from_utf8_lossy(&check.stdout).to_string();
    assert!(check.status.success(), "{said}{:?}", check.stderr);
    assert!(said.contains("SUCCESS: 7 rules found"), "{said}");
    assert!(said.contains("SUCCESS: 9 rules found"), "{said}");

    let test = run_tool("promtool", &["test", "rules", "tests/alerts.test.yml"]);
    let said = String::from_utf8_lossy(&test.stdout).to_string();
    assert!(
        test.status.success() && said.contains("SUCCESS"),
        "{said}{}",
        String::from_utf8_lossy(&test.stderr)
    );
}

/// Every alert of `alerts.yml` has a unit test that sees it fire and one that sees it quiet.
#[test]
fn every_alert_has_a_firing_and_a_quiet_unit_test() {
    let alerts = std::fs::read_to_string(monitoring_dir().join("alerts.yml")).unwrap();
    let tests = std::fs::read_to_string(monitoring_dir().join("tests/alerts.test.yml")).unwrap();
    let names: Vec<&str> = alerts
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- alert: "))
        .collect();
    assert_eq!(names.len(), 7, "{names:?}");
    for name in names {
        let blocks: Vec<&str> = tests
            .split("- eval_time:")
            .filter(|block| block.contains(&format!("alertname: {name}\n")))
            .collect();
        assert!(
            blocks.iter().any(|b| b.contains("exp_alerts: []")),
            "{name}: no test where it stays quiet"
        );
        assert!(
            blocks.iter().any(|b| b.contains("exp_labels:")),
            "{name}: no test where it fires"
        );
    }
}

/// A Prometheus server of the test's own: a temporary config and storage, killed on drop.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free a moment ago on 127.0.0.1 (Prometheus cannot be told port 0 and report it).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// The rules as shipped, with the receiver's 15 minutes (`> 900` seconds) cut to `seconds`.
fn rules_with_receiver_window(seconds: u64) -> String {
    let alerts = std::fs::read_to_string(monitoring_dir().join("alerts.yml")).unwrap();
    let shipped = "(pollerd_callback_failing_since_timestamp_seconds > 0) > 900";
    assert!(alerts.contains(shipped), "the receiver rule changed shape");
    alerts.replace(
        shipped,
        &format!("(pollerd_callback_failing_since_timestamp_seconds > 0) > {seconds}"),
    )
}

impl Prometheus {
    /// Scrapes `target` (host:port) as job `pollerd` every second, evaluating the rules every
    /// second.
    fn start(target: &str, alerts: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("alerts.yml"), alerts).unwrap();
        std::fs::copy(
            monitoring_dir().join("recording.yml"),
            dir.path().join("recording.yml"),
        )
        .unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - alerts.yml\n  - recording.yml\nscrape_configs:\n  - job_name: pollerd\n    static_configs:\n      - targets: ['{target}']\n"
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let listen = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={listen}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start prometheus ({e}): install the Debian package `prometheus`")
            });
        Prometheus {
            child,
            url: format!("http://{listen}"),
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// `GET /api/v1/<path>` with `query` parameters; the `data` of a successful answer.
    async fn api(&self, path: &str, query: &[(&str, &str)]) -> Option<Value> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let answer = client
            .get(format!("{}/api/v1/{path}", self.url))
            .query(query)
            .send()
            .await
            .ok()?;
        let body: Value = serde_json::from_slice(&answer.bytes().await.ok()?).ok()?;
        (body["status"] == "success").then(|| body["data"].clone())
    }

    /// The result vector of an instant query (empty while Prometheus is not up).
    async fn query(&self, expr: &str) -> Vec<Value> {
        self.api("query", &[("query", expr)])
            .await
            .and_then(|data| data["result"].as_array().cloned())
            .unwrap_or_default()
    }

    /// Waits (bounded by `limit`) until `expr` returns at least one sample.
    async fn wait_for_data(&self, what: &str, expr: &str, limit: Duration) {
        let deadline = std::time::Instant::now() + limit;
        while self.query(expr).await.is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out after {limit:?} waiting for {what} ({expr}); prometheus log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The state (`pending`, `firing`) of alert `name` for pollerd instance `instance`, if any.
    async fn alert_state(&self, name: &str, instance: &str) -> Option<String> {
        let data = self.api("alerts", &[]).await?;
        data["alerts"].as_array()?.iter().find_map(|alert| {
            (alert["labels"]["alertname"] == name
                && alert["labels"]["pollerd_instance"] == instance)
                .then(|| alert["state"].as_str().unwrap_or_default().to_string())
        })
    }
}

/// Every panel's query in the dashboard JSON, with `$instance` set to `instance`.
fn dashboard_queries(instance: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(monitoring_dir().join("pollerd-dashboard.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut queries = Vec::new();
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        let targets = panel["targets"].as_array().expect("a panel has targets");
        assert!(!targets.is_empty(), "panel {} has no query", panel["title"]);
        for target in targets {
            let expr = target["expr"].as_str().expect("a target's expr");
            queries.push((
                panel["title"].as_str().unwrap_or_default().to_string(),
                expr.replace("$instance", instance),
            ));
        }
    }
    queries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs prometheus (Debian package prometheus); .ci/run runs it"]
async fn a_real_prometheus_sees_the_receiver_alert_and_data_for_every_dashboard_panel() {
    // Every 1.2 s.
    let (sim, receiver, dd) = seed_daemon_dir(METRICS_ANY_PORT, "0.02").await;
    let daemon = dd.start(&[]);
    let target = metrics_address(&daemon).await.to_string();
    wait_for("the first poll", WAIT, || sim.request_count() >= 1).await;
    let prometheus = Prometheus::start(&target, &rules_with_receiver_window(3));
    prometheus
        .wait_for_data(
            "the first scrape of pollerd",
            "up{job=\"pollerd\"} == 1",
            WAIT,
        )
        .await;
    // Delivered while the receiver works and Prometheus watches: the delivery rates have data.
    sim.create_many(RecordKind::Contact, 3, None);
    prometheus
        .wait_for_data(
            "deliveries seen by Prometheus",
            "increase(pollerd_callback_delivered_total{pollerd_instance=\"API_Polling\"}[1m]) > 0",
            WAIT,
        )
        .await;

    receiver.set_default(Behaviour::Status(503));
    sim.create_many(RecordKind::Contact, 2, None);
    wait_for("a failed delivery", WAIT, || {
        receiver.requests().iter().any(|r| r.status == Some(503))
    })
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let state = prometheus
            .alert_state("PollerdReceiverFailing", "API_Polling")
            .await;
        if matches!(state.as_deref(), Some("pending" | "firing")) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "PollerdReceiverFailing never went pending or firing (last: {state:?}); metrics:\n{}",
            prometheus
                .query("pollerd_callback_failing_since_timestamp_seconds")
                .await
                .iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The resource alert stays quiet: polling works.
    assert_eq!(
        prometheus
            .alert_state("PollerdResourceNotPolled", "API_Polling")
            .await,
        None
    );

    for (panel, expr) in dashboard_queries("API_Polling") {
        prometheus
            .wait_for_data(&format!("data for panel {panel:?}"), &expr, WAIT)
            .await;
    }
    drop(daemon);
}
