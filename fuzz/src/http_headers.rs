//! Headers from providers and receivers: `Link` (RFC 8288), `Retry-After` and `Date`. The first
//! byte picks the header (0: Link, 1: Retry-After, 2: Date, modulo 3), the rest is its value.
//! None may panic, and what is read must mean what it says: a Link value parsed, written back
//! and parsed again gives the same links; a next link resolves within what `url` accepts; a
//! `Retry-After` of digits is those seconds; every wait and date survives the arithmetic done on
//! it (deadlines, the skew to the local clock).

use std::time::Duration;

use chrono::{DateTime, Utc};
use pollerd::http_util::{
    LinkValue, next_link, parse_http_date, parse_link_header, parse_retry_after,
};
use pollerd::time_math::{deadline_in, utc_after};

/// Panics when `data` shows a bug.
pub fn check(data: &[u8]) {
    let Some((&which, value)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => check_link(value),
        1 => check_retry_after(value),
        _ => check_date(value),
    }
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-02T12:00:00Z")
        .expect("a fixed instant")
        .to_utc()
}

fn check_link(value: &[u8]) {
    let base = url::Url::parse(
        "https://api.example.com/v4_6_release/apis/3.0/company/contacts?pageSize=2",
    )
    .expect("a fixed URL");
    let _ = next_link([value], &base);
    let Ok(text) = std::str::from_utf8(value) else {
        return;
    };
    let Ok(links) = parse_link_header(text) else {
        return;
    };
    let written = write_links(&links);
    let again = parse_link_header(&written).unwrap_or_else(|e| {
        panic!("{text:?} was read as {links:?}, written as {written:?}, which fails: {e}")
    });
    assert_eq!(again, links, "{text:?} → {written:?}");
}

/// Links as a server would write them: the target in `<>`, the relation types quoted.
fn write_links(links: &[LinkValue]) -> String {
    links
        .iter()
        .map(|l| {
            let rels = l.rels.join(" ").replace('\\', "\\\\").replace('"', "\\\"");
            format!("<{}>; rel=\"{rels}\"", l.target)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_retry_after(value: &[u8]) {
    let Ok(text) = std::str::from_utf8(value) else {
        return;
    };
    let Some(wait) = parse_retry_after(text, now()) else {
        return;
    };
    if let Ok(secs) = text.trim().parse::<u64>() {
        assert_eq!(wait, Duration::from_secs(secs), "{text:?}");
    }
    let _ = deadline_in(wait);
    let _ = utc_after(now(), wait);
}

fn check_date(value: &[u8]) {
    let Ok(text) = std::str::from_utf8(value) else {
        return;
    };
    let Some(date) = parse_http_date(text) else {
        return;
    };
    let skew = date.signed_duration_since(now());
    let _ = skew.abs().to_std();
    assert_eq!(parse_http_date(&date.to_rfc2822()), Some(date), "{text:?}");
}
