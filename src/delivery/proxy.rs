//! Webhook deliveries through a proxy, chosen as reqwest chooses one (its system proxy:
//! hyper-util's `Matcher`): `HTTP_PROXY` for http:// callbacks, `HTTPS_PROXY` for https:// ones,
//! `ALL_PROXY` for either when its own is not set, upper case before lower case, and `NO_PROXY`
//! (host names, `.domain` suffixes, IP addresses, CIDR networks, `*`) exempting receivers.
//!
//! An http:// callback is sent to the proxy in absolute form, with `Proxy-Authorization` when the
//! proxy URL has a user name; an https:// callback goes through a `CONNECT` tunnel, and TLS to the
//! receiver runs inside it. Only `http://` proxy URLs are supported: an `https://` or SOCKS proxy
//! is reported once at start (naming the variable, never its value) and those deliveries connect
//! directly. The variables are read once, at start; a client never reads the environment.

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper::Uri;
use hyper::header::HeaderValue;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioIo;

type BoxError = Box<dyn StdError + Send + Sync>;

/// The variables of one proxy choice, in the order hyper-util (and so reqwest) reads them.
const HTTP_VARIABLES: [&str; 2] = ["HTTP_PROXY", "http_proxy"];
const HTTPS_VARIABLES: [&str; 2] = ["HTTPS_PROXY", "https_proxy"];
const ALL_VARIABLES: [&str; 2] = ["ALL_PROXY", "all_proxy"];
const NO_PROXY_VARIABLES: [&str; 2] = ["NO_PROXY", "no_proxy"];

/// Which proxy, if any, webhook deliveries use. Built once at start (see [`Self::from_env`]);
/// cheap to clone. Never shows a proxy's user name or password.
#[derive(Clone, Default)]
pub struct ProxySettings {
    /// `None` when no callback goes through a proxy: requests then skip matching altogether.
    matcher: Option<Arc<Matcher>>,
    /// The http:// callbacks' proxy, when there is one.
    http: Option<Chosen>,
    /// The https:// callbacks' proxy, when there is one.
    https: Option<Chosen>,
    /// The variable and value that exempt receivers (no secrets in it).
    no_proxy: Option<(&'static str, String)>,
    problems: Vec<ProxyProblem>,
}

/// A proxy in use: the variable that named it and its `host:port` (without credentials).
#[derive(Clone, Debug)]
struct Chosen {
    variable: &'static str,
    shown: String,
    has_credentials: bool,
}

/// A proxy variable that webhook deliveries cannot follow. The texts name the variable, never its
/// value (it may hold a password).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProxyProblem {
    #[error(
        "{variable} names a {scheme}:// proxy, which webhook deliveries do not support (only \
         http:// proxies): the {callbacks} callbacks it would serve connect directly"
    )]
    Unsupported {
        variable: &'static str,
        scheme: String,
        callbacks: &'static str,
    },
    #[error(
        "{variable} is not a proxy URL (expected http://[user:password@]host:port): webhook \
         deliveries ignore it"
    )]
    NotAProxyUrl { variable: &'static str },
    #[error(
        "REQUEST_METHOD is set (a CGI environment): proxy variables are ignored, as reqwest does"
    )]
    Cgi,
}

/// What a proxy variable's value is, by hyper-util's reading of it.
enum ProxyUrl {
    /// An http:// proxy (a URL without a scheme is one too): its `host:port`, and whether the URL
    /// has a user name or password.
    Http(String, bool),
    /// A proxy of a kind hyper-util knows (https, socks4, socks4a, socks5, socks5h).
    Unsupported(String),
    /// Not a URL hyper-util would use: it then falls back to `ALL_PROXY`.
    Invalid,
}

fn classify(value: &str) -> ProxyUrl {
    let Ok(uri) = value.parse::<Uri>() else {
        return ProxyUrl::Invalid;
    };
    let Some(authority) = uri.authority() else {
        return ProxyUrl::Invalid;
    };
    let (host_port, has_credentials) = match authority.as_str().rsplit_once('@') {
        Some((_, host_port)) => (host_port, true),
        None => (authority.as_str(), false),
    };
    match uri.scheme_str() {
        None | Some("http") => ProxyUrl::Http(host_port.to_string(), has_credentials),
        Some(scheme @ ("https" | "socks4" | "socks4a" | "socks5" | "socks5h")) => {
            ProxyUrl::Unsupported(scheme.to_string())
        }
        Some(_) => ProxyUrl::Invalid,
    }
}

impl ProxySettings {
    /// Every delivery connects directly.
    pub fn direct() -> ProxySettings {
        ProxySettings::default()
    }

    /// From this process's environment (call once, at start).
    pub fn from_env() -> ProxySettings {
        ProxySettings::from_variables(|name| std::env::var(name).ok())
    }

    /// From the variables `lookup` gives (`None`: not set), read as hyper-util reads the
    /// environment: the first set name of each pair counts, even when empty.
    pub fn from_variables(lookup: impl Fn(&str) -> Option<String>) -> ProxySettings {
        if lookup("REQUEST_METHOD").is_some() {
            // httpoxy: in a CGI environment HTTP_PROXY may come from a request header.
            return ProxySettings {
                problems: vec![ProxyProblem::Cgi],
                ..ProxySettings::default()
            };
        }
        let first = |names: [&'static str; 2]| {
            names
                .into_iter()
                .find_map(|name| lookup(name).map(|value| (name, value)))
        };
        let all = first(ALL_VARIABLES);
        let mut problems = Vec::new();
        let http = choose(first(HTTP_VARIABLES), all.clone(), "http://", &mut problems);
        let https = choose(first(HTTPS_VARIABLES), all, "https://", &mut problems);
        let no_proxy = first(NO_PROXY_VARIABLES).filter(|(_, value)| !value.trim().is_empty());
        let matcher = (http.is_some() || https.is_some()).then(|| {
            let url = |chosen: &Option<(Chosen, String)>| {
                chosen
                    .as_ref()
                    .map_or(String::new(), |(_, url)| url.clone())
            };
            Arc::new(
                Matcher::builder()
                    .http(url(&http))
                    .https(url(&https))
                    .no(no_proxy.as_ref().map_or("", |(_, value)| value.as_str()))
                    .build(),
            )
        });
        ProxySettings {
            matcher,
            http: http.map(|(chosen, _)| chosen),
            https: https.map(|(chosen, _)| chosen),
            no_proxy,
            problems,
        }
    }

    /// True when every delivery connects directly.
    pub fn is_direct(&self) -> bool {
        self.matcher.is_none()
    }

    /// The variables deliveries cannot follow.
    pub fn problems(&self) -> &[ProxyProblem] {
        &self.problems
    }

    /// Tells, once at start, which proxies deliveries use and which variables they cannot.
    pub fn log(&self) {
        for problem in &self.problems {
            tracing::error!("{problem}");
        }
        for (callbacks, chosen) in [("http://", &self.http), ("https://", &self.https)] {
            if let Some(chosen) = chosen {
                let exempt = self
                    .no_proxy
                    .as_ref()
                    .map_or(String::new(), |(name, value)| {
                        format!(" except for the receivers {name} names ({value})")
                    });
                tracing::info!(
                    "webhook deliveries to {callbacks} callbacks go through the proxy {} ({}){exempt}",
                    chosen.shown,
                    chosen.variable
                );
            }
        }
    }

    pub(super) fn matcher(&self) -> Option<&Arc<Matcher>> {
        self.matcher.as_ref()
    }

    /// True when http:// requests may need `Proxy-Authorization` (added per request).
    pub(super) fn http_proxy_has_credentials(&self) -> bool {
        self.http
            .as_ref()
            .is_some_and(|chosen| chosen.has_credentials)
    }
}

impl std::fmt::Debug for ProxySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown =
            |chosen: &Option<Chosen>| chosen.as_ref().map(|c| (c.variable, c.shown.clone()));
        f.debug_struct("ProxySettings")
            .field("http", &shown(&self.http))
            .field("https", &shown(&self.https))
            .field("no_proxy", &self.no_proxy)
            .field("problems", &self.problems)
            .finish()
    }
}

/// The proxy for one scheme: its own variable when it holds a proxy URL, else `ALL_PROXY`'s.
/// An unsupported kind of proxy is not replaced by `ALL_PROXY` (reqwest would use it): the
/// operator named a proxy for this scheme, so its deliveries connect directly.
fn choose(
    own: Option<(&'static str, String)>,
    all: Option<(&'static str, String)>,
    callbacks: &'static str,
    problems: &mut Vec<ProxyProblem>,
) -> Option<(Chosen, String)> {
    for (variable, value) in own.into_iter().chain(all) {
        if value.trim().is_empty() {
            continue;
        }
        let problem = match classify(&value) {
            ProxyUrl::Http(shown, has_credentials) => {
                let chosen = Chosen {
                    variable,
                    shown,
                    has_credentials,
                };
                return Some((chosen, value));
            }
            ProxyUrl::Unsupported(scheme) => ProxyProblem::Unsupported {
                variable,
                scheme,
                callbacks,
            },
            ProxyUrl::Invalid => ProxyProblem::NotAProxyUrl { variable },
        };
        let unsupported = matches!(problem, ProxyProblem::Unsupported { .. });
        // ALL_PROXY is read for both schemes: report it once.
        if !problems.iter().any(|known| same_variable(known, &problem)) {
            problems.push(problem);
        }
        if unsupported {
            return None;
        }
    }
    None
}

fn same_variable(a: &ProxyProblem, b: &ProxyProblem) -> bool {
    let variable = |p: &ProxyProblem| match p {
        ProxyProblem::Unsupported { variable, .. } | ProxyProblem::NotAProxyUrl { variable } => {
            Some(*variable)
        }
        ProxyProblem::Cgi => None,
    };
    variable(a).is_some() && variable(a) == variable(b)
}

/// The `Proxy-Authorization` value of an http:// request that goes through a proxy with
/// credentials (marked sensitive).
pub(super) fn http_proxy_credentials(matcher: &Matcher, uri: &Uri) -> Option<HeaderValue> {
    if uri.scheme() != Some(&hyper::http::uri::Scheme::HTTP) {
        return None;
    }
    matcher.intercept(uri)?.basic_auth().cloned()
}

/// Opens the TCP connection for a request: to the receiver, to the HTTP proxy (http://), or a
/// `CONNECT` tunnel through the proxy (https://, TLS is added on top by the caller).
#[derive(Clone)]
pub(super) struct ProxyConnector {
    pub(super) tcp: HttpConnector,
    pub(super) matcher: Option<Arc<Matcher>>,
}

/// Connecting through a proxy failed; names the proxy, never its credentials.
#[derive(Debug, thiserror::Error)]
#[error("{action} through the proxy {proxy}")]
struct ThroughProxy {
    action: &'static str,
    proxy: String,
    #[source]
    source: BoxError,
}

impl tower_service::Service<Uri> for ProxyConnector {
    type Response = ProxiedStream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<ProxiedStream, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.tcp.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, destination: Uri) -> Self::Future {
        let intercept = self
            .matcher
            .as_ref()
            .and_then(|matcher| matcher.intercept(&destination));
        let Some(intercept) = intercept else {
            let connecting = self.tcp.call(destination);
            return Box::pin(async move {
                Ok(ProxiedStream {
                    io: connecting.await?,
                    absolute_form: false,
                })
            });
        };
        let proxy_uri = intercept.uri().clone();
        let proxy = proxy_uri
            .authority()
            .map_or_else(String::new, ToString::to_string);
        if destination.scheme() == Some(&hyper::http::uri::Scheme::HTTPS) {
            let mut tunnel = Tunnel::new(proxy_uri, self.tcp.clone());
            if let Some(auth) = intercept.basic_auth() {
                tunnel = tunnel.with_auth(auth.clone());
            }
            let connecting = tower_service::Service::call(&mut tunnel, destination);
            Box::pin(through_proxy(
                connecting,
                proxy,
                "opening a CONNECT tunnel",
                false,
            ))
        } else {
            let connecting = self.tcp.call(proxy_uri);
            Box::pin(through_proxy(connecting, proxy, "connecting", true))
        }
    }
}

/// Awaits a connection made through `proxy` (`action` says how), naming the proxy on failure.
async fn through_proxy<E: Into<BoxError>>(
    connecting: impl Future<Output = Result<TokioIo<tokio::net::TcpStream>, E>>,
    proxy: String,
    action: &'static str,
    absolute_form: bool,
) -> Result<ProxiedStream, BoxError> {
    match connecting.await {
        Ok(io) => Ok(ProxiedStream { io, absolute_form }),
        Err(e) => Err(Box::new(ThroughProxy {
            action,
            proxy,
            source: e.into(),
        })),
    }
}

/// A TCP connection, to the receiver or a proxy. Requests on a connection to an HTTP proxy
/// (not a tunnel) are sent in absolute form.
pub(super) struct ProxiedStream {
    io: TokioIo<tokio::net::TcpStream>,
    absolute_form: bool,
}

impl Connection for ProxiedStream {
    fn connected(&self) -> Connected {
        self.io.connected().proxy(self.absolute_form)
    }
}

impl Read for ProxiedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl Write for ProxiedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}
