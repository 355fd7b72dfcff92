//! Driving the real `pollerd run` binary: its files (settings, instances, state), its start
//! up to READY=1 on a notify socket we bind, its footprint from /proc, its admin socket, its stop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

/// How long any single wait of the harness may take before the run is declared failed.
pub const WAIT_LIMIT: Duration = Duration::from_secs(600);

/// A daemon's directory: `pollerd.toml`, `instances.d/`, `state/`, `run/admin.sock`, logs.
pub struct DaemonDir {
    dir: tempfile::TempDir,
}

impl DaemonDir {
    /// `extra` is appended to pollerd.toml (e.g. a `[delivery]` table).
    pub fn new(extra: &str) -> anyhow::Result<DaemonDir> {
        let dir = tempfile::Builder::new()
            .prefix("pollerd-bench-")
            .tempdir()
            .context("creating a temporary directory")?;
        std::fs::create_dir(dir.path().join("instances.d"))?;
        std::fs::write(
            dir.path().join("pollerd.toml"),
            format!(
                "instances_dir = \"instances.d\"\nstate_dir = \"state\"\n\
                 admin_socket = \"run/admin.sock\"\nlog_format = \"text\"\nlog_level = \"info\"\n{extra}\n"
            ),
        )?;
        Ok(DaemonDir { dir })
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

    pub fn state(&self) -> PathBuf {
        self.path().join("state")
    }

    pub fn socket(&self) -> PathBuf {
        self.path().join("run/admin.sock")
    }

    /// Writes `instances.d/<name>.json` as an editor's atomic save does (write, then rename), so
    /// the daemon never reads half a file. Returns the final path.
    pub fn write_instance(&self, name: &str, instance: &Value) -> anyhow::Result<PathBuf> {
        let tmp = self.path().join(format!(".{name}.json.tmp"));
        let path = self.instances().join(format!("{name}.json"));
        std::fs::write(&tmp, serde_json::to_vec_pretty(instance)?)?;
        std::fs::rename(&tmp, &path)?;
        Ok(path)
    }

    /// Starts `pollerd run` with a notify socket of ours; stderr goes to `log-<n>.txt`.
    pub async fn start(&self, pollerd: &Path) -> anyhow::Result<BenchDaemon> {
        let n = std::fs::read_dir(self.path())?
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("log-"))
            .count();
        let log = self.path().join(format!("log-{n}.txt"));
        let notify_path = self.path().join(format!("notify-{n}.sock"));
        let notify = tokio::net::UnixDatagram::bind(&notify_path)
            .with_context(|| format!("binding {}", notify_path.display()))?;
        let ready_at: Arc<Mutex<Option<Instant>>> = Arc::default();
        let ready_seen = tokio::sync::Notify::new();
        let ready_seen = Arc::new(ready_seen);
        // Drained for the daemon's whole life, so its STATUS= messages never fill the buffer.
        let reader = {
            let ready_at = ready_at.clone();
            let ready_seen = ready_seen.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                while let Ok(len) = notify.recv(&mut buf).await {
                    let text = String::from_utf8_lossy(&buf[..len]);
                    if text.lines().any(|l| l == "READY=1") {
                        let mut at = ready_at.lock().expect("ready");
                        if at.is_none() {
                            *at = Some(Instant::now());
                            ready_seen.notify_waiters();
                            ready_seen.notify_one();
                        }
                    }
                }
            })
        };
        let mut command = Command::new(pollerd);
        command
            .arg("run")
            .arg("--config")
            .arg(self.settings())
            .env("NOTIFY_SOCKET", &notify_path)
            .env_remove("JOURNAL_STREAM")
            .env_remove("INVOCATION_ID")
            .env_remove("WATCHDOG_USEC")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?);
        let spawned_at = Instant::now();
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", pollerd.display()))?;
        Ok(BenchDaemon {
            child,
            log,
            socket: self.socket(),
            spawned_at,
            ready_at,
            ready_seen,
            reader,
        })
    }
}

/// Bytes of every file under `dir` (apparent size) and the disk space they take (blocks).
pub fn dir_size(dir: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut apparent = 0;
    let mut allocated = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            let (a, b) = dir_size(&entry.path())?;
            apparent += a;
            allocated += b;
        } else {
            apparent += meta.len();
            allocated += meta.blocks() * 512;
        }
    }
    Ok((apparent, allocated))
}

/// A running `pollerd run`.
pub struct BenchDaemon {
    child: Child,
    log: PathBuf,
    socket: PathBuf,
    spawned_at: Instant,
    ready_at: Arc<Mutex<Option<Instant>>>,
    ready_seen: Arc<tokio::sync::Notify>,
    reader: tokio::task::JoinHandle<()>,
}

/// Memory and CPU of a process, from /proc.
#[derive(Clone, Copy, Debug)]
pub struct ProcSample {
    pub rss_bytes: u64,
    pub peak_rss_bytes: u64,
    pub cpu_seconds: f64,
}

impl BenchDaemon {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for READY=1; returns the time from spawn to it.
    pub async fn wait_ready(&mut self) -> anyhow::Result<Duration> {
        let deadline = Instant::now() + WAIT_LIMIT;
        loop {
            if let Some(at) = *self.ready_at.lock().expect("ready") {
                return Ok(at - self.spawned_at);
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "pollerd exited ({status}) before READY=1; its log:\n{}",
                    self.log_text()
                );
            }
            if Instant::now() > deadline {
                bail!("pollerd sent no READY=1 within {WAIT_LIMIT:?}");
            }
            let _ =
                tokio::time::timeout(Duration::from_millis(50), self.ready_seen.notified()).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// VmRSS and VmHWM from /proc/<pid>/status, utime + stime from /proc/<pid>/stat.
    pub fn sample(&self) -> anyhow::Result<ProcSample> {
        let pid = self.pid();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("reading /proc/{pid}/status"))?;
        let kib = |field: &str| -> anyhow::Result<u64> {
            let line = status
                .lines()
                .find(|l| l.starts_with(field))
                .with_context(|| format!("no {field} in /proc/{pid}/status"))?;
            let number = line[field.len()..].trim().trim_end_matches("kB").trim();
            Ok(number.parse::<u64>()? * 1024)
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("reading /proc/{pid}/stat"))?;
        Ok(ProcSample {
            rss_bytes: kib("VmRSS:")?,
            peak_rss_bytes: kib("VmHWM:")?,
            cpu_seconds: stat_cpu(&stat)?,
        })
    }

    pub async fn status(&self) -> anyhow::Result<pollerd::admin::StatusReport> {
        pollerd::admin::get_status(&self.socket).await
    }

    /// Polls the admin socket every 20 ms until `done(status)` holds; returns when it saw it.
    pub async fn wait_status(
        &mut self,
        what: &str,
        limit: Duration,
        done: impl Fn(&pollerd::admin::StatusReport) -> bool,
    ) -> anyhow::Result<Instant> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(status) = self.status().await
                && done(&status)
            {
                return Ok(Instant::now());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "pollerd exited ({status}) while waiting for {what}; its log:\n{}",
                    self.log_text()
                );
            }
            if Instant::now() > deadline {
                bail!("timed out after {limit:?} waiting for {what}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Until `resources` resources have a watermark: every first (baseline) poll committed.
    pub async fn wait_baselines(&mut self, resources: usize) -> anyhow::Result<()> {
        self.wait_status("every baseline poll committed", WAIT_LIMIT, |s| {
            s.instances
                .iter()
                .flat_map(|i| &i.resources)
                .filter(|r| r.watermark.is_some())
                .count()
                >= resources
        })
        .await?;
        Ok(())
    }

    /// SIGTERM, then waits for the exit (the store is flushed by then).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let ok = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()?
            .success();
        if !ok {
            bail!("kill -TERM {} failed", self.pid());
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!("pollerd stopped with {status}; log:\n{}", self.log_text());
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("pollerd did not stop within 60 s of SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for BenchDaemon {
    fn drop(&mut self) {
        self.reader.abort();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// utime + stime (seconds) of a `/proc/.../stat` line.
fn stat_cpu(stat: &str) -> anyhow::Result<f64> {
    // Fields after the command name, which is in parentheses and may hold spaces.
    let (_, after) = stat
        .rsplit_once(')')
        .context("unreadable /proc/<pid>/stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5); `after` starts at field 3.
    let field = |i: usize| -> anyhow::Result<u64> {
        Ok(fields
            .get(i)
            .context("short /proc/<pid>/stat")?
            .parse::<u64>()?)
    };
    let ticks = field(11)? + field(12)?;
    Ok(ticks as f64 / clock_ticks_per_second() as f64)
}

/// CPU seconds of this process (every thread, exited ones included; in clock ticks) and of its
/// live threads whose name starts with `prefix` (from schedstat, in nanoseconds: a thread that
/// serves a few requests may use less than one tick).
pub fn thread_cpu_seconds(prefix: &str) -> anyhow::Result<(f64, f64)> {
    let process = stat_cpu(&std::fs::read_to_string("/proc/self/stat")?)?;
    let mut matching = 0.0;
    for task in std::fs::read_dir("/proc/self/task")? {
        let task = task?.path();
        // A thread may exit between the listing and the reads.
        let (Ok(name), Ok(schedstat)) = (
            std::fs::read_to_string(task.join("comm")),
            std::fs::read_to_string(task.join("schedstat")),
        ) else {
            continue;
        };
        if name.trim_end().starts_with(prefix) {
            let nanos: u64 = schedstat
                .split_whitespace()
                .next()
                .context("empty schedstat")?
                .parse()?;
            matching += nanos as f64 / 1e9;
        }
    }
    Ok((process, matching))
}

/// `getconf CLK_TCK` (100 on every Linux we know of, but asked rather than assumed).
fn clock_ticks_per_second() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100)
    })
}

/// A loopback port with nothing listening on it: a receiver that is down (connection refused).
pub fn closed_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}
