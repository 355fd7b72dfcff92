//! Resource URL templates (SPEC §3): `${gmtDate:PATTERN}`, `${date:PATTERN}`,
//! `${dateTimeZone:ZONE:PATTERN}`, `${epoch}`, `${epoch:ms|s|us}`, `${milliseconds}`, filled
//! with the resource's lower bound. Everything is compiled by [`UrlTemplate::parse`], so
//! [`UrlTemplate::render`] cannot fail.

use chrono::{DateTime, Utc};

use crate::dates::{DatePattern, Zone};

const VALID_PLACEHOLDERS: &str = "${gmtDate:PATTERN}, ${date:PATTERN}, \
     ${dateTimeZone:ZONE:PATTERN}, ${epoch}, ${epoch:ms}, ${epoch:s}, ${epoch:us}, ${milliseconds}";

/// Placeholder text quoted in errors is cut to this many characters.
const MAX_QUOTED_CHARS: usize = 60;

/// A compiled URL template.
#[derive(Clone, Debug)]
pub struct UrlTemplate {
    source: String,
    parts: Vec<Part>,
}

#[derive(Clone, Debug)]
enum Part {
    Text(String),
    Date { pattern: DatePattern, zone: Zone },
    EpochMillis,
    EpochSeconds,
    EpochMicros,
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
        let mut parts = Vec::new();
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
            let part = compile_placeholder(&template[body_start..close]).map_err(|message| {
                TemplateError {
                    offset: open,
                    message,
                }
            })?;
            if text_start < open {
                parts.push(Part::Text(template[text_start..open].to_string()));
            }
            parts.push(part);
            text_start = close + 1;
            search_from = close + 1;
        }
        if text_start < template.len() {
            parts.push(Part::Text(template[text_start..].to_string()));
        }
        Ok(UrlTemplate {
            source: template.to_string(),
            parts,
        })
    }

    /// The template with every placeholder filled from `lower_bound`; no URL encoding.
    pub fn render(&self, lower_bound: DateTime<Utc>) -> String {
        let mut out = String::with_capacity(self.source.len() + 16);
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Date { pattern, zone } => out.push_str(&pattern.format(lower_bound, zone)),
                Part::EpochMillis => out.push_str(&lower_bound.timestamp_millis().to_string()),
                Part::EpochSeconds => out.push_str(&lower_bound.timestamp().to_string()),
                Part::EpochMicros => out.push_str(&lower_bound.timestamp_micros().to_string()),
            }
        }
        out
    }

    /// The template as written.
    pub fn source(&self) -> &str {
        &self.source
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
fn compile_placeholder(body: &str) -> Result<Part, String> {
    let (descriptor, argument) = match body.split_once(':') {
        Some((descriptor, argument)) => (descriptor, Some(argument)),
        None => (body, None),
    };
    let lowercase = descriptor.to_ascii_lowercase();
    match (lowercase.as_str(), argument) {
        ("gmtdate" | "date", Some(pattern)) => Ok(Part::Date {
            pattern: compile_pattern(pattern)?,
            zone: Zone::parse("GMT").map_err(|e| e.to_string())?,
        }),
        ("datetimezone", Some(zone_and_pattern)) => {
            let (zone, pattern) = split_zone(zone_and_pattern)?;
            Ok(Part::Date {
                pattern: compile_pattern(pattern)?,
                zone,
            })
        }
        ("gmtdate" | "date" | "datetimezone", None) => Err(format!(
            "placeholder \"${{{}}}\" needs a date pattern, e.g. ${{{descriptor}:yyyy-MM-dd}}",
            excerpt(body)
        )),
        ("epoch" | "milliseconds", None) => Ok(Part::EpochMillis),
        ("epoch", Some(unit)) => match unit.to_ascii_lowercase().as_str() {
            "ms" => Ok(Part::EpochMillis),
            "s" => Ok(Part::EpochSeconds),
            "us" => Ok(Part::EpochMicros),
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
