//! Daemon settings (`pollerd.toml`): raw TOML first, then validated [`Settings`] with every
//! default filled in from systemd's directory variables.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::diagnostics::Diagnostic;
use super::diagnostics::Position;

/// systemd's directory variables (and where they are absent, the FHS defaults).
#[derive(Clone, Debug, Default)]
pub struct Environment {
    pub configuration_directory: Option<PathBuf>,
    pub state_directory: Option<PathBuf>,
    pub runtime_directory: Option<PathBuf>,
    pub credentials_directory: Option<PathBuf>,
}

impl Environment {
    pub fn from_process() -> Self {
        // systemd passes colon-separated lists when a unit names several directories.
        let first = |name: &str| {
            std::env::var_os(name)
                .and_then(|v| {
                    v.to_str()
                        .map(|s| s.split(':').next().unwrap_or("").to_string())
                })
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
        };
        Environment {
            configuration_directory: first("CONFIGURATION_DIRECTORY"),
            state_directory: first("STATE_DIRECTORY"),
            runtime_directory: first("RUNTIME_DIRECTORY"),
            credentials_directory: first("CREDENTIALS_DIRECTORY"),
        }
    }

    /// The settings file used when `--config` is not given.
    pub fn default_settings_path(&self) -> PathBuf {
        self.configuration_directory
            .clone()
            .unwrap_or_else(|| PathBuf::from("/etc/pollerd"))
            .join("pollerd.toml")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Auto,
    Text,
    Json,
    Journald,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// The settings file these came from, if one existed.
    pub file: Option<PathBuf>,
    pub instances_dir: PathBuf,
    pub state_dir: PathBuf,
    pub admin_socket: PathBuf,
    pub log_format: LogFormat,
    pub log_level: String,
    pub metrics_listen: Option<SocketAddr>,
    pub delivery: DeliverySettings,
    pub polling: PollingSettings,
    /// sled's page cache; sled's own default (1 GiB) is far too large for a small daemon.
    pub store_cache_bytes: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DeliverySettings {
    pub timeout: Duration,
    /// Delays after the first, second, … failure; exhausted → dead letter.
    pub schedule: Vec<Duration>,
    pub max_in_flight: usize,
    /// How long in-flight deliveries may finish after SIGTERM.
    pub grace_period: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PollingSettings {
    pub http_timeout: Duration,
    pub max_concurrent: usize,
    pub max_per_host: usize,
    /// A provider body larger than this fails the run (the body is streamed and cut here).
    pub max_response_size: u64,
    /// A provider `Date` further than this from the local clock is not trusted for a run.
    pub max_clock_skew: Duration,
}

/// `[polling] max_response_size` when unset: 64 MiB.
pub const DEFAULT_MAX_RESPONSE_SIZE: u64 = 64 << 20;
/// `[polling] max_clock_skew` when unset.
pub const DEFAULT_MAX_CLOCK_SKEW: Duration = Duration::from_secs(3600);

/// Cloud Elements' retry schedule: 4^n seconds, nine retries.
pub fn default_schedule() -> Vec<Duration> {
    (1..=9).map(|n| Duration::from_secs(4u64.pow(n))).collect()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    instances_dir: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    admin_socket: Option<PathBuf>,
    log_format: Option<LogFormat>,
    log_level: Option<String>,
    #[serde(default)]
    metrics: RawMetrics,
    #[serde(default)]
    delivery: RawDelivery,
    #[serde(default)]
    polling: RawPolling,
    #[serde(default)]
    store: RawStore,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Option<SocketAddr>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDelivery {
    timeout: Option<HumanDuration>,
    schedule: Option<Vec<HumanDuration>>,
    max_in_flight: Option<Count>,
    grace_period: Option<HumanDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolling {
    http_timeout: Option<HumanDuration>,
    max_concurrent: Option<Count>,
    max_per_host: Option<Count>,
    max_response_size: Option<ByteSize>,
    max_clock_skew: Option<HumanDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    cache_mb: Option<Count>,
}

/// A duration written as `"250ms"`, `"4s"`, `"10m"`.
#[derive(Debug, Clone, Copy)]
struct HumanDuration(Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(s.trim())
            .map(HumanDuration)
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "invalid duration {s:?} ({e}); write e.g. \"250ms\", \"4s\", \"10m\""
                ))
            })
    }
}

/// A positive whole number.
#[derive(Debug, Clone, Copy)]
struct Count(u64);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u64::deserialize(d)?;
        if n == 0 {
            return Err(serde::de::Error::custom("must be at least 1"));
        }
        Ok(Count(n))
    }
}

/// A size in bytes: a number, or a string such as `"64MiB"`, `"512KiB"`, `"1GiB"`.
#[derive(Debug, Clone, Copy)]
struct ByteSize(u64);

impl ByteSize {
    fn parse(text: &str) -> Option<u64> {
        let text = text.trim();
        let digits = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(digits);
        let number: u64 = number.parse().ok()?;
        let factor: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            _ => return None,
        };
        number.checked_mul(factor).filter(|n| *n > 0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Number(u64),
            Text(String),
        }
        let parsed = match Written::deserialize(d)? {
            Written::Number(n) => Some(n).filter(|n| *n > 0),
            Written::Text(s) => ByteSize::parse(&s),
        };
        parsed.map(ByteSize).ok_or_else(|| {
            serde::de::Error::custom(
                "invalid size; write a number of bytes or e.g. \"512KiB\", \"64MiB\", \"1GiB\"",
            )
        })
    }
}

impl Settings {
    /// Reads the settings file. `explicit` is `--config`/`POLLERD_CONFIG`: it must exist; the
    /// default file may be absent (every key has a default).
    pub fn load(explicit: Option<&Path>, env: &Environment) -> Result<Settings, Diagnostic> {
        let path = explicit
            .map(Path::to_path_buf)
            .unwrap_or_else(|| env.default_settings_path());
        match std::fs::read_to_string(&path) {
            Ok(text) => Settings::parse(&path, &text, env),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => {
                Settings::from_raw(None, &path, RawSettings::default(), env)
            }
            Err(e) => Err(Diagnostic::error(
                &path,
                None,
                format!("cannot read settings file: {e}"),
            )),
        }
    }

    pub fn parse(path: &Path, text: &str, env: &Environment) -> Result<Settings, Diagnostic> {
        let raw: RawSettings = toml::from_str(text).map_err(|e| {
            let pos = e.span().map(|s| Position::of_offset(text, s.start));
            Diagnostic::error(path, pos, e.message().trim().to_string())
        })?;
        Settings::from_raw(Some(path), path, raw, env)
    }

    fn from_raw(
        file: Option<&Path>,
        path: &Path,
        raw: RawSettings,
        env: &Environment,
    ) -> Result<Settings, Diagnostic> {
        // Relative paths inside the file are relative to the file's own directory.
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let base = if base.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            base
        };
        let rel = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        let level = raw.log_level.unwrap_or_else(|| "info".to_string());
        if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
            return Err(Diagnostic::error(
                path,
                None,
                format!("invalid log_level {level:?}: use error, warn, info, debug or trace"),
            ));
        }
        let schedule = raw
            .delivery
            .schedule
            .map(|s| s.into_iter().map(|d| d.0).collect())
            .unwrap_or_else(default_schedule);
        Ok(Settings {
            file: file.map(Path::to_path_buf),
            instances_dir: raw
                .instances_dir
                .map(rel)
                .unwrap_or_else(|| base.join("instances.d")),
            state_dir: raw.state_dir.map(rel).unwrap_or_else(|| {
                env.state_directory
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("/var/lib/pollerd"))
            }),
            admin_socket: raw.admin_socket.map(rel).unwrap_or_else(|| {
                env.runtime_directory
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("/run/pollerd"))
                    .join("admin.sock")
            }),
            log_format: raw.log_format.unwrap_or(LogFormat::Auto),
            log_level: level,
            metrics_listen: raw.metrics.listen,
            delivery: DeliverySettings {
                timeout: raw
                    .delivery
                    .timeout
                    .map_or(Duration::from_secs(30), |d| d.0),
                schedule,
                max_in_flight: raw.delivery.max_in_flight.map_or(64, |c| c.0 as usize),
                grace_period: raw
                    .delivery
                    .grace_period
                    .map_or(Duration::from_secs(10), |d| d.0),
            },
            polling: PollingSettings {
                http_timeout: raw
                    .polling
                    .http_timeout
                    .map_or(Duration::from_secs(60), |d| d.0),
                max_concurrent: raw.polling.max_concurrent.map_or(32, |c| c.0 as usize),
                max_per_host: raw.polling.max_per_host.map_or(4, |c| c.0 as usize),
                max_response_size: raw
                    .polling
                    .max_response_size
                    .map_or(DEFAULT_MAX_RESPONSE_SIZE, |s| s.0),
                max_clock_skew: raw
                    .polling
                    .max_clock_skew
                    .map_or(DEFAULT_MAX_CLOCK_SKEW, |d| d.0),
            },
            store_cache_bytes: raw.store.cache_mb.map_or(16, |c| c.0) * 1024 * 1024,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Environment {
        Environment {
            configuration_directory: Some(PathBuf::from("/etc/pollerd")),
            state_directory: Some(PathBuf::from("/var/lib/pollerd-state")),
            runtime_directory: Some(PathBuf::from("/run/pd")),
            credentials_directory: None,
        }
    }

    #[test]
    fn defaults_follow_systemd_directories() {
        let s = Settings::parse(Path::new("/etc/pollerd/pollerd.toml"), "", &env()).unwrap();
        assert_eq!(s.instances_dir, PathBuf::from("/etc/pollerd/instances.d"));
        assert_eq!(s.state_dir, PathBuf::from("/var/lib/pollerd-state"));
        assert_eq!(s.admin_socket, PathBuf::from("/run/pd/admin.sock"));
        assert_eq!(s.delivery.schedule.len(), 9);
        assert_eq!(s.delivery.schedule[8], Duration::from_secs(262_144));
        assert_eq!(s.store_cache_bytes, 16 * 1024 * 1024);
        assert_eq!(s.metrics_listen, None);
    }

    #[test]
    fn relative_paths_are_relative_to_the_file() {
        let text = "state_dir = \"state\"\ninstances_dir = \"/abs/inst\"\n[delivery]\nschedule = [\"250ms\", \"1s\"]\n";
        let s = Settings::parse(Path::new("/opt/p/pollerd.toml"), text, &env()).unwrap();
        assert_eq!(s.state_dir, PathBuf::from("/opt/p/state"));
        assert_eq!(s.instances_dir, PathBuf::from("/abs/inst"));
        assert_eq!(
            s.delivery.schedule,
            vec![Duration::from_millis(250), Duration::from_secs(1)]
        );
    }

    #[test]
    fn unknown_key_is_an_error_with_position() {
        let text = "[polling]\nmax_concurent = 3\n";
        let d = Settings::parse(Path::new("p.toml"), text, &env()).unwrap_err();
        assert_eq!(d.position, Some(Position { line: 2, column: 1 }));
        assert!(
            d.message.contains("unknown field `max_concurent`"),
            "{}",
            d.message
        );
    }
}
