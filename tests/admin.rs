//! The admin socket end to end: a fake daemon backend served on a unix socket in a temp dir,
//! asked through the client functions and the CLI commands.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeZone, Utc};
use pollerd::admin::{
    self, AdminBackend, AdminServer, ClusterStatus, DeadLetterView, Health, InstanceStatus,
    LeaseStatusView, NodeStatusView, ReloadStatus, ResourceStatusView, StatusReport, TaskPanicView,
    ThrottleView,
};
use pollerd::cli::admin::{
    DeadLetterAction, StatusSelection, render_dead_letters, render_status, render_status_of,
};
use tokio_util::sync::CancellationToken;

fn at(year: i32, month: u32, day: u32, hour: u32, minute: u32, second: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(year, month, day, hour, minute, second)
        .single()
        .expect("valid test date")
}

fn resource(name: &str, events: u64, last_error: Option<&str>) -> ResourceStatusView {
    ResourceStatusView {
        name: name.to_string(),
        watermark: Some(at(2026, 1, 2, 3, 4, 5)),
        last_poll: Some(at(2026, 1, 2, 3, 4, 6)),
        next_poll: Some(at(2026, 1, 2, 3, 9, 6)),
        last_error: last_error.map(str::to_string),
        events_emitted: events,
        outbox_depth: 2,
        dead_letters: 1,
        pollers: 1,
        task_panics: Vec::new(),
        reconcile: None,
        throttled: None,
        signals: Default::default(),
        health: Default::default(),
        counts: Default::default(),
    }
}

fn sample_report() -> StatusReport {
    StatusReport {
        version: "0.1.0".to_string(),
        pid: 4242,
        started_at: at(2026, 1, 1, 0, 0, 0),
        instances: vec![
            InstanceStatus {
                name: "API_Polling".to_string(),
                file: "/etc/pollerd/instances.d/api.json".to_string(),
                element: "connectwisecrmrest".to_string(),
                enabled: true,
                resources: vec![
                    resource("contacts", 17, None),
                    resource(
                        "companies",
                        3,
                        Some(&format!("HTTP 500 from provider: {}", "boom ".repeat(40))),
                    ),
                ],
                error: None,
            },
            InstanceStatus {
                name: "generic_rest".to_string(),
                file: "/etc/pollerd/instances.d/rest.toml".to_string(),
                element: "http".to_string(),
                enabled: true,
                resources: vec![resource("orders", 5, None)],
                error: Some("rest.toml:3:7: error: unknown key".to_string()),
            },
        ],
        outbox_depth: 6,
        dead_letters: 3,
        dead_letter_summary: None,
        last_reload: Some(ReloadStatus {
            at: at(2026, 1, 2, 0, 0, 0),
            ok: false,
            errors: vec!["rest.toml:3:7: error: unknown key".to_string()],
        }),
        cluster: None,
    }
}

fn dead_letter(id: &str, resource: &str) -> DeadLetterView {
    DeadLetterView {
        id: id.to_string(),
        instance: "API_Polling".to_string(),
        resource: resource.to_string(),
        event_id: id.to_string(),
        attempts: 10,
        last_status: Some(410),
        last_error: "410 Gone".to_string(),
        created_at: at(2026, 1, 1, 12, 0, 0),
        dead_at: at(2026, 1, 1, 12, 30, 0),
        corrupt: None,
    }
}

/// Keeps dead letters in memory and records which ids replay and drop were asked for.
struct FakeBackend {
    report: StatusReport,
    letters: Mutex<Vec<DeadLetterView>>,
    replayed: Mutex<Vec<String>>,
}

impl FakeBackend {
    fn new() -> FakeBackend {
        FakeBackend {
            report: sample_report(),
            letters: Mutex::new(vec![
                dead_letter("ev-1", "contacts"),
                dead_letter("ev-2", "contacts"),
                dead_letter("ev-3", "companies"),
                dead_letter("ev-4", "companies"),
            ]),
            replayed: Mutex::new(Vec::new()),
        }
    }

    /// Removes the selected letters, or none if any id is unknown.
    fn take(&self, ids: Option<Vec<String>>) -> Result<Vec<String>, String> {
        let mut letters = self.letters.lock().expect("not poisoned");
        let ids = match ids {
            None => letters.iter().map(|letter| letter.id.clone()).collect(),
            Some(ids) => ids,
        };
        let unknown: Vec<&str> = ids
            .iter()
            .filter(|id| !letters.iter().any(|letter| &letter.id == *id))
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            return Err(format!("unknown dead letter ids: {}", unknown.join(", ")));
        }
        letters.retain(|letter| !ids.contains(&letter.id));
        Ok(ids)
    }

    fn remaining_ids(&self) -> Vec<String> {
        let letters = self.letters.lock().expect("not poisoned");
        letters.iter().map(|letter| letter.id.clone()).collect()
    }
}

impl AdminBackend for FakeBackend {
    fn status(&self) -> StatusReport {
        self.report.clone()
    }

    fn dead_letters(&self) -> Result<Vec<DeadLetterView>, String> {
        Ok(self.letters.lock().expect("not poisoned").clone())
    }

    fn replay(&self, ids: Option<Vec<String>>) -> Result<usize, String> {
        let taken = self.take(ids)?;
        let count = taken.len();
        self.replayed.lock().expect("not poisoned").extend(taken);
        Ok(count)
    }

    fn drop_dead_letters(&self, ids: Option<Vec<String>>) -> Result<usize, String> {
        Ok(self.take(ids)?.len())
    }
}

struct Running {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    backend: Arc<FakeBackend>,
    server: AdminServer,
    cancel: CancellationToken,
}

/// A server in a fresh temp dir, in a sub directory that does not exist yet.
async fn start_server() -> Running {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("run").join("admin.sock");
    let backend = Arc::new(FakeBackend::new());
    let cancel = CancellationToken::new();
    let server = AdminServer::start(&socket, backend.clone(), cancel.clone())
        .await
        .expect("admin server starts");
    Running {
        _dir: dir,
        socket,
        backend,
        server,
        cancel,
    }
}

fn ids(list: &[&str]) -> Option<Vec<String>> {
    Some(list.iter().map(|id| id.to_string()).collect())
}

#[tokio::test]
async fn status_round_trips_and_the_socket_is_0660_and_removed_on_stop() {
    let running = start_server().await;

    let report = admin::get_status(&running.socket)
        .await
        .expect("status answers");
    assert_eq!(report, sample_report());

    let metadata = std::fs::metadata(&running.socket).expect("socket exists");
    assert!(metadata.file_type().is_socket());
    assert_eq!(metadata.permissions().mode() & 0o777, 0o660);
    // It was bound under a temporary name and renamed into place: nothing else is left.
    let names: Vec<_> = std::fs::read_dir(running.socket.parent().unwrap())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(names, [running.socket.file_name().unwrap()]);

    running.cancel.cancel();
    running.server.stopped().await;
    assert!(!running.socket.exists(), "socket file removed on stop");
    let error = admin::get_status(&running.socket)
        .await
        .expect_err("nobody listens after stop");
    assert!(error.to_string().contains("is it running?"), "{error:#}");
}

#[tokio::test]
async fn dead_letters_list_replay_and_drop_round_trip() {
    let running = start_server().await;
    let socket = &running.socket;

    let list = admin::list_dead_letters(socket).await.expect("list");
    let listed: Vec<&str> = list.iter().map(|letter| letter.id.as_str()).collect();
    assert_eq!(listed, ["ev-1", "ev-2", "ev-3", "ev-4"]);
    assert_eq!(list[0], dead_letter("ev-1", "contacts"));

    let replayed = admin::replay_dead_letters(socket, ids(&["ev-2"]))
        .await
        .expect("replay one");
    assert_eq!(replayed, 1);
    assert_eq!(running.backend.remaining_ids(), ["ev-1", "ev-3", "ev-4"]);
    assert_eq!(*running.backend.replayed.lock().unwrap(), ["ev-2"]);

    let error = admin::drop_dead_letters(socket, ids(&["ev-1", "nope"]))
        .await
        .expect_err("unknown id refused");
    let message = format!("{error:#}");
    assert!(
        message.contains("could not drop dead letters")
            && message.contains("unknown dead letter ids: nope"),
        "{message}"
    );
    assert_eq!(
        running.backend.remaining_ids(),
        ["ev-1", "ev-3", "ev-4"],
        "a refused drop drops nothing"
    );

    let dropped = admin::drop_dead_letters(socket, ids(&["ev-3"]))
        .await
        .expect("drop one");
    assert_eq!(dropped, 1);
    assert_eq!(running.backend.remaining_ids(), ["ev-1", "ev-4"]);

    let replayed = admin::replay_dead_letters(socket, None)
        .await
        .expect("replay all");
    assert_eq!(replayed, 2);
    assert!(running.backend.remaining_ids().is_empty());
    assert_eq!(
        *running.backend.replayed.lock().unwrap(),
        ["ev-2", "ev-1", "ev-4"]
    );
    assert!(admin::list_dead_letters(socket).await.unwrap().is_empty());

    let dropped = admin::drop_dead_letters(socket, None)
        .await
        .expect("drop all of nothing");
    assert_eq!(dropped, 0);
}

#[tokio::test]
async fn drop_all_empties_the_dead_letters() {
    let running = start_server().await;
    let dropped = admin::drop_dead_letters(&running.socket, None)
        .await
        .expect("drop all");
    assert_eq!(dropped, 4);
    assert!(running.backend.remaining_ids().is_empty());
    assert!(running.backend.replayed.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_client_without_a_daemon_says_so_clearly() {
    let dir = tempfile::tempdir().expect("temp dir");

    let missing = dir.path().join("admin.sock");
    let error = admin::get_status(&missing)
        .await
        .expect_err("no socket file");
    let expected = format!(
        "cannot reach pollerd at {}: is it running? (",
        missing.display()
    );
    assert!(error.to_string().starts_with(&expected), "{error:#}");

    // A socket file nobody listens on any more (a killed daemon's leftover).
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).expect("bind"));
    let error = admin::list_dead_letters(&stale)
        .await
        .expect_err("nobody listens");
    let expected = format!(
        "cannot reach pollerd at {}: is it running? (",
        stale.display()
    );
    assert!(error.to_string().starts_with(&expected), "{error:#}");
}

#[tokio::test]
async fn a_stale_socket_file_is_replaced() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("admin.sock");
    drop(std::os::unix::net::UnixListener::bind(&socket).expect("bind"));
    assert!(socket.exists(), "the stale socket file stays behind");

    let cancel = CancellationToken::new();
    let server = AdminServer::start(&socket, Arc::new(FakeBackend::new()), cancel.clone())
        .await
        .expect("a stale socket does not block the start");
    let report = admin::get_status(&socket)
        .await
        .expect("new server answers");
    assert_eq!(report.pid, 4242);
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o660);
    cancel.cancel();
    server.stopped().await;
}

#[tokio::test]
async fn a_second_server_on_a_live_socket_is_refused() {
    let running = start_server().await;

    let second_cancel = CancellationToken::new();
    let refused = AdminServer::start(
        &running.socket,
        Arc::new(FakeBackend::new()),
        second_cancel.clone(),
    )
    .await;
    let error = refused.err().expect("second server refused");
    let message = error.to_string();
    assert!(
        message.contains("another pollerd already answers")
            && message.contains(&running.socket.display().to_string()),
        "{message}"
    );

    // The first daemon is untouched: its socket is still there and still answers.
    let list = admin::list_dead_letters(&running.socket)
        .await
        .expect("first server still answers");
    assert_eq!(list.len(), 4);
}

#[tokio::test]
async fn a_path_that_is_not_a_socket_is_never_replaced() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("admin.sock");
    std::fs::write(&path, "precious").expect("write");
    let refused = AdminServer::start(
        &path,
        Arc::new(FakeBackend::new()),
        CancellationToken::new(),
    )
    .await;
    let error = refused.err().expect("refused");
    assert!(error.to_string().contains("is not a socket"), "{error:#}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
}

#[test]
fn render_status_shows_every_resource_row_within_120_columns() {
    let report = sample_report();
    let text = render_status(&report);

    for (instance, resource, events) in [
        ("API_Polling", "contacts", "17"),
        ("API_Polling", "companies", "3"),
        ("generic_rest", "orders", "5"),
    ] {
        let row = text
            .lines()
            .find(|line| {
                let cells: Vec<&str> = line.split_whitespace().collect();
                cells.first() == Some(&instance) && cells.get(1) == Some(&resource)
            })
            .unwrap_or_else(|| panic!("no row for {instance}/{resource} in:\n{text}"));
        // Watermark 2026-01-02T03:04:05Z, last poll …:06, next poll 03:09:06, events.
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            &cells[2..11],
            [
                "01-02", "03:04:05", "01-02", "03:04:06", "01-02", "03:09:06", events, "2", "1"
            ],
            "{row}"
        );
    }
    let error_row = text
        .lines()
        .find(|line| line.contains("companies"))
        .unwrap();
    // At least the start of the error shows.
    assert!(error_row.contains("HTTP 500 from provid"), "{error_row}");
    assert!(error_row.ends_with('…'), "long error cut: {error_row}");
    for line in text.lines() {
        assert!(line.chars().count() <= 120, "too wide: {line}");
    }
    assert!(text.contains("4242"));
    assert!(text.contains("rest.toml:3:7: error: unknown key"));
    let totals = text
        .lines()
        .find(|line| line.starts_with("total:"))
        .expect("totals line");
    for part in [
        "2 instances",
        "3 resources",
        "25 events",
        "6 notifications",
        "3 dead letters",
    ] {
        assert!(totals.contains(part), "{part} missing from {totals}");
    }
}

#[test]
fn render_status_flags_a_resource_with_two_pollers() {
    let mut report = sample_report();
    report.instances[0].resources[0].pollers = 2;
    let text = render_status(&report);
    assert!(
        text.lines()
            .any(|line| line.contains("contacts") && line.contains("2 poll tasks")),
        "{text}"
    );
    assert!(!render_status(&sample_report()).contains("poll tasks"));
}

#[test]
fn render_status_notes_a_task_that_panicked_and_json_keeps_it() {
    let mut report = sample_report();
    report.instances[0].resources[1].task_panics = vec![TaskPanicView {
        task: "delivery".to_string(),
        panics: 3,
        last_at: at(2026, 1, 2, 3, 5, 0),
        last_message: "index 7 out of range".to_string(),
    }];
    let text = render_status(&report);
    // Notes wrap onto indented lines: read each as one line.
    let notes = text.replace("\n      ", " ");
    let note = notes
        .lines()
        .find(|line| line.starts_with("note: ") && line.contains("panicked"))
        .unwrap_or_else(|| panic!("no note of the panic in:\n{text}"));
    assert_eq!(
        note,
        "note: instance API_Polling, resource companies: its delivery task panicked 3 times \
         (last at 2026-01-02 03:05:00 UTC: index 7 out of range) and was started again; a bug, \
         please report it"
    );
    for line in text.lines() {
        assert!(line.chars().count() <= 120, "too wide: {line}");
    }
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(
        json["instances"][0]["resources"][1]["task_panics"][0]["panics"],
        3
    );
    // A resource without panics keeps the JSON shape it had.
    assert!(
        json["instances"][0]["resources"][0]
            .get("task_panics")
            .is_none()
    );
    assert!(!render_status(&sample_report()).contains("panicked"));
}

#[test]
fn render_status_shows_a_resource_waiting_for_its_tenants_budget() {
    let mut report = sample_report();
    report.instances[0].resources[0].throttled = Some(ThrottleView::tenant_budget(
        at(2026, 1, 2, 3, 5, 12),
        at(2026, 1, 2, 3, 5, 0),
    ));
    let text = render_status(&report);
    let row = text
        .lines()
        .find(|line| line.starts_with("API_Polling") && line.contains("contacts"))
        .unwrap_or_else(|| panic!("no contacts row in:\n{text}"));
    assert!(row.ends_with("throttled, waiting 12 s"), "{text}");
    let notes = text.replace("\n      ", " ");
    assert!(
        notes.contains(
            "note: 1 resource waiting for a tenant's request budget \
             ([polling] tenant_requests_per_minute): API_Polling/contacts"
        ),
        "{text}"
    );
    let json = serde_json::to_value(&report).unwrap();
    let throttled = &json["instances"][0]["resources"][0]["throttled"];
    assert_eq!(throttled["reason"], "tenant request budget", "{json}");
    assert_eq!(throttled["waiting_seconds"], 12, "{json}");
    // Not throttled: no word, no note, and the JSON shape it had.
    assert!(!render_status(&sample_report()).contains("throttled"));
    let plain = serde_json::to_value(sample_report()).unwrap();
    assert!(
        plain["instances"][0]["resources"][0]
            .get("throttled")
            .is_none()
    );
}

#[test]
fn status_at_ten_thousand_instances_names_three_throttled_resources_in_one_note() {
    let mut report = large_report(0);
    for i in [5, 50, 500, 5000] {
        report.instances[i].resources[0].throttled = Some(ThrottleView::tenant_budget(
            at(2026, 1, 2, 3, 5, 1),
            at(2026, 1, 2, 3, 5, 0),
        ));
    }
    let text = render_status(&report).replace("\n      ", " ");
    let notes: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("request budget"))
        .collect();
    assert_eq!(
        notes,
        [
            "note: 4 resources waiting for a tenant's request budget ([polling] \
             tenant_requests_per_minute): tenant-00005/contacts, tenant-00050/contacts, \
             tenant-00500/contacts and 1 more"
        ],
        "{text}"
    );
}

#[test]
fn status_on_a_shared_store_lists_the_live_nodes_and_each_instances_owner_and_epoch() {
    // One node alone (sled, or nothing shared) shows and serializes no cluster at all.
    let alone = serde_json::to_value(sample_report()).unwrap();
    assert!(alone.get("cluster").is_none(), "{alone}");
    assert!(!render_status(&sample_report()).contains("live node"));

    let mut report = sample_report();
    let node = |id: &str, leases| NodeStatusView {
        node_id: id.to_string(),
        started_at: at(2026, 1, 2, 0, 0, 0),
        heartbeat_at: at(2026, 1, 2, 3, 4, 5),
        leases,
    };
    let lease = |instance: &str, owner: Option<&str>, epoch| LeaseStatusView {
        instance: instance.to_string(),
        owner: owner.map(str::to_string),
        epoch,
        expires_at: at(2026, 1, 2, 3, 4, 20),
    };
    report.cluster = Some(ClusterStatus {
        node_id: "eu-1".into(),
        nodes: vec![node("eu-1", 1), node("eu-2", 1)],
        leases: vec![
            lease("cw-prod", Some("eu-1"), 7),
            lease("rest", Some("eu-2"), 2),
            lease("spare", None, 3),
        ],
        error: None,
    });
    let text = render_status(&report);
    assert!(
        text.contains("node eu-1; 2 live nodes: eu-1 (1 lease), eu-2 (1 lease)"),
        "{text}"
    );
    let row = |instance: &str| {
        text.lines()
            .find(|line| {
                line.starts_with(instance) && (line.contains(" eu-") || line.contains("(free)"))
            })
            .unwrap_or_else(|| panic!("no lease row for {instance}:\n{text}"))
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
    };
    assert_eq!(row("cw-prod"), ["cw-prod", "eu-1", "7"]);
    assert_eq!(row("spare"), ["spare", "(free)", "3"]);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["cluster"]["leases"][1]["owner"], "eu-2");
    assert_eq!(json["cluster"]["leases"][1]["epoch"], 2);
    let back: StatusReport = serde_json::from_value(json).unwrap();
    assert_eq!(back, report);
}

#[test]
fn render_dead_letters_lists_full_ids() {
    let list = vec![
        dead_letter("3f2a7c9e-1111-4d7b-9c1e-0123456789ab", "contacts"),
        dead_letter("ev-2", "companies"),
    ];
    let text = render_dead_letters(&list);
    for letter in &list {
        let row = text
            .lines()
            .find(|line| line.starts_with(&letter.id))
            .unwrap_or_else(|| panic!("no row for {} in:\n{text}", letter.id));
        assert!(
            row.contains(&letter.resource) && row.contains("410"),
            "{row}"
        );
    }
    assert!(text.contains("2 dead letters"));
    assert_eq!(render_dead_letters(&[]), "no dead letters\n");
}

/// The CLI commands build their own runtime, so the daemon runs on a runtime of the test's.
fn with_daemon_runtime(test: impl FnOnce(&Path, &FakeBackend)) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let running = runtime.block_on(start_server());
    test(&running.socket, &running.backend);
    running.cancel.cancel();
    runtime.block_on(running.server.stopped());
}

#[test]
fn cli_commands_exit_0_with_a_daemon_and_1_without() {
    with_daemon_runtime(|socket, backend| {
        assert_eq!(
            pollerd::cli::admin::status(socket, false, &Default::default()),
            ExitCode::SUCCESS
        );
        assert_eq!(
            pollerd::cli::admin::status(socket, true, &Default::default()),
            ExitCode::SUCCESS
        );
        assert_eq!(
            pollerd::cli::admin::dead_letters(socket, DeadLetterAction::List),
            ExitCode::SUCCESS
        );
        assert_eq!(
            pollerd::cli::admin::dead_letters(socket, DeadLetterAction::Replay(ids(&["ev-1"]))),
            ExitCode::SUCCESS
        );
        assert_eq!(
            pollerd::cli::admin::dead_letters(socket, DeadLetterAction::Drop(ids(&["missing"]))),
            ExitCode::FAILURE
        );
        assert_eq!(
            pollerd::cli::admin::dead_letters(socket, DeadLetterAction::Drop(None)),
            ExitCode::SUCCESS
        );
        assert!(backend.remaining_ids().is_empty());
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let nowhere = dir.path().join("admin.sock");
    assert_eq!(
        pollerd::cli::admin::status(&nowhere, false, &Default::default()),
        ExitCode::FAILURE
    );
    assert_eq!(
        pollerd::cli::admin::dead_letters(&nowhere, DeadLetterAction::List),
        ExitCode::FAILURE
    );
}

/// Sends one raw HTTP/1.1 request over the socket; returns the status code and the body.
async fn raw_request(socket: &Path, method: &str, target: &str, body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::UnixStream::connect(socket)
        .await
        .expect("connect");
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn malformed_selections_and_unknown_routes_are_refused_with_json_errors() {
    let running = start_server().await;
    for body in [
        "{}",
        r#"{"ids": []}"#,
        r#"{"ids": ["ev-1"], "all": true}"#,
        r#"{"all": true, "extra": 1}"#,
        "not json",
    ] {
        let (status, answer) =
            raw_request(&running.socket, "POST", "/v1/dead-letters/drop", body).await;
        assert_eq!(status, 400, "{body} → {answer}");
        let answer: serde_json::Value = serde_json::from_str(&answer).expect("JSON error body");
        assert!(
            answer["error"]
                .as_str()
                .is_some_and(|text| !text.is_empty())
        );
    }
    assert_eq!(running.backend.remaining_ids().len(), 4, "nothing dropped");

    let (status, answer) = raw_request(&running.socket, "GET", "/v2/everything", "").await;
    assert_eq!(status, 404);
    assert!(answer.contains("no such admin route"), "{answer}");
}

/// 10,000 instances of 3 resources, of which `failing` resources are failing (the oldest first
/// by index) and one is backlogged.
fn large_report(failing: usize) -> StatusReport {
    let mut report = sample_report();
    report.last_reload = None;
    report.instances = (0..10_000)
        .map(|i| InstanceStatus {
            name: format!("tenant-{i:05}"),
            file: format!("/etc/pollerd/instances.d/tenant-{i:05}.json"),
            element: "connectwisecrmrest".to_string(),
            enabled: true,
            resources: ["contacts", "companies", "tickets"]
                .iter()
                .map(|name| resource(name, 1, None))
                .collect(),
            error: None,
        })
        .collect();
    for k in 0..failing {
        // Spread over the report; tenant index k * 397 failing since minute k.
        let row = &mut report.instances[k * 397].resources[1];
        row.health = Health::Failing {
            since: at(2026, 1, 2, 0, k as u32 % 60, 0),
        };
    }
    report.instances[9_999].resources[2].health = Health::Backlog {
        queued: 42,
        oldest: Some(at(2026, 1, 1, 23, 0, 0)),
    };
    report
}

#[test]
fn status_at_ten_thousand_instances_is_one_screen_with_the_worst_first() {
    let report = large_report(12);
    let text = render_status(&report);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() <= 22, "{} lines:\n{text}", lines.len());
    assert!(
        text.contains("health: 29987 ok, 12 failing, 1 backlogged, 0 disabled"),
        "{text}"
    );
    let rows: Vec<&&str> = lines.iter().filter(|l| l.starts_with("tenant-")).collect();
    assert_eq!(rows.len(), 10, "{text}");
    // Failing the longest first: minutes 0..=9 of the twelve, none of the ok ones.
    assert!(
        rows[0].starts_with("tenant-00000") && rows[0].contains("failing since"),
        "{text}"
    );
    assert!(rows.iter().all(|r| r.contains("failing since")), "{text}");
    assert!(text.contains("… and 29990 more resources"), "{text}");
    assert!(text.contains("`pollerd status --all`"), "{text}");
    for line in &lines {
        assert!(line.chars().count() <= 120, "too wide: {line}");
    }

    let failing = render_status_of(
        &report,
        &StatusSelection {
            failing: true,
            all: true,
            ..StatusSelection::default()
        },
    );
    let rows: Vec<&str> = failing
        .lines()
        .filter(|l| l.starts_with("tenant-"))
        .collect();
    assert_eq!(rows.len(), 13, "12 failing and 1 backlogged:\n{failing}");
    assert!(rows[12].starts_with("tenant-09999") && rows[12].contains("backlog 42 (oldest"));

    let all = render_status_of(
        &report,
        &StatusSelection {
            all: true,
            ..StatusSelection::default()
        },
    );
    assert_eq!(
        all.lines().filter(|l| l.starts_with("tenant-")).count(),
        30_000
    );

    let one = render_status_of(
        &report,
        &StatusSelection {
            instance: Some("tenant-09999".into()),
            ..StatusSelection::default()
        },
    );
    let rows: Vec<&str> = one.lines().filter(|l| l.starts_with("tenant-")).collect();
    assert_eq!(rows.len(), 3, "{one}");
    assert!(
        one.contains("health: 2 ok, 0 failing, 1 backlogged"),
        "{one}"
    );
}

#[test]
fn a_small_status_lists_every_row_without_all() {
    let text = render_status(&sample_report());
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("API_Polling"))
            .count(),
        2
    );
    assert!(!text.contains("more resource"), "{text}");
}
