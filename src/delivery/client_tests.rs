//! One attempt over real loopback connections: what reaches the receiver (headers, Basic
//! credentials from the URL), what a 3xx, an error page, a refused connection, a hung receiver
//! or an unusable URL become, and HTTPS with a private CA over HTTP/1.1 and over h2.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use chrono::Utc;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Response, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, pki_types};

use super::attempt::{Outcome, Route, Target, attempt};
use super::client::WebhookClient;
use super::proxy::ProxySettings;
use crate::callback::Endpoint;
use crate::config::settings::DeliverySettings;
use crate::sim::receiver::{Behaviour, Receiver};
use crate::store::{OutboxEntry, ResourceKey};
use crate::tls_roots::TlsCa;

pub(super) fn settings(timeout: Duration) -> DeliverySettings {
    DeliverySettings {
        timeout,
        schedule: vec![Duration::from_secs(1)],
        max_in_flight: 4,
        grace_period: Duration::from_secs(1),
    }
}

fn client() -> WebhookClient {
    WebhookClient::new(
        &settings(Duration::from_secs(10)),
        None,
        &ProxySettings::direct(),
    )
    .unwrap()
}

pub(super) fn entry(event_id: &str) -> OutboxEntry {
    OutboxEntry {
        key: ResourceKey::new("client-test", "contacts"),
        seq: 1,
        event_id: event_id.to_string(),
        body: Vec::new(),
        created_at: Utc::now(),
        attempts: 0,
        next_attempt_at: None,
        last_error: None,
    }
}

/// A private CA's PEM, checked as `tls.caFile` is.
pub(super) fn test_ca(pem: &str) -> TlsCa {
    TlsCa::from_pem("test-ca.pem".into(), pem.as_bytes()).expect("a private CA's certificate")
}

pub(super) fn route(url: &str) -> Route {
    Route::new(Target {
        callback: Endpoint::parse(url).expect("a callback URL that parses"),
        signature_key: None,
        webhook_secret: None,
    })
}

pub(super) const BODY: &[u8] = r#"{"id":"evt-1","text":"ünïcode"}"#.as_bytes();

pub(super) async fn send(http: &WebhookClient, url: &str, event_id: &str) -> Outcome {
    attempt(
        http,
        &route(url),
        &entry(event_id),
        &Bytes::from_static(BODY),
        Utc::now(),
    )
    .await
}

pub(super) fn retry_error(outcome: Outcome) -> String {
    match outcome {
        Outcome::Retry {
            status: None,
            error,
            retry_after: None,
        } => error,
        other => panic!("expected a retry without an answer, got {other:?}"),
    }
}

#[tokio::test]
async fn the_post_carries_spec_headers_and_url_credentials_as_basic_auth() {
    let receiver = Receiver::start().await.unwrap();
    let port = receiver.addr().port();
    let url = format!("http://hook%20user:p%40ss@127.0.0.1:{port}/hook?x=1#fragment");
    let outcome = send(&client(), &url, "evt-1").await;
    assert_eq!(outcome, Outcome::Delivered { status: 200 });

    let requests = receiver.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.method, "POST");
    assert_eq!(
        r.path, "/hook?x=1",
        "no user info or fragment in the request target"
    );
    assert_eq!(r.body, BODY);
    let expected_credentials = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("hook user:p@ss")
    );
    for (name, value) in [
        ("content-type", "application/json"),
        ("content-length", BODY.len().to_string().as_str()),
        ("user-agent", concat!("pollerd/", env!("CARGO_PKG_VERSION"))),
        ("host", format!("127.0.0.1:{port}").as_str()),
        ("accept", "*/*"),
        ("authorization", expected_credentials.as_str()),
        ("elements-webhook-id", "evt-1"),
        ("webhook-id", "evt-1"),
    ] {
        assert_eq!(r.header(name), Some(value), "{name} in {r:?}");
    }
    let timestamp: i64 = r.header("webhook-timestamp").unwrap().parse().unwrap();
    assert!(
        (timestamp - Utc::now().timestamp()).abs() < 60,
        "{timestamp}"
    );
}

#[test]
fn debug_and_logs_show_no_url_credentials() {
    let route = route("https://hook-user:s3cret@example.invalid:8443/hook");
    assert_eq!(route.shown_url, "https://example.invalid:8443/hook");
    let shown = format!("{route:?}");
    assert!(
        !shown.contains("s3cret") && !shown.contains("hook-user"),
        "{shown}"
    );
    assert!(shown.contains("example.invalid:8443/hook"), "{shown}");
}

#[tokio::test]
async fn without_user_info_no_credentials_are_sent() {
    let receiver = Receiver::start().await.unwrap();
    assert_eq!(
        send(&client(), &receiver.url(), "evt-2").await,
        Outcome::Delivered { status: 200 }
    );
    assert_eq!(receiver.requests()[0].header("authorization"), None);
}

/// Accepts connections on 127.0.0.1 and answers every request with `answer` (raw HTTP/1.1),
/// counting the requests it saw.
async fn canned_server(answer: String) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let address = listener.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let answer = answer.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                // Our requests are small: the head and the body arrive in a few reads.
                while !request.ends_with(BODY) {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let _ = socket.write_all(answer.as_bytes()).await;
                // Hold the connection until the client drops it.
                let _ = socket.read(&mut buffer).await;
            });
        }
    });
    (address, seen)
}

#[tokio::test]
async fn a_redirect_is_rejected_and_not_followed() {
    let elsewhere = Receiver::start().await.unwrap();
    let (address, seen) = canned_server(format!(
        "HTTP/1.1 307 Temporary Redirect\r\nLocation: {}\r\nContent-Length: 0\r\n\r\n",
        elsewhere.url()
    ))
    .await;
    let outcome = send(&client(), &format!("http://{address}/hook"), "evt-3").await;
    assert_eq!(
        outcome,
        Outcome::Reject {
            status: 307,
            error: "HTTP 307: ".to_string()
        }
    );
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    assert_eq!(elsewhere.request_count(), 0, "the redirect was followed");
}

#[tokio::test]
async fn an_error_answer_keeps_its_body_snippet_and_retry_after() {
    let page = "<html>\n  <body>Service down</body>\n</html>";
    let (address, _) = canned_server(format!(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n{page}",
        page.len()
    ))
    .await;
    let outcome = send(&client(), &format!("http://{address}/"), "evt-4").await;
    assert_eq!(
        outcome,
        Outcome::Retry {
            status: Some(503),
            error: "HTTP 503: <html> <body>Service down</body> </html>".to_string(),
            retry_after: Some(Duration::from_secs(7)),
        }
    );
}

#[tokio::test]
async fn a_refused_connection_is_a_connection_failure() {
    let port = {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        listener.local_addr().unwrap().port()
    };
    let error = retry_error(send(&client(), &format!("http://127.0.0.1:{port}/"), "evt-5").await);
    assert!(error.starts_with("connection failed: "), "{error}");
    assert!(error.contains("refused"), "{error}");
}

#[tokio::test]
async fn a_receiver_that_never_answers_times_out_within_the_timeout() {
    let receiver = Receiver::start().await.unwrap();
    receiver.set_default(Behaviour::Hang);
    let http = WebhookClient::new(
        &settings(Duration::from_millis(300)),
        None,
        &ProxySettings::direct(),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let error = retry_error(send(&http, &receiver.url(), "evt-6").await);
    assert!(error.starts_with("timed out: "), "{error}");
    // A hang is never answered: only the timeout ends the attempt (bound generous for a busy
    // machine).
    assert!(started.elapsed() < Duration::from_secs(10), "{error}");
}

#[tokio::test]
async fn an_unusable_url_or_event_id_is_a_clear_error_without_secrets() {
    let http = client();
    // A target holds a parsed endpoint, so a URL that cannot be sent to is refused when the
    // endpoint is made (config does it when it loads the file), never at an attempt.
    let error = crate::http_util::error_chain(&Endpoint::parse("not a url").unwrap_err());
    assert!(
        error.starts_with("the callback URL does not parse"),
        "{error}"
    );
    let error = crate::http_util::error_chain(
        &Endpoint::parse("ftp://user:s3cret@127.0.0.1/hook").unwrap_err(),
    );
    assert!(
        error.starts_with("the callback URL's scheme is \"ftp\""),
        "{error}"
    );
    assert!(!error.contains("s3cret"), "{error}");

    let receiver = Receiver::start().await.unwrap();
    let error = retry_error(send(&http, &receiver.url(), "evt\n8").await);
    assert!(
        error.starts_with("request failed: the event id is not a valid header value"),
        "{error}"
    );
    assert_eq!(receiver.request_count(), 0);
}

/// A private CA (PEM) and a TLS server configuration for 127.0.0.1 signed by it, offering
/// `alpn` (empty: no ALPN, as a plain HTTP/1.1 server).
pub(super) fn private_ca(alpn: &[&[u8]]) -> (String, rustls::ServerConfig) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let key = pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der().clone()], key)
    .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    (ca.pem(), config)
}

/// What the TLS server saw of one request.
#[derive(Debug, Clone)]
pub(super) struct Seen {
    pub(super) version: Version,
    pub(super) authority: Option<String>,
    pub(super) body: Bytes,
}

/// An HTTPS server on 127.0.0.1 answering 200, speaking h2 when ALPN chose it, else HTTP/1.1.
pub(super) async fn tls_server(
    config: rustls::ServerConfig,
) -> (SocketAddr, Arc<Mutex<Vec<Seen>>>) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let address = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let log = log.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake.
                let Ok(tls) = acceptor.accept(socket).await else {
                    return;
                };
                let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let log = log.clone();
                    async move {
                        let version = request.version();
                        let authority =
                            request
                                .uri()
                                .authority()
                                .map(|a| a.to_string())
                                .or_else(|| {
                                    request
                                        .headers()
                                        .get(hyper::header::HOST)
                                        .and_then(|h| h.to_str().ok())
                                        .map(str::to_string)
                                });
                        let body = request.into_body().collect().await?.to_bytes();
                        log.lock().unwrap().push(Seen {
                            version,
                            authority,
                            body,
                        });
                        Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::new())))
                    }
                });
                let io = TokioIo::new(tls);
                if h2 {
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(io, service)
                        .await;
                } else {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                }
            });
        }
    });
    (address, seen)
}

async fn https_round_trip(alpn: &[&[u8]], expected: Version) {
    let (ca_pem, config) = private_ca(alpn);
    let (address, seen) = tls_server(config).await;
    let url = format!("https://127.0.0.1:{}/hook", address.port());

    // The system roots alone do not know the private CA.
    let error = retry_error(send(&client(), &url, "evt-9").await);
    assert!(error.starts_with("connection failed: "), "{error}");
    assert!(
        error.contains("invalid peer certificate: UnknownIssuer"),
        "{error}"
    );
    assert!(seen.lock().unwrap().is_empty());

    let trusting = WebhookClient::new(
        &settings(Duration::from_secs(10)),
        Some(&test_ca(&ca_pem)),
        &ProxySettings::direct(),
    )
    .unwrap();
    for _ in 0..2 {
        assert_eq!(
            send(&trusting, &url, "evt-9").await,
            Outcome::Delivered { status: 200 }
        );
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    for request in seen {
        assert_eq!(request.version, expected);
        assert_eq!(
            request.authority.as_deref(),
            Some(format!("127.0.0.1:{}", address.port()).as_str())
        );
        assert_eq!(request.body, BODY);
    }
}

#[tokio::test]
async fn https_with_a_private_ca_works_over_http1_only() {
    https_round_trip(&[], Version::HTTP_11).await;
    https_round_trip(&[b"http/1.1"], Version::HTTP_11).await;
}

#[tokio::test]
async fn https_with_a_private_ca_works_over_h2() {
    https_round_trip(&[b"h2", b"http/1.1"], Version::HTTP_2).await;
}
