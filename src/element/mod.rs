//! Provider adapters: fetch one page of a resource, given the rendered URL and a cursor.
//!
//! Elements know how a provider authenticates, pages and reports errors; they know nothing of
//! watermarks, dedup or delivery (that is the poller's).

mod client;
pub mod connectwise;
pub mod http;
pub mod raw;

use chrono::{DateTime, Utc};

pub use client::{ProviderClient, ProviderLimits, ProviderResponse};
pub use raw::{RawRecord, id_text};

use crate::config::{ElementSpec, ResourceSpec};

/// Where the next page starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cursor {
    First,
    /// ConnectWise keyset paging: records after this id.
    PageId(String),
    /// Offset paging, 1-based.
    Page(u32),
    /// A `Link: rel="next"` URL, followed as given (same host only).
    Url(String),
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
    pub fn new(spec: &ElementSpec) -> Result<Element, FetchError> {
        match spec {
            ElementSpec::ConnectWise(c) => {
                Ok(Element::ConnectWise(connectwise::ConnectWise::new(c)?))
            }
            ElementSpec::Http(h) => Ok(Element::Http(http::HttpElement::new(h)?)),
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
    /// only ConnectWise's keyset paging (records after an id; its `Link` URLs carry that id).
    /// An offset page shifts when records are deleted, and a token may expire.
    pub fn can_resume_at(&self, resource: &ResourceSpec, cursor: &Cursor) -> bool {
        matches!(self, Element::ConnectWise(_))
            && resource.paging == crate::config::Paging::Keyset
            && matches!(cursor, Cursor::PageId(_) | Cursor::Url(_))
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

/// A `Link` URL must stay on the host the credentials are for.
pub fn same_origin(a: &reqwest::Url, b: &reqwest::Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}
