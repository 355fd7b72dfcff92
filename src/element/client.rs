//! The one HTTP client every element shares: a limit of concurrent requests per provider host, a
//! pause for the tenant that answered 429, redirects only within the origin the credentials are
//! for, and bodies read up to a size limit.

#![deny(clippy::arithmetic_side_effects)]

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use chrono::Utc;
use reqwest::header::{CONTENT_TYPE, DATE, HeaderMap, LINK, LOCATION, RETRY_AFTER};
use serde_json::value::RawValue;
use tokio::sync::Semaphore;

use super::{FetchError, RawRecord, origin_text, raw, same_origin};
use crate::config::settings::{DEFAULT_MAX_CLOCK_SKEW, DEFAULT_MAX_RESPONSE_SIZE};
use crate::http_util::{
    error_chain, is_json_media_type, next_link, parse_http_date, parse_retry_after, shown_text,
    snippet,
};
use crate::tls_roots::TlsCa;
use crate::url_display::shown_url;

/// The longest a provider's 429 can pause its tenant; a longer `Retry-After` is cut to this.
pub const MAX_PROVIDER_PAUSE: Duration = Duration::from_secs(600);
/// The pause after a 429 without a readable `Retry-After`.
const DEFAULT_PROVIDER_PAUSE: Duration = Duration::from_secs(5);
/// How much of an error answer's body is read: enough for any error message.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// Redirects followed within one origin.
const MAX_REDIRECTS: usize = 5;

/// Shared by all pollers: keep-alive connections, per-host limits and per-tenant pauses.
#[derive(Clone)]
pub struct ProviderClient {
    http: reqwest::Client,
    hosts: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
    pauses: Arc<TenantPauses>,
    max_per_host: usize,
    timeout: Duration,
    limits: ProviderLimits,
}

/// Tenants told to wait by a 429, until when. A tenant is an origin and the credentials sent to
/// it: ConnectWise cloud tenants share one host, and one's 429 must not stop the others.
#[derive(Default)]
struct TenantPauses {
    /// Keys credentials without keeping them (a per-process random hash).
    hasher: RandomState,
    until: Mutex<HashMap<u64, Instant>>,
}

impl TenantPauses {
    /// The origin and every header marked sensitive (credentials, API keys) of a request.
    fn tenant(&self, request: &reqwest::Request) -> u64 {
        let mut h = self.hasher.build_hasher();
        let url = request.url();
        (url.scheme(), url.host_str(), url.port_or_known_default()).hash(&mut h);
        for (name, value) in request.headers() {
            if value.is_sensitive() {
                (name.as_str(), value.as_bytes()).hash(&mut h);
            }
        }
        h.finish()
    }

    /// How long the tenant must still wait, if at all.
    fn remaining(&self, tenant: u64) -> Option<Duration> {
        let mut until = self.until.lock().expect("tenant pauses");
        let now = Instant::now();
        match until.get(&tenant) {
            Some(at) if *at > now => Some(at.saturating_duration_since(now)),
            Some(_) => {
                until.remove(&tenant);
                None
            }
            None => None,
        }
    }

    fn pause(&self, tenant: u64, wait: Duration) {
        let at = crate::time_math::deadline_in(wait.min(MAX_PROVIDER_PAUSE));
        self.until.lock().expect("tenant pauses").insert(tenant, at);
    }
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
    /// turns verification off.
    pub fn new(timeout: Duration, max_per_host: usize) -> Result<ProviderClient, reqwest::Error> {
        Ok(ProviderClient {
            http: builder(timeout).build()?,
            hosts: Arc::default(),
            pauses: Arc::default(),
            max_per_host: max_per_host.max(1),
            timeout,
            limits: ProviderLimits::default(),
        })
    }

    /// The client the daemon and `pollerd poll` use: timeouts and limits from `[polling]`.
    pub fn from_settings(
        settings: &crate::config::PollingSettings,
    ) -> Result<ProviderClient, reqwest::Error> {
        let mut client = ProviderClient::new(settings.http_timeout, settings.max_per_host)?;
        client.limits = ProviderLimits {
            max_response_size: settings.max_response_size,
            max_clock_skew: settings.max_clock_skew,
        };
        Ok(client)
    }

    pub fn limits(&self) -> ProviderLimits {
        self.limits
    }

    /// The same client for an instance with `tls.caFile`: its own connections, which also trust
    /// that CA; per-host limits and 429 pauses stay shared with every other instance.
    pub fn trusting(&self, ca: &TlsCa) -> Result<ProviderClient, reqwest::Error> {
        let mut builder = builder(self.timeout);
        for certificate in ca.certificates() {
            builder = builder.add_root_certificate(reqwest::Certificate::from_der(certificate)?);
        }
        Ok(ProviderClient {
            http: builder.build()?,
            hosts: self.hosts.clone(),
            pauses: self.pauses.clone(),
            max_per_host: self.max_per_host,
            timeout: self.timeout,
            limits: self.limits,
        })
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    fn host_permits(&self, host: &str) -> Arc<Semaphore> {
        let mut hosts = self.hosts.lock().expect("host gates");
        hosts
            .entry(host.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.max_per_host)))
            .clone()
    }

    /// Sends within the host's limits and reads the answer up to the size limit. Non-2xx
    /// answers, redirects to another origin and oversized bodies are errors (`body_message`
    /// turns a provider's error body into text for the log).
    pub async fn send(
        &self,
        request: reqwest::Request,
        body_message: fn(&[u8]) -> Option<String>,
    ) -> Result<ProviderResponse, FetchError> {
        let shown = shown_url(request.url());
        let tenant = self.pauses.tenant(&request);
        if let Some(remaining) = self.pauses.remaining(tenant) {
            return Err(FetchError::Paused {
                url: shown,
                remaining,
            });
        }
        let host = request.url().host_str().unwrap_or("").to_string();
        let permits = self.host_permits(&host);
        let _permit = permits.acquire().await.expect("never closed");
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
            self.pauses
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
