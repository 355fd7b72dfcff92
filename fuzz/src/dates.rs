//! Date patterns: compile arbitrary pattern text; when it compiles, format an arbitrary instant
//! in an arbitrary zone and parse arbitrary text without panicking; and when the pattern holds a
//! whole date-time that reads back unambiguously, check that format → parse round-trips.

use chrono::DateTime;
use pollerd::dates::{DatePattern, Zone};

/// Zones with the shapes that matter: fixed, DST, half- and quarter-hour offsets, Java short ids.
const ZONES: &[&str] = &[
    "UTC",
    "GMT",
    "America/Denver",
    "Europe/London",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Australia/Lord_Howe",
    "America/St_Johns",
    "Pacific/Chatham",
    "Europe/Istanbul",
    "-08:00",
    "+0530",
    "EST",
    "IST",
    "PST",
];

/// 1972-01-01 and the end of 9999-12-30 in epoch milliseconds, the round-trip range: four-digit
/// local years in any zone (fixed widths; 9999-12-31 UTC is already 10000 east of Greenwich),
/// and every tzdb offset a whole number of minutes, as offsets are printed (before, local mean
/// times like +05:53:28 lose their seconds in print, in Java too).
const ROUND_TRIP_RANGE: (i64, i64) = (63_072_000_000, 253_402_214_399_999);

/// Input layout (kept simple so seeds can be written by hand): one byte choosing a zone from
/// [`ZONES`] (past its end: `zone_text`), eight bytes of epoch milliseconds (little endian),
/// then UTF-8 `pattern NUL text NUL zone_text`.
struct Input<'a> {
    zone_choice: u8,
    instant_millis: i64,
    pattern: &'a str,
    text: &'a str,
    zone_text: &'a str,
}

impl<'a> Input<'a> {
    fn read(data: &'a [u8]) -> Option<Input<'a>> {
        let (&zone_choice, rest) = data.split_first()?;
        let (millis, rest) = rest.split_first_chunk::<8>()?;
        let mut strings = std::str::from_utf8(rest).ok()?.splitn(3, '\0');
        Some(Input {
            zone_choice,
            instant_millis: i64::from_le_bytes(*millis),
            pattern: strings.next().unwrap_or(""),
            text: strings.next().unwrap_or(""),
            zone_text: strings.next().unwrap_or(""),
        })
    }
}

/// Panics when `data` shows a bug.
pub fn check(data: &[u8]) {
    let Some(input) = Input::read(data) else {
        return;
    };
    let Ok(pattern) = DatePattern::compile(input.pattern) else {
        return;
    };
    let zone = match ZONES.get(usize::from(input.zone_choice)) {
        Some(name) => Zone::parse(name).expect("listed zones parse"),
        None => Zone::parse(input.zone_text).unwrap_or_else(|_| Zone::utc()),
    };
    // Any instant chrono can hold must format.
    if let Some(instant) = DateTime::from_timestamp_millis(input.instant_millis) {
        let _ = pattern.format(instant, &zone);
    }
    let _ = pattern.parse(input.text, &zone);

    let Some(shape) = Shape::of(input.pattern) else {
        return;
    };
    let (low, high) = ROUND_TRIP_RANGE;
    let millis = low + input.instant_millis.rem_euclid(high - low + 1);
    let millis = if shape.has_millis {
        millis
    } else {
        millis - millis.rem_euclid(1000)
    };
    let instant = DateTime::from_timestamp_millis(millis).expect("in range");
    let text = pattern.format(instant, &zone);
    let parsed = pattern.parse(&text, &zone).unwrap_or_else(|e| {
        panic!(
            "{:?} formatted {instant} in {} as {text:?}, which it cannot read back: {e}",
            input.pattern,
            zone.name()
        )
    });
    if shape.has_numeric_offset {
        assert_eq!(
            parsed,
            instant,
            "{:?} in {}: {text:?} read back as another instant",
            input.pattern,
            zone.name()
        );
    } else {
        // Without a numeric offset the text may name an overlap's earlier or later instant;
        // either way the same text must come back out.
        assert_eq!(
            pattern.format(parsed, &zone),
            text,
            "{:?} in {}: {text:?} read back as {parsed}",
            input.pattern,
            zone.name()
        );
    }
}

/// What a pattern prints, when it prints a whole date-time that can be read back.
struct Shape {
    has_millis: bool,
    has_numeric_offset: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum Piece {
    Field(char, usize),
    Literal(char),
}

impl Shape {
    /// `None` when the pattern lacks a part of a date-time, or when its text cannot be read back
    /// unambiguously even by Java: a two-digit year, abutting fields narrower than their values,
    /// or a literal that continues the field before it (a digit after a number, a letter after
    /// a name).
    fn of(pattern: &str) -> Option<Shape> {
        let pieces = pieces(pattern)?;
        let fields: Vec<(char, usize)> = pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Field(letter, count) => Some((*letter, *count)),
                Piece::Literal(_) => None,
            })
            .collect();
        let has = |letter: char| fields.iter().any(|(l, _)| *l == letter);
        let whole = fields.iter().any(|&(l, c)| l == 'y' && c != 2)
            && !fields.iter().any(|&(l, c)| l == 'y' && c == 2)
            && has('M')
            && has('d')
            && (has('H') || has('k') || ((has('h') || has('K')) && has('a')))
            && has('m')
            && has('s');
        if !whole {
            return None;
        }
        for pair in pieces.windows(2) {
            let Piece::Field(letter, count) = pair[0] else {
                continue;
            };
            match pair[1] {
                Piece::Field(next, next_count) if is_numeric(next, next_count) => {
                    if is_numeric(letter, count) && count < natural_width(letter) {
                        return None;
                    }
                    if !is_numeric(letter, count) {
                        // A name or zone followed directly by a number: fine for names, but a
                        // numeric offset would swallow the digits.
                        if matches!(letter, 'Z' | 'X' | 'z') {
                            return None;
                        }
                    }
                }
                Piece::Field(..) => {
                    // Two text fields abutting (e.g. "MMMz") can merge letters.
                    if !is_numeric(letter, count) {
                        return None;
                    }
                }
                Piece::Literal(c) => {
                    let continues = if is_numeric(letter, count) || matches!(letter, 'Z' | 'X') {
                        c.is_ascii_digit() || (matches!(letter, 'z' | 'Z' | 'X') && c == ':')
                    } else {
                        c.is_ascii_alphanumeric() || matches!(letter, 'z') && "+-:".contains(c)
                    };
                    if continues {
                        return None;
                    }
                }
            }
        }
        Some(Shape {
            has_millis: has('S'),
            has_numeric_offset: fields
                .iter()
                .any(|&(l, c)| l == 'Z' || (l == 'X' && c >= 2)),
        })
    }
}

fn is_numeric(letter: char, count: usize) -> bool {
    match letter {
        'M' => count <= 2,
        'y' | 'd' | 'H' | 'h' | 'k' | 'K' | 'm' | 's' | 'S' | 'D' | 'u' => true,
        _ => false,
    }
}

/// The most digits a field's value has (four-digit years).
fn natural_width(letter: char) -> usize {
    match letter {
        'y' => 4,
        'S' | 'D' => 3,
        'u' => 1,
        _ => 2,
    }
}

/// Letter runs and literal characters, with quotes undone; `None` if the quotes do not close.
fn pieces(pattern: &str) -> Option<Vec<Piece>> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            if chars.get(i + 1) == Some(&'\'') {
                out.push(Piece::Literal('\''));
                i += 2;
                continue;
            }
            i += 1;
            loop {
                match chars.get(i)? {
                    '\'' if chars.get(i + 1) == Some(&'\'') => {
                        out.push(Piece::Literal('\''));
                        i += 2;
                    }
                    '\'' => {
                        i += 1;
                        break;
                    }
                    other => {
                        out.push(Piece::Literal(*other));
                        i += 1;
                    }
                }
            }
        } else if c.is_ascii_alphabetic() {
            let start = i;
            while chars.get(i) == Some(&c) {
                i += 1;
            }
            out.push(Piece::Field(c, i - start));
        } else {
            out.push(Piece::Literal(c));
            i += 1;
        }
    }
    Some(out)
}
