//! The `connectwisecrmrest` element: ConnectWise Manage's REST API.
//!
//! Basic auth `company+public:private` with a `clientId` header; hub URLs mapped to native
//! endpoints ([`crate::hubs`]); CEQL `where` translated to `conditions` ([`crate::ceql`]); keyset
//! paging by id (`pagination-type: forward-only`) unless the resource asks for `page` paging,
//! because offset paging skips or repeats records that change during a scan.

#![deny(clippy::arithmetic_side_effects)]

use reqwest::header::ACCEPT;

use super::raw::{self, raw_kind};
use super::{
    Cursor, FetchError, Page, ProviderClient, ProviderResponse, RawRecord, checked_next, id_text,
    join_url,
};
use crate::config::{ConnectWiseSpec, ElementKind, Paging, RequestHeaders, ResourceSpec};

/// ConnectWise's largest page.
pub const MAX_PAGE_SIZE: u32 = ElementKind::ConnectWise.max_page_size();

#[derive(Clone)]
pub struct ConnectWise {
    base_url: String,
    /// `Authorization` and `clientId`, marked sensitive so they never print.
    headers: RequestHeaders,
}

impl std::fmt::Debug for ConnectWise {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectWise")
            .field(
                "base_url",
                &crate::url_display::shown_url_text(&self.base_url),
            )
            .finish_non_exhaustive()
    }
}

impl ConnectWise {
    /// The headers come parsed from the spec (config checked them at load, so `check` and `run`
    /// refuse the same files).
    pub fn new(spec: &ConnectWiseSpec) -> ConnectWise {
        ConnectWise {
            base_url: spec.base_url.clone(),
            headers: spec.request_headers.clone(),
        }
    }

    pub async fn fetch_page(
        &self,
        client: &ProviderClient,
        resource: &ResourceSpec,
        rendered_url: &str,
        cursor: &Cursor,
    ) -> Result<Page, FetchError> {
        let page_size = resource
            .page_size
            .unwrap_or(MAX_PAGE_SIZE)
            .min(MAX_PAGE_SIZE);
        let first = self.first_page_url(rendered_url)?;
        let url = match cursor {
            Cursor::Url(next) => {
                checked_next(&first, next)?;
                next.clone()
            }
            _ => {
                let mut url = first;
                {
                    let mut q = url.query_pairs_mut();
                    q.append_pair("pageSize", &page_size.to_string());
                    match cursor {
                        Cursor::PageId(id) => {
                            q.append_pair("pageId", id);
                        }
                        Cursor::Page(n) => {
                            q.append_pair("page", &n.to_string());
                        }
                        Cursor::First if resource.paging != Paging::Keyset => {
                            q.append_pair("page", "1");
                        }
                        _ => {}
                    }
                }
                url
            }
        };
        let mut request = client.http().get(url).header(ACCEPT, "application/json");
        for (name, value) in &self.headers {
            request = request.header(name.clone(), value.clone());
        }
        if resource.paging == Paging::Keyset {
            request = request.header("pagination-type", "forward-only");
        }
        let request = request
            .build()
            .map_err(|e| FetchError::Config(e.to_string()))?;
        let response = client.send(request, error_message).await?;
        let Some(records) = response.raw_array()? else {
            return Err(FetchError::Shape {
                url: response.shown_url.clone(),
                message: format!(
                    "expected a JSON array of records, got {}",
                    raw_kind(response.raw_json()?.get())
                ),
            });
        };
        let next = next_page(&response, resource, cursor, &records, page_size)?;
        Ok(Page {
            records,
            next,
            provider_date: response.date(),
        })
    }

    /// The native endpoint with the translated query, before paging parameters.
    fn first_page_url(&self, rendered_url: &str) -> Result<reqwest::Url, FetchError> {
        let native = crate::hubs::native_request(rendered_url)
            .map_err(|e| FetchError::Config(e.to_string()))?;
        let mut url = join_url(&self.base_url, &native.path)?;
        if !native.query.is_empty() {
            url.query_pairs_mut().extend_pairs(native.query.iter());
        }
        Ok(url)
    }
}

/// Where the page after this one starts, or `None` when this was the last.
///
/// Keyset paging builds the next page from the request (`pageId` = the last record's id) and reads
/// the `Link` header only to learn that there is one: behind a gateway or on an alias of the host,
/// the `Link` may name another origin. Offset paging follows the `Link`, within the origin.
fn next_page(
    response: &ProviderResponse,
    resource: &ResourceSpec,
    cursor: &Cursor,
    records: &[RawRecord],
    page_size: u32,
) -> Result<Option<Cursor>, FetchError> {
    let link = response.next_link()?;
    let full = u32::try_from(records.len()).unwrap_or(u32::MAX) >= page_size;
    if records.is_empty() || (link.is_none() && !full) {
        return Ok(None);
    }
    if resource.paging == Paging::Keyset {
        let last_id = records
            .last()
            .and_then(|r| raw::select_path(r.get(), &resource.id_field))
            .and_then(id_text);
        return match last_id {
            Some(id) => Ok(Some(Cursor::PageId(id))),
            None => Err(FetchError::Shape {
                url: response.shown_url.clone(),
                message: format!(
                    "there is a next page, but the last record has no usable {} to ask for it by",
                    resource.id_field
                ),
            }),
        };
    }
    Ok(Some(match (link, cursor) {
        (Some(link), _) => Cursor::Url(link),
        (None, Cursor::Page(n)) => Cursor::Page(n.saturating_add(1)),
        (None, _) => Cursor::Page(2),
    }))
}

/// ConnectWise error bodies: `{"code": …, "message": …, "errors": [{"code", "message", "resource", "field"}]}`.
fn error_message(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let mut out = String::new();
    if let Some(code) = v.get("code").and_then(|c| c.as_str()) {
        out.push_str(code);
    }
    if let Some(message) = v.get("message").and_then(|c| c.as_str()) {
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(message);
    }
    for e in v
        .get("errors")
        .and_then(|e| e.as_array())
        .into_iter()
        .flatten()
    {
        let message = e.get("message").and_then(|m| m.as_str()).unwrap_or("");
        let field = e.get("field").and_then(|m| m.as_str()).unwrap_or("");
        out.push_str(&format!(" [{field}: {message}]"));
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_become_one_line() {
        let body = br#"{"code":"InvalidObject","message":"company object is invalid","errors":[{"code":"Required","message":"identifier required","resource":"company","field":"identifier"}]}"#;
        assert_eq!(
            error_message(body).unwrap(),
            "InvalidObject: company object is invalid [identifier: identifier required]"
        );
        assert_eq!(error_message(b"<html>"), None);
    }
}
