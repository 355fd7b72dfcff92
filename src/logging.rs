//! The process-wide tracing subscriber: journald's native protocol under systemd, human text or
//! JSON lines on stderr otherwise.
//!
//! Structured fields keep their names end to end: `instance`, `resource` and `event_id` become the
//! journal fields `INSTANCE`, `RESOURCE` and `EVENT_ID` (`journalctl INSTANCE=acme`).

use anyhow::Context as _;
use std::io::IsTerminal as _;
use tracing::Subscriber;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::LogFormat;

/// Where log records go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogTarget {
    /// journald's native protocol, one entry per event with structured fields.
    Journald,
    /// Human-readable lines on stderr. No timestamps under systemd, which adds its own.
    Text { timestamps: bool },
    /// One JSON object per line on stderr.
    Json,
}

/// The identifier journald shows for our entries, whatever the executable is called.
const SYSLOG_IDENTIFIER: &str = "pollerd";

/// Installs the global tracing subscriber. `level` is a level or an `EnvFilter` directive
/// (`RUST_LOG`, if set, wins). Returns where logs actually go: a journald socket that cannot be
/// opened falls back to text on stderr, with one warning saying so. Fails if a global subscriber
/// is already installed (call it once per process).
pub fn init(format: LogFormat, level: &str) -> anyhow::Result<LogTarget> {
    let invocation_id = std::env::var_os("INVOCATION_ID").is_some();
    let journal_stream = std::env::var("JOURNAL_STREAM").ok();
    let target = choose_target(
        format,
        journal_stream.as_deref(),
        stderr_dev_ino(),
        invocation_id,
    );
    let filter = filter(level)?;
    match target {
        LogTarget::Journald => match journald_layer() {
            Ok(layer) => {
                install(filter, layer)?;
                Ok(LogTarget::Journald)
            }
            Err(error) => {
                let timestamps = !invocation_id;
                install(filter, text_layer(timestamps))?;
                tracing::warn!(
                    %error,
                    "cannot open the journald socket; logging as text on stderr instead"
                );
                Ok(LogTarget::Text { timestamps })
            }
        },
        LogTarget::Text { timestamps } => {
            install(filter, text_layer(timestamps))?;
            Ok(target)
        }
        LogTarget::Json => {
            install(filter, json_layer())?;
            Ok(target)
        }
    }
}

fn filter(level: &str) -> anyhow::Result<EnvFilter> {
    filter_from(std::env::var("RUST_LOG").ok().as_deref(), level)
}

/// `RUST_LOG` when set and not empty (an operator debugging by hand), else the configured level.
fn filter_from(rust_log: Option<&str>, level: &str) -> anyhow::Result<EnvFilter> {
    match rust_log {
        Some(directives) if !directives.trim().is_empty() => EnvFilter::try_new(directives)
            .with_context(|| format!("invalid RUST_LOG {directives:?}")),
        _ => EnvFilter::try_new(level).with_context(|| format!("invalid log level {level:?}")),
    }
}

type BoxedLayer = Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>;

fn install(filter: EnvFilter, layer: BoxedLayer) -> anyhow::Result<()> {
    tracing_subscriber::registry()
        .with(layer.with_filter(filter))
        .try_init()
        .context("cannot install the logger: one is already installed in this process")
}

fn journald_layer() -> std::io::Result<BoxedLayer> {
    let layer = tracing_journald::layer()?
        // The default prefix ("F_") would turn `instance` into `F_INSTANCE`.
        .with_field_prefix(None)
        .with_syslog_identifier(SYSLOG_IDENTIFIER.to_string());
    Ok(layer.boxed())
}

fn text_layer<S>(timestamps: bool) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if timestamps {
        layer.boxed()
    } else {
        layer.without_time().boxed()
    }
}

fn json_layer<S>() -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    tracing_subscriber::fmt::layer()
        .json()
        // Event fields at the top level, next to `level` and `timestamp`, for easy querying.
        .flatten_event(true)
        .with_writer(std::io::stderr)
        .boxed()
}

/// Decides where logs go from the environment, without touching it.
///
/// `auto` picks journald only when `JOURNAL_STREAM` names the very stream our stderr is
/// (systemd's documented test: a service whose stderr was redirected elsewhere inherits the
/// variable but must not talk to journald as if it were connected).
pub fn choose_target(
    format: LogFormat,
    journal_stream: Option<&str>,
    stderr_dev_ino: Option<(u64, u64)>,
    invocation_id: bool,
) -> LogTarget {
    let text = LogTarget::Text {
        timestamps: !invocation_id,
    };
    match format {
        LogFormat::Journald => LogTarget::Journald,
        LogFormat::Json => LogTarget::Json,
        LogFormat::Text => text,
        LogFormat::Auto => {
            let connected = journal_stream
                .and_then(parse_dev_ino)
                .is_some_and(|stream| Some(stream) == stderr_dev_ino);
            if connected { LogTarget::Journald } else { text }
        }
    }
}

/// `JOURNAL_STREAM` is `DEVICE:INODE`, both decimal.
fn parse_dev_ino(value: &str) -> Option<(u64, u64)> {
    let (dev, ino) = value.trim().split_once(':')?;
    Some((dev.parse().ok()?, ino.parse().ok()?))
}

fn stderr_dev_ino() -> Option<(u64, u64)> {
    use std::os::fd::AsFd as _;
    use std::os::unix::fs::MetadataExt as _;
    let fd = std::io::stderr().as_fd().try_clone_to_owned().ok()?;
    let metadata = std::fs::File::from(fd).metadata().ok()?;
    Some((metadata.dev(), metadata.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STDERR: (u64, u64) = (64769, 123456);

    #[test]
    fn auto_uses_journald_when_stderr_is_the_journal_stream() {
        assert_eq!(
            choose_target(LogFormat::Auto, Some("64769:123456"), Some(STDERR), true),
            LogTarget::Journald
        );
    }

    #[test]
    fn auto_uses_text_when_stderr_was_redirected_away_from_the_journal() {
        // Inherited JOURNAL_STREAM, but stderr now points elsewhere (e.g. `2>file`).
        assert_eq!(
            choose_target(LogFormat::Auto, Some("64769:999"), Some(STDERR), true),
            LogTarget::Text { timestamps: false }
        );
        assert_eq!(
            choose_target(LogFormat::Auto, Some("1:123456"), Some(STDERR), false),
            LogTarget::Text { timestamps: true }
        );
        assert_eq!(
            choose_target(LogFormat::Auto, Some("64769:123456"), None, false),
            LogTarget::Text { timestamps: true }
        );
    }

    #[test]
    fn auto_ignores_a_malformed_journal_stream() {
        for junk in ["", "64769", "64769:", ":123456", "a:b", "64769:123456:7"] {
            assert_eq!(
                choose_target(LogFormat::Auto, Some(junk), Some(STDERR), false),
                LogTarget::Text { timestamps: true },
                "JOURNAL_STREAM={junk:?}"
            );
        }
    }

    #[test]
    fn text_has_timestamps_only_outside_systemd() {
        assert_eq!(
            choose_target(LogFormat::Auto, None, Some(STDERR), false),
            LogTarget::Text { timestamps: true }
        );
        assert_eq!(
            choose_target(LogFormat::Auto, None, Some(STDERR), true),
            LogTarget::Text { timestamps: false }
        );
        assert_eq!(
            choose_target(LogFormat::Text, None, None, true),
            LogTarget::Text { timestamps: false }
        );
    }

    #[test]
    fn an_explicit_format_wins_over_the_environment() {
        let connected = (Some("64769:123456"), Some(STDERR));
        assert_eq!(
            choose_target(LogFormat::Text, connected.0, connected.1, false),
            LogTarget::Text { timestamps: true }
        );
        assert_eq!(
            choose_target(LogFormat::Json, connected.0, connected.1, true),
            LogTarget::Json
        );
        assert_eq!(
            choose_target(LogFormat::Journald, None, None, false),
            LogTarget::Journald
        );
    }

    #[test]
    fn journald_falls_back_to_text_when_unreachable_and_a_second_init_is_an_error() {
        // One test, because only the first `init` in a process installs anything. "off": it
        // must not spam the output of the other tests in this process.
        let journald_reachable = std::path::Path::new("/run/systemd/journal/socket").exists();
        let expected = if journald_reachable {
            LogTarget::Journald
        } else {
            LogTarget::Text {
                timestamps: std::env::var_os("INVOCATION_ID").is_none(),
            }
        };
        assert_eq!(init(LogFormat::Journald, "off").unwrap(), expected);
        let second = init(LogFormat::Json, "off").unwrap_err();
        assert!(
            second.to_string().contains("already installed"),
            "{second:#}"
        );
    }

    #[test]
    fn rust_log_wins_over_the_configured_level() {
        use tracing::level_filters::LevelFilter;
        let configured = filter_from(None, "warn").unwrap();
        assert_eq!(configured.max_level_hint(), Some(LevelFilter::WARN));
        let overridden = filter_from(Some("pollerd=trace"), "warn").unwrap();
        assert_eq!(overridden.max_level_hint(), Some(LevelFilter::TRACE));
        let empty = filter_from(Some(" "), "error").unwrap();
        assert_eq!(empty.max_level_hint(), Some(LevelFilter::ERROR));
    }

    #[test]
    fn a_bad_level_is_reported_with_its_text() {
        let error = filter_from(None, "pollerd=loud").unwrap_err();
        assert!(
            format!("{error:#}").contains("log level \"pollerd=loud\""),
            "{error:#}"
        );
        let error = filter_from(Some("=!"), "info").unwrap_err();
        assert!(
            format!("{error:#}").contains("RUST_LOG \"=!\""),
            "{error:#}"
        );
    }
}
