//! HTTP helpers both sides of pollerd share: the headers they read (`Date`, `Retry-After`,
//! `Link`, `Content-Type`) and how they put a body or an error on one log line.

#![deny(clippy::arithmetic_side_effects)]

use std::time::Duration;

use chrono::{DateTime, Datelike, Utc};

/// An HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`). Years have four digits (RFC 9110 §5.6.7):
/// chrono also reads `22026`, which it then cannot print as RFC 2822 (the fuzz target found it).
pub fn parse_http_date(value: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc2822(value.trim())
        .ok()
        .map(|d| d.to_utc())
        .filter(|d| (1..=9999).contains(&d.year()))
}

/// `Retry-After` as seconds or an HTTP date, relative to `now`. A date in the past is zero;
/// anything else (a negative number, a fraction, text) is `None`, and ignored. The value is not
/// bounded here: each caller cuts it to its own largest wait.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = parse_http_date(value)?;
    Some(
        at.signed_duration_since(now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

/// One link-value of a `Link` header (RFC 8288 §3): its target as written and its relation
/// types, lower-cased.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkValue {
    pub target: String,
    pub rels: Vec<String>,
}

/// Why a `Link` header could not be read. A scan that meets one stops with an error: reading it
/// as "no next page" would end the scan early and lose the pages after it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("a Link header is not visible ASCII text")]
    NotText,
    #[error("a Link header has no <target> at byte {0}")]
    NoTarget(usize),
    #[error("a Link header's <target> is not closed")]
    UnclosedTarget,
    #[error("a Link header has a malformed parameter at byte {0}")]
    BadParameter(usize),
    #[error("a Link header has an unclosed quoted string")]
    UnclosedQuote,
    #[error("Link headers name two different next pages")]
    TwoNextPages,
    #[error("a Link header is longer than {MAX_LINK_LENGTH} bytes")]
    TooLong,
    #[error("a Link header's next target is not a URL")]
    BadTarget,
}

/// Longest `Link` header value read (a page's links are a few hundred bytes).
const MAX_LINK_LENGTH: usize = 16 * 1024;

/// Parses one `Link` field value: `<uri>; rel="next"; title="a, b", <uri2>; rel=last`.
///
/// Written here because the crates on crates.io split values on every `,` and `;`, which breaks
/// targets such as `?fields=id,updated` and quoted parameters that hold a comma.
pub fn parse_link_header(value: &str) -> Result<Vec<LinkValue>, LinkError> {
    if value.len() > MAX_LINK_LENGTH {
        return Err(LinkError::TooLong);
    }
    let mut cursor = LinkCursor {
        text: value.as_bytes(),
        at: 0,
    };
    let mut links = Vec::new();
    loop {
        cursor.skip_separators();
        if cursor.at_end() {
            return Ok(links);
        }
        links.push(cursor.link_value()?);
    }
}

/// The `rel="next"` target among all of a response's `Link` header lines, resolved against the
/// URL that was requested (RFC 3986 §5). `Ok(None)`: the response says there is no next page.
pub fn next_link<'a>(
    values: impl IntoIterator<Item = &'a [u8]>,
    requested: &url::Url,
) -> Result<Option<url::Url>, LinkError> {
    let mut next: Option<url::Url> = None;
    for value in values {
        let text = std::str::from_utf8(value).map_err(|_| LinkError::NotText)?;
        for link in parse_link_header(text)? {
            if !link.rels.iter().any(|r| r == "next") {
                continue;
            }
            let target = requested
                .join(&link.target)
                .map_err(|_| LinkError::BadTarget)?;
            match &next {
                Some(seen) if *seen != target => return Err(LinkError::TwoNextPages),
                _ => next = Some(target),
            }
        }
    }
    Ok(next)
}

/// A position in a `Link` value.
struct LinkCursor<'a> {
    text: &'a [u8],
    at: usize,
}

impl LinkCursor<'_> {
    fn at_end(&self) -> bool {
        self.at >= self.text.len()
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.at = self.at.saturating_add(1);
        }
    }

    /// Whitespace and empty list elements (`a, , b` is allowed by RFC 9110 §5.6.1).
    fn skip_separators(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.at = self.at.saturating_add(1);
        }
    }

    /// `<target>` then `; param` pairs, up to the `,` that ends the link-value or the end.
    fn link_value(&mut self) -> Result<LinkValue, LinkError> {
        let target = self.target()?;
        let mut rels: Option<Vec<String>> = None;
        loop {
            self.skip_whitespace();
            match self.peek() {
                None | Some(b',') => break,
                Some(b';') => self.at = self.at.saturating_add(1),
                Some(_) => return Err(LinkError::BadParameter(self.at)),
            }
            self.skip_whitespace();
            if matches!(self.peek(), None | Some(b',')) {
                break; // a trailing `;`
            }
            let (name, value) = self.parameter()?;
            // Only the first `rel` counts (RFC 8288 §3.3).
            if name.eq_ignore_ascii_case("rel") && rels.is_none() {
                rels = Some(
                    value
                        .split_ascii_whitespace()
                        .map(str::to_ascii_lowercase)
                        .collect(),
                );
            }
        }
        Ok(LinkValue {
            target,
            rels: rels.unwrap_or_default(),
        })
    }

    fn target(&mut self) -> Result<String, LinkError> {
        if self.peek() != Some(b'<') {
            return Err(LinkError::NoTarget(self.at));
        }
        let start = self.at.saturating_add(1);
        let length = self
            .text
            .get(start..)
            .and_then(|rest| rest.iter().position(|b| *b == b'>'))
            .ok_or(LinkError::UnclosedTarget)?;
        let end = start.saturating_add(length);
        let target = String::from_utf8_lossy(&self.text[start..end])
            .trim()
            .to_string();
        self.at = end.saturating_add(1);
        Ok(target)
    }

    /// `token [= (token / quoted-string)]`, with optional whitespace around `=`.
    fn parameter(&mut self) -> Result<(String, String), LinkError> {
        let name = self.token();
        if name.is_empty() {
            return Err(LinkError::BadParameter(self.at));
        }
        self.skip_whitespace();
        if self.peek() != Some(b'=') {
            return Ok((name, String::new()));
        }
        self.at = self.at.saturating_add(1);
        self.skip_whitespace();
        let value = if self.peek() == Some(b'"') {
            self.quoted_string()?
        } else {
            self.token()
        };
        Ok((name, value))
    }

    fn token(&mut self) -> String {
        let start = self.at;
        while self.peek().is_some_and(is_token_byte) {
            self.at = self.at.saturating_add(1);
        }
        String::from_utf8_lossy(&self.text[start..self.at]).into_owned()
    }

    fn quoted_string(&mut self) -> Result<String, LinkError> {
        self.at = self.at.saturating_add(1);
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err(LinkError::UnclosedQuote),
                Some(b'"') => {
                    self.at = self.at.saturating_add(1);
                    return Ok(String::from_utf8_lossy(&out).into_owned());
                }
                Some(b'\\') => {
                    self.at = self.at.saturating_add(1);
                    let escaped = self.peek().ok_or(LinkError::UnclosedQuote)?;
                    out.push(escaped);
                    self.at = self.at.saturating_add(1);
                }
                Some(b) => {
                    out.push(b);
                    self.at = self.at.saturating_add(1);
                }
            }
        }
    }
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `Basic base64(user:password)`, marked sensitive so it never prints. Infallible: base64 text is
/// always valid header text, whatever the user and password hold.
pub fn basic_authorization(user: &str, password: &str) -> hyper::header::HeaderValue {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut value = hyper::header::HeaderValue::try_from(format!("Basic {encoded}"))
        .expect("base64 is a valid header value");
    value.set_sensitive(true);
    value
}

/// `application/json`, or any `*/*+json` (ConnectWise labels bodies
/// `application/vnd.connectwise.com+json; version=…`).
pub fn is_json_media_type(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || (essence.contains('/') && essence.ends_with("+json"))
}

/// Longest text from a provider or receiver put into a log line, `status` or a dead letter.
pub const MAX_SHOWN_TEXT: usize = 200;

/// The start of a body, printable on one line, for log lines and dead letters.
pub fn snippet(body: &[u8]) -> String {
    let cut = body.len().min(MAX_SHOWN_TEXT);
    printable(&String::from_utf8_lossy(&body[..cut]), body.len() > cut)
}

/// Text from outside (an error message a provider sent) made safe to show: on one line, control
/// characters escaped (`\u{1b}`), at most [`MAX_SHOWN_TEXT`] characters, `…` when cut.
pub fn shown_text(text: &str) -> String {
    let cut = text
        .char_indices()
        .nth(MAX_SHOWN_TEXT)
        .map_or(text.len(), |(i, _)| i);
    printable(&text[..cut], cut < text.len())
}

fn printable(text: &str, cut: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        for c in word.chars() {
            if c.is_control() {
                out.extend(c.escape_unicode());
            } else {
                out.push(c);
            }
        }
    }
    if cut {
        out.push('…');
    }
    out
}

/// An error and its causes on one line (reqwest keeps the useful part in `source()`).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 2026 00:00:10 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Wed, 31 Dec 2025 00:00:10 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    fn next(values: &[&str], requested: &str) -> Result<Option<String>, LinkError> {
        let requested = url::Url::parse(requested).unwrap();
        next_link(values.iter().map(|v| v.as_bytes()), &requested)
            .map(|next| next.map(String::from))
    }

    #[test]
    fn link_next_among_several() {
        let v = r#"<https://x/a?page=1>; rel="first", <https://x/a?page=3>; rel="next", <https://x/a?page=9>; rel="last""#;
        assert_eq!(
            next(&[v], "https://x/a"),
            Ok(Some("https://x/a?page=3".into()))
        );
        assert_eq!(
            next(&[r#"<https://x/a?page=1>; rel="prev""#], "https://x/a"),
            Ok(None)
        );
        assert_eq!(next(&[], "https://x/a"), Ok(None));
    }

    #[test]
    fn link_targets_and_parameters_may_hold_commas_and_semicolons() {
        let v = r#"<https://x/a?fields=id,updated&page=2;v=1>; title="a, b; c"; rel="next""#;
        assert_eq!(
            next(&[v], "https://x/a"),
            Ok(Some("https://x/a?fields=id,updated&page=2;v=1".into()))
        );
    }

    #[test]
    fn link_next_in_a_second_header_line_or_among_several_rels() {
        let lines = [
            r#"<https://x/a?page=1>; rel=first"#,
            r#"<https://x/a?page=2>; rel="last next""#,
        ];
        assert_eq!(
            next(&lines, "https://x/a"),
            Ok(Some("https://x/a?page=2".into()))
        );
        assert_eq!(
            next(&[r#"<https://x/a?page=2>; REL = "NEXT""#], "https://x/a"),
            Ok(Some("https://x/a?page=2".into()))
        );
    }

    #[test]
    fn relative_link_targets_resolve_against_the_requested_url() {
        let requested = "https://x/apis/3.0/company/contacts?pageSize=2";
        assert_eq!(
            next(&[r#"<?pageSize=2&pageId=9>; rel="next""#], requested),
            Ok(Some(
                "https://x/apis/3.0/company/contacts?pageSize=2&pageId=9".into()
            ))
        );
        assert_eq!(
            next(&[r#"<../v2/items?page=2>; rel="next""#], requested),
            Ok(Some("https://x/apis/3.0/v2/items?page=2".into()))
        );
        assert_eq!(
            next(&[r#"<//other:8443/p>; rel="next""#], requested),
            Ok(Some("https://other:8443/p".into()))
        );
    }

    #[test]
    fn unreadable_links_are_errors_not_last_pages() {
        for bad in [
            r#"https://x/a?page=2; rel="next""#,
            r#"<https://x/a?page=2; rel="next""#,
            r#"<https://x/a?page=2>; rel="next"#,
            r#"<https://x/a?page=2> rel="next""#,
            r#"<https://x/a?page=2>; ="next""#,
        ] {
            assert!(next(&[bad], "https://x/a").is_err(), "{bad}");
        }
        let two = [
            r#"<https://x/a?page=2>; rel=next"#,
            r#"<https://x/a?page=3>; rel=next"#,
        ];
        assert_eq!(next(&two, "https://x/a"), Err(LinkError::TwoNextPages));
        assert_eq!(
            next(&["<https://x/a?\u{e9}>; rel=next"], "https://x/a").map(|_| ()),
            Ok(())
        );
        let requested = url::Url::parse("https://x/a").unwrap();
        let not_utf8: &[u8] = b"<https://x/\xff>; rel=next";
        assert_eq!(next_link([not_utf8], &requested), Err(LinkError::NotText));
    }

    #[test]
    fn http_dates_have_four_digit_years() {
        assert!(parse_http_date("Wed, 02 Dec 22026 12:00:00 -2359").is_none());
        let far = parse_http_date("Fri, 31 Dec 9999 23:59:59 GMT").unwrap();
        assert_eq!(parse_http_date(&far.to_rfc2822()), Some(far));
    }

    #[test]
    fn retry_after_garbage_negative_and_far_dates() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .to_utc();
        for garbage in [
            "-5",
            "1.5",
            "",
            "soon",
            "Fri, 31 Dec 9999 99:99:99 GMT",
            "18446744073709551616",
        ] {
            assert_eq!(parse_retry_after(garbage, now), None, "{garbage:?}");
        }
        let far = parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now).unwrap();
        assert!(far > Duration::from_secs(7900 * 365 * 86_400));
        assert_eq!(
            parse_retry_after("18446744073709551615", now),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn shown_text_is_one_bounded_line_with_controls_escaped() {
        assert_eq!(shown_text("bad\x1b[31m\nthing"), "bad\\u{1b}[31m thing");
        let long = "é".repeat(500);
        let shown = shown_text(&long);
        assert_eq!(shown.chars().count(), MAX_SHOWN_TEXT + 1);
        assert!(shown.ends_with('…'));
        assert_eq!(
            snippet(&[b'x'; 1000]).len(),
            MAX_SHOWN_TEXT + '…'.len_utf8()
        );
    }

    #[test]
    fn basic_authorization_is_base64_and_sensitive() {
        let v = basic_authorization("u", "p");
        assert_eq!(v.to_str().unwrap(), "Basic dTpw");
        assert!(v.is_sensitive());
    }

    #[test]
    fn json_media_types() {
        assert!(is_json_media_type("application/json; charset=utf-8"));
        assert!(is_json_media_type(
            "application/vnd.connectwise.com+json; version=2022.1"
        ));
        assert!(!is_json_media_type("text/html; charset=utf-8"));
        assert!(!is_json_media_type("text/plain"));
    }
}
