//! Serving HTTP/1.1 on the daemon's own listeners (the metrics port, the admin socket) with
//! bounds, so that clients that connect and never finish a request cannot use up the daemon's
//! file descriptors (which polling and delivery need):
//!
//! - at most [`Limits::max_connections`] connections are open at once; one more is closed as
//!   soon as it is accepted (the client sees the connection close at once, it is not queued);
//! - a request head (the request line and headers) must arrive within
//!   [`Limits::header_read_timeout`] of the connection opening, or of the previous response on
//!   a kept-alive connection; otherwise the connection is closed.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// How much a listener lets its clients hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
}

impl Limits {
    /// What the metrics listener and the admin socket use: far more than a scraper and a few
    /// operators need, far fewer descriptors than the service's `LimitNOFILE=`.
    pub const DAEMON: Limits = Limits {
        max_connections: 256,
        header_read_timeout: Duration::from_secs(10),
    };
}

/// After a stop, how long open connections get to finish the request they are answering.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);
/// After a failed accept (e.g. no descriptor left), how long to wait before the next one.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// Refused connections and failed accepts are logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// A listener whose connections [`serve`] can take.
pub trait Accept: Send + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept_stream(&self) -> impl Future<Output = io::Result<Self::Stream>> + Send;
}

impl Accept for TcpListener {
    type Stream = tokio::net::TcpStream;
    async fn accept_stream(&self) -> io::Result<Self::Stream> {
        self.accept().await.map(|(stream, _)| stream)
    }
}

impl Accept for UnixListener {
    type Stream = tokio::net::UnixStream;
    async fn accept_stream(&self) -> io::Result<Self::Stream> {
        self.accept().await.map(|(stream, _)| stream)
    }
}

/// Serves `router` on `listener` within `limits` until `cancel` fires, then lets open
/// connections finish their request (up to a few seconds). `name` says which listener in logs.
pub async fn serve<L: Accept>(
    listener: L,
    router: Router,
    limits: Limits,
    name: &'static str,
    cancel: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut refusals = Throttled::default();
    let mut accept_failures = Throttled::default();
    loop {
        let accepted = tokio::select! {
            () = cancel.cancelled() => break,
            accepted = listener.accept_stream() => accepted,
        };
        let stream = match accepted {
            Ok(stream) => stream,
            Err(error) => {
                if let Some(more) = accept_failures.due() {
                    tracing::warn!(%error, listener = name, "cannot accept a connection{more}; retrying");
                }
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(ACCEPT_RETRY) => continue,
                }
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if let Some(more) = refusals.due() {
                tracing::warn!(
                    listener = name,
                    "{} connections are open, the most allowed: closing new ones at once{more}",
                    limits.max_connections
                );
            }
            drop(stream);
            continue;
        };
        let router = router.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            serve_connection(stream, router, limits, cancel).await;
            drop(slot);
        });
    }
    // Every slot back means every connection has ended.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(SHUTDOWN_WAIT, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::debug!(
            listener = name,
            "connections still open {SHUTDOWN_WAIT:?} after the stop were left"
        );
    }
}

async fn serve_connection<S>(stream: S, router: Router, limits: Limits, cancel: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let mut router = router.clone();
        // A Router is always ready: calling it without poll_ready is what axum::serve does too.
        tower_service::Service::call(&mut router, request)
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let served = tokio::select! {
        served = connection.as_mut() => served,
        () = cancel.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = served {
        // A client that timed out, went away or spoke nonsense: its business, not an error.
        tracing::debug!(%error, "connection ended");
    }
}

/// Says when a repeated event is due for a log line again, and how many went unlogged.
#[derive(Default)]
struct Throttled {
    last_logged: Option<Instant>,
    unlogged: u64,
}

impl Throttled {
    /// `Some(" (N more since the last message)")` or `Some("")` when a line is due.
    fn due(&mut self) -> Option<String> {
        if self.last_logged.is_some_and(|at| at.elapsed() < LOG_EVERY) {
            self.unlogged = self.unlogged.saturating_add(1);
            return None;
        }
        let more = match self.unlogged {
            0 => String::new(),
            n => format!(" ({n} more since the last message)"),
        };
        self.last_logged = Some(Instant::now());
        self.unlogged = 0;
        Some(more)
    }
}
