//! One delivery attempt: the POST with SPEC §5's headers, and what its answer means (SPEC §6).

#![deny(clippy::arithmetic_side_effects)]

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{
    ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER,
    USER_AGENT,
};
use hyper::{Method, Request};

use super::client::WebhookClient;
use crate::callback::Endpoint;
use crate::config::Secret;
use crate::http_util::{error_chain, parse_retry_after, snippet};
use crate::signing::{SigningKey, WebhookSecret};
use crate::store::OutboxEntry;

/// Where an instance's notifications go and how they are signed.
#[derive(Clone)]
pub struct Target {
    /// The callback URL, parsed when the instance file was loaded.
    pub callback: Endpoint,
    pub signature_key: Option<Secret>,
    pub webhook_secret: Option<WebhookSecret>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("callback_url", &self.callback.shown())
            .field(
                "signed",
                &(self.signature_key.is_some() || self.webhook_secret.is_some()),
            )
            .finish()
    }
}

// SPEC §5's headers, named once instead of parsed from text on every request.
const ELEMENTS_WEBHOOK_ID: HeaderName = HeaderName::from_static("elements-webhook-id");
const ELEMENTS_WEBHOOK_SIGNATURE: HeaderName =
    HeaderName::from_static("elements-webhook-signature");
const WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
const WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
const WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");
const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");
const POLLERD_USER_AGENT: HeaderValue =
    HeaderValue::from_static(concat!("pollerd/", env!("CARGO_PKG_VERSION")));
/// What reqwest sends by default, so a receiver that expects it from reqwest-based senders
/// gets it.
const ACCEPT_ANY: HeaderValue = HeaderValue::from_static("*/*");

/// The most of an error answer's body read for the log and the dead letter (a snippet of it is
/// kept); reading a typical error page to its end lets the connection be reused.
const ERROR_BODY_LIMIT: usize = 64 * 1024;
/// The longest the error body is waited for, within the attempt's timeout.
const ERROR_BODY_WAIT: Duration = Duration::from_secs(2);

/// A [`Target`] made ready to send to, once per target rather than once per notification: its
/// signing keys expanded.
#[derive(Debug)]
pub struct Route {
    pub target: Target,
    /// The callback URL for logs, errors and status, as `url_display` shows URLs.
    pub shown_url: String,
    elements_key: Option<SigningKey>,
    standard_key: Option<SigningKey>,
}

impl Route {
    pub fn new(target: Target) -> Route {
        Route {
            shown_url: target.callback.shown().to_string(),
            elements_key: target
                .signature_key
                .as_ref()
                .map(|key| SigningKey::new(key.expose().as_bytes())),
            standard_key: target
                .webhook_secret
                .as_ref()
                .map(WebhookSecret::signing_key),
            target,
        }
    }
}

/// What became of an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered {
        status: u16,
    },
    /// Worth another try; `retry_after` from the receiver, when it said.
    Retry {
        status: Option<u16>,
        error: String,
        retry_after: Option<Duration>,
    },
    /// Never worth another try (other 4xx, 3xx).
    Reject {
        status: u16,
        error: String,
    },
}

/// Connection errors, timeouts, 408, 425, 429 and 5xx are worth retrying.
pub fn is_retryable(status: u16) -> bool {
    matches!(status, 408 | 425 | 429) || (500..=599).contains(&status)
}

/// Sends `entry` along `route` once.
pub async fn attempt(
    http: &WebhookClient,
    route: &Route,
    entry: &OutboxEntry,
    body: &Bytes,
    now: DateTime<Utc>,
) -> Outcome {
    let deadline = crate::time_math::tokio_deadline_in(http.timeout());
    let request = match request(route, entry, body, now) {
        Ok(r) => r,
        Err(e) => return failed("request failed", &e),
    };
    let response = match http.send(request, deadline).await {
        Ok(r) => r,
        Err(e) => return failed(e.kind(), &e),
    };
    let status = response.status().as_u16();
    if (200..300).contains(&status) {
        return Outcome::Delivered { status };
    }
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, now));
    // Read a little of the answer for the log and the dead letter.
    let wait_until = deadline.min(crate::time_math::tokio_deadline_in(ERROR_BODY_WAIT));
    let body = tokio::time::timeout_at(wait_until, start_of(response.into_body()))
        .await
        .unwrap_or_default();
    let error = format!("HTTP {status}: {}", snippet(&body));
    if is_retryable(status) {
        Outcome::Retry {
            status: Some(status),
            error,
            retry_after,
        }
    } else {
        Outcome::Reject { status, error }
    }
}

/// Why a request could not be made from a route and an entry.
#[derive(Debug, thiserror::Error)]
enum RequestError {
    #[error("the event id is not a valid header value")]
    EventId(#[source] hyper::header::InvalidHeaderValue),
    #[error("a signature is not a valid header value")]
    Signature(#[source] hyper::header::InvalidHeaderValue),
}

/// The POST of SPEC §5: the body and its headers, signed for this attempt's timestamp.
fn request(
    route: &Route,
    entry: &OutboxEntry,
    body: &Bytes,
    now: DateTime<Utc>,
) -> Result<Request<Full<Bytes>>, RequestError> {
    let endpoint = &route.target.callback;
    let id = HeaderValue::from_str(&entry.event_id).map_err(RequestError::EventId)?;
    let timestamp = now.timestamp();
    let mut request = Request::new(Full::new(body.clone()));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = endpoint.uri.clone();
    let headers = request.headers_mut();
    headers.reserve(12);
    headers.insert(CONTENT_TYPE, APPLICATION_JSON);
    headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    headers.insert(USER_AGENT, POLLERD_USER_AGENT);
    headers.insert(ACCEPT, ACCEPT_ANY);
    if let Some(credentials) = &endpoint.authorization {
        headers.insert(AUTHORIZATION, credentials.clone());
    }
    headers.insert(ELEMENTS_WEBHOOK_ID, id.clone());
    headers.insert(WEBHOOK_ID, id);
    headers.insert(WEBHOOK_TIMESTAMP, HeaderValue::from(timestamp));
    if let Some(key) = &route.elements_key {
        let signature =
            HeaderValue::try_from(key.elements_signature(body)).map_err(RequestError::Signature)?;
        headers.insert(ELEMENTS_WEBHOOK_SIGNATURE, signature);
    }
    if let Some(key) = &route.standard_key {
        let signature =
            HeaderValue::try_from(key.standard_signature(&entry.event_id, timestamp, body))
                .map_err(RequestError::Signature)?;
        headers.insert(WEBHOOK_SIGNATURE, signature);
    }
    Ok(request)
}

/// A failure before any answer: worth another try, as SPEC §6 says of connection errors.
fn failed(kind: &str, e: &(dyn std::error::Error + 'static)) -> Outcome {
    Outcome::Retry {
        status: None,
        error: format!("{kind}: {}", error_chain(e)),
        retry_after: None,
    }
}

/// Up to [`ERROR_BODY_LIMIT`] bytes of an answer's body; what arrived when reading fails.
async fn start_of(mut body: Incoming) -> Vec<u8> {
    let mut read = Vec::new();
    while read.len() < ERROR_BODY_LIMIT {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    read.extend_from_slice(data);
                }
            }
            Some(Err(_)) | None => break,
        }
    }
    read
}

/// The delay before attempt `failures + 1`: the schedule's step with up to 20 % added jitter
/// (never earlier than the schedule), or the receiver's Retry-After when longer, cut to the
/// schedule's largest step (a receiver's `Retry-After: 18446744073709551615` must neither
/// overflow a deadline nor block a queue for decades). `None`: the schedule is exhausted.
pub fn next_delay(
    schedule: &[Duration],
    failures: u32,
    retry_after: Option<Duration>,
) -> Option<Duration> {
    let step = *schedule.get(failures.checked_sub(1)? as usize)?;
    let jittered = step.mul_f64(1.0 + fastrand::f64() * 0.2);
    let largest = schedule.iter().copied().max().unwrap_or(step);
    Some(retry_after.map_or(jittered, |r| r.min(largest).max(jittered)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_statuses() {
        for s in [408, 425, 429, 500, 502, 503, 599] {
            assert!(is_retryable(s), "{s}");
        }
        for s in [301, 302, 400, 401, 403, 404, 410, 422] {
            assert!(!is_retryable(s), "{s}");
        }
    }

    #[test]
    fn a_huge_retry_after_is_cut_to_the_largest_step() {
        let schedule = [Duration::from_secs(1), Duration::from_secs(60)];
        let delay = next_delay(&schedule, 1, Some(Duration::from_secs(u64::MAX))).unwrap();
        assert_eq!(delay, Duration::from_secs(60));
    }

    #[test]
    fn delays_follow_the_schedule_with_jitter_and_retry_after() {
        let schedule = [Duration::from_secs(4), Duration::from_secs(16)];
        for _ in 0..100 {
            let d = next_delay(&schedule, 1, None).unwrap();
            assert!(
                d >= Duration::from_secs(4) && d <= Duration::from_millis(4800),
                "{d:?}"
            );
        }
        assert!(next_delay(&schedule, 2, None).unwrap() >= Duration::from_secs(16));
        assert_eq!(next_delay(&schedule, 3, None), None);
        assert_eq!(
            next_delay(&schedule, 1, Some(Duration::from_secs(10))),
            Some(Duration::from_secs(10))
        );
    }
}
