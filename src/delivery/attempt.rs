//! One delivery attempt: the POST with SPEC §5's headers, and what its answer means (SPEC §6).

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};

use super::sign::{SigningKey, WebhookSecret};
use crate::config::Secret;
use crate::http_util::{error_chain, parse_retry_after, snippet};
use crate::store::OutboxEntry;

/// Where an instance's notifications go and how they are signed.
#[derive(Clone)]
pub struct Target {
    pub callback_url: String,
    pub signature_key: Option<Secret>,
    pub webhook_secret: Option<WebhookSecret>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("callback_url", &self.callback_url)
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

/// A [`Target`] made ready to send to, once per target rather than once per notification: its
/// URL parsed and its signing keys expanded.
#[derive(Debug)]
pub struct Route {
    pub target: Target,
    /// `None` when the URL does not parse: the request then fails the way it always did.
    url: Option<reqwest::Url>,
    elements_key: Option<SigningKey>,
    standard_key: Option<SigningKey>,
}

impl Route {
    pub fn new(target: Target) -> Route {
        Route {
            url: reqwest::Url::parse(&target.callback_url).ok(),
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
    http: &reqwest::Client,
    route: &Route,
    entry: &OutboxEntry,
    body: &bytes::Bytes,
    now: DateTime<Utc>,
) -> Outcome {
    let timestamp = now.timestamp();
    let request = match &route.url {
        Some(url) => http.post(url.clone()),
        None => http.post(&route.target.callback_url),
    };
    let request = request.header(CONTENT_TYPE, APPLICATION_JSON);
    let mut request = match HeaderValue::from_str(&entry.event_id) {
        Ok(id) => request
            .header(ELEMENTS_WEBHOOK_ID, id.clone())
            .header(WEBHOOK_ID, id),
        // Not a valid header value: reqwest reports it when sending, as it always did.
        Err(_) => request.header(ELEMENTS_WEBHOOK_ID, &entry.event_id),
    }
    .header(WEBHOOK_TIMESTAMP, HeaderValue::from(timestamp));
    if let Some(key) = &route.elements_key {
        request = request.header(ELEMENTS_WEBHOOK_SIGNATURE, key.elements_signature(body));
    }
    if let Some(key) = &route.standard_key {
        request = request.header(
            WEBHOOK_SIGNATURE,
            key.standard_signature(&entry.event_id, timestamp, body),
        );
    }
    let response = match request.body(body.clone()).send().await {
        Ok(r) => r,
        Err(e) => {
            let kind = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "connection failed"
            } else {
                "request failed"
            };
            return Outcome::Retry {
                status: None,
                error: format!("{kind}: {}", error_chain(&e.without_url())),
                retry_after: None,
            };
        }
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v: &HeaderValue| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, now));
    if (200..300).contains(&status) {
        return Outcome::Delivered { status };
    }
    // Read a little of the answer for the log and the dead letter.
    let body = tokio::time::timeout(Duration::from_secs(2), response.bytes())
        .await
        .ok()
        .and_then(Result::ok)
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

/// The delay before attempt `failures + 1`: the schedule's step with up to 20 % added jitter
/// (never earlier than the schedule), or the receiver's Retry-After when longer. `None`: the
/// schedule is exhausted.
pub fn next_delay(
    schedule: &[Duration],
    failures: u32,
    retry_after: Option<Duration>,
) -> Option<Duration> {
    let step = *schedule.get(failures.checked_sub(1)? as usize)?;
    let jittered = step.mul_f64(1.0 + fastrand::f64() * 0.2);
    Some(retry_after.map_or(jittered, |r| r.max(jittered)))
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
            next_delay(&schedule, 1, Some(Duration::from_secs(60))),
            Some(Duration::from_secs(60))
        );
    }
}
