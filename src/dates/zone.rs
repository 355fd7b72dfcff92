//! Time zones as the operator writes them, with the offset rules Java applies.

use chrono::{DateTime, LocalResult, NaiveDateTime, Offset, TimeDelta, TimeZone, Utc};
use chrono_tz::{GapInfo, OffsetName, TZ_VARIANTS, Tz};

use super::names;

/// A time zone from the configuration: an IANA region, or a fixed offset.
#[derive(Clone, Debug, PartialEq)]
pub struct Zone {
    name: String,
    rules: Rules,
}

#[derive(Clone, Debug, PartialEq)]
enum Rules {
    Region(Tz),
    /// `short_name` is what `z` prints; without one Java prints `GMT±hh:mm`.
    Fixed {
        offset_seconds: i32,
        short_name: Option<&'static str>,
    },
}

/// A time zone text that names no zone pollerd knows.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ZoneError {
    #[error(
        "unknown time zone \"{input}\": use an IANA name like America/Denver, GMT/UTC, or an offset like -08:00"
    )]
    Unknown { input: String },
    #[error("time zone offset \"{input}\" is out of range: hours must be 0-23 and minutes 0-59")]
    OffsetOutOfRange { input: String },
}

impl Zone {
    /// Reads `America/Denver`, `GMT`, `UTC`, `-08:00`, `-8:00`, `+0530`, `-8`, `GMT+06:00`,
    /// and Java's short ids (`EST`, `PST`, `IST`, …).
    pub fn parse(s: &str) -> Result<Zone, ZoneError> {
        let text = s.trim();
        let fixed = |offset_seconds, short_name| Rules::Fixed {
            offset_seconds,
            short_name,
        };
        let rules = if text.eq_ignore_ascii_case("GMT") {
            fixed(0, Some("GMT"))
        } else if text.eq_ignore_ascii_case("UTC") {
            fixed(0, Some("UTC"))
        } else if let Some(&(id, offset)) = names::JAVA_FIXED_IDS.iter().find(|(id, _)| *id == text)
        {
            fixed(offset, Some(id))
        } else if let Some(tz) = java_short_id(text) {
            Rules::Region(tz)
        } else if let Some(offset) = parse_offset_id(text) {
            let offset = offset.ok_or_else(|| ZoneError::OffsetOutOfRange {
                input: s.to_string(),
            })?;
            fixed(offset, None)
        } else if let Some(tz) = iana_zone(text) {
            Rules::Region(tz)
        } else {
            return Err(ZoneError::Unknown {
                input: s.to_string(),
            });
        };
        Ok(Zone {
            name: s.to_string(),
            rules,
        })
    }

    pub fn utc() -> Zone {
        Zone {
            name: "UTC".to_string(),
            rules: Rules::Fixed {
                offset_seconds: 0,
                short_name: Some("UTC"),
            },
        }
    }

    /// The zone as the operator wrote it, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Offset (seconds east of UTC) in force at `instant`, and the short name `z` prints then.
    pub(crate) fn offset_at(&self, instant: DateTime<Utc>) -> (i32, String) {
        match &self.rules {
            Rules::Fixed {
                offset_seconds,
                short_name,
            } => (
                *offset_seconds,
                short_name.map_or_else(|| names::gmt_offset_name(*offset_seconds), str::to_string),
            ),
            Rules::Region(tz) => {
                let offset = tz.offset_from_utc_datetime(&instant.naive_utc());
                let seconds = offset.fix().local_minus_utc();
                // tzdata spells zones without a common abbreviation as "+06"; Java says "GMT+06:00".
                let name = match offset.abbreviation() {
                    Some(abbr) if abbr.starts_with(|c: char| c.is_ascii_alphabetic()) => {
                        abbr.to_string()
                    }
                    _ => names::gmt_offset_name(seconds),
                };
                (seconds, name)
            }
        }
    }

    /// The offset Java's `Calendar` gives a local time: in a DST gap, the offset before the gap
    /// (02:30 in a spring-forward gap becomes 03:30 daylight time); in an overlap, the offset
    /// after the transition (01:30 on fall-back day is standard time, the later instant).
    pub(crate) fn resolve_local(&self, local: NaiveDateTime) -> i32 {
        let candidates = self.local_offsets(local);
        // Offsets are east of UTC, so the smallest one gives the latest instant.
        candidates.into_iter().min().unwrap_or(0)
    }

    /// Every offset a local time can have: one, two in an overlap, the pre-gap one in a gap.
    pub(crate) fn local_offsets(&self, local: NaiveDateTime) -> Vec<i32> {
        let tz = match &self.rules {
            Rules::Fixed { offset_seconds, .. } => return vec![*offset_seconds],
            Rules::Region(tz) => tz,
        };
        match tz.offset_from_local_datetime(&local) {
            LocalResult::Single(offset) => vec![offset.fix().local_minus_utc()],
            LocalResult::Ambiguous(a, b) => {
                vec![a.fix().local_minus_utc(), b.fix().local_minus_utc()]
            }
            LocalResult::None => {
                let before_gap = GapInfo::new(&local, tz).and_then(|gap| gap.begin);
                let offset = match before_gap {
                    Some((_, offset)) => offset.fix(),
                    None => tz.offset_from_utc_datetime(&local).fix(),
                };
                vec![offset.local_minus_utc()]
            }
        }
    }

    /// The offset this zone uses under the abbreviation `abbr` around the local time `local`
    /// (so "MST" in America/Denver means -07:00 even in July, as Java reads it).
    pub(crate) fn offset_for_abbreviation(&self, abbr: &str, local: NaiveDateTime) -> Option<i32> {
        let tz = match &self.rules {
            Rules::Fixed {
                offset_seconds,
                short_name: Some(name),
            } if name.eq_ignore_ascii_case(abbr) => return Some(*offset_seconds),
            Rules::Fixed { .. } => return None,
            Rules::Region(tz) => tz,
        };
        let around = local.and_utc() - TimeDelta::seconds(i64::from(self.resolve_local(local)));
        [0, -91, 91, -182, 182].into_iter().find_map(|days| {
            let instant = around.checked_add_signed(TimeDelta::days(days))?;
            let offset = tz.offset_from_utc_datetime(&instant.naive_utc());
            let matches = offset
                .abbreviation()
                .is_some_and(|name| name.eq_ignore_ascii_case(abbr));
            matches.then(|| offset.fix().local_minus_utc())
        })
    }
}

fn java_short_id(text: &str) -> Option<Tz> {
    let (_, iana) = names::JAVA_SHORT_IDS.iter().find(|(id, _)| *id == text)?;
    iana.parse().ok()
}

fn iana_zone(text: &str) -> Option<Tz> {
    text.parse::<Tz>().ok().or_else(|| {
        TZ_VARIANTS
            .iter()
            .find(|tz| tz.name().eq_ignore_ascii_case(text))
            .copied()
    })
}

/// `[GMT|UTC]±h`, `±hh`, `±h:mm`, `±hh:mm`, `±hmm`, `±hhmm`. `None` when `text` does not have
/// that shape; `Some(None)` when it does but the hours or minutes are out of range.
fn parse_offset_id(text: &str) -> Option<Option<i32>> {
    if !text.is_ascii() {
        return None;
    }
    let has_prefix = text.len() > 3
        && (text[..3].eq_ignore_ascii_case("GMT") || text[..3].eq_ignore_ascii_case("UTC"));
    let signed = if has_prefix { &text[3..] } else { text };
    let sign = match signed.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let body = &signed[1..];
    let (hours, minutes) = match body.split_once(':') {
        Some((h, m)) if (1..=2).contains(&h.len()) && m.len() == 2 => (h, m),
        Some(_) => return None,
        None if (1..=2).contains(&body.len()) => (body, "00"),
        None if (3..=4).contains(&body.len()) => body.split_at(body.len() - 2),
        None => return None,
    };
    if !(hours.bytes().chain(minutes.bytes())).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hours: i32 = hours.parse().ok()?;
    let minutes: i32 = minutes.parse().ok()?;
    if hours > 23 || minutes > 59 {
        return Some(None);
    }
    Some(Some(sign * (hours * 3600 + minutes * 60)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_ids_read_every_documented_spelling() {
        let cases = [
            ("+06:00", 6 * 3600),
            ("-08:00", -8 * 3600),
            ("-8:00", -8 * 3600),
            ("+0530", 5 * 3600 + 1800),
            ("-8", -8 * 3600),
            ("GMT+06:00", 6 * 3600),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_offset_id(text), Some(Some(expected)), "{text}");
        }
        assert_eq!(parse_offset_id("+24:00"), Some(None));
        assert_eq!(parse_offset_id("America/Denver"), None);
        assert_eq!(parse_offset_id("+8:0"), None);
    }
}
