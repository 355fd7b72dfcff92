//! The webhook client: hyper-util's pooled client over rustls, used directly.
//!
//! Delivery sends one small POST after another to a few receivers, so reqwest's per-request
//! layers (redirect policy, URL to URI conversion, retry and proxy matching, a second timer) would
//! cost more than the request itself (~30,000 instructions of ~60,000 per notification; see
//! BENCHMARKS.md). It still does what a reqwest client (the provider side's) does: certificates
//! verified against the system roots plus an instance's `tls.caFile`, h2 or HTTP/1.1 by ALPN, a
//! keep-alive pool whose idle connections a receiver closed are retried transparently
//! (hyper-util does that), TCP keep-alive, a connect timeout, no redirects (a 3xx is just an
//! answer), and a callback URL's user name and password sent as Basic credentials, never as part
//! of the URL (`crate::callback`); and the proxy variables reqwest obeys (see `proxy.rs`),
//! matched only when one is set.

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::PROXY_AUTHORIZATION;
use hyper::{Request, Response, Uri};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder, MaybeHttpsStream};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::RootCertStore;
use tokio::time::Instant;

use super::proxy::{self, ProxiedStream, ProxyConnector, ProxySettings};
use crate::config::settings::DeliverySettings;
use crate::tls_roots::TlsCa;

/// The longest a connection may take to open (TCP and TLS), unless the attempt's timeout is
/// shorter.
const CONNECT_TIMEOUT_MAX: Duration = Duration::from_secs(10);
/// Idle keep-alive connections are closed after this long (reqwest's default).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// TCP keep-alive probes on open connections (reqwest's defaults).
const TCP_KEEPALIVE: Duration = Duration::from_secs(15);
const TCP_KEEPALIVE_RETRIES: u32 = 3;
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);

/// Building a client failed: the trust anchors could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the system's root certificates could not be loaded: {0}")]
    NativeRoots(String),
    #[error("a certificate of the CA bundle cannot be trusted")]
    CaCertificate(#[source] rustls::Error),
    #[error("setting up TLS")]
    Tls(#[source] rustls::Error),
}

/// Sending a request failed before its answer's headers arrived.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    #[error("error sending request")]
    Http(#[source] hyper_util::client::legacy::Error),
}

impl SendError {
    /// How the failure is told in logs and dead letters: "timed out", "connection failed" (no
    /// connection could be opened, TLS included) or "request failed".
    pub fn kind(&self) -> &'static str {
        match self {
            SendError::TimedOut(_) => "timed out",
            SendError::Http(_) if causes(self).any(is_timeout) => "timed out",
            SendError::Http(e) if e.is_connect() => "connection failed",
            SendError::Http(_) => "request failed",
        }
    }
}

fn causes<'a>(
    e: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(e), |&e| e.source())
}

fn is_timeout(e: &(dyn StdError + 'static)) -> bool {
    e.is::<ConnectTimedOut>()
        || e.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::TimedOut)
        || e.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_timeout)
}

/// Opening a connection (TCP and TLS) took longer than the connect timeout.
#[derive(Debug, thiserror::Error)]
#[error("connecting took longer than {0:?}")]
struct ConnectTimedOut(Duration);

/// A keep-alive client for webhook POSTs; cheap to share behind an `Arc`.
pub struct WebhookClient {
    http: Client<ConnectWithin, Full<Bytes>>,
    timeout: Duration,
    /// Set only when http:// callbacks go through a proxy with credentials: those requests
    /// carry `Proxy-Authorization`.
    http_proxy_authorization: Option<Arc<Matcher>>,
}

impl std::fmt::Debug for WebhookClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookClient")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl WebhookClient {
    /// A client trusting the system roots, and also `extra_ca` (an instance's `tls.caFile`)
    /// when given, connecting through the proxies of `proxies`. Nothing turns certificate
    /// verification off; through a tunnel, the receiver's certificate is verified as without one.
    pub fn new(
        settings: &DeliverySettings,
        extra_ca: Option<&TlsCa>,
        proxies: &ProxySettings,
    ) -> Result<WebhookClient, ClientError> {
        let connect_timeout = settings.timeout.min(CONNECT_TIMEOUT_MAX);
        let mut tcp = HttpConnector::new();
        // The TLS layer in front of it handles https://.
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(connect_timeout));
        tcp.set_keepalive(Some(TCP_KEEPALIVE));
        tcp.set_keepalive_interval(Some(TCP_KEEPALIVE));
        tcp.set_keepalive_retries(Some(TCP_KEEPALIVE_RETRIES));
        tcp.set_tcp_user_timeout(Some(TCP_USER_TIMEOUT));
        let https = HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(extra_ca)?)
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(ProxyConnector {
                tcp,
                matcher: proxies.matcher().cloned(),
            });
        let http = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(settings.max_in_flight.max(1))
            // An idle connection the receiver closed just as it was picked: send again on
            // another (hyper-util's default, relied on).
            .retry_canceled_requests(true)
            .build(ConnectWithin {
                inner: https,
                limit: connect_timeout,
            });
        Ok(WebhookClient {
            http,
            timeout: settings.timeout,
            http_proxy_authorization: proxies
                .http_proxy_has_credentials()
                .then(|| proxies.matcher().cloned())
                .flatten(),
        })
    }

    /// How long an attempt may take, from connecting to the answer's headers (and the short
    /// read of an error body).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends `request`; its answer's headers must arrive before `deadline`.
    pub async fn send(
        &self,
        mut request: Request<Full<Bytes>>,
        deadline: Instant,
    ) -> Result<Response<Incoming>, SendError> {
        if let Some(matcher) = &self.http_proxy_authorization {
            if let Some(credentials) = proxy::http_proxy_credentials(matcher, request.uri()) {
                request
                    .headers_mut()
                    .insert(PROXY_AUTHORIZATION, credentials);
            }
        }
        match tokio::time::timeout_at(deadline, self.http.request(request)).await {
            Ok(answer) => answer.map_err(SendError::Http),
            Err(_) => Err(SendError::TimedOut(self.timeout)),
        }
    }
}

/// rustls with ring, TLS 1.2 and 1.3, trusting the system roots and `extra_ca`.
fn tls_config(extra_ca: Option<&TlsCa>) -> Result<rustls::ClientConfig, ClientError> {
    let mut roots = RootCertStore::empty();
    for certificate in extra_ca.map(TlsCa::certificates).unwrap_or_default() {
        roots
            .add(certificate.clone())
            .map_err(ClientError::CaCertificate)?;
    }
    add_native_roots(&mut roots)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(ClientError::Tls)?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The system's roots. Stores often hold a few certificates rustls cannot parse: those are
/// skipped; only a store of which none could be used is an error.
fn add_native_roots(roots: &mut RootCertStore) -> Result<(), ClientError> {
    let loaded = rustls_native_certs::load_native_certs();
    let (valid, invalid) = roots.add_parsable_certificates(loaded.certs);
    if valid == 0 && invalid > 0 {
        let reasons: Vec<String> = loaded.errors.iter().map(ToString::to_string).collect();
        return Err(ClientError::NativeRoots(if reasons.is_empty() {
            "none of them is a valid certificate".to_string()
        } else {
            reasons.join("; ")
        }));
    }
    Ok(())
}

/// The HTTPS connector with one limit on TCP and TLS together, as reqwest's connect timeout.
#[derive(Clone)]
struct ConnectWithin {
    inner: HttpsConnector<ProxyConnector>,
    limit: Duration,
}

type BoxError = Box<dyn StdError + Send + Sync>;
type Connection = MaybeHttpsStream<ProxiedStream>;

impl tower_service::Service<Uri> for ConnectWithin {
    type Response = Connection;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Connection, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, destination: Uri) -> Self::Future {
        let connecting = self.inner.call(destination);
        let limit = self.limit;
        Box::pin(async move {
            match tokio::time::timeout(limit, connecting).await {
                Ok(connected) => connected,
                Err(_) => Err(Box::new(ConnectTimedOut(limit)) as BoxError),
            }
        })
    }
}
