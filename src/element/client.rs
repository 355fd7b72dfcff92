//! The one HTTP client every element shares, with a limit of concurrent requests per provider
//! host and a pause for hosts that answered 429.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use reqwest::header::{CONTENT_TYPE, DATE, HeaderMap, LINK, RETRY_AFTER};
use serde_json::value::RawValue;
use tokio::sync::Semaphore;

use super::{FetchError, RawRecord, raw};
use crate::config::TlsCa;
use crate::http_util::{
    error_chain, is_json_media_type, next_link, parse_http_date, parse_retry_after, snippet,
};

/// Shared by all pollers: keep-alive connections and per-host limits.
#[derive(Clone)]
pub struct ProviderClient {
    http: reqwest::Client,
    hosts: Arc<Mutex<HashMap<String, Arc<HostGate>>>>,
    max_per_host: usize,
    timeout: Duration,
    limits: ProviderLimits,
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
            max_response_size: 64 << 20,
            max_clock_skew: Duration::from_secs(3600),
        }
    }
}

struct HostGate {
    permits: Semaphore,
    /// Set from a 429's Retry-After: no request to this host before then.
    paused_until: Mutex<Option<Instant>>,
}

/// What a provider answered, read in full.
pub struct ProviderResponse {
    pub status: reqwest::StatusCode,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
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

    pub fn next_link(&self) -> Option<String> {
        self.headers
            .get(LINK)
            .and_then(|v| v.to_str().ok())
            .and_then(next_link)
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
        .redirect(reqwest::redirect::Policy::limited(5))
        .user_agent(concat!("pollerd/", env!("CARGO_PKG_VERSION")))
}

/// Scheme, host, port and path of a URL: safe to print.
pub fn shown_url(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.to_string()
}

impl ProviderClient {
    /// Certificates are verified against the system roots (rustls with native roots); nothing
    /// turns verification off.
    pub fn new(timeout: Duration, max_per_host: usize) -> Result<ProviderClient, reqwest::Error> {
        Ok(ProviderClient {
            http: builder(timeout).build()?,
            hosts: Arc::default(),
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

    /// Replaces the limits (tests and benchmarks set small ones).
    pub fn with_limits(mut self, limits: ProviderLimits) -> ProviderClient {
        self.limits = limits;
        self
    }

    pub fn limits(&self) -> ProviderLimits {
        self.limits
    }

    /// The same client for an instance with `tls.caFile`: its own connections, which also trust
    /// that CA; per-host limits and 429 pauses stay shared with every other instance.
    pub fn trusting(&self, ca: &TlsCa) -> Result<ProviderClient, reqwest::Error> {
        let mut builder = builder(self.timeout);
        for certificate in reqwest::Certificate::from_pem_bundle(&ca.pem)? {
            builder = builder.add_root_certificate(certificate);
        }
        Ok(ProviderClient {
            http: builder.build()?,
            hosts: self.hosts.clone(),
            max_per_host: self.max_per_host,
            timeout: self.timeout,
            limits: self.limits,
        })
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    fn gate(&self, host: &str) -> Arc<HostGate> {
        let mut hosts = self.hosts.lock().expect("host gates");
        hosts
            .entry(host.to_string())
            .or_insert_with(|| {
                Arc::new(HostGate {
                    permits: Semaphore::new(self.max_per_host),
                    paused_until: Mutex::new(None),
                })
            })
            .clone()
    }

    /// Sends within the host's limits and reads the whole answer. Non-2xx answers are errors
    /// (`body_message` turns a provider's error body into text for the log).
    pub async fn send(
        &self,
        request: reqwest::Request,
        body_message: fn(&[u8]) -> Option<String>,
    ) -> Result<ProviderResponse, FetchError> {
        let shown = shown_url(request.url());
        let host = request.url().host_str().unwrap_or("").to_string();
        let gate = self.gate(&host);
        let _permit = gate.permits.acquire().await.expect("never closed");
        let paused = *gate.paused_until.lock().expect("pause");
        if let Some(until) = paused {
            tokio::time::sleep_until(until.into()).await;
        }
        let response = self
            .http
            .execute(request)
            .await
            .map_err(|e| FetchError::Request {
                url: shown.clone(),
                timeout: e.is_timeout(),
                message: error_chain(&e.without_url()),
            })?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(|e| FetchError::Request {
            url: shown.clone(),
            timeout: e.is_timeout(),
            message: error_chain(&e.without_url()),
        })?;
        if status.is_success() {
            return Ok(ProviderResponse {
                status,
                headers,
                body,
                shown_url: shown,
            });
        }
        let retry_after = headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, Utc::now()));
        if status.as_u16() == 429 {
            let pause = retry_after.unwrap_or(Duration::from_secs(5));
            *gate.paused_until.lock().expect("pause") = Some(Instant::now() + pause);
        }
        Err(FetchError::Status {
            url: shown,
            status: status.as_u16(),
            message: body_message(&body).unwrap_or_else(|| snippet(&body)),
            retry_after,
        })
    }
}
