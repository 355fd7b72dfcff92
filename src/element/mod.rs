//! Provider adapters: fetch one page of a resource, given the rendered URL and a cursor.
//!
//! Elements know how a provider authenticates, pages and reports errors; they know nothing of
//! watermarks, dedup or delivery (that is the poller's).

mod client;
pub mod connectwise;
pub mod http;
mod ids;
pub mod raw;
mod tenant;

use chrono::{DateTime, Utc};

pub use client::{ProviderClient, ProviderLimits, ProviderResponse};
pub use ids::IdListing;
pub use raw::{RawRecord, id_text};
pub use tenant::{MAX_PROVIDER_PAUSE, TenantLimits, ThrottleWatch};

use crate::config::{ElementSpec, ResourceSpec};

/// Where the next page starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cursor {
    First,
    /// ConnectWise keyset paging: records after this id.
    PageId(String),
    /// Offset paging, 1-based.
    Page(u32),
    /// A `Link: rel="next"` URL, resolved against the page that named it (same origin only).
    Url(reqwest::Url),
    /// A next-page token read from the body.
    Token(String),
}

/// One page of records, each kept as the provider's JSON text.
#[derive(Debug)]
pub struct Page {
    pub records: Vec<RawRecord>,
    pub next: Option<Cursor>,
    /// The provider's `Date` header: its clock, which watermarks follow.
    pub provider_date: Option<DateTime<Utc>>,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("GET {url}: {}{message}", if *timeout { "timed out: " } else { "" })]
    Request {
        url: String,
        timeout: bool,
        message: String,
    },
    #[error("GET {url}: HTTP {status}: {message}")]
    Status {
        url: String,
        status: u16,
        message: String,
        retry_after: Option<std::time::Duration>,
    },
    #[error("GET {url}: the provider answered {content_type:?}, not JSON: {snippet}")]
    NotJson {
        url: String,
        content_type: String,
        snippet: String,
    },
    #[error("GET {url}: the body is not valid JSON ({message}): {snippet}")]
    BadJson {
        url: String,
        message: String,
        snippet: String,
    },
    #[error("GET {url}: {message}")]
    Shape { url: String, message: String },
    #[error(
        "GET {url}: HTTP {status}: refusing to follow a redirect to another origin ({origin}): {location}"
    )]
    Redirect {
        url: String,
        status: u16,
        /// `scheme://host:port` of the Location.
        origin: String,
        /// The Location without its query.
        location: String,
    },
    #[error("GET {url}: refusing to follow a next-page link to another origin ({origin}): {link}")]
    LinkElsewhere {
        url: String,
        origin: String,
        link: String,
    },
    #[error("GET {url}: the body is larger than [polling] max_response_size ({limit} bytes)")]
    TooLarge { url: String, limit: u64 },
    #[error(
        "GET {url}: not sent: the provider answered 429 to this account and asked it to wait {}s more",
        remaining.as_secs()
    )]
    Paused {
        url: String,
        remaining: std::time::Duration,
    },
    #[error("GET {url}: {message}; the scan stops here rather than miss the pages after it")]
    BadLink { url: String, message: String },
    #[error("{0}")]
    Config(String),
}

impl FetchError {
    /// A short class of the failure: a change of class is worth a log line, a repeat is not.
    pub fn class(&self) -> String {
        match self {
            FetchError::Request { timeout: true, .. } => "timeout".into(),
            FetchError::Request { .. } => "connection".into(),
            FetchError::Status { status, .. } => format!("http {status}"),
            FetchError::NotJson { .. } => "not json".into(),
            FetchError::BadJson { .. } => "bad json".into(),
            FetchError::Shape { .. } => "unexpected shape".into(),
            FetchError::Redirect { .. } | FetchError::LinkElsewhere { .. } => {
                "another origin".into()
            }
            FetchError::TooLarge { .. } => "too large".into(),
            FetchError::Paused { .. } => "http 429".into(),
            FetchError::BadLink { .. } => "bad link".into(),
            FetchError::Config(_) => "configuration".into(),
        }
    }
}

/// One instance's connection to its provider.
#[derive(Clone, Debug)]
pub enum Element {
    ConnectWise(connectwise::ConnectWise),
    Http(http::HttpElement),
}

impl Element {
    /// Infallible: config parsed and checked everything an element sends (base URL, request
    /// headers) when the file was loaded.
    pub fn new(spec: &ElementSpec) -> Element {
        match spec {
            ElementSpec::ConnectWise(c) => Element::ConnectWise(connectwise::ConnectWise::new(c)),
            ElementSpec::Http(h) => Element::Http(http::HttpElement::new(h)),
        }
    }

    pub async fn fetch_page(
        &self,
        client: &ProviderClient,
        resource: &ResourceSpec,
        rendered_url: &str,
        cursor: &Cursor,
    ) -> Result<Page, FetchError> {
        match self {
            Element::ConnectWise(e) => e.fetch_page(client, resource, rendered_url, cursor).await,
            Element::Http(e) => e.fetch_page(client, resource, rendered_url, cursor).await,
        }
    }

    /// Whether a later attempt may start at `cursor` and read exactly what this one would have:
    /// only ConnectWise's keyset paging (records after an id, which is all its next pages are).
    /// An offset page shifts when records are deleted, and a token may expire.
    pub fn can_resume_at(&self, resource: &ResourceSpec, cursor: &Cursor) -> bool {
        matches!(self, Element::ConnectWise(_))
            && resource.paging == crate::config::Paging::Keyset
            && matches!(cursor, Cursor::PageId(_))
    }
}

/// Joins a base URL and a path-and-query the way operators write them
/// (`…/apis/3.0` + `/company/contacts`).
pub fn join_url(base: &str, path: &str) -> Result<reqwest::Url, FetchError> {
    if path.starts_with("http://") || path.starts_with("https://") {
        return reqwest::Url::parse(path)
            .map_err(|e| FetchError::Config(format!("invalid URL {path:?}: {e}")));
    }
    let joined = format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    );
    reqwest::Url::parse(&joined)
        .map_err(|e| FetchError::Config(format!("invalid URL {joined:?}: {e}")))
}

/// Requests with credentials stay within one origin: scheme, host and port.
pub fn same_origin(a: &reqwest::Url, b: &reqwest::Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// `scheme://host:port`, as refusals name it.
pub fn origin_text(url: &reqwest::Url) -> String {
    format!(
        "{}://{}:{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port_or_known_default().unwrap_or(0)
    )
}

/// A next-page URL to follow with the first page's credentials: only within its origin.
pub fn checked_next(first: &reqwest::Url, next: &reqwest::Url) -> Result<(), FetchError> {
    if same_origin(first, next) {
        return Ok(());
    }
    Err(FetchError::LinkElsewhere {
        url: crate::url_display::shown_url(first),
        origin: origin_text(next),
        link: crate::url_display::shown_url(next),
    })
}
