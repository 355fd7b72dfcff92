//! Provider chaos: the ConnectWise API answers 10 % 500s, 5 % 429 with Retry-After, 5 % too
//! late (past `[polling] http_timeout`), 2 % truncated JSON, then an HTML maintenance page, then
//! 401 for a while, then the random faults again — while records keep changing. Nothing may be
//! lost or sent twice, no watermark may move past a failed run, a failed run is resumed at the
//! page that failed (keyset paging), and the daemon logs one line per change of state (SPEC §7).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, DurationRound, Utc};
use pollerd::sim::connectwise::{
    ConnectWiseSim, Fault, FaultScope, RecordKind, RequestLog, SimConfig,
};
use pollerd::sim::receiver::Receiver;

use crate::ledger::Ledger;
use crate::support::*;
use crate::{assert_no_panic, current_versions, instant, scale, tail, wait_costly};

const HTTP_TIMEOUT: Duration = Duration::from_secs(4);
/// Past the timeout with a margin, so the client has surely given up. The timeout itself is
/// long enough that no undelayed answer reaches it on a busy machine.
const LATE: Duration = Duration::from_secs(6);

fn inject_random_faults(sim: &ConnectWiseSim) {
    sim.inject_random(Fault::ServerError, FaultScope::always(), 10);
    sim.inject_random(
        Fault::TooManyRequests {
            retry_after_secs: 1,
        },
        FaultScope::always(),
        5,
    );
    sim.inject_random(Fault::Latency(LATE), FaultScope::always(), 5);
    sim.inject_random(Fault::TruncatedJson, FaultScope::always(), 2);
}

/// How a request failed, in the daemon's wording; `None` when it was answered in time.
fn request_failure(r: &RequestLog) -> Option<&'static str> {
    if r.delayed >= HTTP_TIMEOUT {
        return Some("timeout");
    }
    match r.fault.as_deref() {
        Some("ServerError") => Some("http 500"),
        Some(f) if f.starts_with("TooManyRequests") => Some("http 429"),
        Some("HtmlMaintenance") => Some("http 503"),
        Some("Unauthorized") => Some("http 401"),
        Some("TruncatedJson") => Some("bad json"),
        Some(other) => panic!("fault {other} not expected here"),
        None if r.status != 200 => panic!("unexpected status {}: {r:?}", r.status),
        None => None,
    }
}

/// One attempt of a poll run as the simulator saw it: its requests, first page first. A failed
/// request ends its attempt.
struct Attempt<'a> {
    requests: Vec<&'a RequestLog>,
}

impl Attempt<'_> {
    /// The class of the failure that ended the attempt, if it failed.
    fn failure(&self) -> Option<&'static str> {
        self.requests.last().and_then(|r| request_failure(r))
    }

    /// Whether it went on from where an earlier attempt stopped (its first request names a page).
    fn resumes(&self) -> bool {
        self.requests[0].page_id.is_some()
    }

    /// The run's lower bound: the date in `conditions` (`lastUpdated>[…]`).
    fn lower_bound(&self) -> DateTime<Utc> {
        let conditions = self.requests[0].conditions.as_deref().expect("conditions");
        let start = conditions.find('[').expect("a date literal") + 1;
        let end = conditions[start..]
            .find(']')
            .expect("a closed date literal")
            + start;
        instant(&conditions[start..end])
    }

    /// The provider's clock at the start of the run: the `Date` header of its first answer.
    fn provider_start(&self) -> DateTime<Utc> {
        self.requests[0]
            .at
            .duration_trunc(chrono::Duration::seconds(1))
            .unwrap()
    }
}

/// The simulator's log cut into attempts: one starts with a request without `pageId` (a new
/// run) or with the first request after a failed one (a resumed run).
fn attempts(log: &[RequestLog]) -> Vec<Attempt<'_>> {
    let mut sorted: Vec<&RequestLog> = log
        .iter()
        .filter(|r| r.path.ends_with("/company/contacts"))
        .collect();
    sorted.sort_by_key(|r| r.received_at);
    let mut attempts: Vec<Attempt<'_>> = Vec::new();
    for r in sorted {
        match attempts.last_mut() {
            Some(attempt) if r.page_id.is_some() && attempt.failure().is_none() => {
                attempt.requests.push(r)
            }
            _ => attempts.push(Attempt { requests: vec![r] }),
        }
    }
    attempts
}

/// Attempts grouped into runs: a run's later attempts each resume the one before.
fn runs<'a, 'b>(attempts: &'b [Attempt<'a>]) -> Vec<&'b [Attempt<'a>]> {
    let mut runs: Vec<&'b [Attempt<'a>]> = Vec::new();
    let mut start = 0;
    for i in 1..=attempts.len() {
        if i == attempts.len() || !attempts[i].resumes() {
            runs.push(&attempts[start..i]);
            start = i;
        }
    }
    runs
}

/// The class of a daemon log line "polling failed: …".
fn logged_class(line: &str) -> &'static str {
    for (text, class) in [
        ("timed out", "timeout"),
        ("HTTP 500", "http 500"),
        ("HTTP 429", "http 429"),
        ("HTTP 503", "http 503"),
        ("HTTP 401", "http 401"),
        ("not valid JSON", "bad json"),
    ] {
        if line.contains(text) {
            return class;
        }
    }
    panic!("a polling error of no expected class: {line}")
}

/// A daemon polling the simulator's contacts `page_size` per page every 0.6 s, with the chaos
/// timeout and `polling` more `[polling]` settings, once it has polled twice.
async fn polling_contacts(
    sim: &ConnectWiseSim,
    receiver: &Receiver,
    polling: &str,
    page_size: u32,
) -> (DaemonDir, Daemon) {
    let dd = DaemonDir::new(&format!(
        "[polling]\nhttp_timeout = \"{}ms\"\n{polling}",
        HTTP_TIMEOUT.as_millis()
    ));
    let mut instance = seed_instance(sim, &receiver.url(), "0.01");
    instance["configuration"]["event.poller.configuration"]["contacts"]["pageSize"] =
        page_size.into();
    dd.write_instance("contacts.json", &instance);
    let daemon = dd.start(&[]);
    wait_for("the first watermark", WAIT, || sim.request_count() >= 2).await;
    (dd, daemon)
}

/// Changes contacts while the chaos runs: 10 new and 5 updated every 200 ms.
struct Producer {
    producing: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<Vec<u64>>,
}

impl Producer {
    fn start(sim: &ConnectWiseSim) -> Producer {
        let producing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (sim, flag) = (sim.clone(), producing.clone());
        let task = tokio::spawn(async move {
            let mut ids: Vec<u64> = Vec::new();
            while flag.load(std::sync::atomic::Ordering::Relaxed) {
                ids.extend(sim.create_many(RecordKind::Contact, 10, None));
                let later = Some(sim.now() + chrono::Duration::seconds(1));
                for _ in 0..5 {
                    sim.update(
                        RecordKind::Contact,
                        ids[fastrand::usize(..ids.len())],
                        later,
                    );
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            ids
        });
        Producer { producing, task }
    }

    /// Stops producing; the ids of every contact created.
    async fn stop(self) -> Vec<u64> {
        self.producing
            .store(false, std::sync::atomic::Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_faulty_provider_loses_and_repeats_nothing() {
    let random_phase = scale(Duration::from_secs(12), Duration::from_secs(120));
    let unauthorized_phase = scale(Duration::from_secs(3), Duration::from_secs(60));
    let sim = ConnectWiseSim::start(SimConfig::default()).await.unwrap();
    let seed = fastrand::u64(..);
    sim.seed_faults(seed);
    let receiver = Receiver::start().await.unwrap();
    // Several pages per run, so faults also hit runs midway.
    let (dd, daemon) = polling_contacts(&sim, &receiver, "", 50).await;

    let producer = Producer::start(&sim);

    // The phases are the chaos itself: each lasts its time whatever the daemon does.
    inject_random_faults(&sim);
    tokio::time::sleep(random_phase).await;
    sim.clear_faults();
    sim.inject(Fault::HtmlMaintenance, FaultScope::next(5));
    wait_for("the maintenance page to be served", WAIT, || {
        sim.requests()
            .iter()
            .filter(|r| r.fault.as_deref() == Some("HtmlMaintenance"))
            .count()
            == 5
    })
    .await;
    sim.inject(Fault::Unauthorized, FaultScope::always());
    tokio::time::sleep(unauthorized_phase).await;
    sim.clear_faults();
    inject_random_faults(&sim);
    tokio::time::sleep(random_phase / 2).await;
    sim.clear_faults();
    let ids = producer.stop().await;

    let mut ledger = Ledger::default();
    let versions = current_versions(&sim, RecordKind::Contact, &ids);
    wait_costly(&dd, "every change to be delivered", WAIT * 2, || {
        ledger.refresh(&receiver);
        ledger.has_all("contacts", &versions)
    })
    .await;
    // Two clean runs after the last fault, so the daemon's state is "ok" when it stops.
    let polls = sim.request_count();
    wait_for("two more runs", WAIT, || sim.request_count() >= polls + 2).await;
    daemon.signal("TERM");
    assert!(daemon.wait_exit(WAIT).await.success());
    assert_no_panic(&dd);
    // A late answer the daemon gave up on is logged by the simulator only when it is sent.
    wait_for("the simulator's late answers", WAIT, || {
        sim.in_flight() == 0
    })
    .await;

    // Nothing sent twice: every version in exactly one notification, delivered once.
    ledger.refresh(&receiver);
    for (version, event_ids) in ledger.versions() {
        assert_eq!(event_ids.len(), 1, "{version:?} delivered {event_ids:?}");
    }

    // A failed attempt that had committed pages is resumed at the page that failed, with the
    // same lower bound; the pages before it are not asked for again.
    let log = sim.requests();
    let attempts = attempts(&log);
    for pair in attempts.windows(2) {
        let (failed, next) = (&pair[0], &pair[1]);
        if next.resumes() {
            let stopped_at = failed.requests.last().unwrap();
            assert!(
                failed.failure().is_some(),
                "resumed after a complete attempt"
            );
            assert_eq!(
                next.requests[0].page_id, stopped_at.page_id,
                "resumed elsewhere"
            );
            assert_eq!(
                next.lower_bound(),
                failed.lower_bound(),
                "a resumed lower bound"
            );
        }
    }
    let resumed = attempts.iter().filter(|a| a.resumes()).count();

    // Watermarks: a failed run leaves the lower bound where it was; a complete one moves it to
    // the provider's clock at the start of its first attempt (minus the 1 s overlap).
    let runs = runs(&attempts);
    let outcome = |run: &[Attempt<'_>]| run.last().unwrap().failure();
    let first_ok = runs.iter().position(|r| outcome(r).is_none()).unwrap();
    for pair in runs[first_ok..].windows(2) {
        let (before, after) = (&pair[0][0], &pair[1][0]);
        let expected = match outcome(pair[0]) {
            Some(_) => before.lower_bound(),
            None => before.provider_start() - chrono::Duration::seconds(1),
        };
        assert_eq!(
            after.lower_bound(),
            expected,
            "run at {} after a {} run at {}: {:#?}",
            after.requests[0].received_at,
            outcome(pair[0]).unwrap_or("complete"),
            before.requests[0].received_at,
            pair[0]
                .iter()
                .flat_map(|a| &a.requests)
                .chain(&after.requests)
                .map(|r| (
                    r.received_at,
                    r.at,
                    r.status,
                    &r.fault,
                    r.delayed,
                    r.page_id,
                    &r.conditions
                ))
                .collect::<Vec<_>>()
        );
    }

    // One log line per change of state.
    let mut expected: BTreeMap<&str, usize> = BTreeMap::new();
    let mut state: Option<&str> = None;
    for attempt in &attempts {
        let now = attempt.failure();
        if now != state {
            *expected.entry(now.unwrap_or("recovered")).or_default() += 1;
        }
        state = now;
    }
    let logs = dd.logs();
    let mut logged: BTreeMap<&str, usize> = BTreeMap::new();
    for line in logs.lines() {
        if line.contains("polling failed:") {
            *logged.entry(logged_class(line)).or_default() += 1;
        } else if line.contains("polling recovered") {
            *logged.entry("recovered").or_default() += 1;
        }
    }
    assert_eq!(
        logged,
        expected,
        "log lines per state change vs the runs the simulator saw\n{}",
        tail(&logs, 30)
    );
    let failed = attempts.iter().filter(|a| a.failure().is_some()).count();
    println!(
        "provider chaos (seed {seed}): {} runs in {} attempts, {failed} failed, {resumed} \
         resumed; state changes logged {logged:?}; {} versions delivered once each from {} \
         contacts, 0 lost, 0 duplicates",
        runs.len(),
        attempts.len(),
        ledger.versions().len(),
        ids.len()
    );
}

/// The hostile provider faults of issue 13, each a few percent of requests, on top of the random
/// faults above: redirects to another host, links nobody can read or that name a gateway, awkward
/// but valid links, endless bodies, garbage `Retry-After`, `Date` headers 80 years off, error text
/// full of control characters. Records keep changing; nothing may be lost or sent twice, no
/// request may reach the other host, nothing may panic.
fn inject_hostile_faults(sim: &ConnectWiseSim, elsewhere: &str) {
    let eighty_years = 80 * 365 * 86_400;
    for (fault, percent) in [
        (Fault::Redirect(format!("{elsewhere}/steal?key=K")), 4),
        (Fault::UnreadableLink, 4),
        (Fault::LinkOrigin(elsewhere.to_string()), 8),
        (Fault::AwkwardLink, 8),
        (Fault::EndlessBody, 3),
        (Fault::RetryAfterText("-1".into()), 1),
        (Fault::RetryAfterText("soon".into()), 1),
        (Fault::DateOffset(eighty_years), 4),
        (Fault::DateOffset(-eighty_years), 4),
        (Fault::HostileErrorText, 3),
    ] {
        sim.inject_random(fault, FaultScope::always(), percent);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_provider_loses_and_repeats_nothing() {
    let hostile_phase = scale(Duration::from_secs(20), Duration::from_secs(180));
    let sim = ConnectWiseSim::start(SimConfig::default()).await.unwrap();
    let seed = fastrand::u64(..);
    sim.seed_faults(seed);
    let receiver = Receiver::start().await.unwrap();
    // Whoever connects here got a request meant for the provider.
    let elsewhere = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let elsewhere_url = format!("http://{}", elsewhere.local_addr().unwrap());
    let stolen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = stolen.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = elsewhere.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(socket);
        }
    });
    let (dd, daemon) =
        polling_contacts(&sim, &receiver, "max_response_size = \"2MiB\"\n", 20).await;

    let producer = Producer::start(&sim);
    // The phase is the chaos itself: it lasts its time whatever the daemon does.
    inject_random_faults(&sim);
    inject_hostile_faults(&sim, &elsewhere_url);
    tokio::time::sleep(hostile_phase).await;
    sim.clear_faults();
    let ids = producer.stop().await;

    let mut ledger = Ledger::default();
    let versions = current_versions(&sim, RecordKind::Contact, &ids);
    wait_costly(&dd, "every change to be delivered", WAIT * 2, || {
        ledger.refresh(&receiver);
        ledger.has_all("contacts", &versions)
    })
    .await;
    daemon.signal("TERM");
    assert!(daemon.wait_exit(WAIT).await.success());
    assert_no_panic(&dd);
    ledger.refresh(&receiver);
    for (version, event_ids) in ledger.versions() {
        assert_eq!(event_ids.len(), 1, "{version:?} delivered {event_ids:?}");
    }
    assert_eq!(
        stolen.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a request reached the other host"
    );
    let logs = dd.logs();
    assert!(
        !logs.contains("key=K") && !logs.contains('\u{1b}'),
        "{}",
        tail(&logs, 30)
    );
    let log = sim.requests();
    let faults: BTreeMap<String, usize> = log
        .iter()
        .filter_map(|r| r.fault.as_deref())
        .map(|f| f.split(['(', ' ', '{']).next().unwrap_or(f).to_string())
        .fold(BTreeMap::new(), |mut m, f| {
            *m.entry(f).or_default() += 1;
            m
        });
    println!(
        "hostile provider chaos (seed {seed}): {} requests, faults {faults:?}; {} versions \
         delivered once each from {} contacts, 0 lost, 0 duplicates, 0 requests elsewhere, 0 panics",
        log.len(),
        ledger.versions().len(),
        ids.len()
    );
}
