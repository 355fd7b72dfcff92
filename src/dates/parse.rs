//! Reading text with compiled tokens into raw field values (see `resolve` for turning them into
//! an instant). Errors are plain reasons; `DatePattern::parse` adds the text and the pattern.

use chrono::{DateTime, Utc};

use super::Zone;
use super::compile::{Field, Token};
use super::names;
use super::resolve::{Fields, ParsedOffset, Year, resolve};

/// At most this many digits are read for a numeric field that does not abut another one.
const MAX_GREEDY_DIGITS: usize = 9;

pub(crate) fn parse_tokens(
    tokens: &[Token],
    text: &str,
    zone: &Zone,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, String> {
    let mut cursor = Cursor { text, pos: 0 };
    let mut fields = Fields::default();
    for (index, token) in tokens.iter().enumerate() {
        match token {
            Token::Literal(literal) => cursor.expect_literal(literal)?,
            Token::Field(field) => {
                let abutting =
                    matches!(tokens.get(index + 1), Some(Token::Field(next)) if next.is_numeric());
                // Java skips spaces and tabs in the text before every field.
                cursor.skip_blanks();
                parse_field(&mut cursor, *field, abutting, zone, &mut fields)?;
            }
        }
    }
    if !cursor.rest().is_empty() {
        return Err(format!(
            "unexpected text \"{}\" at character {}",
            cursor.rest(),
            cursor.column()
        ));
    }
    resolve(&fields, zone, now)
}

/// Epoch milliseconds as an integer (surrounding blanks tolerated).
pub(crate) fn parse_epoch_millis(text: &str) -> Result<DateTime<Utc>, String> {
    let millis: i64 = text
        .trim()
        .parse()
        .map_err(|_| "expected epoch milliseconds (an integer)".to_string())?;
    DateTime::from_timestamp_millis(millis).ok_or_else(|| format!("{millis} ms is out of range"))
}

/// Epoch seconds as an integer or a decimal fraction (`1710064800.5`), kept to the millisecond.
pub(crate) fn parse_epoch_seconds(text: &str) -> Result<DateTime<Utc>, String> {
    let trimmed = text.trim();
    let not_seconds = || "expected epoch seconds (a number like 1710064800 or 1710064800.5)";
    let (whole, fraction) = trimmed.split_once('.').unwrap_or((trimmed, ""));
    let negative = whole.starts_with('-');
    let digits = whole.strip_prefix(['-', '+']).unwrap_or(whole);
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if digits.is_empty() || !all_digits(digits) || !all_digits(fraction) {
        return Err(not_seconds().to_string());
    }
    let seconds: i64 = digits.parse().map_err(|_| not_seconds().to_string())?;
    let millis_text: String = fraction.chars().chain("000".chars()).take(3).collect();
    let millis: i64 = millis_text.parse().unwrap_or(0);
    let total = seconds
        .checked_mul(1000)
        .and_then(|ms| ms.checked_add(millis))
        .map(|ms| if negative { -ms } else { ms });
    total
        .and_then(DateTime::from_timestamp_millis)
        .ok_or_else(|| format!("{trimmed} seconds is out of range"))
}

struct Cursor<'a> {
    text: &'a str,
    /// Byte offset; always on a char boundary because only whole chars are consumed.
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    /// 1-based character column of the cursor, for messages.
    fn column(&self) -> usize {
        self.text[..self.pos].chars().count() + 1
    }

    fn found(&self) -> String {
        match self.rest().chars().next() {
            Some(c) => format!("found \"{c}\""),
            None => "found the end of the text".to_string(),
        }
    }

    fn skip_blanks(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start_matches([' ', '\t']).len();
    }

    fn expect_literal(&mut self, literal: &str) -> Result<(), String> {
        if self.rest().starts_with(literal) {
            self.pos += literal.len();
            Ok(())
        } else {
            Err(format!(
                "expected \"{literal}\" at character {}, {}",
                self.column(),
                self.found()
            ))
        }
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    /// Up to `max_digits` ASCII digits; returns the value and how many digits were read.
    fn digits(&mut self, max_digits: usize) -> Option<(u32, usize)> {
        let count = self
            .rest()
            .bytes()
            .take(max_digits)
            .take_while(u8::is_ascii_digit)
            .count();
        if count == 0 {
            return None;
        }
        let value = self.rest()[..count].parse().ok()?;
        self.pos += count;
        Some((value, count))
    }

    /// Exactly `count` digits, for zone offsets.
    fn exact_digits(&mut self, count: usize) -> Option<u32> {
        let start = self.pos;
        match self.digits(count) {
            Some((value, read)) if read == count => Some(value),
            _ => {
                self.pos = start;
                None
            }
        }
    }

    /// The longest of `names` (case-insensitive) at the cursor; returns its index in `names`.
    fn name(&mut self, names: &[&str]) -> Option<usize> {
        let rest = self.rest().as_bytes();
        let (index, len) = names
            .iter()
            .enumerate()
            .filter(|(_, name)| {
                rest.len() >= name.len() && rest[..name.len()].eq_ignore_ascii_case(name.as_bytes())
            })
            .map(|(index, name)| (index, name.len()))
            .max_by_key(|&(_, len)| len)?;
        self.pos += len;
        Some(index)
    }
}

/// Long on purpose: one arm per Java pattern letter, as SimpleDateFormat's own table reads;
/// each arm is a few lines and the table is checked against 1,088 values Java printed.
fn parse_field(
    cursor: &mut Cursor,
    field: Field,
    abutting: bool,
    zone: &Zone,
    fields: &mut Fields,
) -> Result<(), String> {
    // A field wider than the greedy limit prints that many digits (`kkkkkkkkkkkk` pads to 12),
    // so it reads that many back.
    let width = if abutting {
        field.count
    } else {
        MAX_GREEDY_DIGITS.max(field.count)
    };
    let number = |cursor: &mut Cursor, what: &str, range: std::ops::RangeInclusive<u32>| {
        let (value, digits) = cursor
            .digits(width)
            .ok_or_else(|| expected(cursor, field, what))?;
        if range.contains(&value) {
            Ok((value, digits))
        } else {
            Err(format!("{what} {value} out of range"))
        }
    };
    match field.letter {
        'y' => {
            let (value, digits) = number(cursor, "year", 0..=999_999_999)?;
            fields.year = Some(Year {
                value: value as i32,
                // Java applies its century window only to exactly two digits read by y or yy.
                two_digit: field.count <= 2 && digits == 2,
            });
        }
        'M' if field.count >= 3 => {
            let mut all_names = names::MONTHS_LONG.to_vec();
            all_names.extend(names::MONTHS_SHORT);
            let index = cursor
                .name(&all_names)
                .ok_or_else(|| expected(cursor, field, "a month name"))?;
            fields.month = Some(index as u32 % 12 + 1);
        }
        'M' => fields.month = Some(number(cursor, "month", 1..=12)?.0),
        'd' => fields.day = Some(number(cursor, "day", 1..=31)?.0),
        'H' => fields.hour_of_day = Some(number(cursor, "hour", 0..=23)?.0),
        'k' => fields.hour_of_day = Some(number(cursor, "hour", 1..=24)?.0 % 24),
        'K' => fields.hour_of_half_day = Some(number(cursor, "hour", 0..=11)?.0),
        'h' => fields.hour_of_half_day = Some(number(cursor, "hour", 1..=12)?.0 % 12),
        'm' => fields.minute = Some(number(cursor, "minute", 0..=59)?.0),
        's' => fields.second = Some(number(cursor, "second", 0..=59)?.0),
        'S' => fields.millisecond = Some(number(cursor, "millisecond", 0..=999)?.0),
        'a' => {
            let index = cursor
                .name(&names::AM_PM)
                .ok_or_else(|| expected(cursor, field, "AM or PM"))?;
            fields.pm = Some(index == 1);
        }
        // Day names and numbers are checked for form but do not decide the date, as in Java
        // where the day of the month set later in the pattern wins.
        'E' => {
            let mut all_names = names::DAYS_LONG.to_vec();
            all_names.extend(names::DAYS_SHORT);
            cursor
                .name(&all_names)
                .ok_or_else(|| expected(cursor, field, "a day name"))?;
        }
        'u' => {
            number(cursor, "day number of week", 1..=7)?;
        }
        'D' => fields.day_of_year = Some(number(cursor, "day of year", 1..=366)?.0),
        'z' | 'Z' => {
            // The pattern zone's own Java names first: long ones hold spaces ("Japan Standard
            // Time") and short ones need not be common abbreviations ("CHADT").
            // A name followed by a sign is the start of an offset ("GMT-07:00").
            let own_names = zone.java_names();
            let start = cursor.pos;
            let own = cursor
                .name(&own_names)
                .filter(|_| !matches!(cursor.peek(), Some('+' | '-')));
            let offset = match own {
                Some(index) => ParsedOffset::Name(own_names[index].to_string()),
                None => {
                    cursor.pos = start;
                    general_zone(cursor).ok_or_else(|| expected(cursor, field, "a time zone"))??
                }
            };
            fields.offset = Some(offset);
        }
        'X' => {
            let offset = iso_zone(cursor, field.count)
                .ok_or_else(|| expected(cursor, field, "an ISO 8601 offset"))?;
            fields.offset = Some(offset);
        }
        other => return Err(format!("pattern letter '{other}' cannot be parsed")),
    }
    Ok(())
}

fn expected(cursor: &Cursor, field: Field, what: &str) -> String {
    format!(
        "expected {what} ({}) at character {}, {}",
        field.text(),
        cursor.column(),
        cursor.found()
    )
}

/// Java's `z`/`Z` reading: `-0700`, `GMT`, `GMT-07:00`, `GMT-7`, or a zone name (resolved
/// later, once the local time is known). `None` when nothing zone-like is at the cursor.
fn general_zone(cursor: &mut Cursor) -> Option<Result<ParsedOffset, String>> {
    let start = cursor.pos;
    let column = cursor.column();
    if let Some(sign) = sign_at(cursor) {
        let offset = cursor.exact_digits(2).zip(cursor.exact_digits(2));
        return Some(hours_minutes(sign, offset, column).map(ParsedOffset::Fixed));
    }
    let rest = cursor.rest().as_bytes();
    let gmt = rest.len() >= 3
        && (rest[..3].eq_ignore_ascii_case(b"GMT") || rest[..3].eq_ignore_ascii_case(b"UTC"));
    if gmt {
        cursor.pos += 3;
        let Some(sign) = sign_at(cursor) else {
            return Some(Ok(ParsedOffset::Fixed(0)));
        };
        let hours = cursor.digits(2).map(|(value, _)| value);
        let minutes = match cursor.peek() {
            Some(':') => {
                cursor.pos += 1;
                cursor.exact_digits(2)
            }
            Some(c) if c.is_ascii_digit() => cursor.exact_digits(2),
            _ => Some(0),
        };
        return Some(hours_minutes(sign, hours.zip(minutes), column).map(ParsedOffset::Fixed));
    }
    let letters = cursor
        .rest()
        .bytes()
        .take_while(u8::is_ascii_alphabetic)
        .count();
    if letters == 0 {
        cursor.pos = start;
        return None;
    }
    let name = cursor.rest()[..letters].to_string();
    cursor.pos += letters;
    Some(Ok(ParsedOffset::Name(name)))
}

/// Java's `X` reading: `Z`, or `±hh` / `±hhmm` / `±hh:mm` for X / XX / XXX.
fn iso_zone(cursor: &mut Cursor, count: usize) -> Option<ParsedOffset> {
    if cursor.peek() == Some('Z') {
        cursor.pos += 1;
        return Some(ParsedOffset::Fixed(0));
    }
    let sign = sign_at(cursor)?;
    let hours = cursor.exact_digits(2).filter(|h| *h <= 23)?;
    if count == 1 {
        return Some(ParsedOffset::WholeHours { sign, hours });
    }
    if count == 3 {
        if cursor.peek() != Some(':') {
            return None;
        }
        cursor.pos += 1;
    }
    let minutes = cursor.exact_digits(2).filter(|m| *m <= 59)?;
    Some(ParsedOffset::Fixed(
        sign * (hours * 3600 + minutes * 60) as i32,
    ))
}

fn sign_at(cursor: &mut Cursor) -> Option<i32> {
    let sign = match cursor.peek()? {
        '+' => 1,
        '-' => -1,
        _ => return None,
    };
    cursor.pos += 1;
    Some(sign)
}

fn hours_minutes(sign: i32, parts: Option<(u32, u32)>, column: usize) -> Result<i32, String> {
    match parts {
        Some((hours, minutes)) if hours <= 23 && minutes <= 59 => {
            Ok(sign * (hours * 3600 + minutes * 60) as i32)
        }
        Some((hours, minutes)) => Err(format!(
            "time zone offset {hours:02}:{minutes:02} at character {column} out of range"
        )),
        None => Err(format!(
            "malformed time zone offset at character {column}: use -0700 or GMT-07:00"
        )),
    }
}
