//! URLs as pollerd shows them in logs, errors, `status`, `check` and dead letters: one rendering,
//! `scheme://host:port/path`, used everywhere a URL is shown.
//!
//! A URL's user name and password are dropped, and so is its query: it is replaced by `?…`, which
//! tells that the URL has one without showing it (API keys, `?code=…` tokens and signatures travel
//! there). The port is always written, the scheme's default included, so two origins never look
//! alike. The fragment is dropped (it is never sent). A long path is cut, since URLs from outside
//! (a provider's `Location` or `Link`) can be any length.

#![deny(clippy::arithmetic_side_effects)]

use std::fmt::Write as _;

/// The most characters of a path shown; the rest is cut and marked with `…`.
pub const SHOWN_PATH_MAX_CHARS: usize = 256;

/// `url` fit to be shown: `scheme://host:port/path`, plus `?…` when it has a query.
pub fn shown_url(url: &url::Url) -> String {
    let mut shown = String::new();
    let Some(host) = url.host_str() else {
        // `mailto:`, `data:` and the like: everything after the scheme could be a secret.
        return format!("{}:…", url.scheme());
    };
    let _ = write!(shown, "{}://{host}", url.scheme());
    if let Some(port) = url.port_or_known_default() {
        let _ = write!(shown, ":{port}");
    }
    let path = url.path();
    match path.char_indices().nth(SHOWN_PATH_MAX_CHARS) {
        Some((cut, _)) => {
            shown.push_str(&path[..cut]);
            shown.push('…');
        }
        None => shown.push_str(path),
    }
    if url.query().is_some() {
        shown.push_str("?…");
    }
    shown
}

/// [`shown_url`] of a URL given as text; text that does not parse as a URL is not shown at all,
/// since any part of it could be a secret.
pub fn shown_url_text(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(url) => shown_url(&url),
        Err(_) => "(an unparsable URL)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_info_and_query_are_not_shown() {
        assert_eq!(
            shown_url_text("http://user:pass@127.0.0.1:8080/hook?code=SECRET#frag"),
            "http://127.0.0.1:8080/hook?…"
        );
        assert_eq!(
            shown_url_text("https://only-user@example.com/a/b"),
            "https://example.com:443/a/b"
        );
    }

    #[test]
    fn the_port_is_always_written() {
        assert_eq!(
            shown_url_text("http://example.com"),
            "http://example.com:80/"
        );
        assert_eq!(shown_url_text("http://[::1]:9/x"), "http://[::1]:9/x");
    }

    #[test]
    fn an_empty_query_is_still_marked() {
        assert_eq!(shown_url_text("http://h:1/p?"), "http://h:1/p?…");
    }

    #[test]
    fn unparsable_and_hostless_urls_show_nothing_of_their_content() {
        assert_eq!(shown_url_text("not a url user:pass"), "(an unparsable URL)");
        assert_eq!(shown_url_text("mailto:someone@secret.example"), "mailto:…");
    }

    #[test]
    fn long_paths_are_cut() {
        let long = format!("http://h:1/{}", "a".repeat(1000));
        let shown = shown_url_text(&long);
        assert_eq!(
            shown,
            format!("http://h:1/{}…", "a".repeat(SHOWN_PATH_MAX_CHARS - 1))
        );
    }
}
