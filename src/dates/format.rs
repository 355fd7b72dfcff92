//! Formatting compiled tokens the way Java's `SimpleDateFormat` (Locale.US) prints them.

use std::fmt::Write;

use chrono::{DateTime, Datelike, NaiveDateTime, TimeDelta, Timelike, Utc};

use super::Zone;
use super::compile::{Field, Token};
use super::names;
use super::zone::{NameStyle, ZoneOffset};

pub(crate) fn format_tokens(tokens: &[Token], instant: DateTime<Utc>, zone: &Zone) -> String {
    let offset = zone.offset_at(instant);
    let local = instant
        .naive_utc()
        .checked_add_signed(TimeDelta::seconds(i64::from(offset.seconds)))
        .unwrap_or_else(|| instant.naive_utc());
    let mut out = String::new();
    for token in tokens {
        match token {
            Token::Literal(text) => out.push_str(text),
            Token::Field(field) => format_field(&mut out, *field, &local, zone, offset),
        }
    }
    out
}

fn format_field(
    out: &mut String,
    field: Field,
    local: &NaiveDateTime,
    zone: &Zone,
    offset: ZoneOffset,
) {
    let count = field.count;
    let offset_seconds = offset.seconds;
    let hour = local.hour();
    match field.letter {
        // Java prints the last two digits for `yy`, the zero-padded year for any other count.
        'y' if count == 2 => pad(out, i64::from(local.year().rem_euclid(100)), 2),
        'y' => pad(out, i64::from(local.year()), count),
        'M' if count >= 4 => out.push_str(names::MONTHS_LONG[local.month0() as usize]),
        'M' if count == 3 => out.push_str(names::MONTHS_SHORT[local.month0() as usize]),
        'M' => pad(out, i64::from(local.month()), count),
        'd' => pad(out, i64::from(local.day()), count),
        'H' => pad(out, i64::from(hour), count),
        'k' => pad(out, i64::from(if hour == 0 { 24 } else { hour }), count),
        'K' => pad(out, i64::from(hour % 12), count),
        'h' => pad(
            out,
            i64::from(if hour % 12 == 0 { 12 } else { hour % 12 }),
            count,
        ),
        'm' => pad(out, i64::from(local.minute()), count),
        's' => pad(out, i64::from(local.second()), count),
        // S is milliseconds as a number, so SSSSSS prints 235 ms as "000235".
        'S' => pad(out, i64::from(local.nanosecond() / 1_000_000 % 1000), count),
        'a' => out.push_str(names::AM_PM[usize::from(hour >= 12)]),
        'E' => {
            let day = local.weekday().num_days_from_monday() as usize;
            out.push_str(if count >= 4 {
                names::DAYS_LONG[day]
            } else {
                names::DAYS_SHORT[day]
            });
        }
        'u' => pad(out, i64::from(local.weekday().number_from_monday()), count),
        'D' => pad(out, i64::from(local.ordinal()), count),
        'z' if count >= 4 => out.push_str(&zone.display_name(offset, NameStyle::Long)),
        'z' => out.push_str(&zone.display_name(offset, NameStyle::Short)),
        'Z' => push_offset(out, offset_seconds, true, ""),
        'X' if offset_seconds == 0 => out.push('Z'),
        'X' if count == 1 => push_offset(out, offset_seconds, false, ""),
        'X' if count == 2 => push_offset(out, offset_seconds, true, ""),
        'X' => push_offset(out, offset_seconds, true, ":"),
        // The tokenizer lets no other letter through.
        _ => {}
    }
}

fn pad(out: &mut String, value: i64, width: usize) {
    let _ = write!(out, "{value:0width$}");
}

/// `-07`, `-0700` or `-07:00`: whole hours and minutes, seconds dropped as Java does.
fn push_offset(out: &mut String, offset_seconds: i32, with_minutes: bool, separator: &str) {
    let sign = if offset_seconds < 0 { '-' } else { '+' };
    let minutes = offset_seconds.unsigned_abs() / 60;
    let _ = write!(out, "{sign}{:02}", minutes / 60);
    if with_minutes {
        let _ = write!(out, "{separator}{:02}", minutes % 60);
    }
}
