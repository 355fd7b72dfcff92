//! The date engine against what Java 17's `SimpleDateFormat` (Locale.US) prints: the fixture
//! table `tests/data/java-dates.tsv`, the `SimpleDateFormat` Javadoc examples, and Java's
//! documented parsing behaviour.

use crate::support::java_dates::java_rows;
use chrono::{DateTime, TimeDelta, Utc};
use pollerd::dates::{DatePattern, Zone};

fn at_ms(epoch_ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(epoch_ms).unwrap()
}

fn zone(name: &str) -> Zone {
    Zone::parse(name).unwrap_or_else(|e| panic!("{e}"))
}

fn pattern(text: &str) -> DatePattern {
    DatePattern::compile(text).unwrap_or_else(|e| panic!("{e}"))
}

/// Pattern letters outside quoted text (the test's own reading, independent of the engine).
fn letters_outside_quotes(pattern: &str) -> String {
    let mut quoted = false;
    pattern
        .chars()
        .filter(|&c| {
            if c == '\'' {
                quoted = !quoted;
            }
            !quoted && c.is_ascii_alphabetic()
        })
        .collect()
}

#[test]
fn every_java_row_formats_exactly() {
    let rows = java_rows();
    assert_eq!(rows.len(), 1088, "the fixture holds 1,088 rows");
    let mismatches: Vec<String> = rows
        .iter()
        .filter_map(|row| {
            let ours = pattern(&row.pattern).format(at_ms(row.epoch_ms), &zone(&row.zone));
            (ours != row.formatted).then(|| {
                format!(
                    "line {}: {:?} in {} at {}: Java {:?}, ours {:?}",
                    row.line, row.pattern, row.zone, row.epoch_ms, row.formatted, ours
                )
            })
        })
        .collect();
    assert!(
        mismatches.is_empty(),
        "{} of {} rows differ:\n{}",
        mismatches.len(),
        rows.len(),
        mismatches.join("\n")
    );
}

#[test]
fn every_whole_date_and_time_reads_back_to_the_precision_its_pattern_keeps() {
    let mut checked = 0;
    let mut failures = Vec::new();
    for row in java_rows() {
        let letters = letters_outside_quotes(&row.pattern);
        let whole = ["y", "M", "d", "m"].iter().all(|l| letters.contains(l))
            && letters.contains(['H', 'h', 'k', 'K']);
        if !whole {
            continue;
        }
        let precision_ms = if letters.contains('S') {
            1
        } else if letters.contains('s') {
            1_000
        } else {
            60_000
        };
        let expected = at_ms(row.epoch_ms.div_euclid(precision_ms) * precision_ms);
        checked += 1;
        match pattern(&row.pattern).parse(&row.formatted, &zone(&row.zone)) {
            Ok(parsed) if parsed == expected => {}
            Ok(parsed) => failures.push(format!(
                "line {}: {:?} read as {parsed}, expected {expected}",
                row.line, row.formatted
            )),
            Err(error) => failures.push(format!("line {}: {error}", row.line)),
        }
    }
    // 13 of the 17 patterns hold a whole date and time; each appears 64 times.
    assert_eq!(checked, 13 * 64);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Javadoc of `java.text.SimpleDateFormat`: 2001-07-04 12:08:56.235 in U.S. Pacific time.
#[test]
fn javadoc_examples_print_as_documented() {
    let instant = at_ms(994_273_736_235);
    let pacific = zone("America/Los_Angeles");
    let examples = [
        ("EEE, MMM d, ''yy", "Wed, Jul 4, '01"),
        ("h:mm a", "12:08 PM"),
        ("K:mm a, z", "0:08 PM, PDT"),
        (
            "EEE, d MMM yyyy HH:mm:ss Z",
            "Wed, 4 Jul 2001 12:08:56 -0700",
        ),
        ("yyMMddHHmmssZ", "010704120856-0700"),
        ("yyyy-MM-dd'T'HH:mm:ss.SSSZ", "2001-07-04T12:08:56.235-0700"),
        (
            "yyyy-MM-dd'T'HH:mm:ss.SSSXXX",
            "2001-07-04T12:08:56.235-07:00",
        ),
    ];
    for (text, expected) in examples {
        assert_eq!(pattern(text).format(instant, &pacific), expected, "{text}");
    }
    let iso = pattern("yyyy-MM-dd'T'HH:mm:ss.SSSXXX");
    assert_eq!(
        iso.parse("2001-07-04T12:08:56.235-07:00", &Zone::utc())
            .unwrap(),
        instant
    );
    let compact = pattern("yyMMddHHmmssZ");
    let seconds = at_ms(994_273_736_000);
    assert_eq!(
        compact.parse("010704120856-0700", &Zone::utc()).unwrap(),
        seconds
    );
}

/// (pattern, zone, epoch ms, Java's text), copied from java-dates.tsv.
const NAMED_JAVA_VALUES: [(&str, &str, i64, &str); 14] = [
    (
        "yyyy-MM-dd'T'HH:mm:ss'Z'",
        "GMT",
        994248536235,
        "2001-07-04T12:08:56Z",
    ),
    (
        "yyyy-MM-dd'T'HH:mm:ss.SSSXXX",
        "America/Denver",
        994248536235,
        "2001-07-04T06:08:56.235-06:00",
    ),
    (
        "yyyy-MM-dd'T'HH:mm:ss.SSSXXX",
        "Asia/Kolkata",
        994248536235,
        "2001-07-04T17:38:56.235+05:30",
    ),
    (
        "yyyy-MM-dd'T'HH:mm:ssXXX",
        "UTC",
        994248536235,
        "2001-07-04T12:08:56Z",
    ),
    (
        "EEE, dd MMM yyyy HH:mm:ss Z",
        "America/Denver",
        0,
        "Wed, 31 Dec 1969 17:00:00 -0700",
    ),
    (
        "EEE, dd MMM yyyy HH:mm:ss Z",
        "Australia/Adelaide",
        1710064800000,
        "Sun, 10 Mar 2024 20:30:00 +1030",
    ),
    (
        "MM/dd/yyyy HH:mm:ss",
        "-08:00",
        1730613600000,
        "11/02/2024 22:00:00",
    ),
    (
        "yyyy-MM-dd HH:mm:ss",
        "Asia/Kolkata",
        994248536235,
        "2001-07-04 17:38:56",
    ),
    (
        "yyyy-MM-dd'T'HH:mmz",
        "America/Denver",
        994248536235,
        "2001-07-04T06:08MDT",
    ),
    (
        "yyyy-MM-dd'T'HH:mmz",
        "-08:00",
        0,
        "1969-12-31T16:00GMT-08:00",
    ),
    (
        "yyyy-MM-dd'T'HH:mmz",
        "+06:00",
        0,
        "1970-01-01T06:00GMT+06:00",
    ),
    (
        "yyyy.MM.dd 'at' HH:mm:ss ''",
        "America/Denver",
        994248536235,
        "2001.07.04 at 06:08:56 '",
    ),
    ("hh:mm:ss a", "America/Denver", 0, "05:00:00 PM"),
    (
        "h 'o''clock' a, EEEE d MMMM yy",
        "GMT",
        1735689599999,
        "11 o'clock PM, Tuesday 31 December 24",
    ),
];

#[test]
fn named_patterns_print_what_java_prints_and_read_back() {
    for (text, zone_name, epoch_ms, expected) in NAMED_JAVA_VALUES {
        let compiled = pattern(text);
        let zone = zone(zone_name);
        assert_eq!(
            compiled.format(at_ms(epoch_ms), &zone),
            expected,
            "{text} in {zone_name}"
        );
        let parsed = compiled
            .parse(expected, &zone)
            .unwrap_or_else(|e| panic!("{e}"));
        // What Java prints in each text, read back: "05:00:00 PM" keeps only a time of day.
        let printed = compiled.format(parsed, &zone);
        assert_eq!(printed, expected, "{text} in {zone_name} read back");
    }
}

#[test]
fn hh_with_a_reads_twelve_oclock_as_midnight_and_noon() {
    let clock = pattern("yyyy-MM-dd hh:mm a");
    let gmt = zone("GMT");
    let midnight = clock.parse("1970-01-01 12:00 AM", &gmt).unwrap();
    let noon = clock.parse("1970-01-01 12:00 pm", &gmt).unwrap();
    assert_eq!(midnight, at_ms(0));
    assert_eq!(noon, at_ms(12 * 3_600_000));
    assert_eq!(clock.format(noon, &gmt), "1970-01-01 12:00 PM");
}

#[test]
fn pseudo_formats_are_epoch_numbers() {
    let instant = at_ms(994248536235);
    let millis = pattern("milliseconds");
    let seconds = pattern("seconds");
    assert_eq!(millis.format(instant, &Zone::utc()), "994248536235");
    assert_eq!(seconds.format(instant, &Zone::utc()), "994248536");
    assert_eq!(millis.parse("994248536235", &Zone::utc()).unwrap(), instant);
    assert_eq!(
        seconds.parse("994248536", &Zone::utc()).unwrap(),
        at_ms(994248536000)
    );
    assert_eq!(
        seconds.parse("994248536.235", &Zone::utc()).unwrap(),
        instant
    );
    assert!(millis.parse("994248536.235", &Zone::utc()).is_err());
    assert!(seconds.parse("soon", &Zone::utc()).is_err());
}

/// Instants every 15 minutes from two hours before to two hours after `transition_ms`.
fn around(transition_ms: i64) -> impl Iterator<Item = DateTime<Utc>> {
    (-8..=8).map(move |quarter| at_ms(transition_ms + quarter * 15 * 60_000))
}

fn assert_round_trips(texts: &[&str], zone_name: &str, instants: &[DateTime<Utc>]) {
    let zone = zone(zone_name);
    for text in texts {
        let compiled = pattern(text);
        for instant in instants {
            let printed = compiled.format(*instant, &zone);
            let parsed = compiled.parse(&printed, &zone);
            assert_eq!(
                parsed.as_ref().ok(),
                Some(instant),
                "{text} in {zone_name}: {printed:?} gave {parsed:?}"
            );
        }
    }
}

const ZONED_PATTERNS: [&str; 4] = [
    "yyyy-MM-dd'T'HH:mm:ss.SSSXXX",
    "EEE, dd MMM yyyy HH:mm:ss Z",
    "yyyy-MM-dd'T'HH:mm:ssz",
    "yyMMddHHmmssXX",
];

#[test]
fn round_trips_in_gmt_and_a_fixed_offset() {
    let instants: Vec<_> = [0, 951782400000, 1710064800000, 1735689599000]
        .map(at_ms)
        .into();
    let local_patterns = [
        "yyyy-MM-dd HH:mm:ss",
        "MM/dd/yyyy hh:mm:ss a",
        "yyyyMMddHHmmss",
    ];
    for zone_name in ["GMT", "-8:00"] {
        assert_round_trips(&ZONED_PATTERNS, zone_name, &instants);
        assert_round_trips(&local_patterns, zone_name, &instants);
    }
}

#[test]
fn round_trips_across_denver_dst_changes() {
    // 2024-03-10 02:00 MST became 03:00 MDT at 09:00Z; 2024-11-03 02:00 MDT became 01:00 MST
    // at 08:00Z.
    let spring: Vec<_> = around(1_710_061_200_000).collect();
    let fall: Vec<_> = around(1_730_620_800_000).collect();
    assert_round_trips(&ZONED_PATTERNS, "America/Denver", &spring);
    assert_round_trips(&ZONED_PATTERNS, "America/Denver", &fall);
    // Without an offset in the text, only the repeated hour of fall-back day is ambiguous.
    let repeated_hour = 1_730_617_200_000..1_730_620_800_000;
    let unambiguous: Vec<_> = fall
        .into_iter()
        .filter(|i| !repeated_hour.contains(&i.timestamp_millis()))
        .collect();
    let local_patterns = ["yyyy-MM-dd HH:mm:ss", "yyMMddHHmmss"];
    assert_round_trips(&local_patterns, "America/Denver", &spring);
    assert_round_trips(&local_patterns, "America/Denver", &unambiguous);
}

#[test]
fn local_times_in_a_dst_gap_or_overlap_read_as_java_calendar_does() {
    let local = pattern("yyyy-MM-dd HH:mm:ss");
    let denver = zone("America/Denver");
    // Spring gap: 02:30 does not exist; Java reads it with the pre-gap offset, i.e. 03:30 MDT.
    let in_gap = local.parse("2024-03-10 02:30:00", &denver).unwrap();
    assert_eq!(in_gap, at_ms(1_710_063_000_000), "09:30Z");
    // Fall overlap: 01:30 happens twice; Java takes standard time, the later one.
    let in_overlap = local.parse("2024-11-03 01:30:00", &denver).unwrap();
    assert_eq!(in_overlap, at_ms(1_730_622_600_000), "08:30Z");
    // The daylight 01:30 is still reachable through its zone name.
    let named = pattern("yyyy-MM-dd HH:mm:ss z");
    let daylight = named.parse("2024-11-03 01:30:00 MDT", &denver).unwrap();
    assert_eq!(daylight, in_overlap - TimeDelta::hours(1));
}

#[test]
fn zone_names_resolve_against_the_pattern_zone_first() {
    let named = pattern("yyyy-MM-dd HH:mm z");
    // IST under Asia/Kolkata is India; "MST" in July still means -07:00 under America/Denver.
    let kolkata = named
        .parse("2001-07-04 17:38 IST", &zone("Asia/Kolkata"))
        .unwrap();
    assert_eq!(kolkata, at_ms(994_248_480_000));
    let mst = named
        .parse("2001-07-04 05:08 MST", &zone("America/Denver"))
        .unwrap();
    assert_eq!(mst, at_ms(994_248_480_000));
    // Names the zone does not use come from the table of common ones.
    let edt = named.parse("2001-07-04 08:08 EDT", &zone("GMT")).unwrap();
    assert_eq!(edt, at_ms(994_248_480_000));
    let gmt_offset = named
        .parse("2001-07-04 04:08 GMT-08:00", &zone("UTC"))
        .unwrap();
    assert_eq!(gmt_offset, at_ms(994_248_480_000));
}

#[test]
fn rfc822_zone_refuses_a_bare_z_and_iso_zone_accepts_it() {
    let rfc822 = pattern("yyyy-MM-dd'T'HH:mm:ssZ");
    let error = rfc822
        .parse("2001-07-04T12:08:56Z", &Zone::utc())
        .unwrap_err();
    assert!(error.to_string().contains("use X"), "{error}");
    let expected = at_ms(994_248_536_000);
    assert_eq!(
        rfc822
            .parse("2001-07-04T05:08:56-0700", &Zone::utc())
            .unwrap(),
        expected
    );
    assert_eq!(
        rfc822
            .parse("2001-07-04T05:08:56GMT-07:00", &Zone::utc())
            .unwrap(),
        expected
    );
    for iso in [
        "yyyy-MM-dd'T'HH:mm:ssX",
        "yyyy-MM-dd'T'HH:mm:ssXX",
        "yyyy-MM-dd'T'HH:mm:ssXXX",
    ] {
        let parsed = pattern(iso).parse("2001-07-04T12:08:56Z", &zone("America/Denver"));
        assert_eq!(parsed.unwrap(), expected, "{iso}");
    }
}

#[test]
fn bad_text_is_refused_with_the_text_the_pattern_and_the_reason() {
    let day = pattern("yyyy-MM-dd");
    let utc = Zone::utc();
    let error = day.parse("2024-13-01", &utc).unwrap_err();
    assert_eq!(
        error.to_string(),
        "\"2024-13-01\" does not match \"yyyy-MM-dd\": month 13 out of range"
    );
    let april_31 = day.parse("2024-04-31", &utc).unwrap_err();
    assert!(april_31.reason().contains("day 31"), "{april_31}");
    let trailing = day.parse("2024-04-30T00:00", &utc).unwrap_err();
    assert!(trailing.reason().contains("\"T00:00\""), "{trailing}");
    let wrong_separator = day.parse("2024/04/30", &utc).unwrap_err();
    assert!(
        wrong_separator.reason().contains("expected \"-\""),
        "{wrong_separator}"
    );
    let micros = pattern("HH:mm:ss.SSSSSS")
        .parse("10:00:00.123456", &utc)
        .unwrap_err();
    assert!(micros.reason().contains("millisecond 123456"), "{micros}");
}

#[test]
fn abutting_numeric_fields_parse_by_width() {
    let compact = pattern("yyyyMMddHHmmss");
    let parsed = compact.parse("20010704120856", &Zone::utc()).unwrap();
    assert_eq!(parsed, at_ms(994_248_536_000));
}

#[test]
fn compile_errors_name_the_letter_and_its_position() {
    let error = DatePattern::compile("yyyy-QQ").unwrap_err();
    assert_eq!(error.position, 6);
    assert_eq!(
        error.to_string(),
        "unsupported pattern letter 'Q' at position 6 of \"yyyy-QQ\""
    );
    let quote = DatePattern::compile("yyyy-MM-dd'T").unwrap_err();
    assert_eq!(
        (quote.position, quote.message.as_str()),
        (11, "unterminated quote")
    );
    // Letters inside quotes are text, not fields.
    assert!(DatePattern::compile("'Quarter' yyyy").is_ok());
}

#[test]
fn zones_accept_java_spellings_and_refuse_unknown_ones() {
    let july = at_ms(994_248_536_235);
    let z = pattern("z");
    let cases = [
        ("PST", "PDT"),
        ("EST", "EST"),
        ("MST", "MST"),
        ("HST", "HST"),
        ("IST", "IST"),
        ("JST", "JST"),
        ("GMT", "GMT"),
        ("UTC", "UTC"),
        ("-8", "GMT-08:00"),
        ("+0530", "GMT+05:30"),
        ("GMT+06:00", "GMT+06:00"),
        ("+00:00", "GMT+00:00"),
        ("Europe/Paris", "CEST"),
    ];
    for (zone_name, expected) in cases {
        assert_eq!(z.format(july, &zone(zone_name)), expected, "{zone_name}");
    }
    assert_eq!(zone("-8:00").name(), "-8:00");
    let error = Zone::parse("Mars/Base").unwrap_err();
    assert_eq!(
        error.to_string(),
        "unknown time zone \"Mars/Base\": use an IANA name like America/Denver, GMT/UTC, or an offset like -08:00"
    );
}

#[test]
fn malformed_and_non_ascii_text_is_refused_without_panicking() {
    let patterns = [
        "yyyy-MM-dd'T'HH:mm:ss.SSSXXX",
        "EEE, dd MMM yyyy HH:mm:ss Z",
        "yyyy-MM-dd'T'HH:mmz",
        "yyMMddHHmmss",
        "h 'o''clock' a, EEEE d MMMM yy",
        "milliseconds",
        "seconds",
    ];
    let texts = [
        "",
        " ",
        "é",
        "2024-01-01Té",
        "2024-01-01T00:00GMT+",
        "2024-01-01T00:00+",
        "Ωed, 01 Jan",
        "Wed, 01 Jan 2024 00:00:00 +99",
        "2401a",
        "12 o'clock XM",
        "1e9",
        "-",
        ".5",
    ];
    for text in patterns {
        let compiled = pattern(text);
        for input in texts {
            let result = compiled.parse(input, &zone("America/Denver"));
            assert!(result.is_err(), "{text} accepted {input:?} as {result:?}");
        }
    }
}

/// One row of tests/data/java-zone-names.tsv: what Java 17's `SimpleDateFormat` (Locale.US)
/// printed for `z` and `zzzz` in a zone at an instant. Generated with a throwaway Java program:
/// every id of `TimeZone.getAvailableIDs()` but `SystemV/*` at four instants (mid-January and
/// mid-July 2005 and 2024, noon UTC), and 63 instants from 1900 to 2035 for zones whose names or
/// daylight time are tricky (Chatham, Dublin, Casablanca, Windhoek, Punta Arenas, Moscow, …).
struct JavaZoneRow {
    line: usize,
    zone: String,
    epoch_ms: i64,
    short: String,
    long: String,
}

fn java_zone_rows() -> Vec<JavaZoneRow> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/java-zone-names.tsv"
    );
    let table = std::fs::read_to_string(path).expect("read java-zone-names.tsv");
    let mut lines = table.lines().enumerate();
    assert_eq!(
        lines.next().map(|(_, header)| header),
        Some("zone\tepoch_ms\tz\tzzzz")
    );
    lines
        .map(|(index, line)| {
            let columns: Vec<&str> = line.split('\t').collect();
            assert_eq!(columns.len(), 4, "line {}: {line:?}", index + 1);
            JavaZoneRow {
                line: index + 1,
                zone: columns[0].to_string(),
                epoch_ms: columns[1].parse().expect("epoch_ms"),
                short: columns[2].to_string(),
                long: columns[3].to_string(),
            }
        })
        .collect()
}

#[test]
fn every_java_zone_prints_the_names_java_prints() {
    let rows = java_zone_rows();
    assert!(rows.len() > 3000, "{} rows", rows.len());
    let (short, long) = (pattern("z"), pattern("zzzz"));
    let mut mismatches = Vec::new();
    for row in &rows {
        let zone = match Zone::parse(&row.zone) {
            Ok(zone) => zone,
            Err(error) => {
                mismatches.push(format!("line {}: {error}", row.line));
                continue;
            }
        };
        let instant = at_ms(row.epoch_ms);
        let ours = (short.format(instant, &zone), long.format(instant, &zone));
        if ours != (row.short.clone(), row.long.clone()) {
            mismatches.push(format!(
                "line {}: {} at {}: Java {:?} / {:?}, ours {:?} / {:?}",
                row.line, row.zone, instant, row.short, row.long, ours.0, ours.1
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} rows differ:\n{}",
        mismatches.len(),
        rows.len(),
        mismatches.join("\n")
    );
}

#[test]
fn chatham_prints_chadt_in_summer_and_chast_in_winter() {
    let chatham = zone("Pacific/Chatham");
    let z = pattern("yyyy-MM-dd HH:mm z");
    // 2024-01-15 12:00Z is 2024-01-16 01:45 local at +13:45 (daylight time).
    let summer = at_ms(1_705_320_000_000);
    assert_eq!(z.format(summer, &chatham), "2024-01-16 01:45 CHADT");
    let winter = at_ms(1_721_044_800_000);
    assert_eq!(z.format(winter, &chatham), "2024-07-16 00:45 CHAST");
    assert_eq!(
        pattern("zzzz").format(summer, &chatham),
        "Chatham Daylight Time"
    );
}

#[test]
fn java_zone_names_read_back_to_the_instant() {
    let cases = [
        ("Pacific/Chatham", "yyyy-MM-dd HH:mm z", 1_705_320_000_000),
        (
            "Pacific/Chatham",
            "yyyy-MM-dd HH:mm zzzz",
            1_721_044_800_000,
        ),
        ("Asia/Tokyo", "yyyy-MM-dd HH:mm:ss zzzz", 994_248_536_000),
        ("Europe/Dublin", "yyyy-MM-dd HH:mm z", 994_248_480_000),
        ("Europe/Dublin", "yyyy-MM-dd HH:mm zzzz", 1_705_320_000_000),
        ("America/Denver", "yyyy-MM-dd HH:mm zzzz", 1_710_064_800_000),
        ("GMT", "yyyy-MM-dd HH:mm zzzz", 994_248_480_000),
    ];
    for (zone_name, text, epoch_ms) in cases {
        let (compiled, zone) = (pattern(text), zone(zone_name));
        let printed = compiled.format(at_ms(epoch_ms), &zone);
        let read = compiled.parse(&printed, &zone);
        assert_eq!(read, Ok(at_ms(epoch_ms)), "{zone_name}: {printed:?}");
    }
    // An offset after a zone's own name is still an offset.
    let gmt_offset = pattern("HH:mm z").parse("10:00 GMT-07:00", &Zone::utc());
    assert_eq!(gmt_offset, Ok(at_ms(17 * 3_600_000)));
}
