//! Resource URL templates (SPEC §3): `${gmtDate:PATTERN}`, `${date:PATTERN}`,
//! `${dateTimeZone:ZONE:PATTERN}`, `${epoch}`, `${epoch:ms|s|us}`, `${milliseconds}`, filled
//! with the resource's lower bound. Everything is compiled by [`UrlTemplate::parse`], so
//! [`UrlTemplate::render`] cannot fail.
//!
//! A substituted value is percent-encoded for where it stands: in the path as a path segment, in
//! the query (or fragment) as one query component, so `+09:00` arrives as `+09:00` and not as
//! " 09:00", and a `/`, `&` or `#` in a date text cannot change the URL's shape. Text the
//! operator wrote is sent as written (it is already a URL), never encoded a second time.

use std::sync::{Arc, LazyLock};

use chrono::{DateTime, Utc};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use crate::dates::{DatePattern, Zone};
use crate::intern::Interner;

const VALID_PLACEHOLDERS: &str = "${gmtDate:PATTERN}, ${date:PATTERN}, \
     ${dateTimeZone:ZONE:PATTERN}, ${epoch}, ${epoch:ms}, ${epoch:s}, ${epoch:us}, ${milliseconds}";

/// Placeholder text quoted in errors is cut to this many characters.
const MAX_QUOTED_CHARS: usize = 60;

/// Bytes a substituted query value must not carry raw: everything but RFC 3986's unreserved
/// characters and the delimiters no query parser splits on (`:` `@` `/` `?` `!` `$` `(` `)` `*`
/// `,`). `+` is among them (form decoders read it as a space), as are `&`, `=`, `;`, `#`, `%`,
/// the space and `'`.
const QUERY_VALUE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'&')
    .add(b'\'')
    .add(b'+')
    .add(b';')
    .add(b'<')
    .add(b'=')
    .add(b'>')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// A substituted path value is one segment: `/` and `?` are encoded as well.
const PATH_SEGMENT: &AsciiSet = &QUERY_VALUE.add(b'/').add(b'?');

/// A compiled URL template. Clones share one compiled copy, and so do templates compiled from
/// the same text ([`crate::intern`]).
#[derive(Clone, Debug)]
pub struct UrlTemplate {
    compiled: Arc<Compiled>,
}

#[derive(Debug)]
struct Compiled {
    source: String,
    parts: Vec<Part>,
}

static COMPILED: LazyLock<Interner<Compiled>> = LazyLock::new(Interner::default);

#[derive(Clone, Debug)]
enum Part {
    Text(String),
    Value { value: Value, place: Place },
}

/// What a placeholder stands for.
#[derive(Clone, Debug)]
enum Value {
    Date { pattern: DatePattern, zone: Zone },
    EpochMillis,
    EpochSeconds,
    EpochMicros,
}

/// Where in the URL a placeholder stands, which decides how its value is encoded.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Place {
    Path,
    /// After the first `?` or `#` the operator wrote: the query, or the fragment (encoded alike).
    Query,
}

impl Place {
    /// The place after `text` (written by the operator) when it starts in `self`.
    fn after(self, text: &str) -> Place {
        if text.contains(['?', '#']) {
            Place::Query
        } else {
            self
        }
    }

    fn encode_set(self) -> &'static AsciiSet {
        match self {
            Place::Path => PATH_SEGMENT,
            Place::Query => QUERY_VALUE,
        }
    }
}

/// A template that cannot be compiled; `offset` is the byte offset of the `${` at fault.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message} (at byte {offset} of the URL template)")]
pub struct TemplateError {
    pub offset: usize,
    pub message: String,
}

impl UrlTemplate {
    pub fn parse(template: &str) -> Result<UrlTemplate, TemplateError> {
        let compiled = COMPILED.get_or_compile(template, || compile(template))?;
        Ok(UrlTemplate { compiled })
    }

    /// The template with every placeholder filled from `lower_bound`, each value
    /// percent-encoded for its place (path segment or query component); the operator's own
    /// text is kept as written.
    pub fn render(&self, lower_bound: DateTime<Utc>) -> String {
        let Compiled { source, parts } = &*self.compiled;
        let mut out = String::with_capacity(source.len() + 16);
        for part in parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Value { value, place } => {
                    let text = value.text(lower_bound);
                    out.extend(utf8_percent_encode(&text, place.encode_set()));
                }
            }
        }
        out
    }

    /// The template as written.
    pub fn source(&self) -> &str {
        &self.compiled.source
    }
}

/// Text and placeholders, in order.
fn compile(template: &str) -> Result<Compiled, TemplateError> {
    let mut parts = Vec::new();
    let mut place = Place::Path;
    let mut text_start = 0;
    let mut search_from = 0;
    while let Some(found) = template[search_from..].find("${") {
        let open = search_from + found;
        let body_start = open + 2;
        let close = closing_brace(template, body_start).ok_or_else(|| TemplateError {
            offset: open,
            message: format!(
                "unclosed \"${{\": no \"}}\" outside single quotes after \"{}\"",
                excerpt(&template[open..])
            ),
        })?;
        let value =
            compile_placeholder(&template[body_start..close]).map_err(|message| TemplateError {
                offset: open,
                message,
            })?;
        if text_start < open {
            let text = &template[text_start..open];
            place = place.after(text);
            parts.push(Part::Text(text.to_string()));
        }
        parts.push(Part::Value { value, place });
        text_start = close + 1;
        search_from = close + 1;
    }
    if text_start < template.len() {
        parts.push(Part::Text(template[text_start..].to_string()));
    }
    Ok(Compiled {
        source: template.to_string(),
        parts,
    })
}

impl Value {
    /// The value's text at `lower_bound`, before URL encoding.
    fn text(&self, lower_bound: DateTime<Utc>) -> String {
        match self {
            Value::Date { pattern, zone } => pattern.format(lower_bound, zone),
            Value::EpochMillis => lower_bound.timestamp_millis().to_string(),
            Value::EpochSeconds => lower_bound.timestamp().to_string(),
            Value::EpochMicros => lower_bound.timestamp_micros().to_string(),
        }
    }
}

/// Byte index of the first `}` after `from` that is outside single-quoted pattern text, so
/// `${gmtDate:yyyy-MM-dd'T'HH:mm:ss'Z'}'` ends before the final, URL-owned quote.
fn closing_brace(template: &str, from: usize) -> Option<usize> {
    let mut quoted = false;
    for (index, byte) in template.as_bytes()[from..].iter().enumerate() {
        match byte {
            b'\'' => quoted = !quoted,
            b'}' if !quoted => return Some(from + index),
            _ => {}
        }
    }
    None
}

/// `body` is what stands between `${` and `}`.
fn compile_placeholder(body: &str) -> Result<Value, String> {
    let (descriptor, argument) = match body.split_once(':') {
        Some((descriptor, argument)) => (descriptor, Some(argument)),
        None => (body, None),
    };
    let lowercase = descriptor.to_ascii_lowercase();
    match (lowercase.as_str(), argument) {
        ("gmtdate" | "date", Some(pattern)) => Ok(Value::Date {
            pattern: compile_pattern(pattern)?,
            zone: Zone::parse("GMT").map_err(|e| e.to_string())?,
        }),
        ("datetimezone", Some(zone_and_pattern)) => {
            let (zone, pattern) = split_zone(zone_and_pattern)?;
            Ok(Value::Date {
                pattern: compile_pattern(pattern)?,
                zone,
            })
        }
        ("gmtdate" | "date" | "datetimezone", None) => Err(format!(
            "placeholder \"${{{}}}\" needs a date pattern, e.g. ${{{descriptor}:yyyy-MM-dd}}",
            excerpt(body)
        )),
        ("epoch" | "milliseconds", None) => Ok(Value::EpochMillis),
        ("epoch", Some(unit)) => match unit.to_ascii_lowercase().as_str() {
            "ms" => Ok(Value::EpochMillis),
            "s" => Ok(Value::EpochSeconds),
            "us" => Ok(Value::EpochMicros),
            _ => Err(format!(
                "unknown epoch unit \"{}\" in \"${{{}}}\": use ms, s or us",
                excerpt(unit),
                excerpt(body)
            )),
        },
        _ => Err(format!(
            "unknown placeholder \"${{{}}}\": valid ones are {VALID_PLACEHOLDERS}",
            excerpt(body)
        )),
    }
}

fn compile_pattern(pattern: &str) -> Result<DatePattern, String> {
    DatePattern::compile(pattern).map_err(|error| format!("bad date pattern: {error}"))
}

/// `ZONE:PATTERN` where ZONE may hold ':' itself (`-8:00:yyyy-MM-dd`): the longest prefix before
/// a ':' that is a zone wins.
fn split_zone(zone_and_pattern: &str) -> Result<(Zone, &str), String> {
    let colons = zone_and_pattern.match_indices(':').map(|(index, _)| index);
    let longest = colons.rev().find_map(|index| {
        let zone = Zone::parse(&zone_and_pattern[..index]).ok()?;
        Some((zone, &zone_and_pattern[index + 1..]))
    });
    if let Some(found) = longest {
        return Ok(found);
    }
    let first = zone_and_pattern.split(':').next().unwrap_or_default();
    match (Zone::parse(first), zone_and_pattern.contains(':')) {
        (Err(error), true) => Err(format!("bad time zone in dateTimeZone: {error}")),
        _ => Err(format!(
            "dateTimeZone needs a zone and a pattern: ${{dateTimeZone:ZONE:PATTERN}}, got \"{}\"",
            excerpt(zone_and_pattern)
        )),
    }
}

fn excerpt(text: &str) -> String {
    if text.chars().count() <= MAX_QUOTED_CHARS {
        text.to_string()
    } else {
        let cut: String = text.chars().take(MAX_QUOTED_CHARS).collect();
        format!("{cut}…")
    }
}
