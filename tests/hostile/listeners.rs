//! Clients that connect to the metrics port or the admin socket and never send a request: the
//! daemon closes them after the header-read timeout, closes any beyond its connection cap at
//! once, keeps its file descriptors bounded, keeps answering, and keeps polling.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pollerd::admin::{AdminBackend, AdminServer, DeadLetterView, StatusReport};
use pollerd::listener::Limits;
use pollerd::metrics::{self, Metrics};
use pollerd::sim::connectwise::RecordKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::support::*;

/// The daemon's limits (pollerd::listener::Limits::DAEMON), as the binary runs them.
const CAP: usize = 256;
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// More idle clients than the cap, on each listener.
const IDLE_CLIENTS: usize = CAP + 64;

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| dir.count())
        .unwrap_or(0)
}

/// How long after it connected the server closed `stream` (EOF or reset).
async fn closed_after(
    mut stream: impl AsyncReadExt + Unpin,
    connected: Instant,
    limit: Duration,
) -> Duration {
    let mut buffer = [0u8; 64];
    match tokio::time::timeout(limit, stream.read(&mut buffer)).await {
        Ok(Ok(0)) | Ok(Err(_)) => connected.elapsed(),
        Ok(Ok(n)) => panic!("an idle client was sent {n} bytes"),
        Err(_) => panic!("an idle client was still open after {limit:?}"),
    }
}

/// One GET over a fresh connection; the status code, or `None` if the server closed it first.
async fn try_get(stream: impl AsyncReadExt + AsyncWriteExt + Unpin, target: &str) -> Option<u16> {
    let mut stream = stream;
    let request = format!("GET {target} HTTP/1.1\r\nHost: pollerd\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    if !matches!(read, Ok(Ok(_))) {
        return None;
    }
    let text = String::from_utf8_lossy(&answer);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

async fn tcp_get(addr: SocketAddr, target: &str) -> Option<u16> {
    try_get(TcpStream::connect(addr).await.ok()?, target).await
}

async fn unix_get(path: &Path, target: &str) -> Option<u16> {
    try_get(UnixStream::connect(path).await.ok()?, target).await
}

/// Idle clients: connected, never sending a byte, each watched from its connection on.
struct IdleClients {
    closed: Vec<tokio::task::JoinHandle<Duration>>,
}

impl IdleClients {
    fn watch(&mut self, stream: impl AsyncReadExt + Unpin + Send + 'static) {
        let connected = Instant::now();
        self.closed.push(tokio::spawn(closed_after(
            stream,
            connected,
            Duration::from_secs(60),
        )));
    }

    async fn tcp(addr: SocketAddr, n: usize) -> IdleClients {
        let mut idle = IdleClients { closed: Vec::new() };
        for _ in 0..n {
            idle.watch(
                TcpStream::connect(addr)
                    .await
                    .expect("the kernel accepts the connection"),
            );
        }
        idle
    }

    async fn unix(path: &Path, n: usize) -> IdleClients {
        let mut idle = IdleClients { closed: Vec::new() };
        for _ in 0..n {
            idle.watch(
                UnixStream::connect(path)
                    .await
                    .expect("the kernel accepts the connection"),
            );
        }
        idle
    }

    /// How long each was open before the server closed it, shortest first.
    async fn closing_times(self) -> Vec<Duration> {
        let mut times = Vec::new();
        for closed in self.closed {
            times.push(closed.await.expect("every idle client is closed"));
        }
        times.sort();
        times
    }
}

const SMALL: Limits = Limits {
    max_connections: 4,
    header_read_timeout: Duration::from_millis(600),
};

/// A metrics listener on 127.0.0.1 with the [`SMALL`] limits, until `cancel`.
async fn small_metrics_listener(cancel: &CancellationToken) -> SocketAddr {
    metrics::serve_within(
        "127.0.0.1:0".parse().unwrap(),
        Metrics::new(),
        Arc::new(|| true),
        SMALL,
        cancel.clone(),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_listener_closes_idle_clients_and_refuses_beyond_its_cap() {
    let cancel = CancellationToken::new();
    let addr = small_metrics_listener(&cancel).await;
    let idle = IdleClients::tcp(addr, 10).await;
    // The cap is held: a scrape now is closed unanswered.
    assert_eq!(tcp_get(addr, "/healthz").await, None);
    let times = idle.closing_times().await;
    // Six beyond the cap closed at once, the four within it at the header-read timeout.
    assert!(times[5] < SMALL.header_read_timeout / 2, "{times:?}");
    assert!(times[6] >= SMALL.header_read_timeout / 2, "{times:?}");
    assert!(times[9] < Duration::from_secs(10), "{times:?}");
    assert_eq!(tcp_get(addr, "/healthz").await, Some(200));
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sending_its_head_too_slowly_is_closed_at_the_timeout() {
    let cancel = CancellationToken::new();
    let addr = small_metrics_listener(&cancel).await;
    let mut slow = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    // A byte every 100 ms never completes a head; it must not keep the connection open.
    let closed = loop {
        assert!(started.elapsed() < Duration::from_secs(30), "still open");
        if slow.write_all(b"X").await.is_err() {
            break started.elapsed();
        }
        let mut buffer = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(100), slow.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) => break started.elapsed(),
            Ok(Ok(n)) => panic!("a slow client was sent {n} bytes"),
            Err(_) => {}
        }
    };
    assert!(closed >= SMALL.header_read_timeout / 2, "{closed:?}");
    cancel.cancel();
}

/// Answers status with an empty report.
struct EmptyBackend;

impl AdminBackend for EmptyBackend {
    fn status(&self) -> StatusReport {
        StatusReport {
            version: "test".into(),
            pid: std::process::id(),
            started_at: chrono::Utc::now(),
            instances: Vec::new(),
            outbox_depth: 0,
            dead_letters: 0,
            dead_letter_summary: None,
            last_reload: None,
            cluster: None,
        }
    }
    fn dead_letters(&self) -> Result<Vec<DeadLetterView>, String> {
        Ok(Vec::new())
    }
    fn replay(&self, _: Option<Vec<String>>) -> Result<usize, String> {
        Ok(0)
    }
    fn drop_dead_letters(&self, _: Option<Vec<String>>) -> Result<usize, String> {
        Ok(0)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_socket_closes_idle_clients_and_refuses_beyond_its_cap() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("admin.sock");
    let cancel = CancellationToken::new();
    let server = AdminServer::start_within(&path, Arc::new(EmptyBackend), SMALL, cancel.clone())
        .await
        .unwrap();
    let idle = IdleClients::unix(&path, 10).await;
    assert_eq!(unix_get(&path, "/v1/status").await, None);
    let times = idle.closing_times().await;
    assert!(times[5] < SMALL.header_read_timeout / 2, "{times:?}");
    assert!(times[6] >= SMALL.header_read_timeout / 2, "{times:?}");
    assert_eq!(unix_get(&path, "/v1/status").await, Some(200));
    cancel.cancel();
    server.stopped().await;
    assert!(!path.exists(), "the socket file is removed on stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_idle_clients_leave_the_daemon_answering_bounded_and_polling() {
    let (sim, receiver, dd) = seed_daemon_dir(METRICS_ANY_PORT, "0.01").await;
    let daemon = dd.start(&[]);
    let addr = metrics_address(&daemon).await;
    wait_for("the first poll", WAIT, || sim.request_count() >= 1).await;
    wait_for("status", WAIT, || status(&dd).is_some()).await;
    let baseline = open_fds(daemon.pid());
    assert!(baseline > 0, "cannot read /proc/{}/fd", daemon.pid());

    let idle_metrics = IdleClients::tcp(addr, IDLE_CLIENTS).await;
    let idle_admin = IdleClients::unix(&dd.socket(), IDLE_CLIENTS).await;

    // While they hang on: the daemon holds at most the cap on each listener.
    let bound = baseline + 2 * CAP + 32;
    let mut most = 0;
    let watch_until = Instant::now() + HEADER_TIMEOUT / 2;
    while Instant::now() < watch_until {
        most = most.max(open_fds(daemon.pid()));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        most <= bound,
        "{most} descriptors open with {} idle clients (baseline {baseline}, bound {bound})",
        2 * IDLE_CLIENTS
    );

    // They are all closed: those beyond the cap at once, the others at the timeout.
    let metrics_times = idle_metrics.closing_times().await;
    let admin_times = idle_admin.closing_times().await;
    for times in [&metrics_times, &admin_times] {
        assert!(
            times[IDLE_CLIENTS - CAP - 1] < HEADER_TIMEOUT / 2,
            "{times:?}"
        );
        assert!(times[IDLE_CLIENTS - CAP] >= HEADER_TIMEOUT / 2, "{times:?}");
    }

    // The daemon answers again, on both listeners.
    let mut scraped = None;
    let deadline = Instant::now() + WAIT;
    while scraped.is_none() && Instant::now() < deadline {
        scraped = tcp_get(addr, "/metrics").await;
    }
    assert_eq!(scraped, Some(200));
    let answered = status(&dd).expect("pollerd status answers");
    assert_eq!(
        answered["instances"][0]["resources"][0]["pollers"], 1,
        "{answered}"
    );
    assert!(
        open_fds(daemon.pid()) <= baseline + 32,
        "descriptors are given back"
    );

    // And polling went on: a contact created now is delivered.
    let id = sim.create_many(RecordKind::Contact, 1, None)[0].to_string();
    receiver
        .wait_until(WAIT, |requests| {
            requests.iter().any(|r| {
                r.try_json().is_ok_and(|body| {
                    body["message"]["events"]
                        .as_array()
                        .is_some_and(|events| events.iter().any(|e| e["objectId"] == id.as_str()))
                })
            })
        })
        .await
        .expect("the contact created after the idle clients is delivered");
    let log = daemon.log_text();
    assert!(!log.contains("panicked"), "{log}");
    assert!(
        log.contains("256 connections are open, the most allowed"),
        "the refusals are logged: {log}"
    );
    daemon.signal("TERM");
    assert!(daemon.wait_exit(WAIT).await.success());
}
