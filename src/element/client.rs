//! The one HTTP client every element shares: limits per tenant and per host (`super::tenant`),
//! a pause for the tenant that answered 429, redirects only within the origin the credentials
//! are for, and bodies read up to a size limit.

#![deny(clippy::arithmetic_side_effects)]

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chrono::Utc;
use reqwest::header::{CONTENT_TYPE, DATE, HeaderMap, LINK, LOCATION, RETRY_AFTER};
use serde_json::value::RawValue;
use tokio::sync::OwnedSemaphorePermit;

use super::tenant::{Gates, Tenant, TenantLimits, ThrottleWatch};
use super::{FetchError, RawRecord, origin_text, raw, same_origin};
use crate::config::settings::{DEFAULT_MAX_CLOCK_SKEW, DEFAULT_MAX_RESPONSE_SIZE};
use crate::http_util::{
    error_chain, is_json_media_type, next_link, parse_http_date, parse_retry_after, shown_text,
    snippet,
};
use crate::tls_roots::TlsCa;
use crate::url_display::shown_url;

/// The pause after a 429 without a readable `Retry-After`.
const DEFAULT_PROVIDER_PAUSE: Duration = Duration::from_secs(5);
/// How much of an error answer's body is read: enough for any error message.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// Redirects followed within one origin.
const MAX_REDIRECTS: usize = 5;

/// Shared by all pollers: keep-alive connections, and the limits per tenant and per host.
#[derive(Clone)]
pub struct ProviderClient {
    http: reqwest::Client,
    gates: Arc<Gates>,
    timeout: Duration,
    limits: ProviderLimits,
    /// Told of waits for a tenant's request budget: set on the client of one resource's poll loop.
    watch: Option<Arc<dyn ThrottleWatch>>,
}

/// Bounds on what a provider can make pollerd do (`[polling]` settings).
#[derive(Clone, Copy, Debug)]
pub struct ProviderLimits {
    /// A body larger than this fails the request.
    pub max_response_size: u64,
    /// A `Date` further than this from the local clock is not trusted.
    pub max_clock_skew: Duration,
}

impl Default for ProviderLimits {
    fn default() -> Self {
        ProviderLimits {
            max_response_size: DEFAULT_MAX_RESPONSE_SIZE,
            max_clock_skew: DEFAULT_MAX_CLOCK_SKEW,
        }
    }
}

/// What a provider answered, read in full.
pub struct ProviderResponse {
    pub status: reqwest::StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The URL that answered (after same-origin redirects): relative links resolve against it.
    pub url: reqwest::Url,
    /// For messages: scheme, host and path, never credentials.
    pub shown_url: String,
}

impl ProviderResponse {
    pub fn date(&self) -> Option<chrono::DateTime<Utc>> {
        self.headers
            .get(DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_http_date)
    }

    /// The `rel="next"` target of the `Link` headers, resolved against the URL that answered.
    /// A header that cannot be read is an error: it may have named a next page.
    pub fn next_link(&self) -> Result<Option<reqwest::Url>, FetchError> {
        let values = self.headers.get_all(LINK).iter().map(|v| v.as_bytes());
        next_link(values, &self.url).map_err(|e| FetchError::BadLink {
            url: self.shown_url.clone(),
            message: e.to_string(),
        })
    }

    /// The body as JSON text, validated but not parsed into a tree; refuses what is not
    /// labelled or shaped as JSON.
    pub fn raw_json(&self) -> Result<&RawValue, FetchError> {
        self.check_content_type()?;
        serde_json::from_slice(&self.body).map_err(|e| self.bad_json(e))
    }

    /// The body's records when it is a JSON array (`None` when it is valid JSON of another
    /// kind): split and validated in one pass over the body, refused with serde_json's message.
    pub fn raw_array(&self) -> Result<Option<Vec<RawRecord>>, FetchError> {
        self.check_content_type()?;
        let starts_array = self
            .body
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| *b == b'[');
        if starts_array {
            raw::split_records(&self.body)
                .map(Some)
                .map_err(|e| FetchError::BadJson {
                    url: self.shown_url.clone(),
                    message: e.to_string(),
                    snippet: snippet(&self.body),
                })
        } else {
            self.raw_json().map(|_| None)
        }
    }

    /// The body parsed into a tree (for small bodies; pages use [`Self::raw_array`]).
    pub fn json(&self) -> Result<serde_json::Value, FetchError> {
        self.check_content_type()?;
        serde_json::from_slice(&self.body).map_err(|e| self.bad_json(e))
    }

    fn check_content_type(&self) -> Result<(), FetchError> {
        let content_type = self
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !content_type.is_empty() && !is_json_media_type(content_type) {
            return Err(FetchError::NotJson {
                url: self.shown_url.clone(),
                content_type: content_type.to_string(),
                snippet: snippet(&self.body),
            });
        }
        Ok(())
    }

    fn bad_json(&self, e: serde_json::Error) -> FetchError {
        FetchError::BadJson {
            url: self.shown_url.clone(),
            message: e.to_string(),
            snippet: snippet(&self.body),
        }
    }
}

fn builder(timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .redirect(same_origin_redirects())
        .user_agent(concat!("pollerd/", env!("CARGO_PKG_VERSION")))
}

/// Follows a redirect only within the origin (scheme, host, port) of the first request, so that
/// credentials and API keys never reach another host or leave https. Any other redirect stops
/// here, and [`ProviderClient::send`] turns it into an error naming the Location.
fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let stays = attempt
            .previous()
            .first()
            .is_some_and(|first| same_origin(first, attempt.url()));
        if !stays {
            attempt.stop()
        } else if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
        } else {
            attempt.follow()
        }
    })
}

/// Reads a body up to `limit` bytes: `Ok(None)` when it is longer (what was read is dropped,
/// and with it the connection, so an endless body costs no more than `limit`).
async fn read_body(
    response: &mut reqwest::Response,
    limit: usize,
) -> Result<(Bytes, bool), reqwest::Error> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Ok((Bytes::new(), true));
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit.saturating_sub(body.len());
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body.freeze(), true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body.freeze(), false))
}

impl ProviderClient {
    /// Certificates are verified against the system roots (rustls with native roots); nothing
    /// turns verification off. Tenants get the default limits ([`Self::with_tenant_limits`]).
    pub fn new(timeout: Duration, max_per_host: usize) -> Result<ProviderClient, reqwest::Error> {
        Ok(ProviderClient {
            http: builder(timeout).build()?,
            gates: Arc::new(Gates::new(max_per_host, TenantLimits::default())),
            timeout,
            limits: ProviderLimits::default(),
            watch: None,
        })
    }

    /// The client the daemon and `pollerd poll` use: timeouts and limits from `[polling]`.
    pub fn from_settings(
        settings: &crate::config::PollingSettings,
    ) -> Result<ProviderClient, reqwest::Error> {
        let mut client = ProviderClient::new(settings.http_timeout, settings.max_per_host)?
            .with_tenant_limits(TenantLimits {
                max_per_tenant: settings.max_per_tenant,
                requests_per_minute: settings.tenant_requests_per_minute,
            });
        client.limits = ProviderLimits {
            max_response_size: settings.max_response_size,
            max_clock_skew: settings.max_clock_skew,
        };
        Ok(client)
    }

    /// This client with its own tenant limits (and gates: call it before sharing the client).
    pub fn with_tenant_limits(mut self, limits: TenantLimits) -> ProviderClient {
        self.gates = Arc::new(Gates::new(self.gates.max_per_host(), limits));
        self
    }

    /// The same client (limits shared) telling `watch` when a request waits for its tenant's
    /// budget.
    pub fn watched_by(&self, watch: Arc<dyn ThrottleWatch>) -> ProviderClient {
        ProviderClient {
            watch: Some(watch),
            ..self.clone()
        }
    }

    pub fn limits(&self) -> ProviderLimits {
        self.limits
    }

    /// The same client for an instance with `tls.caFile`: its own connections, which also trust
    /// that CA; tenant and host limits and 429 pauses stay shared with every other instance.
    pub fn trusting(&self, ca: &TlsCa) -> Result<ProviderClient, reqwest::Error> {
        let mut builder = builder(self.timeout);
        for certificate in ca.certificates() {
            builder = builder.add_root_certificate(reqwest::Certificate::from_der(certificate)?);
        }
        Ok(ProviderClient {
            http: builder.build()?,
            ..self.clone()
        })
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// A wait for the tenant's budget, told to the watch (if any) as it starts and ends.
    async fn wait_for_budget(&self, wait: Duration) {
        let Some(watch) = self.watch.as_deref() else {
            return tokio::time::sleep(wait).await;
        };
        let shown = WaitShown::start(watch, wait);
        tokio::time::sleep(wait).await;
        drop(shown);
        watch.resume().await;
    }

    /// Waits for the tenant's request budget, then takes a permit of the tenant and one of the
    /// host, in that order: a request waiting for budget holds neither, and one waiting for its
    /// tenant's permit does not hold the host's. A paused tenant's request is refused, before
    /// spending its budget and again once it has its permits (a 429 may have come meanwhile).
    async fn admit(
        &self,
        tenant: Tenant,
        host: &str,
        shown: &str,
    ) -> Result<(OwnedSemaphorePermit, OwnedSemaphorePermit), FetchError> {
        let paused = |remaining| FetchError::Paused {
            url: shown.to_string(),
            remaining,
        };
        let admission = self.gates.admit(tenant, host).map_err(paused)?;
        if !admission.wait.is_zero() {
            self.wait_for_budget(admission.wait).await;
        }
        let tenant_permit = admission.tenant_permits.acquire_owned().await;
        let host_permit = admission.host_permits.acquire_owned().await;
        let permits = (
            tenant_permit.expect("never closed"),
            host_permit.expect("never closed"),
        );
        match self.gates.paused(tenant) {
            Some(remaining) => Err(paused(remaining)),
            None => Ok(permits),
        }
    }

    /// Sends within the tenant's and host's limits and reads the answer up to the size limit.
    /// Non-2xx answers, redirects to another origin and oversized bodies are errors
    /// (`body_message` turns a provider's error body into text for the log).
    pub async fn send(
        &self,
        request: reqwest::Request,
        body_message: fn(&[u8]) -> Option<String>,
    ) -> Result<ProviderResponse, FetchError> {
        let shown = shown_url(request.url());
        let tenant = self.gates.tenant(&request);
        let host = request.url().host_str().unwrap_or("");
        let _permits = self.admit(tenant, host, &shown).await?;
        let request_error = |e: reqwest::Error| FetchError::Request {
            url: shown.clone(),
            timeout: e.is_timeout(),
            message: error_chain(&e.without_url()),
        };
        let mut response = self.http.execute(request).await.map_err(request_error)?;
        let status = response.status();
        if status.is_redirection() {
            return Err(refused_redirect(&response, shown));
        }
        let limit = if status.is_success() {
            usize::try_from(self.limits.max_response_size).unwrap_or(usize::MAX)
        } else {
            MAX_ERROR_BODY
        };
        let announced_too_large = status.is_success()
            && response
                .content_length()
                .is_some_and(|n| n > self.limits.max_response_size);
        let (body, cut) = if announced_too_large {
            (Bytes::new(), true)
        } else {
            read_body(&mut response, limit)
                .await
                .map_err(request_error)?
        };
        let headers = std::mem::take(response.headers_mut());
        if status.is_success() {
            if cut {
                return Err(FetchError::TooLarge {
                    url: shown,
                    limit: self.limits.max_response_size,
                });
            }
            return Ok(ProviderResponse {
                status,
                headers,
                body,
                url: response.url().clone(),
                shown_url: shown,
            });
        }
        let retry_after = headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, Utc::now()));
        if status.as_u16() == 429 {
            self.gates
                .pause(tenant, retry_after.unwrap_or(DEFAULT_PROVIDER_PAUSE));
        }
        Err(FetchError::Status {
            url: shown,
            status: status.as_u16(),
            message: body_message(&body).map_or_else(|| snippet(&body), |m| shown_text(&m)),
            retry_after,
        })
    }
}

/// The error for a redirect the policy did not follow: to another origin, or out of https.
fn refused_redirect(response: &reqwest::Response, shown: String) -> FetchError {
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| response.url().join(v).ok());
    let (origin, location) = match &location {
        Some(l) => (origin_text(l), shown_url(l)),
        None => ("an unreadable Location".to_string(), String::new()),
    };
    FetchError::Redirect {
        url: shown,
        status: response.status().as_u16(),
        origin,
        location,
    }
}

/// Tells a watch of a wait for the tenant's budget, and of its end when dropped (the request
/// may be cancelled midway: a poll loop stopped).
struct WaitShown<'a>(&'a dyn ThrottleWatch);

impl<'a> WaitShown<'a> {
    fn start(watch: &'a dyn ThrottleWatch, wait: Duration) -> WaitShown<'a> {
        watch.waiting(wait);
        WaitShown(watch)
    }
}

impl Drop for WaitShown<'_> {
    fn drop(&mut self) {
        self.0.done();
    }
}
