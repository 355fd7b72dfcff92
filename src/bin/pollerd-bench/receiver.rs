//! A fast loopback webhook receiver: answers 200 at once and keeps only counts and latencies
//! (the test receiver in `pollerd::sim` keeps every body, which a 1 GB run cannot afford).
//! The same receiver serves pollerd and the bare-client ceiling, so they are compared fairly.
//! With an answer delay it stands for a receiver that does some work before it answers.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::task::JoinHandle;

#[derive(Default)]
struct Tally {
    notifications: u64,
    events: u64,
    first: Option<Instant>,
    last: Option<Instant>,
    /// Arrival minus the body's `createdDate` (commit time), in microseconds.
    latencies_us: Vec<i64>,
}

pub struct FastReceiver {
    addr: SocketAddr,
    tally: Arc<Mutex<Tally>>,
    accept: JoinHandle<()>,
}

/// What the receiver saw.
pub struct Seen {
    pub notifications: u64,
    pub events: u64,
    /// First to last arrival.
    pub span: Duration,
    pub latencies_us: Vec<i64>,
}

impl FastReceiver {
    pub async fn start() -> anyhow::Result<FastReceiver> {
        FastReceiver::answering_after(None).await
    }

    /// A receiver that answers each request `delay` after reading its body (the simulated
    /// work of a real receiver), or at once when `None`.
    pub async fn answering_after(delay: Option<Duration>) -> anyhow::Result<FastReceiver> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let tally: Arc<Mutex<Tally>> = Arc::default();
        let shared = tally.clone();
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let tally = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| answer(tally.clone(), delay, request));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(FastReceiver {
            addr,
            tally,
            accept,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn notifications(&self) -> u64 {
        self.tally.lock().expect("tally").notifications
    }

    pub fn events(&self) -> u64 {
        self.tally.lock().expect("tally").events
    }

    pub fn seen(&self) -> Seen {
        let tally = self.tally.lock().expect("tally");
        Seen {
            notifications: tally.notifications,
            events: tally.events,
            span: match (tally.first, tally.last) {
                (Some(first), Some(last)) => last - first,
                _ => Duration::ZERO,
            },
            latencies_us: tally.latencies_us.clone(),
        }
    }
}

impl Drop for FastReceiver {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn answer(
    tally: Arc<Mutex<Tally>>,
    delay: Option<Duration>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let body = request.into_body().collect().await?.to_bytes();
    if let Some(work) = delay {
        tokio::time::sleep(work).await;
    }
    let arrived = Instant::now();
    let arrived_wall = Utc::now();
    let events = count(&body, b"\"eventType\":") as u64;
    let latency = created_date(&body).map(|created| (arrived_wall - created).num_microseconds());
    {
        let mut t = tally.lock().expect("tally");
        t.notifications += 1;
        t.events += events;
        t.first.get_or_insert(arrived);
        t.last = Some(arrived);
        if let Some(Some(us)) = latency {
            t.latencies_us.push(us);
        }
    }
    Ok(Response::new(Full::new(Bytes::new())))
}

/// The envelope's `createdDate`: near the start of the body, before `message`.
fn created_date(body: &[u8]) -> Option<DateTime<Utc>> {
    const KEY: &[u8] = b"\"createdDate\":\"";
    let start = find(body, KEY)? + KEY.len();
    let len = body[start..].iter().position(|b| *b == b'"')?;
    let text = std::str::from_utf8(&body[start..start + len]).ok()?;
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.to_utc())
}

/// Jumps from one occurrence of the needle's first byte to the next (bodies are ~1–10 KB).
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(offset) = haystack[from..].iter().position(|b| *b == needle[0]) {
        let at = from + offset;
        if haystack[at..].starts_with(needle) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    let mut n = 0;
    let mut rest = haystack;
    while let Some(at) = find(rest, needle) {
        n += 1;
        rest = &rest[at + needle.len()..];
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_created_date_and_counts_events() {
        let body = br#"{"id":"x","createdDate":"2024-01-02T03:04:05.123Z","message":{"events":[{"eventType":"CREATED"},{"eventType":"UPDATED"}]}}"#;
        assert_eq!(
            created_date(body).unwrap().timestamp_millis(),
            1_704_164_645_123
        );
        assert_eq!(count(body, b"\"eventType\":"), 2);
    }
}
