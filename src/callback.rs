//! A callback URL made ready to send to: parsed once, its user name and password taken out of
//! the URL and turned into Basic credentials. `config` makes one when it loads a file and
//! `delivery` sends to it, so it depends on neither.

use hyper::Uri;
use hyper::header::HeaderValue;

use crate::http_util::basic_authorization;
use crate::url_display::shown_url;

/// A callback URL made ready to send to, once per target: the request URI without user name
/// and password, and those as Basic credentials (as reqwest sends them). Debug shows the URL as
/// [`shown_url`] does, never its credentials or query.
#[derive(Clone)]
pub struct Endpoint {
    pub uri: Uri,
    /// Marked sensitive.
    pub authorization: Option<HeaderValue>,
    shown: String,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.shown)
            .field("basic_credentials", &self.authorization.is_some())
            .finish()
    }
}

/// A callback URL that cannot be sent to. The texts never repeat the URL (it may hold a
/// password).
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("the callback URL does not parse: {0}")]
    Parse(#[from] url::ParseError),
    #[error("the callback URL's scheme is {0:?}, not http or https")]
    Scheme(String),
    #[error("the callback URL has no host")]
    NoHost,
    #[error("the callback URL's user name or password is not UTF-8 once percent-decoded")]
    UserInfo,
    #[error("the callback URL is not a valid request target: {0}")]
    Uri(#[from] hyper::http::uri::InvalidUri),
}

impl Endpoint {
    pub fn parse(callback_url: &str) -> Result<Endpoint, EndpointError> {
        Endpoint::from_url(&url::Url::parse(callback_url)?)
    }

    /// The endpoint of an already parsed callback URL.
    pub fn from_url(url: &url::Url) -> Result<Endpoint, EndpointError> {
        let shown = shown_url(url);
        let mut url = url.clone();
        if !matches!(url.scheme(), "http" | "https") {
            return Err(EndpointError::Scheme(url.scheme().to_string()));
        }
        if !url.has_host() {
            return Err(EndpointError::NoHost);
        }
        let authorization = if !url.username().is_empty() || url.password().is_some() {
            let user = percent_decoded(url.username()).ok_or(EndpointError::UserInfo)?;
            let password = match url.password() {
                Some(p) => Some(percent_decoded(p).ok_or(EndpointError::UserInfo)?),
                None => None,
            };
            // An http(s) URL with a host always takes these.
            let _ = url.set_username("");
            let _ = url.set_password(None);
            Some(basic_authorization(
                &user,
                password.as_deref().unwrap_or(""),
            ))
        } else {
            None
        };
        // Never sent: a fragment is the client's own.
        url.set_fragment(None);
        Ok(Endpoint {
            uri: url.as_str().parse()?,
            authorization,
            shown,
        })
    }

    /// The callback URL for logs, errors and status, as [`shown_url`] shows URLs.
    pub fn shown(&self) -> &str {
        &self.shown
    }
}

/// `%XX` escapes decoded; `None` when the result is not UTF-8.
fn percent_decoded(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .filter(|hex| hex.iter().all(u8::is_ascii_hexdigit))
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}
