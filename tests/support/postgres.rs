//! A throwaway PostgreSQL 15 server for the test process, from the machine's own packages:
//! `initdb` and `pg_ctl` on a temporary directory, listening on 127.0.0.1 at a free port (as user
//! `postgres` when the tests run as root, since PostgreSQL refuses to run as root). Each test
//! takes a database of its own from it.
//!
//! The server outlives no test process: a watchdog shell waits on a pipe from this process and
//! stops the server and removes its directory when the pipe closes, however the process ends.
//!
//! Tests that need it are `#[ignore]`d, so a plain `cargo test` on a machine without PostgreSQL
//! passes over them visibly; `.ci/run` runs them where PostgreSQL is installed and prints a SKIP
//! line where it is not. Run explicitly without PostgreSQL, they fail saying so.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

/// Where the PostgreSQL 15 binaries are; `POLLERD_TEST_PG_BIN` overrides it.
pub fn bin_dir() -> PathBuf {
    std::env::var_os("POLLERD_TEST_PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"))
}

/// Whether the server can be started here (its binaries are installed).
pub fn installed() -> bool {
    bin_dir().join("initdb").is_file() && bin_dir().join("pg_ctl").is_file()
}

struct Server {
    port: u16,
    data: PathBuf,
    log: PathBuf,
    /// Held open until the process ends: its closing tells the watchdog to stop the server.
    _watchdog: Mutex<(Child, ChildStdin)>,
}

static SERVER: OnceLock<Server> = OnceLock::new();
static DATABASES: AtomicUsize = AtomicUsize::new(0);

fn running_as_root() -> bool {
    // The uid of this process, from /proc (no libc call needed).
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("Uid:"))?.to_string();
            line.split_whitespace().nth(1).map(|uid| uid == "0")
        })
        .unwrap_or(false)
}

/// A command for one of the server's binaries, run as `postgres` when this process is root.
fn pg_command(binary: &str) -> Command {
    let path = bin_dir().join(binary);
    if running_as_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(path);
        command
    } else {
        Command::new(path)
    }
}

fn run(mut command: Command, what: &str) {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port on 127.0.0.1")
}

fn start() -> Server {
    assert!(
        installed(),
        "PostgreSQL 15 is not installed ({} has no initdb/pg_ctl): install the postgresql package, \
         or set POLLERD_TEST_PG_BIN",
        bin_dir().display()
    );
    let root = tempfile::Builder::new()
        .prefix("pollerd-pg-")
        .tempdir()
        .expect("a temporary directory")
        .keep();
    if running_as_root() {
        run(
            {
                let mut c = Command::new("chown");
                c.args(["-R", "postgres:postgres"]).arg(&root);
                c
            },
            "chown the server's directory",
        );
    }
    let data = root.join("data");
    let mut initdb = pg_command("initdb");
    initdb
        .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"])
        .arg("-D")
        .arg(&data);
    run(initdb, "initdb");
    let watchdog = spawn_watchdog(&root, &data);
    // A port found free may be taken before the server binds it: a few tries, each a new port.
    for attempt in 1..=3 {
        let port = free_port();
        let mut pg_ctl = pg_command("pg_ctl");
        pg_ctl
            .args(["-w", "-t", "120", "-D"])
            .arg(&data)
            .arg("-l")
            .arg(root.join("server.log"))
            .arg("-o")
            .arg(format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
                root.display()
            ))
            .arg("start")
            .stdin(Stdio::null());
        let output = pg_ctl.output().expect("run pg_ctl start");
        if output.status.success() {
            return Server {
                port,
                data,
                log: root.join("server.log"),
                _watchdog: Mutex::new(watchdog),
            };
        }
        let log = std::fs::read_to_string(root.join("server.log")).unwrap_or_default();
        assert!(
            attempt < 3,
            "pg_ctl start failed 3 times; last: {}\n{log}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    unreachable!("the loop returns or fails")
}

/// A shell that waits for EOF on its stdin, then stops the server and removes its directory.
fn spawn_watchdog(root: &Path, data: &Path) -> (Child, ChildStdin) {
    let stop = format!(
        "{} {} -D '{}' -m immediate stop >/dev/null 2>&1",
        if running_as_root() {
            "runuser -u postgres --"
        } else {
            ""
        },
        bin_dir().join("pg_ctl").display(),
        data.display()
    );
    let script = format!("cat >/dev/null; {stop}; rm -rf '{}'", root.display());
    let mut child = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the server's watchdog");
    let mut stdin = child.stdin.take().expect("piped");
    // Nothing to say; the pipe's end is the message. A write checks the shell is there.
    stdin.write_all(b"\n").expect("the watchdog is listening");
    // Never waited for: it ends after this process, when the pipe closes.
    (child, stdin)
}

/// A URL to a new, empty database on the shared server (started on first use).
pub fn fresh_database() -> String {
    let server = SERVER.get_or_init(start);
    let name = format!(
        "pollerd_test_{}_{}",
        std::process::id(),
        DATABASES.fetch_add(1, Ordering::Relaxed)
    );
    let mut createdb = Command::new(bin_dir().join("createdb"));
    createdb
        .args(["-h", "127.0.0.1", "-U", "postgres", "-p"])
        .arg(server.port.to_string())
        .arg(&name);
    run(createdb, "createdb");
    url_of(server.port, &name)
}

/// Restarts the shared server (fast shutdown: every connection is cut), on the same port, and
/// waits until it accepts connections again.
pub fn restart_server() {
    let server = SERVER
        .get()
        .expect("the server was started by fresh_database");
    let mut pg_ctl = pg_command("pg_ctl");
    pg_ctl
        .args(["-w", "-t", "120", "-m", "fast", "-D"])
        .arg(&server.data)
        .arg("-l")
        .arg(&server.log)
        .arg("restart");
    run(pg_ctl, "pg_ctl restart");
}

fn url_of(port: u16, database: &str) -> String {
    format!("postgres://postgres@127.0.0.1:{port}/{database}?sslmode=disable")
}

/// Runs `sql` on the database `url` names, through `psql` (for tests that damage stored rows).
pub fn psql(url: &str, sql: &str) {
    let mut psql = Command::new(bin_dir().join("psql"));
    psql.args(["-v", "ON_ERROR_STOP=1", "-q", "-d", url, "-c", sql]);
    run(psql, "psql");
}
