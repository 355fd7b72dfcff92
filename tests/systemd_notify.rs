//! What a service manager receives from [`Notifier`], on the wire.
//!
//! The notifier reads `NOTIFY_SOCKET` and `WATCHDOG_*` from the environment, and changing the
//! environment of a running test is unsound, so each case runs this test binary again as a
//! child process (the `notify_probe` helper below) with the environment under test, against a
//! datagram socket the test bound, playing systemd.

mod support;

use std::io::Read as _;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use pollerd::systemd::Notifier;
use support::child::{helper_output, this_test_binary};
use tokio_util::sync::CancellationToken;

/// Set in the child process: it is the probe, not a test.
const PROBE_ROLE: &str = "POLLERD_NOTIFY_PROBE";
const DEADLINE: Duration = Duration::from_secs(30);
const STATUS_TEXT: &str = "2 instances, 3 resources";

/// The daemon's side, as a program: every notification in the order pollerd sends them, with the
/// watchdog running from the status line until stdin closes.
#[test]
#[ignore = "helper run as a child process by the other tests in this file"]
fn notify_probe() {
    if std::env::var_os(PROBE_ROLE).is_none() {
        return; // Run by hand with --ignored: not a probe, nothing to do.
    }
    let notifier = Notifier::from_env();
    println!(
        "active={} watchdog={:?}",
        notifier.is_active(),
        notifier.watchdog_interval()
    );
    notifier.ready();
    notifier.reloading();
    notifier.ready();
    notifier.status(&format!("{STATUS_TEXT}\nsecond line"));

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cancel = CancellationToken::new();
    let watchdog = runtime.block_on(async { notifier.spawn_watchdog(cancel.clone(), || true) });
    runtime.block_on(async {
        // Pings flow until the test closes our stdin (it has seen enough of them).
        tokio::task::spawn_blocking(|| std::io::stdin().read_to_end(&mut Vec::new()))
            .await
            .unwrap()
            .unwrap();
        cancel.cancel();
        if let Some(watchdog) = watchdog {
            watchdog.await.unwrap();
        }
    });
    notifier.stopping();
}

fn probe(env: &[(&str, &str)], stdin: Stdio) -> Child {
    let mut command = this_test_binary("notify_probe");
    command
        .env(PROBE_ROLE, "1")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    command.spawn().unwrap()
}

fn bind(path: &Path) -> UnixDatagram {
    let socket = UnixDatagram::bind(path).unwrap();
    socket.set_read_timeout(Some(DEADLINE)).unwrap();
    socket
}

fn receive(socket: &UnixDatagram) -> String {
    let mut buffer = vec![0u8; 4096];
    let length = socket
        .recv(&mut buffer)
        .unwrap_or_else(|error| panic!("no notification within {DEADLINE:?}: {error}"));
    String::from_utf8(buffer[..length].to_vec()).unwrap()
}

fn assert_nothing_more(socket: &UnixDatagram) {
    socket.set_nonblocking(true).unwrap();
    let mut buffer = [0u8; 4096];
    match socket.recv(&mut buffer) {
        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!(
            "unexpected notification: {:?}",
            other.map(|n| String::from_utf8_lossy(&buffer[..n]).into_owned())
        ),
    }
}

/// CLOCK_BOOTTIME in µs, which CLOCK_MONOTONIC never exceeds.
fn boot_time_usec() -> u64 {
    let uptime = std::fs::read_to_string("/proc/uptime").unwrap();
    let seconds: f64 = uptime.split_whitespace().next().unwrap().parse().unwrap();
    (seconds * 1e6) as u64
}

#[test]
fn notifications_arrive_in_order_with_watchdog_pings() {
    let tmp = tempfile::tempdir().unwrap();
    let socket_path = tmp.path().join("notify.sock");
    let socket = bind(&socket_path);
    let mut child = probe(
        &[
            ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "200000"),
        ],
        Stdio::piped(),
    );

    let deadline = Instant::now() + DEADLINE;
    let mut states = Vec::new();
    let mut pings = 0;
    loop {
        assert!(Instant::now() < deadline, "no STOPPING=1; got {states:?}");
        let datagram = receive(&socket);
        if datagram == "WATCHDOG=1\n" {
            pings += 1;
            // The pings are flowing: let the probe stop (closing stdin is its cue).
            if pings == 2 {
                drop(child.stdin.take());
            }
            assert_eq!(states.len(), 4, "watchdog ping out of place: {states:?}");
            continue;
        }
        let stop = datagram == "STOPPING=1\n";
        states.push(datagram);
        if stop {
            break;
        }
    }
    let stdout = helper_output(child.wait_with_output().unwrap());
    assert!(
        stdout.contains("active=true watchdog=Some(100ms)"),
        "{stdout}"
    );

    assert!(pings >= 2, "{pings} watchdog pings");
    assert_eq!(states.len(), 5, "{states:?}");
    assert_eq!(states[0], "READY=1\n");
    let reloading: Vec<&str> = states[1].lines().collect();
    assert_eq!(reloading.len(), 2, "{reloading:?}");
    assert_eq!(reloading[0], "RELOADING=1");
    let monotonic: u64 = reloading[1]
        .strip_prefix("MONOTONIC_USEC=")
        .unwrap_or_else(|| panic!("{reloading:?}"))
        .parse()
        .unwrap();
    // In microseconds of CLOCK_MONOTONIC: not 0, not nanoseconds, not wall-clock time.
    assert!(
        monotonic > 0 && monotonic <= boot_time_usec(),
        "MONOTONIC_USEC={monotonic}, boot time {}µs",
        boot_time_usec()
    );
    assert_eq!(states[2], "READY=1\n");
    assert_eq!(states[3], format!("STATUS={STATUS_TEXT} second line\n"));
    assert_eq!(states[4], "STOPPING=1\n");
    assert_nothing_more(&socket);
}

#[test]
fn without_notify_socket_nothing_is_sent_and_nothing_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let socket_path = tmp.path().join("notify.sock");
    let socket = bind(&socket_path);
    let child = probe(&[("WATCHDOG_USEC", "200000")], Stdio::null());
    let stdout = helper_output(child.wait_with_output().unwrap());
    assert!(stdout.contains("active=false watchdog=None"), "{stdout}");
    assert_nothing_more(&socket);
}

#[test]
fn an_unreachable_notify_socket_is_not_fatal() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nobody-listens.sock");
    let child = probe(
        &[
            ("NOTIFY_SOCKET", missing.to_str().unwrap()),
            ("WATCHDOG_USEC", "200000"),
        ],
        Stdio::null(),
    );
    let stdout = helper_output(child.wait_with_output().unwrap());
    assert!(
        stdout.contains("active=true watchdog=Some(100ms)"),
        "{stdout}"
    );
}

#[test]
fn a_watchdog_meant_for_another_process_is_not_pinged() {
    let tmp = tempfile::tempdir().unwrap();
    let socket_path = tmp.path().join("notify.sock");
    let socket = bind(&socket_path);
    // WATCHDOG_PID=1: inherited from, and meant for, some other process.
    let child = probe(
        &[
            ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "200000"),
            ("WATCHDOG_PID", "1"),
        ],
        Stdio::null(),
    );
    let stdout = helper_output(child.wait_with_output().unwrap());
    assert!(stdout.contains("active=true watchdog=None"), "{stdout}");
    let mut states = Vec::new();
    loop {
        let datagram = receive(&socket);
        let stop = datagram == "STOPPING=1\n";
        states.push(datagram);
        if stop {
            break;
        }
    }
    assert!(states.iter().all(|s| s != "WATCHDOG=1\n"), "{states:?}");
    assert_eq!(states.len(), 5, "{states:?}");
    assert_nothing_more(&socket);
}

/// The main thread of a process stopped by ptrace while its other threads run on: a daemon
/// whose main loop is stuck (a blocking call, a deadlock) while its runtime is fine.
struct FrozenMainThread {
    pid: i32,
}

mod ptrace {
    use std::ffi::{c_int, c_long, c_void};

    pub const SEIZE: c_int = 0x4206;
    pub const INTERRUPT: c_int = 0x4207;
    pub const DETACH: c_int = 17;
    /// Wait for any child, threads included (`__WALL`).
    pub const WALL: c_int = 0x4000_0000;

    unsafe extern "C" {
        pub fn ptrace(request: c_int, ...) -> c_long;
        pub fn waitpid(pid: c_int, status: *mut c_int, options: c_int) -> c_int;
    }

    /// `ptrace(request, tid, 0, 0)`, or the OS error.
    pub fn request(request: c_int, tid: c_int) -> std::io::Result<()> {
        let null = std::ptr::null_mut::<c_void>();
        // SAFETY: these requests take no memory from us (addr and data are 0).
        let done = unsafe { ptrace(request, tid, null, null) };
        if done == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

impl FrozenMainThread {
    /// Stops thread `pid` (a process's main thread has the process's id) and only it; this
    /// thread must be the one that later releases it (ptrace's rule).
    fn freeze(pid: u32) -> FrozenMainThread {
        let pid = i32::try_from(pid).unwrap();
        ptrace::request(ptrace::SEIZE, pid).unwrap_or_else(|error| {
            panic!("cannot ptrace the daemon (is ptrace allowed?): {error}")
        });
        let frozen = FrozenMainThread { pid };
        ptrace::request(ptrace::INTERRUPT, pid).expect("PTRACE_INTERRUPT");
        let mut status = 0;
        // SAFETY: status is a valid out-pointer for the call.
        let waited = unsafe { ptrace::waitpid(pid, &mut status, ptrace::WALL) };
        assert_eq!(waited, pid, "waitpid: {}", std::io::Error::last_os_error());
        let state = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/stat")).unwrap();
        let state = state
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap();
        assert_eq!(state, "t", "the main thread is in a tracing stop");
        frozen
    }
}

impl Drop for FrozenMainThread {
    fn drop(&mut self) {
        let _ = ptrace::request(ptrace::DETACH, self.pid);
    }
}

/// When the next `WATCHDOG=1` arrives before `until`; other notifications are skipped.
fn next_ping(socket: &UnixDatagram, until: Instant) -> Option<Instant> {
    let mut buffer = [0u8; 4096];
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    while Instant::now() < until {
        if let Ok(n) = socket.recv(&mut buffer) {
            if buffer[..n]
                .split(|b| *b == b'\n')
                .any(|line| line == b"WATCHDOG=1")
            {
                return Some(Instant::now());
            }
        }
    }
    None
}

#[test]
fn the_daemon_pings_while_it_progresses_and_not_while_its_main_loop_is_stuck() {
    // No instance at all: an idle scheduler must still count as alive.
    let dd = support::DaemonDir::new("");
    let socket_path = dd.path().join("notify.sock");
    let socket = bind(&socket_path);
    // Pings every second; the main loop and the scheduler may be silent for one second.
    let ping_every = Duration::from_secs(1);
    let daemon = dd.start(&[
        ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
        ("WATCHDOG_USEC", "2000000"),
    ]);
    let deadline = Instant::now() + DEADLINE;
    for _ in 0..3 {
        assert!(
            next_ping(&socket, deadline).is_some(),
            "no WATCHDOG=1 from a healthy daemon; log:\n{}",
            daemon.log_text()
        );
    }

    let frozen = FrozenMainThread::freeze(daemon.pid());
    let frozen_at = Instant::now();
    // A ping may still come while the last beat is fresh: up to the silence allowed plus one
    // ping period, with room for a busy machine.
    let settled = frozen_at + ping_every * 3;
    while next_ping(&socket, settled).is_some() {}
    let quiet_until = Instant::now() + ping_every * 5;
    assert_eq!(
        next_ping(&socket, quiet_until).map(|at| at - frozen_at),
        None,
        "WATCHDOG=1 sent while the main loop is stuck"
    );

    drop(frozen);
    let resumed = next_ping(&socket, Instant::now() + DEADLINE);
    assert!(
        resumed.is_some(),
        "no WATCHDOG=1 once the main loop runs again"
    );
    daemon.signal("TERM");
    let exited = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(daemon.wait_exit(support::WAIT));
    assert!(exited.success());
}
