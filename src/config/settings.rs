//! Daemon settings (`pollerd.toml`): raw TOML first, then validated [`Settings`] with every
//! default filled in from systemd's directory variables.

use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::diagnostics::Diagnostic;
use super::diagnostics::Position;
use super::secret::{Secret, SecretRef, SecretSources};

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
    pub store_engine: StoreEngine,
}

/// `[store] engine`: where the state is kept.
#[derive(Clone, Debug, PartialEq)]
pub enum StoreEngine {
    /// sled files in `state_dir` (the default, for one host).
    Sled,
    /// A PostgreSQL database (`[store] url`, `pool_size`).
    Postgres(PostgresSettings),
}

#[derive(Clone, Debug, PartialEq)]
pub struct PostgresSettings {
    pub url: StoreUrl,
    /// Connections to the server, at most.
    pub pool_size: usize,
    /// This node's name in the shared database (`[store] node_id`).
    pub node_id: String,
    /// How often the node renews its heartbeat and leases (`[store] lease_renew`).
    pub lease_renew: Duration,
    /// How long a lease lasts unrenewed before another node may take it (`[store] lease_ttl`).
    pub lease_ttl: Duration,
}

/// `[store] pool_size` when unset.
pub const DEFAULT_POOL_SIZE: usize = 16;
/// More connections than this would only crowd the server.
pub const MAX_POOL_SIZE: u64 = 1024;
/// `[store] lease_renew` and `lease_ttl` when unset.
pub const DEFAULT_LEASE_RENEW: Duration = Duration::from_secs(5);
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(15);
/// A shorter renew interval would only load the server.
pub const MIN_LEASE_RENEW: Duration = Duration::from_millis(100);
/// Longest `[store] node_id`, in bytes.
pub const MAX_NODE_ID_BYTES: usize = 128;

/// `[store] url`: a connection string (it may hold a password) or a secret reference to one.
#[derive(Clone, Debug, PartialEq)]
pub enum StoreUrl {
    Literal(Secret),
    /// `${env:…}`, `${file:…}` or `${credential:…}`, as written: resolved when the store opens
    /// (a credential exists only under systemd, not for `pollerd check` run from a shell).
    Reference(String),
}

impl StoreUrl {
    /// The connection string; errors name the reference, never a value.
    pub fn resolve(&self, env: &Environment) -> Result<Secret, String> {
        let written = match self {
            StoreUrl::Literal(url) => return Ok(url.clone()),
            StoreUrl::Reference(written) => written,
        };
        let reference = SecretRef::parse(written)
            .ok_or_else(|| format!("{written} is not a secret reference"))?;
        let sources = SecretSources {
            credentials_dir: env.credentials_directory.clone(),
            unverified_credentials_ok: false,
        };
        let loaded = reference.resolve(&sources, None)?;
        let url = loaded.value.trim();
        match looks_like_connection_string(url) {
            true => Ok(Secret::new(url)),
            false => Err(format!(
                "{reference} does not hold a PostgreSQL connection string (postgres://…)"
            )),
        }
    }
}

/// A `postgres://` or `postgresql://` URL, or `key=value` pairs: the forms tokio-postgres reads.
fn looks_like_connection_string(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://") || url.contains('=')
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
    /// Requests at once to one provider host, all tenants together: a safety cap.
    pub max_per_host: usize,
    /// Requests at once of one tenant (an origin and the credentials sent to it).
    pub max_per_tenant: usize,
    /// Requests a minute of one tenant; `None` when `"off"`.
    pub tenant_requests_per_minute: Option<NonZeroU32>,
    /// A provider body larger than this fails the run (the body is streamed and cut here).
    pub max_response_size: u64,
    /// A provider `Date` further than this from the local clock is not trusted for a run.
    pub max_clock_skew: Duration,
}

/// `[polling] max_per_host` when unset: generous, since tenants have limits of their own
/// (SPEC §4 says 4, from before limits per tenant; see the README).
pub const DEFAULT_MAX_PER_HOST: usize = 64;
/// `[polling] max_per_tenant` when unset.
pub const DEFAULT_MAX_PER_TENANT: usize = 4;
/// `[polling] tenant_requests_per_minute` when unset: ConnectWise's developer guide warns at
/// about 1,000 requests a minute.
pub const DEFAULT_TENANT_REQUESTS_PER_MINUTE: u32 = 1000;
/// The largest `max_per_host` and `max_per_tenant`: more connections than this at once is a typo.
pub const MAX_CONNECTION_LIMIT: u64 = 65_536;
/// The largest `tenant_requests_per_minute`: beyond it, write `"off"`.
pub const MAX_TENANT_REQUESTS_PER_MINUTE: u64 = 1_000_000;

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
    // Read as any value, so that every wrong one is refused naming its key.
    max_per_host: Option<toml::Spanned<toml::Value>>,
    max_per_tenant: Option<toml::Spanned<toml::Value>>,
    tenant_requests_per_minute: Option<toml::Spanned<toml::Value>>,
    max_response_size: Option<ByteSize>,
    max_clock_skew: Option<HumanDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    cache_mb: Option<Count>,
    engine: Option<toml::Spanned<EngineName>>,
    url: Option<toml::Spanned<RawUrl>>,
    pool_size: Option<toml::Spanned<Count>>,
    node_id: Option<toml::Spanned<String>>,
    lease_renew: Option<toml::Spanned<HumanDuration>>,
    lease_ttl: Option<toml::Spanned<HumanDuration>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum EngineName {
    Sled,
    Postgres,
}

/// `[store] url` as written, its form checked; `Debug` hides it (it may hold a password).
struct RawUrl(StoreUrl);

impl fmt::Debug for RawUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RawUrl(***)")
    }
}

impl<'de> Deserialize<'de> for RawUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let written = String::deserialize(d)?;
        let written = written.trim();
        // The message never repeats the value: it may hold a password.
        if written.starts_with("${") {
            return match SecretRef::parse(written) {
                Some(_) => Ok(RawUrl(StoreUrl::Reference(written.to_string()))),
                None => Err(serde::de::Error::custom(
                    "invalid secret reference; write ${env:NAME}, ${file:/path} or \
                     ${credential:NAME}",
                )),
            };
        }
        match looks_like_connection_string(written) {
            true => Ok(RawUrl(StoreUrl::Literal(Secret::new(written)))),
            false => Err(serde::de::Error::custom(
                "not a PostgreSQL connection string: write postgres://user@host/db, or a secret \
                 reference such as ${credential:pg-url} (the password does not belong in this file)",
            )),
        }
    }
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
                Settings::from_raw(None, &path, "", RawSettings::default(), env)
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
        Settings::from_raw(Some(path), path, text, raw, env)
    }

    // Long: one field per setting, each with its default.
    fn from_raw(
        file: Option<&Path>,
        path: &Path,
        text: &str,
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
        let state_dir = raw.state_dir.map(rel).unwrap_or_else(|| {
            env.state_directory
                .clone()
                .unwrap_or_else(|| PathBuf::from("/var/lib/pollerd"))
        });
        Ok(Settings {
            file: file.map(Path::to_path_buf),
            instances_dir: raw
                .instances_dir
                .map(rel)
                .unwrap_or_else(|| base.join("instances.d")),
            store_engine: store_engine(path, text, &raw.store, env, &state_dir)?,
            state_dir,
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
            polling: polling_settings(path, text, &raw.polling)?,
            store_cache_bytes: raw.store.cache_mb.map_or(16, |c| c.0) * 1024 * 1024,
        })
    }
}

/// `[polling]`, each key with its default.
fn polling_settings(
    path: &Path,
    text: &str,
    raw: &RawPolling,
) -> Result<PollingSettings, Diagnostic> {
    Ok(PollingSettings {
        http_timeout: raw.http_timeout.map_or(Duration::from_secs(60), |d| d.0),
        max_concurrent: raw.max_concurrent.map_or(32, |c| c.0 as usize),
        max_per_host: connection_limit(
            path,
            text,
            "max_per_host",
            &raw.max_per_host,
            DEFAULT_MAX_PER_HOST,
        )?,
        max_per_tenant: connection_limit(
            path,
            text,
            "max_per_tenant",
            &raw.max_per_tenant,
            DEFAULT_MAX_PER_TENANT,
        )?,
        tenant_requests_per_minute: tenant_budget(path, text, &raw.tenant_requests_per_minute)?,
        max_response_size: raw
            .max_response_size
            .map_or(DEFAULT_MAX_RESPONSE_SIZE, |s| s.0),
        max_clock_skew: raw.max_clock_skew.map_or(DEFAULT_MAX_CLOCK_SKEW, |d| d.0),
    })
}

/// `[polling] max_per_host` or `max_per_tenant`: 1 to [`MAX_CONNECTION_LIMIT`].
fn connection_limit(
    path: &Path,
    text: &str,
    key: &str,
    written: &Option<toml::Spanned<toml::Value>>,
    default: usize,
) -> Result<usize, Diagnostic> {
    let Some(written) = written else {
        return Ok(default);
    };
    whole_number(written.get_ref(), MAX_CONNECTION_LIMIT)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| {
            polling_error(
                path,
                text,
                written,
                format!("[polling] {key} must be a whole number from 1 to {MAX_CONNECTION_LIMIT}"),
            )
        })
}

/// `[polling] tenant_requests_per_minute`: 1 to [`MAX_TENANT_REQUESTS_PER_MINUTE`], or `"off"`
/// for no budget (0 is refused rather than read as either: it could mean "none allowed").
fn tenant_budget(
    path: &Path,
    text: &str,
    written: &Option<toml::Spanned<toml::Value>>,
) -> Result<Option<NonZeroU32>, Diagnostic> {
    let Some(written) = written else {
        return Ok(NonZeroU32::new(DEFAULT_TENANT_REQUESTS_PER_MINUTE));
    };
    if written.get_ref().as_str().map(str::trim) == Some("off") {
        return Ok(None);
    }
    whole_number(written.get_ref(), MAX_TENANT_REQUESTS_PER_MINUTE)
        .and_then(|n| u32::try_from(n).ok())
        .and_then(NonZeroU32::new)
        .map(Some)
        .ok_or_else(|| {
            polling_error(
                path,
                text,
                written,
                format!(
                    "[polling] tenant_requests_per_minute must be a whole number from 1 to \
                     {MAX_TENANT_REQUESTS_PER_MINUTE}, or \"off\" for no budget"
                ),
            )
        })
}

/// An integer from 1 to `max`.
fn whole_number(value: &toml::Value, max: u64) -> Option<u64> {
    value
        .as_integer()
        .and_then(|n| u64::try_from(n).ok())
        .filter(|n| (1..=max).contains(n))
}

fn polling_error(
    path: &Path,
    text: &str,
    written: &toml::Spanned<toml::Value>,
    message: String,
) -> Diagnostic {
    Diagnostic::error(
        path,
        Some(Position::of_offset(text, written.span().start)),
        message,
    )
}

/// `[store] engine`, `url`, `pool_size`: the url and pool size belong to the postgres engine,
/// which needs a url; a reference that can be resolved now is, so a missing variable or file
/// is reported here (a credential only where systemd provides them).
fn store_engine(
    path: &Path,
    text: &str,
    raw: &RawStore,
    env: &Environment,
    state_dir: &Path,
) -> Result<StoreEngine, Diagnostic> {
    let at = |span: std::ops::Range<usize>| Some(Position::of_offset(text, span.start));
    let engine = raw.engine.as_ref().map(|e| *e.get_ref());
    if engine != Some(EngineName::Postgres) {
        let stray = [
            raw.url.as_ref().map(|u| ("url", u.span())),
            raw.pool_size.as_ref().map(|p| ("pool_size", p.span())),
            raw.node_id.as_ref().map(|n| ("node_id", n.span())),
            raw.lease_renew.as_ref().map(|r| ("lease_renew", r.span())),
            raw.lease_ttl.as_ref().map(|t| ("lease_ttl", t.span())),
        ];
        if let Some((key, span)) = stray.into_iter().flatten().next() {
            return Err(Diagnostic::error(
                path,
                at(span),
                format!("[store] {key} applies to engine = \"postgres\" only"),
            ));
        }
        return Ok(StoreEngine::Sled);
    }
    let engine_span = raw.engine.as_ref().map(|e| e.span()).unwrap_or_default();
    let Some(url) = raw.url.as_ref() else {
        return Err(Diagnostic::error(
            path,
            at(engine_span),
            "engine = \"postgres\" needs [store] url, e.g. url = \"${credential:pg-url}\"",
        ));
    };
    let pool_size = match raw.pool_size.as_ref() {
        None => DEFAULT_POOL_SIZE,
        Some(size) if size.get_ref().0 > MAX_POOL_SIZE => {
            return Err(Diagnostic::error(
                path,
                at(size.span()),
                format!("[store] pool_size must be at most {MAX_POOL_SIZE}"),
            ));
        }
        Some(size) => size.get_ref().0 as usize,
    };
    let url = url.get_ref().0.clone();
    let credential_later = matches!(&url, StoreUrl::Reference(r)
        if r.starts_with("${credential:") && env.credentials_directory.is_none());
    if !credential_later && let Err(reason) = url.resolve(env) {
        let span = raw.url.as_ref().map(|u| u.span()).unwrap_or_default();
        return Err(Diagnostic::error(
            path,
            at(span),
            format!("[store] url: {reason}"),
        ));
    }
    let (lease_renew, lease_ttl) = lease_times(path, text, raw)?;
    Ok(StoreEngine::Postgres(PostgresSettings {
        url,
        pool_size,
        node_id: node_id(path, text, raw, state_dir)?,
        lease_renew,
        lease_ttl,
    }))
}

/// `[store] node_id`, or `HOSTNAME:STATE_DIR` (stable across restarts, and distinct for two
/// daemons on one host, which need state directories of their own).
fn node_id(
    path: &Path,
    text: &str,
    raw: &RawStore,
    state_dir: &Path,
) -> Result<String, Diagnostic> {
    let Some(written) = raw.node_id.as_ref() else {
        return Ok(format!("{}:{}", hostname(), state_dir.display()));
    };
    let id = written.get_ref().trim();
    let problem = if id.is_empty() {
        Some("must not be empty".to_string())
    } else if id.len() > MAX_NODE_ID_BYTES {
        Some(format!("must be at most {MAX_NODE_ID_BYTES} bytes"))
    } else if id.chars().any(char::is_control) {
        Some("must not hold control characters".to_string())
    } else {
        None
    };
    match problem {
        Some(problem) => Err(Diagnostic::error(
            path,
            Some(Position::of_offset(text, written.span().start)),
            format!("[store] node_id {problem}"),
        )),
        None => Ok(id.to_string()),
    }
}

/// `[store] lease_renew` and `lease_ttl`: a renew at most half the TTL, so a lease survives one
/// failed renew (a PostgreSQL restart, a slow answer) before it expires.
fn lease_times(
    path: &Path,
    text: &str,
    raw: &RawStore,
) -> Result<(Duration, Duration), Diagnostic> {
    let renew = raw
        .lease_renew
        .as_ref()
        .map_or(DEFAULT_LEASE_RENEW, |r| r.get_ref().0);
    let ttl = raw
        .lease_ttl
        .as_ref()
        .map_or(DEFAULT_LEASE_TTL, |t| t.get_ref().0);
    let at = |span: Option<std::ops::Range<usize>>| {
        span.map(|span| Position::of_offset(text, span.start))
    };
    if renew < MIN_LEASE_RENEW {
        return Err(Diagnostic::error(
            path,
            at(raw.lease_renew.as_ref().map(|r| r.span())),
            format!("[store] lease_renew must be at least {MIN_LEASE_RENEW:?}"),
        ));
    }
    if renew.saturating_mul(2) > ttl {
        let span = raw
            .lease_ttl
            .as_ref()
            .or(raw.lease_renew.as_ref())
            .map(|s| s.span());
        return Err(Diagnostic::error(
            path,
            at(span),
            format!(
                "[store] lease_ttl ({ttl:?}) must be at least twice lease_renew ({renew:?}), so a \
                 lease outlives one failed renew"
            ),
        ));
    }
    Ok((renew, ttl))
}

/// The host's name as the kernel has it; `localhost` where it cannot be read.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
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
