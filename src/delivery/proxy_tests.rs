//! Deliveries through proxies written for the test on 127.0.0.1: an HTTP forward proxy (http://
//! callbacks, absolute form, `Proxy-Authorization`), a CONNECT proxy (https:// callbacks, TLS to
//! the receiver inside the tunnel), NO_PROXY exemptions, a refused proxy, and how the variables
//! are read. The variables are given to `ProxySettings::from_variables`, never set in the
//! process (tests run in parallel threads).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use hyper::body::Incoming;
use hyper::header::PROXY_AUTHORIZATION;
use hyper::service::service_fn;
use hyper::{Request, Response, Version};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::attempt::Outcome;
use super::client::WebhookClient;
use super::client_tests::{BODY, private_ca, retry_error, send, settings, test_ca, tls_server};
use super::proxy::{ProxyProblem, ProxySettings};
use crate::sim::receiver::Receiver;

fn proxies(variables: &[(&str, &str)]) -> ProxySettings {
    let variables: HashMap<String, String> = variables
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    ProxySettings::from_variables(|name| variables.get(name).cloned())
}

fn client_via(proxies: &ProxySettings, ca_pem: Option<&str>) -> WebhookClient {
    let ca = ca_pem.map(test_ca);
    WebhookClient::new(&settings(Duration::from_secs(10)), ca.as_ref(), proxies).unwrap()
}

/// What a test proxy was asked: the request line (or CONNECT line) and `Proxy-Authorization`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Asked {
    target: String,
    proxy_authorization: Option<String>,
}

type AskedLog = Arc<Mutex<Vec<Asked>>>;
type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Refuses to reach anything but the loopback address, whatever a request says.
fn loopback_only(authority: &str) -> bool {
    authority.starts_with("127.0.0.1:")
}

/// An HTTP forward proxy on 127.0.0.1: logs each request as it arrived, then sends it on (in
/// origin form, without `Proxy-Authorization`) and returns the answer.
async fn forward_proxy() -> (SocketAddr, AskedLog) {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let address = listener.local_addr().unwrap();
    let asked = AskedLog::default();
    let log = asked.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                // A concrete error type: hyper's bound on a boxed one is not general enough.
                let service = service_fn(move |request: Request<Incoming>| {
                    let log = log.clone();
                    async move { forward(request, log).await.map_err(std::io::Error::other) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(socket), service)
                    .await;
            });
        }
    });
    (address, asked)
}

async fn forward(
    request: Request<Incoming>,
    log: AskedLog,
) -> Result<Response<Incoming>, BoxError> {
    log.lock().unwrap().push(Asked {
        target: request.uri().to_string(),
        proxy_authorization: request
            .headers()
            .get(PROXY_AUTHORIZATION)
            .map(|v| v.to_str().unwrap().to_string()),
    });
    let authority = request
        .uri()
        .authority()
        .ok_or_else(|| BoxError::from("not in absolute form"))?
        .to_string();
    if !loopback_only(&authority) {
        return Err(BoxError::from("the test proxy forwards to 127.0.0.1 only"));
    }
    let upstream = TcpStream::connect(&authority).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(upstream)).await?;
    tokio::spawn(connection);
    let (mut parts, body) = request.into_parts();
    parts.uri = parts
        .uri
        .path_and_query()
        .ok_or("no path")?
        .as_str()
        .parse()?;
    parts.headers.remove(PROXY_AUTHORIZATION);
    Ok(sender
        .send_request(Request::from_parts(parts, body))
        .await?)
}

/// A CONNECT proxy on 127.0.0.1: logs the CONNECT line, answers 200 and pipes bytes both ways.
async fn connect_proxy() -> (SocketAddr, AskedLog) {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let address = listener.local_addr().unwrap();
    let asked = AskedLog::default();
    let log = asked.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                // The client waits for the answer before its TLS hello: the head is all there is.
                let mut head = Vec::new();
                let mut buffer = [0u8; 1024];
                while !head.ends_with(b"\r\n\r\n") {
                    match client.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buffer[..n]),
                    }
                }
                let head = String::from_utf8(head).unwrap();
                let mut lines = head.split("\r\n");
                let target = lines.next().unwrap().to_string();
                let proxy_authorization = lines
                    .filter_map(|line| line.split_once(": "))
                    .find(|(name, _)| name.eq_ignore_ascii_case("proxy-authorization"))
                    .map(|(_, value)| value.to_string());
                log.lock().unwrap().push(Asked {
                    target: target.clone(),
                    proxy_authorization,
                });
                let authority = target
                    .strip_prefix("CONNECT ")
                    .and_then(|rest| rest.strip_suffix(" HTTP/1.1"))
                    .unwrap_or("");
                if !loopback_only(authority) {
                    let _ = client.write_all(b"HTTP/1.1 403 Forbidden\r\n\r\n").await;
                    return;
                }
                let Ok(mut upstream) = TcpStream::connect(authority).await else {
                    let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                    return;
                };
                let _ = client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await;
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    (address, asked)
}

/// A port on 127.0.0.1 nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    listener.local_addr().unwrap().port()
}

fn basic(credentials: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    )
}

#[tokio::test]
async fn an_http_callback_goes_to_the_http_proxy_in_absolute_form_with_its_credentials() {
    let receiver = Receiver::start().await.unwrap();
    let (proxy, asked) = forward_proxy().await;
    let proxy_url = format!("http://proxy%20user:s3cret@{proxy}");
    let http = client_via(
        &proxies(&[
            ("HTTP_PROXY", &proxy_url),
            ("NO_PROXY", "example.internal, 10.0.0.0/8"),
        ]),
        None,
    );
    let port = receiver.addr().port();
    let url = format!("http://hook:pw@127.0.0.1:{port}/hook?x=1");
    for event_id in ["evt-1", "evt-2"] {
        assert_eq!(
            send(&http, &url, event_id).await,
            Outcome::Delivered { status: 200 }
        );
    }

    let asked = asked.lock().unwrap().clone();
    let expected = Asked {
        target: format!("http://127.0.0.1:{port}/hook?x=1"),
        proxy_authorization: Some(basic("proxy user:s3cret")),
    };
    assert_eq!(asked, vec![expected.clone(), expected]);
    let received = receiver.requests();
    assert_eq!(received.len(), 2, "{received:?}");
    for (request, event_id) in received.iter().zip(["evt-1", "evt-2"]) {
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/hook?x=1");
        assert_eq!(request.body, BODY);
        assert_eq!(request.header("webhook-id"), Some(event_id));
        assert_eq!(
            request.header("host"),
            Some(format!("127.0.0.1:{port}").as_str())
        );
        // The receiver's own credentials still reach it; the proxy's do not.
        assert_eq!(
            request.header("authorization"),
            Some(basic("hook:pw").as_str())
        );
        assert_eq!(request.header("proxy-authorization"), None);
    }
}

#[tokio::test]
async fn an_https_callback_goes_through_a_connect_tunnel_with_tls_to_the_receiver() {
    let (ca_pem, config) = private_ca(&[b"h2", b"http/1.1"]);
    let (receiver, seen) = tls_server(config).await;
    let (proxy, asked) = connect_proxy().await;
    let proxy_url = format!("http://tunnel-user:s3cret@{proxy}");
    // Lower case, through ALL_PROXY: as reqwest reads them.
    let settings = proxies(&[("all_proxy", &proxy_url)]);
    let url = format!("https://127.0.0.1:{}/hook", receiver.port());

    // TLS runs to the receiver, not the proxy: without the private CA its certificate fails.
    let error = retry_error(send(&client_via(&settings, None), &url, "evt-1").await);
    assert!(error.starts_with("connection failed: "), "{error}");
    assert!(error.contains("UnknownIssuer"), "{error}");
    assert!(seen.lock().unwrap().is_empty());

    let http = client_via(&settings, Some(&ca_pem));
    assert_eq!(
        send(&http, &url, "evt-2").await,
        Outcome::Delivered { status: 200 }
    );
    let expected = Asked {
        target: format!("CONNECT 127.0.0.1:{} HTTP/1.1", receiver.port()),
        proxy_authorization: Some(basic("tunnel-user:s3cret")),
    };
    assert_eq!(*asked.lock().unwrap(), vec![expected.clone(), expected]);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    // ALPN inside the tunnel chose h2, as it would directly.
    assert_eq!(seen[0].version, Version::HTTP_2);
    assert_eq!(
        seen[0].authority.as_deref(),
        Some(format!("127.0.0.1:{}", receiver.port()).as_str())
    );
    assert_eq!(seen[0].body, BODY);
}

#[tokio::test]
async fn receivers_no_proxy_names_are_reached_directly() {
    let receiver = Receiver::start().await.unwrap();
    let (proxy, asked) = forward_proxy().await;
    let proxy_url = format!("http://{proxy}");
    for no_proxy in ["127.0.0.1", "example.internal, 127.0.0.0/8"] {
        let http = client_via(
            &proxies(&[("HTTP_PROXY", &proxy_url), ("no_proxy", no_proxy)]),
            None,
        );
        assert_eq!(
            send(&http, &receiver.url(), "evt-1").await,
            Outcome::Delivered { status: 200 },
            "NO_PROXY={no_proxy}"
        );
    }
    assert_eq!(receiver.request_count(), 2);
    assert!(asked.lock().unwrap().is_empty(), "{:?}", asked.lock());
}

#[test]
fn no_proxy_names_hosts_domains_and_networks() {
    let settings = proxies(&[
        ("HTTPS_PROXY", "http://127.0.0.1:3128"),
        ("NO_PROXY", "hooks.example.com, .internal, 10.0.0.0/8, ::1"),
    ]);
    let matcher = settings.matcher().unwrap();
    let proxied = |url: &str| matcher.intercept(&url.parse().unwrap()).is_some();
    for direct in [
        "https://hooks.example.com/a",
        "https://a.hooks.example.com/a",
        "https://crm.internal/a",
        "https://10.1.2.3:8443/a",
        "https://[::1]:8443/a",
    ] {
        assert!(!proxied(direct), "{direct} should be direct");
    }
    for through in [
        "https://example.com/a",
        "https://nothooks.example.com/a",
        "https://11.1.2.3/a",
    ] {
        assert!(proxied(through), "{through} should use the proxy");
    }
    // Only HTTPS_PROXY is set: http:// callbacks connect directly.
    assert!(!proxied("http://example.com/a"));

    // `*` exempts every host name but, as in reqwest (hyper-util), not an IP address.
    let everything = proxies(&[("HTTPS_PROXY", "http://127.0.0.1:3128"), ("NO_PROXY", "*")]);
    let matcher = everything.matcher().unwrap();
    assert!(
        matcher
            .intercept(&"https://example.com/".parse().unwrap())
            .is_none()
    );
    assert!(
        matcher
            .intercept(&"https://10.1.2.3/".parse().unwrap())
            .is_some()
    );
}

#[tokio::test]
async fn a_proxy_that_refuses_connections_is_a_connection_failure_without_its_credentials() {
    let port = closed_port();
    let proxy_url = format!("http://proxy-user:s3cret@127.0.0.1:{port}");
    let http = client_via(&proxies(&[("ALL_PROXY", &proxy_url)]), None);
    // Neither request may reach the receiver directly.
    let receiver = Receiver::start().await.unwrap();
    for url in [receiver.url(), "https://127.0.0.1:9/hook".to_string()] {
        let error = retry_error(send(&http, &url, "evt-1").await);
        assert!(error.starts_with("connection failed: "), "{error}");
        assert!(
            error.contains(&format!("through the proxy 127.0.0.1:{port}")),
            "{error}"
        );
        assert!(error.contains("refused"), "{error}");
        assert!(
            !error.contains("s3cret") && !error.contains("proxy-user"),
            "{error}"
        );
    }
    assert_eq!(receiver.request_count(), 0);
}

#[tokio::test]
async fn a_proxy_refusing_the_tunnel_is_a_connection_failure() {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let proxy = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buffer = [0u8; 1024];
            let _ = socket.read(&mut buffer).await;
            let _ = socket
                .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
                .await;
        }
    });
    let http = client_via(&proxies(&[("HTTPS_PROXY", &format!("{proxy}"))]), None);
    let error = retry_error(send(&http, "https://127.0.0.1:9/hook", "evt-1").await);
    assert!(error.starts_with("connection failed: "), "{error}");
    assert!(
        error.contains(&format!("through the proxy {proxy}")),
        "{error}"
    );
    assert!(error.contains("proxy authorization required"), "{error}");
}

#[tokio::test]
async fn an_unsupported_proxy_is_reported_and_deliveries_connect_directly() {
    let settings = proxies(&[
        ("HTTPS_PROXY", "socks5://user:s3cret@127.0.0.1:1080"),
        ("http_proxy", "https://user:s3cret@127.0.0.1:3129"),
        // Not used: each scheme's own variable names a proxy.
        ("ALL_PROXY", "http://127.0.0.1:3128"),
    ]);
    assert!(settings.is_direct());
    assert_eq!(
        settings.problems(),
        [
            ProxyProblem::Unsupported {
                variable: "http_proxy",
                scheme: "https".to_string(),
                callbacks: "http://",
            },
            ProxyProblem::Unsupported {
                variable: "HTTPS_PROXY",
                scheme: "socks5".to_string(),
                callbacks: "https://",
            },
        ]
    );
    for shown in settings
        .problems()
        .iter()
        .map(ToString::to_string)
        .chain([format!("{settings:?}")])
    {
        assert!(
            !shown.contains("s3cret") && !shown.contains("user"),
            "{shown}"
        );
    }
    assert!(
        settings.problems()[1].to_string().starts_with(
            "HTTPS_PROXY names a socks5:// proxy, which webhook deliveries do not support"
        ),
        "{}",
        settings.problems()[1]
    );

    let receiver = Receiver::start().await.unwrap();
    assert_eq!(
        send(&client_via(&settings, None), &receiver.url(), "evt-1").await,
        Outcome::Delivered { status: 200 }
    );
    assert_eq!(receiver.request_count(), 1);
}

#[test]
fn the_variables_are_read_as_reqwest_reads_them() {
    let shown = |variables: &[(&str, &str)]| format!("{:?}", proxies(variables));
    // Upper case first; the lower-case one only when the upper-case one is not set.
    assert_eq!(
        shown(&[
            ("HTTP_PROXY", "http://u:p@upper:3128"),
            ("http_proxy", "http://lower:3128")
        ]),
        r#"ProxySettings { http: Some(("HTTP_PROXY", "upper:3128")), https: None, no_proxy: None, problems: [] }"#
    );
    // ALL_PROXY for the schemes without their own; a value that is no URL falls back to it.
    assert_eq!(
        shown(&[
            ("HTTPS_PROXY", "not a url"),
            ("ALL_PROXY", "all:3128"),
            ("NO_PROXY", "localhost")
        ]),
        r#"ProxySettings { http: Some(("ALL_PROXY", "all:3128")), https: Some(("ALL_PROXY", "all:3128")), no_proxy: Some(("NO_PROXY", "localhost")), problems: [NotAProxyUrl { variable: "HTTPS_PROXY" }] }"#
    );
    // An empty upper-case variable hides the lower-case one (hyper-util does the same).
    assert!(proxies(&[("HTTP_PROXY", ""), ("http_proxy", "http://lower:3128")]).is_direct());
    // httpoxy: in a CGI environment HTTP_PROXY may come from a request.
    let cgi = proxies(&[("REQUEST_METHOD", "POST"), ("HTTP_PROXY", "http://x:1")]);
    assert!(cgi.is_direct());
    assert_eq!(cgi.problems(), [ProxyProblem::Cgi]);
    assert!(proxies(&[]).is_direct() && proxies(&[]).problems().is_empty());
}
