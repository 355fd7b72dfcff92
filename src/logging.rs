//! The process-wide tracing subscriber: journald's native protocol under systemd, human text or
//! JSON lines on stderr otherwise.
//!
//! Structured fields keep their names end to end: `instance`, `resource` and `event_id` become the
//! journal fields `INSTANCE`, `RESOURCE` and `EVENT_ID` (`journalctl INSTANCE=acme`).
//!
//! `instance` and `resource` mostly come from the span a poll loop or a delivery queue runs in
//! (`crate::internal_events`), and every output shows them on each line logged inside it: the
//! text format as `poll{instance=acme resource=contacts}:`, journald as the same `INSTANCE` and
//! `RESOURCE` fields, JSON at the top level of the line ([`SpanFieldsOnTop`]). Those
//! spans are kept whatever the filter, so a narrow `RUST_LOG` does not lose them.

use anyhow::Context as _;
use std::io::IsTerminal as _;
use tracing::level_filters::LevelFilter;
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::filter::{FilterExt as _, FilterFn};
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, MakeWriter};
use tracing_subscriber::layer::{Filter, SubscriberExt as _};
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
                install(
                    filter,
                    text_layer(timestamps, stderr_is_terminal(), std::io::stderr),
                )?;
                tracing::warn!(
                    %error,
                    "cannot open the journald socket; logging as text on stderr instead"
                );
                Ok(LogTarget::Text { timestamps })
            }
        },
        LogTarget::Text { timestamps } => {
            install(
                filter,
                text_layer(timestamps, stderr_is_terminal(), std::io::stderr),
            )?;
            Ok(target)
        }
        LogTarget::Json => {
            install(filter, json_layer(std::io::stderr))?;
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
        .with(layer.with_filter(filter.or(context_spans())))
        .try_init()
        .context("cannot install the logger: one is already installed in this process")
}

/// The target of the spans that give log lines their context: a poll loop's, a delivery queue's
/// (`crate::internal_events::poll_span`).
pub const CONTEXT_SPAN_TARGET: &str = "pollerd::internal_events";

/// The spans of [`CONTEXT_SPAN_TARGET`], enabled whatever the filter says: the lines the filter
/// lets through inside them then still show their `instance` and `resource`.
pub(crate) fn context_spans<S>() -> impl Filter<S> {
    FilterFn::new(|meta: &Metadata<'_>| meta.is_span() && meta.target() == CONTEXT_SPAN_TARGET)
        .with_max_level_hint(LevelFilter::INFO)
}

fn journald_layer() -> std::io::Result<BoxedLayer> {
    let layer = tracing_journald::layer()?
        // The default prefix ("F_") would turn `instance` into `F_INSTANCE`.
        .with_field_prefix(None)
        .with_syslog_identifier(SYSLOG_IDENTIFIER.to_string());
    Ok(layer.boxed())
}

/// Human-readable lines: `LEVEL span{fields}: target: message fields`, in colour when `ansi`
/// (stderr is a terminal).
pub(crate) fn text_layer<S, W>(
    timestamps: bool,
    ansi: bool,
    writer: W,
) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi);
    if timestamps {
        layer.boxed()
    } else {
        layer.without_time().boxed()
    }
}

/// One JSON object per line, every field at its top level.
pub(crate) fn json_layer<S, W>(writer: W) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    // Event fields at the top level, next to `level` and `timestamp`, for easy querying.
    let json = format::Format::default().json().flatten_event(true);
    tracing_subscriber::fmt::layer()
        .fmt_fields(JsonFields::new())
        .event_format(SpanFieldsOnTop(json))
        .with_writer(writer)
        .boxed()
}

/// A JSON line with the fields of the spans around its event lifted to the top level, next to
/// the event's own (an event's field wins over a span's, an inner span's over an outer one's), so
/// that `jq .instance` finds the instance whether the line or its poll loop's span carries it.
/// The `span` and `spans` objects the fields came from are left out.
struct SpanFieldsOnTop<F>(F);

impl<S, N, F> FormatEvent<S, N> for SpanFieldsOnTop<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        writer.write_str(&lift_span_fields(line))
    }
}

/// `line` (one JSON object and its newline) with its span fields on top; as it was if it is not
/// an object.
fn lift_span_fields(line: String) -> String {
    use serde_json::Value;
    let Ok(Value::Object(mut object)) = serde_json::from_str::<Value>(&line) else {
        return line;
    };
    object.remove("span");
    if let Some(Value::Array(spans)) = object.remove("spans") {
        for span in spans.into_iter().rev() {
            let Value::Object(fields) = span else {
                continue;
            };
            for (name, value) in fields {
                if name != "name" {
                    object.entry(name).or_insert(value);
                }
            }
        }
    }
    match serde_json::to_string(&object) {
        Ok(mut lifted) => {
            lifted.push('\n');
            lifted
        }
        Err(_) => line,
    }
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

fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

fn stderr_dev_ino() -> Option<(u64, u64)> {
    use std::os::fd::AsFd as _;
    use std::os::unix::fs::MetadataExt as _;
    let fd = std::io::stderr().as_fd().try_clone_to_owned().ok()?;
    let metadata = std::fs::File::from(fd).metadata().ok()?;
    Some((metadata.dev(), metadata.ino()))
}

/// The output [`written_while`] captures.
#[cfg(test)]
#[derive(Clone, Copy)]
pub(crate) enum Output {
    Text,
    Json,
}

/// What the text or JSON output writes while `log` runs, under `filter` and the spans kept
/// whatever it says, as the daemon installs them (without colours or timestamps). For tests: the
/// subscriber is this thread's only.
#[cfg(test)]
pub(crate) fn written_while(output: Output, filter: &str, log: impl FnOnce()) -> String {
    let out = Captured::default();
    let writer = out.clone();
    let make_writer = move || writer.clone();
    let layer: BoxedLayer = match output {
        Output::Text => text_layer(false, false, make_writer),
        Output::Json => json_layer(make_writer),
    };
    let filter = EnvFilter::try_new(filter)
        .expect("a valid filter")
        .or(context_spans());
    let subscriber = tracing_subscriber::registry().with(layer.with_filter(filter));
    tracing::subscriber::with_default(subscriber, log);
    out.text()
}

/// Bytes written, shared by the clones the writer hands out.
#[cfg(test)]
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

#[cfg(test)]
impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("not poisoned")).into_owned()
    }
}

#[cfg(test)]
impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .expect("not poisoned")
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
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
    fn a_json_field_of_the_line_wins_over_its_spans_and_an_inner_span_over_an_outer() {
        let out = written_while(Output::Json, "info", || {
            let _outer =
                tracing::info_span!("outer", instance = "outer", resource = "outer").entered();
            let _inner =
                tracing::info_span!("inner", instance = "acme", resource = "contacts").entered();
            tracing::info!(resource = "other", "named by the line");
        });
        let line: serde_json::Value = serde_json::from_str(out.trim()).expect(&out);
        assert_eq!(
            (&line["instance"], &line["resource"]),
            (&"acme".into(), &"other".into())
        );
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
