//! The generic `http` element: any JSON REST API. Records are the body (an array) or the array at
//! `itemsPath`; the next page comes from a `Link: rel="next"` header, a cursor field in the body
//! (`nextPageField` → `nextPageParam`), or a page number (`pageParam`, with `pageSize`).

#![deny(clippy::arithmetic_side_effects)]

use reqwest::header::ACCEPT;

use super::raw::{self, raw_kind};
use super::{
    Cursor, FetchError, Page, ProviderClient, ProviderResponse, RawRecord, checked_next, id_text,
    join_url,
};
use crate::config::{HttpSpec, Paging, RequestHeaders, ResourceSpec};

#[derive(Clone)]
pub struct HttpElement {
    base_url: String,
    /// Operator headers and auth, all marked sensitive so they never print.
    headers: RequestHeaders,
}

impl std::fmt::Debug for HttpElement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpElement")
            .field(
                "base_url",
                &crate::url_display::shown_url_text(&self.base_url),
            )
            .finish_non_exhaustive()
    }
}

impl HttpElement {
    /// The headers come parsed from the spec (config checked them at load, so `check` and `run`
    /// refuse the same files).
    pub fn new(spec: &HttpSpec) -> HttpElement {
        HttpElement {
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
        let url = self.page_url(resource, rendered_url, cursor)?;
        let mut request = client.http().get(url).header(ACCEPT, "application/json");
        for (name, value) in &self.headers {
            request = request.header(name.clone(), value.clone());
        }
        let request = request
            .build()
            .map_err(|e| FetchError::Config(e.to_string()))?;
        let response = client.send(request, |_| None).await?;
        let (records, next_token) = records_and_token(&response, resource)?;
        let next = match &resource.paging {
            Paging::Cursor { .. } => next_token.and_then(id_text).map(Cursor::Token),
            Paging::Page { .. } => next_page_number(resource, cursor, &records),
            _ => response.next_link()?.map(Cursor::Url),
        };
        Ok(Page {
            records,
            next,
            provider_date: response.date(),
        })
    }

    /// The URL of the page at `cursor`: a next-page link (within the first page's origin), or the
    /// rendered URL with the cursor's token or page number.
    fn page_url(
        &self,
        resource: &ResourceSpec,
        rendered_url: &str,
        cursor: &Cursor,
    ) -> Result<reqwest::Url, FetchError> {
        let first = join_url(&self.base_url, rendered_url)?;
        let mut url = first.clone();
        match (cursor, &resource.paging) {
            (Cursor::Url(next), _) => {
                checked_next(&first, next)?;
                url = next.clone();
            }
            (Cursor::Token(token), Paging::Cursor { param, .. }) => {
                url.query_pairs_mut().append_pair(param, token);
            }
            (Cursor::First | Cursor::Page(_), Paging::Page { param }) => {
                let n = if let Cursor::Page(n) = cursor { *n } else { 1 };
                let mut q = url.query_pairs_mut();
                q.append_pair(param, &n.to_string());
                if let Some(size) = resource.page_size {
                    q.append_pair("pageSize", &size.to_string());
                }
            }
            _ => {}
        }
        Ok(url)
    }
}

/// The records array (the body, or the array at `itemsPath`) and the next-page token field, found
/// in one scan of the body's top level.
fn records_and_token<'a>(
    response: &'a ProviderResponse,
    resource: &ResourceSpec,
) -> Result<(Vec<RawRecord>, Option<&'a str>), FetchError> {
    let body = response.raw_json()?;
    let cursor_field = match &resource.paging {
        Paging::Cursor { field, .. } => Some(field),
        _ => None,
    };
    let wanted: Vec<Vec<&str>> = [resource.items_path.as_ref(), cursor_field]
        .into_iter()
        .flatten()
        .map(raw::segments)
        .collect();
    let wanted: Vec<&[&str]> = wanted.iter().map(Vec::as_slice).collect();
    let mut found = raw::select(body.get(), &wanted).into_iter();
    let items = match &resource.items_path {
        Some(_) => found.next().flatten(),
        None => Some(body.get()),
    };
    let next_token = found.next().flatten();
    let at = resource
        .items_path
        .as_ref()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let Some(items) = items else {
        return Err(FetchError::Shape {
            url: response.shown_url.clone(),
            message: format!("no {at} in the body"),
        });
    };
    let records = raw::array_items(items).ok_or_else(|| FetchError::Shape {
        url: response.shown_url.clone(),
        message: format!(
            "expected an array of records{}, got {}",
            if at.is_empty() {
                String::new()
            } else {
                format!(" at {at}")
            },
            raw_kind(items)
        ),
    })?;
    Ok((records, next_token))
}

/// Page paging: the next page while this one is full (or, without `pageSize`, not empty).
fn next_page_number(
    resource: &ResourceSpec,
    cursor: &Cursor,
    records: &[RawRecord],
) -> Option<Cursor> {
    let full = resource.page_size.map_or(!records.is_empty(), |s| {
        u32::try_from(records.len()).unwrap_or(u32::MAX) >= s
    });
    let n = if let Cursor::Page(n) = cursor { *n } else { 1 };
    full.then_some(Cursor::Page(n.saturating_add(1)))
}
