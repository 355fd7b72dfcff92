//! Running the real `pollerd` binary the way an operator does: a settings file, an instances
//! directory, signals, `kill -9`. Shared by the end-to-end tests.
#![allow(dead_code)]

pub mod child;
pub mod java_dates;
pub mod postgres;
pub mod tls;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pollerd::config::{self, InstanceSpec, SecretSources};
use pollerd::element::ProviderClient;
use pollerd::poller::PollShared;
use pollerd::sim::connectwise::{ConnectWiseSim, RecordKind, SimConfig};
use pollerd::sim::receiver::Receiver;
use pollerd::store::{SledStore, Store};
use serde_json::Value;

/// `Retry-After` values no receiver should send: huge numbers, 2^64 − 1 and 2^64, a date in year
/// 9999, a negative number and garbage.
pub const HOSTILE_RETRY_AFTER: [&str; 8] = [
    "10000000000000",
    "999999999",
    "18446744073709551615",
    "18446744073709551616",
    "Fri, 31 Dec 9999 23:59:59 GMT",
    "-1",
    "soon, maybe",
    "1e9",
];

/// Generous: CI is a busy 2-core machine.
pub const WAIT: Duration = Duration::from_secs(60);

/// Polls `cond` every 20 ms until it holds or `limit` passes.
pub async fn wait_for(what: &str, limit: Duration, cond: impl FnMut() -> bool) {
    assert!(
        holds_within(limit, Duration::from_millis(20), cond).await,
        "timed out after {limit:?} waiting for {what}"
    );
}

/// Checks `cond` every `every` until it holds (true) or `limit` passes (false).
pub async fn holds_within(
    limit: Duration,
    every: Duration,
    mut cond: impl FnMut() -> bool,
) -> bool {
    let deadline = Instant::now() + limit;
    while !cond() {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(every).await;
    }
    true
}

/// A daemon's files: settings, instances, state, admin socket, log.
pub struct DaemonDir {
    pub dir: tempfile::TempDir,
}

impl DaemonDir {
    /// `extra` is appended to pollerd.toml (e.g. a `[delivery]` table).
    pub fn new(extra: &str) -> DaemonDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("instances.d")).unwrap();
        std::fs::write(
            dir.path().join("pollerd.toml"),
            format!(
                "instances_dir = \"instances.d\"\nstate_dir = \"state\"\nadmin_socket = \"run/admin.sock\"\nlog_level = \"info\"\n{extra}\n"
            ),
        )
        .unwrap();
        DaemonDir { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn settings(&self) -> PathBuf {
        self.path().join("pollerd.toml")
    }

    pub fn instances(&self) -> PathBuf {
        self.path().join("instances.d")
    }

    pub fn socket(&self) -> PathBuf {
        self.path().join("run/admin.sock")
    }

    pub fn write_instance(&self, file: &str, v: &Value) {
        // Write then rename, as an editor's atomic save does.
        let tmp = self.path().join(format!(".{file}.tmp"));
        std::fs::write(&tmp, serde_json::to_string_pretty(v).unwrap()).unwrap();
        std::fs::rename(&tmp, self.instances().join(file)).unwrap();
    }

    /// Starts `pollerd run`; its stderr goes to `log-<n>.txt` in the directory.
    pub fn start(&self, env: &[(&str, &str)]) -> Daemon {
        let n = std::fs::read_dir(self.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("log-")
            })
            .count();
        let log = self.path().join(format!("log-{n}.txt"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pollerd"));
        cmd.arg("run")
            .arg("--config")
            .arg(self.settings())
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .env_remove("INVOCATION_ID")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Daemon {
            child: cmd.spawn().expect("start pollerd"),
            log,
        }
    }

    /// Every log file's text, in start order.
    pub fn logs(&self) -> String {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("log-"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name} {}", self.pid());
    }

    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Waits for the process to exit by itself.
    pub async fn wait_exit(mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "pollerd did not exit within {limit:?}; log:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One round of contact changes: `new` contacts created, then 100 known ones (spread over all
/// of `ids`, which grows by the new ones) updated a second later than now.
pub fn change_contacts(sim: &ConnectWiseSim, ids: &mut Vec<u64>, round: usize, new: usize) {
    ids.extend(sim.create_many(RecordKind::Contact, new, None));
    for k in 0..100 {
        let id = ids[(round * 37 + k * 13) % ids.len()];
        sim.update(
            RecordKind::Contact,
            id,
            Some(sim.now() + chrono::Duration::seconds(1)),
        );
    }
}

/// The seed example (etc/instances.d/connectwise-contacts.json.example) pointed at the simulator.
pub fn seed_example(sim: &ConnectWiseSim) -> Value {
    let seed = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("etc/instances.d/connectwise-contacts.json.example"),
    )
    .unwrap();
    let mut v: Value = serde_json::from_str(&seed).unwrap();
    let conf = v["configuration"].as_object_mut().unwrap();
    conf.extend(sim.instance_configuration());
    v
}

/// The seed example, pointed at the simulator and a receiver, polling every `interval_minutes`.
pub fn seed_instance(sim: &ConnectWiseSim, callback: &str, interval_minutes: &str) -> Value {
    let mut v = seed_example(sim);
    let conf = v["configuration"].as_object_mut().unwrap();
    conf.insert("event.notification.callback.url".into(), callback.into());
    conf.insert(
        "event.poller.refresh_interval".into(),
        interval_minutes.into(),
    );
    v
}

/// The opening most end-to-end tests share: a ConnectWise simulator, a receiver, and a daemon
/// directory with `settings` and the seed instance (`contacts.json`) polling every
/// `interval_minutes`.
pub async fn seed_daemon_dir(
    settings: &str,
    interval_minutes: &str,
) -> (ConnectWiseSim, Receiver, DaemonDir) {
    let sim = ConnectWiseSim::start(SimConfig::default()).await.unwrap();
    let receiver = Receiver::start().await.unwrap();
    let dd = DaemonDir::new(settings);
    dd.write_instance(
        "contacts.json",
        &seed_instance(&sim, &receiver.url(), interval_minutes),
    );
    (sim, receiver, dd)
}

/// `instance` reading its contacts `page_size` at a time.
pub fn with_page_size(mut instance: Value, page_size: u64) -> Value {
    instance["configuration"]["event.poller.configuration"]["contacts"]["pageSize"] =
        page_size.into();
    instance
}

/// [`seed_instance`] named `name`, reading `page_size` contacts a page: the simulator's requests
/// tell one instance (or one version of it) from another by their page size.
pub fn sized_instance(
    sim: &ConnectWiseSim,
    callback: &str,
    name: &str,
    page_size: u64,
    interval_minutes: &str,
) -> Value {
    let mut v = with_page_size(seed_instance(sim, callback, interval_minutes), page_size);
    v["name"] = name.into();
    v
}

/// The spec of instance `v`, written to `path` and loaded as the daemon loads it; panics with the
/// diagnostics when it does not load.
pub fn load_spec(path: &Path, v: &Value) -> InstanceSpec {
    std::fs::write(path, serde_json::to_string_pretty(v).unwrap()).unwrap();
    let loaded = config::load_instance_file(path, &SecretSources::default());
    loaded
        .spec
        .unwrap_or_else(|| panic!("{:#?}", loaded.diagnostics))
}

/// What polls share in the daemon, over a sled store in `state_dir`: a provider client (30 s
/// timeout, 4 connections a host) and 4 concurrent polls.
pub fn poll_shared(state_dir: &Path) -> (Arc<dyn Store>, PollShared) {
    let store: Arc<dyn Store> = Arc::new(SledStore::open(state_dir, 8 << 20).unwrap());
    let shared = PollShared::new(
        ProviderClient::new(Duration::from_secs(30), 4).unwrap(),
        store.clone(),
        4,
    );
    (store, shared)
}

/// What an in-process poll test needs: the simulator, and a sled store in a temporary directory
/// with what polls share over it ([`poll_shared`]).
pub async fn in_process() -> (
    ConnectWiseSim,
    Arc<dyn Store>,
    PollShared,
    tempfile::TempDir,
) {
    let sim = ConnectWiseSim::start(pollerd::sim::connectwise::SimConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (store, shared) = poll_shared(&dir.path().join("state"));
    (sim, store, shared, dir)
}

/// (objectId, date) → the eventIds of the notifications that carried it.
pub fn events_by_version(
    bodies: &[Value],
) -> std::collections::BTreeMap<(String, String), Vec<String>> {
    let mut map: std::collections::BTreeMap<(String, String), Vec<String>> = Default::default();
    for b in bodies {
        let id = b["id"].as_str().unwrap().to_string();
        for e in b["message"]["events"].as_array().unwrap() {
            let key = (
                e["objectId"].as_str().unwrap().to_string(),
                e["date"].as_str().unwrap().to_string(),
            );
            map.entry(key).or_default().push(id.clone());
        }
    }
    map
}

/// Settings that turn the metrics listener on at a free loopback port ([`metrics_address`] finds
/// it).
pub const METRICS_ANY_PORT: &str = "[metrics]\nlisten = \"127.0.0.1:0\"\n";

/// The address the daemon's metrics listener is on (settings [`METRICS_ANY_PORT`]), read from
/// its log line once it appears.
pub async fn metrics_address(daemon: &Daemon) -> std::net::SocketAddr {
    wait_for("the metrics address in the log", WAIT, || {
        daemon.log_text().contains("metrics on http://")
    })
    .await;
    daemon
        .log_text()
        .split("metrics on http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|addr| addr.parse().ok())
        .expect("the metrics address")
}

/// The text of `/metrics` at `address` (a daemon's [`metrics_address`]).
pub async fn metrics_text(address: std::net::SocketAddr) -> String {
    reqwest::get(format!("http://{address}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// `pollerd ARGS --config <the daemon's settings>`, as an operator types it.
pub fn pollerd(dd: &DaemonDir, args: &[&str]) -> std::process::Output {
    pollerd_command(dd, args).output().unwrap()
}

/// `pollerd ARGS --config <the daemon's settings>`, not started yet: the caller may add to its
/// environment.
pub fn pollerd_command(dd: &DaemonDir, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pollerd"));
    command.args(args).arg("--config").arg(dd.settings());
    command
}

/// [`pollerd`] from async code: run on a blocking thread, so the runtime's own threads (which
/// may serve the simulator and receiver it talks to) stay free.
pub async fn pollerd_async(dd: &DaemonDir, args: &[&str]) -> std::process::Output {
    output_async(pollerd_command(dd, args)).await
}

/// `command`'s output, collected on a blocking thread.
pub async fn output_async(mut command: Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

/// `pollerd status --json`, or `None` while the daemon is not reachable (exit 1; 0 and 2,
/// "a resource is unhealthy", both print the report).
pub fn status(dd: &DaemonDir) -> Option<Value> {
    let out = pollerd(dd, &["status", "--json"]);
    matches!(out.status.code(), Some(0 | 2)).then(|| serde_json::from_slice(&out.stdout).unwrap())
}
