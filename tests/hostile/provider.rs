//! The real daemon against a ConnectWise API that misbehaves the way real ones and the gateways
//! in front of them do (issue 13): redirects to other hosts, `Link` headers written every way
//! RFC 8288 allows (and some it does not), pages without ids, endless bodies, hostile
//! `Retry-After` and `Date` headers, hostile error text. Each test checks what an operator would:
//! the exact error in `pollerd status`, no panic in the log, the resource still scheduled, no
//! credential at another host, bounded memory, and nothing lost once the fault is gone.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::*;
use pollerd::sim::connectwise::{ConnectWiseSim, Fault, FaultScope, RecordKind, SimConfig};
use pollerd::sim::receiver::Receiver;
use serde_json::Value;

/// A provider, a receiver and a daemon polling contacts two per page every 0.6 s.
struct World {
    sim: ConnectWiseSim,
    receiver: Receiver,
    dd: DaemonDir,
    daemon: Daemon,
}

impl World {
    async fn start(settings: &str, edit: impl FnOnce(&mut Value)) -> World {
        let sim = ConnectWiseSim::start(SimConfig::default()).await.unwrap();
        let receiver = Receiver::start().await.unwrap();
        let dd = DaemonDir::new(settings);
        let mut instance = seed_instance(&sim, &receiver.url(), "0.01");
        instance["configuration"]["event.poller.configuration"]["contacts"]["pageSize"] = 2.into();
        edit(&mut instance);
        dd.write_instance("contacts.json", &instance);
        let daemon = dd.start(&[]);
        let world = World {
            sim,
            receiver,
            dd,
            daemon,
        };
        world.wait_for_watermark().await;
        world
    }

    fn contacts(&self) -> Value {
        status(&self.dd).expect("pollerd status answers")["instances"][0]["resources"][0].clone()
    }

    async fn wait_for_watermark(&self) -> Value {
        let mut watermark = Value::Null;
        wait_for("the baseline run", WAIT, || {
            watermark = status(&self.dd).map_or(Value::Null, |s| {
                s["instances"][0]["resources"][0]["watermark"].clone()
            });
            !watermark.is_null()
        })
        .await;
        watermark
    }

    /// Waits until `pollerd status` shows an error for contacts containing `text`; returns it.
    async fn wait_for_error(&self, text: &str) -> String {
        let mut last = String::new();
        wait_for(&format!("status to show {text:?}"), WAIT, || {
            last = self.contacts()["last_error"]
                .as_str()
                .unwrap_or("")
                .to_string();
            last.contains(text)
        })
        .await;
        last
    }

    /// Every request meets `fault` and five contacts change meanwhile: waits until status shows an
    /// error containing `text`; returns it and the contacts' ids.
    async fn failing_with(&self, fault: Fault, text: &str) -> (String, Vec<u64>) {
        self.sim.inject(fault, FaultScope::always());
        let ids = self.sim.create_many(RecordKind::Contact, 5, None);
        (self.wait_for_error(text).await, ids)
    }

    /// Every run fails on `fault` (status shows `text`) and the watermark holds; once the fault
    /// is gone the changes made meanwhile arrive. Returns the error status showed.
    async fn fails_then_recovers(&self, fault: Fault, text: &str) -> String {
        let (error, ids) = self.failing_with(fault, text).await;
        self.assert_watermark_holds_while_failing().await;
        self.recovers_delivering(&ids).await;
        error
    }

    /// Requests that met an injected fault.
    fn faulted_requests(&self) -> usize {
        self.sim
            .requests()
            .iter()
            .filter(|r| r.fault.is_some())
            .count()
    }

    /// Creates `n` contacts and waits until every one has been delivered.
    async fn changes_arrive(&self, n: usize) -> Vec<u64> {
        let ids = self.sim.create_many(RecordKind::Contact, n, None);
        self.wait_delivered(&ids).await;
        ids
    }

    async fn wait_delivered(&self, ids: &[u64]) {
        wait_for("the contacts to be delivered", WAIT, || {
            let delivered = delivered_ids(&self.receiver);
            ids.iter().all(|id| delivered.contains(&id.to_string()))
        })
        .await;
    }

    /// Two more runs fail, and the watermark stays where it was.
    async fn assert_watermark_holds_while_failing(&self) {
        // The last successful run's watermark reaches the disk (and status) within about a
        // second of the run: three failed runs (0.6 s apart) after the first leave it time to.
        let runs = self.faulted_requests();
        wait_for("three more failed runs", WAIT, || {
            self.faulted_requests() >= runs + 3
        })
        .await;
        let before = self.contacts()["watermark"].clone();
        let runs = self.faulted_requests();
        wait_for("two more failed runs", WAIT, || {
            self.faulted_requests() >= runs + 2
        })
        .await;
        assert_eq!(self.contacts()["watermark"], before, "the watermark moved");
    }

    /// Clears the faults and waits until the contacts `ids` have been delivered.
    async fn recovers_delivering(&self, ids: &[u64]) {
        self.sim.clear_faults();
        self.wait_delivered(ids).await;
    }

    /// What every test ends with: the daemon alive, the resource still scheduled, no panic.
    fn assert_healthy(&mut self) {
        assert!(
            self.daemon.child.try_wait().unwrap().is_none(),
            "the daemon exited:\n{}",
            self.dd.logs()
        );
        let contacts = self.contacts();
        assert!(!contacts["next_poll"].is_null(), "{contacts}");
        assert_eq!(contacts["pollers"], 1, "{contacts}");
        let logs = self.dd.logs();
        assert!(!logs.contains("panicked"), "{logs}");
    }
}

fn delivered_ids(receiver: &Receiver) -> Vec<String> {
    receiver
        .accepted()
        .iter()
        .filter_map(|r| r.try_json().ok())
        .flat_map(|b| {
            b["message"]["events"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|e| e["objectId"].as_str().map(str::to_string))
        .collect()
}

/// A server on 127.0.0.1 that answers 200 to anything and keeps each request's head.
struct Thief {
    addr: std::net::SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Thief {
    async fn start() -> Thief {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads: Arc<Mutex<Vec<String>>> = Arc::default();
        let kept = heads.clone();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buf = vec![0u8; 16 * 1024];
                let n = socket.read(&mut buf).await.unwrap_or(0);
                kept.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n[]")
                    .await;
            }
        });
        Thief { addr, heads }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_another_origin_is_refused_and_no_credential_leaves() {
    let thief = Thief::start().await;
    let mut world = World::start("", |_| {}).await;
    let location = format!("http://{}/steal?code=SECRET-Q", thief.addr);
    world
        .sim
        .inject(Fault::Redirect(location), FaultScope::always());
    let error = world.wait_for_error("refusing to follow a redirect").await;
    assert!(
        error.contains(&format!(
            "HTTP 302: refusing to follow a redirect to another origin (http://{}): http://{}/steal",
            thief.addr, thief.addr
        )),
        "{error}"
    );
    assert!(
        error.contains("instance API_Polling, resource contacts"),
        "{error}"
    );
    assert!(
        !error.contains("SECRET-Q"),
        "the Location's query is shown: {error}"
    );
    assert!(
        thief.heads.lock().unwrap().is_empty(),
        "the other host got requests: {:?}",
        thief.heads.lock().unwrap()
    );
    world.sim.clear_faults();
    world.changes_arrive(3).await;
    world.assert_healthy();
    assert!(!world.dd.logs().contains("SECRET-Q"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awkward_but_valid_link_headers_are_followed_to_the_last_page() {
    // Page paging follows the Link: relative, in a second header line, with several rels and a
    // quoted comma; the fields list in the URL puts a comma in every target too.
    let mut world = World::start("", |v| {
        v["configuration"]["event.poller.configuration"]["contacts"]["paging"] = "page".into();
    })
    .await;
    world.sim.inject(Fault::AwkwardLink, FaultScope::always());
    world.changes_arrive(7).await;
    // The simulator marks its awkward links' targets with `via=link`: pages 2 to 4 of the seven
    // new contacts were read from them.
    let followed: Vec<String> = world
        .sim
        .requests()
        .iter()
        .filter(|r| r.query.contains("via=link"))
        .map(|r| r.query.clone())
        .collect();
    for page in ["page=2", "page=3", "page=4"] {
        assert!(
            followed.iter().any(|q| q.contains(page)),
            "{page} not read from a Link: {followed:?}"
        );
    }
    world.assert_healthy();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_link_fails_the_run_and_keeps_the_watermark() {
    let mut world = World::start("", |_| {}).await;
    let error = world
        .fails_then_recovers(
            Fault::UnreadableLink,
            "a Link header's <target> is not closed",
        )
        .await;
    assert!(error.contains("the scan stops here"), "{error}");
    world.assert_healthy();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyset_paging_goes_on_when_the_link_names_a_gateway_host() {
    let thief = Thief::start().await;
    let mut world = World::start("", |_| {}).await;
    world.sim.inject(
        Fault::LinkOrigin(format!("http://{}", thief.addr)),
        FaultScope::always(),
    );
    world.changes_arrive(7).await;
    assert!(world.faulted_requests() >= 4);
    assert!(thief.heads.lock().unwrap().is_empty());
    world.assert_healthy();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_to_another_origin_is_refused_when_the_link_is_followed() {
    let thief = Thief::start().await;
    let mut world = World::start("", |v| {
        v["configuration"]["event.poller.configuration"]["contacts"]["paging"] = "page".into();
    })
    .await;
    let (error, ids) = world
        .failing_with(
            Fault::LinkOrigin(format!("http://{}", thief.addr)),
            "refusing to follow a next-page link to another origin",
        )
        .await;
    assert!(
        error.contains(&format!("another origin (http://{})", thief.addr)),
        "{error}"
    );
    assert!(thief.heads.lock().unwrap().is_empty());
    world.recovers_delivering(&ids).await;
    world.assert_healthy();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_keyset_page_whose_last_record_has_no_id_fails_the_run() {
    let mut world = World::start("", |_| {}).await;
    let error = world
        .fails_then_recovers(
            Fault::LastRecordWithoutId,
            "there is a next page, but the last record has no usable id",
        )
        .await;
    assert!(error.contains("resource contacts, page 1"), "{error}");
    world.assert_healthy();
}

/// Peak resident memory of a process, from /proc.
fn peak_rss_kib(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_body_is_cut_at_the_limit_and_other_instances_never_notice() {
    let healthy = ConnectWiseSim::start(SimConfig::default()).await.unwrap();
    let mut world = World::start("[polling]\nmax_response_size = \"8MiB\"\n", |_| {}).await;
    let mut other = seed_instance(&healthy, &world.receiver.url(), "0.01");
    other["name"] = "Healthy".into();
    world.dd.write_instance("healthy.json", &other);
    world.sim.inject(Fault::EndlessBody, FaultScope::always());
    let error = world
        .wait_for_error("the body is larger than [polling] max_response_size (8388608 bytes)")
        .await;
    assert!(
        error.contains("instance API_Polling, resource contacts"),
        "{error}"
    );
    wait_for("five endless answers", Duration::from_secs(120), || {
        world.faulted_requests() >= 5
    })
    .await;
    let peak = peak_rss_kib(world.daemon.pid());
    println!("peak RSS after 5 endless bodies cut at 8 MiB: {peak} KiB");
    assert!(peak < 200 * 1024, "peak RSS {peak} KiB");
    // The other instance polls and delivers meanwhile.
    let id = healthy.create(RecordKind::Contact, None);
    wait_for("the healthy instance's change", WAIT, || {
        delivered_ids(&world.receiver).contains(&id.to_string())
    })
    .await;
    world.sim.clear_faults();
    world.changes_arrive(2).await;
    world.assert_healthy();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_error_text_is_bounded_and_its_control_characters_escaped() {
    let mut world = World::start("", |_| {}).await;
    world
        .sim
        .inject(Fault::HostileErrorText, FaultScope::always());
    let error = world.wait_for_error("HTTP 500").await;
    assert!(
        error.contains(r"Boom: \u{1b}[2J\u{1b}[31mdisk on fire"),
        "{error}"
    );
    assert!(
        !error.contains('\u{1b}') && !error.contains('\r'),
        "{error:?}"
    );
    assert!(error.len() < 1_000, "{} bytes shown", error.len());
    assert!(!world.dd.logs().contains('\u{1b}'));
    world.sim.clear_faults();
    world.changes_arrive(2).await;
    world.assert_healthy();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_date_eighty_years_ahead_loses_no_later_change() {
    let mut world = World::start("", |_| {}).await;
    let eighty_years = 80 * 365 * 86_400;
    world.sim.inject(
        Fault::DateOffset(eighty_years),
        FaultScope {
            path_contains: Some("/company/contacts".into()),
            skip: 0,
            count: 3,
        },
    );
    wait_for("three runs with the far Date", WAIT, || {
        world.faulted_requests() >= 3
    })
    .await;
    let watermark = world.contacts()["watermark"].as_str().unwrap().to_string();
    let watermark = chrono::DateTime::parse_from_rfc3339(&watermark).unwrap();
    assert!(
        watermark.to_utc() < chrono::Utc::now() + chrono::Duration::hours(1),
        "the watermark followed the far Date: {watermark}"
    );
    world.changes_arrive(3).await;
    // The run logs that the clocks agree again after its last commit, so the changes can arrive
    // before the line is written.
    wait_for("the log line that the clocks agree again", WAIT, || {
        world
            .dd
            .logs()
            .contains("agrees with the local clock again")
    })
    .await;
    let logs = world.dd.logs();
    let warnings: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("Date header says"))
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "one warning per change of state: {warnings:?}"
    );
    assert!(warnings[0].contains("API_Polling"), "{}", warnings[0]);
    assert!(warnings[0].contains("max_clock_skew"), "{}", warnings[0]);
    assert!(logs.contains("agrees with the local clock again"), "{logs}");
    world.assert_healthy();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_retry_after_from_the_provider_is_capped_and_panics_nothing() {
    let mut world = World::start("", |_| {}).await;
    world.sim.inject(
        Fault::RetryAfterText("18446744073709551615".into()),
        FaultScope::next(1),
    );
    let error = world.wait_for_error("asked it to wait").await;
    let wait: u64 = error
        .split("asked it to wait ")
        .nth(1)
        .and_then(|rest| rest.split('s').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{error}"));
    assert!(
        wait <= 600,
        "the pause is not capped at 10 minutes: {error}"
    );
    assert!(wait >= 500, "the pause is not the provider's: {error}");
    world.assert_healthy();
}

/// One host, two accounts: the 429 answered to one pauses only that one (ConnectWise cloud
/// tenants share `api-na.myconnectwise.net`).
#[tokio::test]
async fn a_429_pauses_only_the_account_it_was_answered_to() {
    use axum::http::{HeaderMap, StatusCode};
    let asked: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = asked.clone();
    let app = axum::Router::new().fallback(move |headers: HeaderMap| {
        let seen = seen.clone();
        async move {
            let key = headers
                .get("x-api-key")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            seen.lock().unwrap().push(key.clone());
            if key == "tenant-a" {
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [("retry-after", "999999999")],
                    "slow down",
                )
            } else {
                (StatusCode::OK, [("content-type", "application/json")], "[]")
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let client = pollerd::element::ProviderClient::new(Duration::from_secs(30), 4).unwrap();
    let request = |key: &str| {
        let mut value = reqwest::header::HeaderValue::from_str(key).unwrap();
        value.set_sensitive(true);
        client
            .http()
            .get(format!("http://{addr}/items"))
            .header("x-api-key", value)
            .build()
            .unwrap()
    };
    let first = client.send(request("tenant-a"), |_| None).await;
    assert!(
        matches!(
            &first,
            Err(pollerd::element::FetchError::Status { status: 429, .. })
        ),
        "{:?}",
        first.err()
    );
    let paused = client.send(request("tenant-a"), |_| None).await;
    let Err(pollerd::element::FetchError::Paused { remaining, .. }) = paused else {
        panic!("tenant a was not paused: {:?}", paused.err());
    };
    assert!(remaining <= pollerd::element::MAX_PROVIDER_PAUSE);
    for _ in 0..3 {
        let other = client.send(request("tenant-b"), |_| None).await;
        assert!(other.is_ok(), "tenant b was paused too: {:?}", other.err());
    }
    assert_eq!(
        *asked.lock().unwrap(),
        ["tenant-a", "tenant-b", "tenant-b", "tenant-b"],
        "a paused tenant's request reached the provider"
    );
}
