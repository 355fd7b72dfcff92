//! Time zones as the operator writes them, with the offset rules Java applies.

use chrono::{DateTime, LocalResult, NaiveDateTime, Offset, TimeDelta, TimeZone, Utc};
use chrono_tz::{GapInfo, OffsetComponents, OffsetName, TZ_VARIANTS, Tz};

use super::java_zone_names::{JavaZoneNames, java_zone_names};
use super::names;

/// A time zone from the configuration: an IANA region, or a fixed offset.
#[derive(Clone, Debug, PartialEq)]
pub struct Zone {
    name: String,
    rules: Rules,
    /// What Java's `z`/`zzzz` print for this zone; without names Java prints `GMT±hh:mm`.
    java_names: Option<&'static JavaZoneNames>,
}

#[derive(Clone, Debug, PartialEq)]
enum Rules {
    Region(Tz),
    Fixed { offset_seconds: i32 },
}

/// A zone at one instant: its offset, and whether Java calls that daylight time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct ZoneOffset {
    /// Seconds east of UTC.
    pub seconds: i32,
    pub daylight: bool,
}

/// How `z` prints a zone: `z`..`zzz` short (`JST`), `zzzz` and more long (`Japan Standard Time`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum NameStyle {
    Short,
    Long,
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
        let fixed = |offset_seconds| Rules::Fixed { offset_seconds };
        // Names are looked up by the id Java would be given: a short id (`AGT`) has names of its
        // own, apart from the region it stands for.
        let (rules, java_names) = if text.eq_ignore_ascii_case("GMT") {
            (fixed(0), java_zone_names("GMT"))
        } else if text.eq_ignore_ascii_case("UTC") {
            (fixed(0), java_zone_names("UTC"))
        } else if let Some(&(id, offset)) = names::JAVA_FIXED_IDS.iter().find(|(id, _)| *id == text)
        {
            (fixed(offset), java_zone_names(id))
        } else if let Some(tz) = java_short_id(text) {
            (Rules::Region(tz), java_zone_names(text))
        } else if let Some(offset) = parse_offset_id(text) {
            let offset = offset.ok_or_else(|| ZoneError::OffsetOutOfRange {
                input: s.to_string(),
            })?;
            (fixed(offset), None)
        } else if let Some(tz) = iana_zone(text) {
            (Rules::Region(tz), java_zone_names(tz.name()))
        } else {
            return Err(ZoneError::Unknown {
                input: s.to_string(),
            });
        };
        Ok(Zone {
            name: s.to_string(),
            rules,
            java_names,
        })
    }

    pub fn utc() -> Zone {
        Zone {
            name: "UTC".to_string(),
            rules: Rules::Fixed { offset_seconds: 0 },
            java_names: java_zone_names("UTC"),
        }
    }

    /// The zone as the operator wrote it, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The offset in force at `instant`, and whether Java counts it as daylight time.
    pub(crate) fn offset_at(&self, instant: DateTime<Utc>) -> ZoneOffset {
        match &self.rules {
            Rules::Fixed { offset_seconds } => ZoneOffset {
                seconds: *offset_seconds,
                daylight: false,
            },
            Rules::Region(tz) => {
                let offset = tz.offset_from_utc_datetime(&instant.naive_utc());
                let seconds = offset.fix().local_minus_utc();
                let daylight = match names::negative_dst_zone(tz.name()) {
                    Some(rearguard) => rearguard.daylight(instant.timestamp(), seconds),
                    None => offset.dst_offset() > TimeDelta::zero(),
                };
                ZoneOffset { seconds, daylight }
            }
        }
    }

    /// What Java's `z` (short) or `zzzz` (long) prints for this zone at `offset`: Java's name,
    /// or `GMT±hh:mm` where Java has none.
    pub(crate) fn display_name(&self, offset: ZoneOffset, style: NameStyle) -> String {
        let Some(&(_, short_standard, short_daylight, long_standard, long_daylight)) =
            self.java_names
        else {
            return names::gmt_offset_name(offset.seconds);
        };
        let name = match (style, offset.daylight) {
            (NameStyle::Short, false) => short_standard,
            (NameStyle::Short, true) => short_daylight,
            (NameStyle::Long, false) => long_standard,
            (NameStyle::Long, true) => long_daylight,
        };
        name.to_string()
    }

    /// Java's names for this zone (short and long, standard and daylight), for reading `z` text.
    pub(crate) fn java_names(&self) -> Vec<&'static str> {
        self.java_names
            .map(|&(_, a, b, c, d)| vec![a, b, c, d])
            .unwrap_or_default()
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

    /// The offset this zone uses under the name `abbr` (Java's short or long name, or a tzdata
    /// abbreviation) around the local time `local` (so "MST" in America/Denver means -07:00
    /// even in July, as Java reads it).
    pub(crate) fn offset_for_abbreviation(&self, abbr: &str, local: NaiveDateTime) -> Option<i32> {
        let java_daylight = self.java_daylight_named(abbr);
        let tz = match &self.rules {
            Rules::Fixed { offset_seconds } => {
                return java_daylight.is_some().then_some(*offset_seconds);
            }
            Rules::Region(tz) => tz,
        };
        let around = local
            .and_utc()
            .checked_sub_signed(TimeDelta::seconds(i64::from(self.resolve_local(local))))?;
        [0, -91, 91, -182, 182].into_iter().find_map(|days| {
            let instant = around.checked_add_signed(TimeDelta::days(days))?;
            let offset = self.offset_at(instant);
            let matches = match java_daylight {
                Some(JavaNameKind::Either) => true,
                Some(JavaNameKind::Daylight(daylight)) => offset.daylight == daylight,
                None => tz
                    .offset_from_utc_datetime(&instant.naive_utc())
                    .abbreviation()
                    .is_some_and(|name| name.eq_ignore_ascii_case(abbr)),
            };
            matches.then_some(offset.seconds)
        })
    }

    /// Whether `name` is one of Java's names for this zone, and for which time.
    fn java_daylight_named(&self, name: &str) -> Option<JavaNameKind> {
        let &(_, short_standard, short_daylight, long_standard, long_daylight) = self.java_names?;
        let is = |candidate: &str| candidate.eq_ignore_ascii_case(name);
        match (
            is(short_standard) || is(long_standard),
            is(short_daylight) || is(long_daylight),
        ) {
            (true, true) => Some(JavaNameKind::Either),
            (true, false) => Some(JavaNameKind::Daylight(false)),
            (false, true) => Some(JavaNameKind::Daylight(true)),
            (false, false) => None,
        }
    }
}

/// A Java zone name names standard time, daylight time, or both (`GMT` for Africa/Abidjan).
#[derive(Clone, Copy)]
enum JavaNameKind {
    Either,
    Daylight(bool),
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
