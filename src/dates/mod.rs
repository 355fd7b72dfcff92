//! Java `SimpleDateFormat` patterns (Locale.US) and time zones, as Cloud Elements used them in
//! `*DateFormat`, `*DateTimezone` and URL templates.
//!
//! Design: a pattern is tokenized once ([`DatePattern::compile`]) into literals and letter runs
//! (`compile`), and formatting (`format`) and parsing (`parse`, then `resolve`) walk those tokens;
//! nothing is translated into strftime, so Java's quirks stay explicit: `S` is milliseconds as a
//! number, `yy` parses with Java's 80-years-back century window, abutting numeric fields parse by
//! width, `X` prints `Z` at offset zero while `Z` refuses a bare `"Z"`. [`Zone`] (`zone`) adds
//! Java's zone spellings (short ids, `GMT±hh:mm`, bare offsets) on top of chrono-tz.
//!
//! Choices where Java's answer is not obvious:
//! - A local time in a DST gap takes the offset before the gap (02:30 → 03:30 daylight time), and
//!   one in an overlap takes the offset after the transition (the later instant), as
//!   `java.util.Calendar` does.
//! - Parsing is strict where Java is lenient by default: out-of-range fields (month 13, day 31
//!   in April, `S` above 999) and trailing text are errors instead of silently rolled over.
//! - Day names (`E`) and day numbers (`u`) are read but do not decide the date, as in Java when a
//!   day of the month is also present.
//! - `X` text carries whole hours only; when the pattern's zone explains the missing minutes
//!   (+05 under Asia/Kolkata is +05:30), the zone's offset is used so text reads back as the
//!   instant that was printed.

mod compile;
mod format;
mod java_zone_names;
mod names;
mod parse;
mod resolve;
mod zone;

use std::sync::{Arc, LazyLock};

use chrono::{DateTime, Utc};

use crate::intern::Interner;

pub use zone::{Zone, ZoneError};

/// A compiled date pattern, or one of the pseudo formats `milliseconds` / `seconds`. Clones
/// share one compiled copy, and so do patterns compiled from the same text ([`crate::intern`]).
#[derive(Clone, Debug)]
pub struct DatePattern {
    compiled: Arc<Compiled>,
}

#[derive(Debug)]
struct Compiled {
    source: String,
    kind: Kind,
}

static COMPILED: LazyLock<Interner<Compiled>> = LazyLock::new(Interner::default);

#[derive(Clone, Debug)]
enum Kind {
    EpochMillis,
    EpochSeconds,
    Tokens(Vec<compile::Token>),
}

/// A pattern that cannot be compiled.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message} at position {position} of \"{pattern}\"")]
pub struct PatternError {
    /// 1-based character column in the pattern.
    pub position: usize,
    pub message: String,
    pub pattern: String,
}

/// Text that does not match a pattern.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("\"{text}\" does not match \"{pattern}\": {reason}")]
pub struct DateParseError {
    text: String,
    pattern: String,
    reason: String,
}

impl DateParseError {
    /// Why the text does not match, without the text and pattern.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl DatePattern {
    pub fn compile(pattern: &str) -> Result<DatePattern, PatternError> {
        let compiled = COMPILED.get_or_compile(pattern, || {
            let kind = match pattern.trim() {
                name if name.eq_ignore_ascii_case("milliseconds") => Kind::EpochMillis,
                name if name.eq_ignore_ascii_case("seconds") => Kind::EpochSeconds,
                _ => Kind::Tokens(compile::tokenize(pattern)?),
            };
            Ok(Compiled {
                source: pattern.to_string(),
                kind,
            })
        })?;
        Ok(DatePattern { compiled })
    }

    /// The pattern as written.
    pub fn source(&self) -> &str {
        &self.compiled.source
    }

    pub fn format(&self, instant: DateTime<Utc>, zone: &Zone) -> String {
        match &self.compiled.kind {
            Kind::EpochMillis => instant.timestamp_millis().to_string(),
            Kind::EpochSeconds => instant.timestamp().to_string(),
            Kind::Tokens(tokens) => format::format_tokens(tokens, instant, zone),
        }
    }

    /// Reads `text` written with this pattern; a text without a zone is read in `zone`.
    pub fn parse(&self, text: &str, zone: &Zone) -> Result<DateTime<Utc>, DateParseError> {
        self.parse_at(text, zone, Utc::now())
    }

    /// [`DatePattern::parse`] with the "now" that Java's two-digit-year window hangs on.
    pub(crate) fn parse_at(
        &self,
        text: &str,
        zone: &Zone,
        now: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, DateParseError> {
        let parsed = match &self.compiled.kind {
            Kind::EpochMillis => parse::parse_epoch_millis(text),
            Kind::EpochSeconds => parse::parse_epoch_seconds(text),
            Kind::Tokens(tokens) => parse::parse_tokens(tokens, text, zone, now),
        };
        parsed.map_err(|reason| DateParseError {
            text: text.to_string(),
            pattern: self.compiled.source.clone(),
            reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    #[test]
    fn two_digit_years_fall_within_80_years_before_and_20_after_now() {
        let pattern = DatePattern::compile("yyMMdd").unwrap();
        let now = utc(2026, 11, 23, 2, 0, 0);
        let gmt = Zone::utc();
        let year_of =
            |text: &str| chrono::Datelike::year(&pattern.parse_at(text, &gmt, now).unwrap());
        assert_eq!(year_of("470101"), 1947);
        assert_eq!(year_of("451231"), 2045);
        // 46 is the start year's digits: dates before 1946-11-23 belong to 2046.
        assert_eq!(year_of("461124"), 1946);
        assert_eq!(year_of("461122"), 2046);
    }

    #[test]
    fn four_y_letters_keep_a_two_digit_year_literal() {
        let pattern = DatePattern::compile("yyyy-MM-dd").unwrap();
        let parsed = pattern.parse("24-03-10", &Zone::utc()).unwrap();
        assert_eq!(parsed, utc(24, 3, 10, 0, 0, 0));
    }
}
