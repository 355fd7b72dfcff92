//! URL templates as SPEC §3 describes them, filled with a resource's lower bound.
//! Expected date texts are Java's, from tests/data/java-dates.tsv (epoch 994248536235).

use chrono::{DateTime, Utc};
use pollerd::template::UrlTemplate;

/// 2001-07-04T12:08:56.235Z, a row of the Java fixture table.
fn lower_bound() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(994_248_536_235).unwrap()
}

fn render(template: &str) -> String {
    UrlTemplate::parse(template)
        .unwrap_or_else(|e| panic!("{template}: {e}"))
        .render(lower_bound())
}

#[test]
fn the_seed_url_keeps_its_closing_quote() {
    let seed = "/hubs/crm/contacts?where=lastUpdated>'${gmtDate:yyyy-MM-dd'T'HH:mm:ss'Z'}'";
    let template = UrlTemplate::parse(seed).unwrap();
    assert_eq!(template.source(), seed);
    assert_eq!(
        template.render(lower_bound()),
        "/hubs/crm/contacts?where=lastUpdated>'2001-07-04T12:08:56Z'"
    );
}

#[test]
fn every_placeholder_form_renders_the_lower_bound() {
    let cases = [
        ("${gmtDate:yyyy-MM-dd HH:mm:ss}", "2001-07-04 12:08:56"),
        (
            "${date:yyyy-MM-dd'T'HH:mm:ss.SSSXXX}",
            "2001-07-04T12:08:56.235Z",
        ),
        ("${gmtDate:yyyy-MM-dd'T'HH:mmz}", "2001-07-04T12:08GMT"),
        (
            "${dateTimeZone:America/Denver:yyyy-MM-dd'T'HH:mm:ss.SSSXXX}",
            "2001-07-04T06:08:56.235-06:00",
        ),
        (
            "${dateTimeZone:Asia/Kolkata:yyyy-MM-dd HH:mm:ss}",
            "2001-07-04 17:38:56",
        ),
        ("${epoch}", "994248536235"),
        ("${epoch:ms}", "994248536235"),
        ("${milliseconds}", "994248536235"),
        ("${epoch:s}", "994248536"),
        ("${epoch:us}", "994248536235000"),
    ];
    for (template, expected) in cases {
        assert_eq!(render(template), expected, "{template}");
    }
}

#[test]
fn descriptors_are_case_insensitive() {
    assert_eq!(render("${GMTDATE:yyyy-MM-dd}"), "2001-07-04");
    assert_eq!(render("${Date:yyyy-MM-dd}"), "2001-07-04");
    assert_eq!(render("${EPOCH:S}"), "994248536");
    assert_eq!(render("${MilliSeconds}"), "994248536235");
    // PST is Java's short id for America/Los_Angeles: 05:08 PDT on that day.
    assert_eq!(
        render("${DateTimeZone:PST:yyyy-MM-dd HH:mm z}"),
        "2001-07-04 05:08 PDT"
    );
}

#[test]
fn a_zone_holding_colons_takes_the_longest_prefix_that_is_a_zone() {
    // Java's "-08:00" rows of the fixture print 04:08:56 for this instant.
    assert_eq!(
        render("${dateTimeZone:-8:00:yyyy-MM-dd HH:mm:ss}"),
        "2001-07-04 04:08:56"
    );
    assert_eq!(
        render("${dateTimeZone:+06:00:HH:mm}"),
        "18:08",
        "the pattern keeps its own colon"
    );
}

#[test]
fn several_placeholders_and_plain_text_mix() {
    let template = "/q?from=${epoch:s}&day=${gmtDate:yyyy-MM-dd}&page={page}&cost=$5&x=${epoch:ms}";
    assert_eq!(
        render(template),
        "/q?from=994248536&day=2001-07-04&page={page}&cost=$5&x=994248536235"
    );
}

#[test]
fn text_without_placeholders_is_left_alone() {
    for template in ["/contacts/{id}", "/a$b", "/plain", "", "price=$ {x}"] {
        assert_eq!(render(template), template);
    }
}

#[test]
fn an_unclosed_placeholder_is_an_error_at_its_offset() {
    let error = UrlTemplate::parse("/contacts?since=${gmtDate:yyyy-MM-dd").unwrap_err();
    assert_eq!(error.offset, 16);
    assert!(error.message.contains("unclosed"), "{error}");
    // A brace inside quoted pattern text does not close the placeholder.
    let quoted = UrlTemplate::parse("/x?${gmtDate:'}'yyyy").unwrap_err();
    assert_eq!(quoted.offset, 3);
}

#[test]
fn an_unknown_descriptor_lists_the_valid_ones() {
    let error = UrlTemplate::parse("/contacts?since=${now:yyyy}").unwrap_err();
    assert_eq!(error.offset, 16);
    assert!(error.message.contains("${now:yyyy}"), "{error}");
    for valid in ["gmtDate", "dateTimeZone", "${epoch:us}", "${milliseconds}"] {
        assert!(error.message.contains(valid), "{error} lacks {valid}");
    }
    let unit = UrlTemplate::parse("${epoch:ns}").unwrap_err();
    assert!(unit.message.contains("ms, s or us"), "{unit}");
}

#[test]
fn a_bad_pattern_or_zone_is_an_error_at_its_offset() {
    let pattern = UrlTemplate::parse("/a?d=${gmtDate:yyyy-QQ}").unwrap_err();
    assert_eq!(pattern.offset, 5);
    assert!(
        pattern
            .message
            .contains("unsupported pattern letter 'Q' at position 6 of \"yyyy-QQ\""),
        "{pattern}"
    );
    let zone = UrlTemplate::parse("/a?d=${dateTimeZone:Mars/Base:yyyy}").unwrap_err();
    assert_eq!(zone.offset, 5);
    assert!(
        zone.message.contains("unknown time zone \"Mars/Base\""),
        "{zone}"
    );
    let missing = UrlTemplate::parse("${gmtDate}").unwrap_err();
    assert_eq!(missing.offset, 0);
    assert!(
        missing.message.contains("needs a date pattern"),
        "{missing}"
    );
}
