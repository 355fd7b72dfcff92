//! Webhook receiver for tests: records every request, answers as told.
//!
//! A real HTTP/1.1 server on `127.0.0.1:0` (keep-alive, one task per connection), so delivery code
//! is exercised through its actual HTTP client. Every request is recorded — headers and raw body —
//! before its behaviour is applied, so a test can see that an attempt was made even when the
//! receiver then hangs or cuts the connection.
//!
//! Which behaviour answers a request: first the queue filled by [`Receiver::respond_next`], then an
//! active [`Receiver::respond_until`] window, then the default (200 unless
//! [`Receiver::set_default`] changed it).

mod server;

use std::collections::VecDeque;
use std::fmt;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

/// How the receiver answers a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// 200 with an empty body.
    Ok,
    /// This status with an empty body.
    Status(u16),
    /// This status with a `Retry-After` header carrying this value (seconds or an HTTP date).
    StatusWithRetryAfter(u16, String),
    /// Never answer; the connection stays open until the client gives up or the receiver stops.
    Hang,
    /// Answer this status after this delay.
    Delay(Duration, u16),
    /// Drop the TCP connection without any HTTP answer.
    CloseConnection,
    /// A flaky receiver: each request independently gets a 500 (`error_percent` in 100), has its
    /// connection dropped (`drop_percent` in 100), or else a 200. The dice are seeded (see
    /// [`Receiver::seed`]), so a run can be replayed; the recorded status says which it was
    /// (`Some(500)`, `None` for a drop, `Some(200)`).
    Chaos { error_percent: u8, drop_percent: u8 },
}

impl Behaviour {
    /// Panics on a status or header value the server could not send, at the call that configures
    /// it rather than later inside a connection task where nobody would see it.
    fn validate(&self) {
        let status = match self {
            Behaviour::Ok | Behaviour::Hang | Behaviour::CloseConnection => return,
            Behaviour::Chaos {
                error_percent,
                drop_percent,
            } => {
                assert!(
                    u16::from(*error_percent) + u16::from(*drop_percent) <= 100,
                    "chaos percentages add up to more than 100: {error_percent} % errors + {drop_percent} % drops"
                );
                return;
            }
            Behaviour::Status(status) | Behaviour::Delay(_, status) => *status,
            Behaviour::StatusWithRetryAfter(status, retry_after) => {
                assert!(
                    hyper::header::HeaderValue::from_str(retry_after).is_ok(),
                    "Retry-After value {retry_after:?} is not a valid HTTP header value"
                );
                *status
            }
        };
        assert!(
            (200..=599).contains(&status),
            "receiver can only answer final statuses 200..=599, not {status}"
        );
    }
}

/// One request as the receiver saw it.
#[derive(Clone, PartialEq, Eq)]
pub struct ReceivedRequest {
    /// When the request (headers and body) had been read.
    pub at: SystemTime,
    pub method: String,
    /// The request target as sent: path and, if any, `?query`.
    pub path: String,
    /// In arrival order; names are lowercase, values lossily decoded as UTF-8.
    pub headers: Vec<(String, String)>,
    /// The body exactly as received.
    pub body: Vec<u8>,
    /// The status we answered; `None` while a delayed answer is pending, or when we hung or cut
    /// the connection, or the client aborted mid-body.
    pub status: Option<u16>,
}

impl ReceivedRequest {
    /// The first value of this header; the name is matched case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(candidate, _)| candidate.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body parsed as JSON.
    pub fn try_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// The body parsed as JSON, for tests.
    ///
    /// # Panics
    /// If the body is not JSON; the message shows the start of the body.
    pub fn json(&self) -> serde_json::Value {
        self.try_json().unwrap_or_else(|error| {
            panic!(
                "body of {} {} is not JSON ({error}): {}",
                self.method,
                self.path,
                body_preview(&self.body)
            )
        })
    }
}

impl fmt::Debug for ReceivedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Bodies are JSON in practice; a list of byte values would be unreadable in a failed assert.
        f.debug_struct("ReceivedRequest")
            .field("at", &self.at)
            .field("method", &self.method)
            .field("path", &self.path)
            .field("headers", &self.headers)
            .field("body", &String::from_utf8_lossy(&self.body))
            .field("status", &self.status)
            .finish()
    }
}

/// Handle to a running receiver; clones share the same server and records. The server stops on
/// [`Receiver::shutdown`] or when the last clone is dropped.
///
/// Benchmarks should count with [`Receiver::request_count`] (no copy) rather than `requests()`.
#[derive(Clone)]
pub struct Receiver {
    handle: Arc<Handle>,
}

struct Handle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    /// Set to `true` (or dropped with the last handle) to stop the server and its connections.
    stop: watch::Sender<bool>,
    accept_task: Mutex<Option<JoinHandle<()>>>,
}

/// State shared between the handle and the connection tasks.
struct Shared {
    state: Mutex<State>,
    /// Woken whenever a request is recorded or its status set, for `wait_until`.
    changed: Notify,
}

struct State {
    requests: Vec<ReceivedRequest>,
    /// Parallel to `requests`: a serial number per request, so a delayed answer can find its
    /// record again even if `clear` ran in between.
    serials: Vec<u64>,
    next_serial: u64,
    queued: VecDeque<(Behaviour, usize)>,
    window: Option<(Behaviour, Instant)>,
    default: Behaviour,
    /// Rolls for [`Behaviour::Chaos`].
    dice: fastrand::Rng,
}

/// The seed of a new receiver's dice: runs repeat unless a test reseeds.
const DEFAULT_CHAOS_SEED: u64 = 0xC4A0_5EED;

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking `wait_until` predicate must not make every later call panic too.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a request and picks how to answer it, atomically, so behaviours are consumed in
    /// arrival order. Returns the serial to pass to `set_status`.
    fn record(&self, request: ReceivedRequest) -> (u64, Behaviour) {
        let (serial, behaviour) = {
            let mut state = self.lock();
            let serial = state.next_serial;
            state.next_serial += 1;
            state.requests.push(request);
            state.serials.push(serial);
            (serial, state.next_behaviour(Instant::now()))
        };
        self.changed.notify_waiters();
        (serial, behaviour)
    }

    /// Records a request whose body could not be read completely; it gets no answer.
    fn record_unanswered(&self, request: ReceivedRequest) {
        {
            let mut state = self.lock();
            let serial = state.next_serial;
            state.next_serial += 1;
            state.requests.push(request);
            state.serials.push(serial);
        }
        self.changed.notify_waiters();
    }

    fn set_status(&self, serial: u64, status: u16) {
        {
            let mut state = self.lock();
            if let Ok(index) = state.serials.binary_search(&serial) {
                state.requests[index].status = Some(status);
            }
        }
        self.changed.notify_waiters();
    }
}

impl State {
    /// The behaviour that answers the next request, with [`Behaviour::Chaos`] already rolled
    /// into the concrete answer it gives this time.
    fn next_behaviour(&mut self, now: Instant) -> Behaviour {
        match self.configured_behaviour(now) {
            Behaviour::Chaos {
                error_percent,
                drop_percent,
            } => {
                let roll = self.dice.u8(0..100);
                if roll < error_percent {
                    Behaviour::Status(500)
                } else if roll < error_percent.saturating_add(drop_percent) {
                    Behaviour::CloseConnection
                } else {
                    Behaviour::Ok
                }
            }
            behaviour => behaviour,
        }
    }

    fn configured_behaviour(&mut self, now: Instant) -> Behaviour {
        if let Some((behaviour, remaining)) = self.queued.front_mut() {
            let chosen = behaviour.clone();
            *remaining -= 1;
            if *remaining == 0 {
                self.queued.pop_front();
            }
            return chosen;
        }
        match &self.window {
            Some((behaviour, until)) if now < *until => return behaviour.clone(),
            Some(_) => self.window = None,
            None => {}
        }
        self.default.clone()
    }
}

impl Receiver {
    /// Binds `127.0.0.1:0` and starts serving.
    pub async fn start() -> std::io::Result<Receiver> {
        let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                requests: Vec::new(),
                serials: Vec::new(),
                next_serial: 0,
                queued: VecDeque::new(),
                window: None,
                default: Behaviour::Ok,
                dice: fastrand::Rng::with_seed(DEFAULT_CHAOS_SEED),
            }),
            changed: Notify::new(),
        });
        let (stop, stop_rx) = watch::channel(false);
        let accept_task = tokio::spawn(server::accept_loop(listener, shared.clone(), stop_rx));
        Ok(Receiver {
            handle: Arc::new(Handle {
                addr,
                shared,
                stop,
                accept_task: Mutex::new(Some(accept_task)),
            }),
        })
    }

    /// The webhook URL to configure: `http://127.0.0.1:PORT/hook`. Any other path is answered
    /// and recorded the same way.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.handle.addr)
    }

    /// The loopback address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.handle.addr
    }

    /// Every request since the start (or the last `clear`), in arrival order.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.handle.shared.lock().requests.clone()
    }

    pub fn request_count(&self) -> usize {
        self.handle.shared.lock().requests.len()
    }

    /// The requests from the `start`th on (in arrival order) up to the first not answered yet:
    /// a caller reading a long stream advances `start` by the number returned, copying each
    /// request once.
    pub fn answered_from(&self, start: usize) -> Vec<ReceivedRequest> {
        let shared = self.handle.shared.lock();
        shared
            .requests
            .iter()
            .skip(start)
            .take_while(|request| request.status.is_some())
            .cloned()
            .collect()
    }

    /// The requests answered with a 2xx status.
    pub fn accepted(&self) -> Vec<ReceivedRequest> {
        self.handle
            .shared
            .lock()
            .requests
            .iter()
            .filter(|request| {
                request
                    .status
                    .is_some_and(|status| (200..300).contains(&status))
            })
            .cloned()
            .collect()
    }

    /// Waits until `pred(&requests)` holds, re-checking whenever a request is recorded or
    /// answered, for at most `deadline`. On timeout the error describes what was seen.
    ///
    /// `pred` runs while the records are locked: it must not call back into the receiver.
    pub async fn wait_until(
        &self,
        deadline: Duration,
        pred: impl Fn(&[ReceivedRequest]) -> bool,
    ) -> Result<(), String> {
        let shared = &self.handle.shared;
        let give_up = tokio::time::Instant::now() + deadline;
        loop {
            // Registered before checking, so a change between the check and the wait still wakes us.
            let changed = shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if pred(&shared.lock().requests) {
                return Ok(());
            }
            if tokio::time::timeout_at(give_up, changed).await.is_err() {
                let state = shared.lock();
                if pred(&state.requests) {
                    return Ok(());
                }
                return Err(describe_timeout(deadline, &state.requests));
            }
        }
    }

    /// Answers the next `times` requests this way; calls queue up in order.
    ///
    /// # Panics
    /// On a status outside 200..=599 or an invalid `Retry-After` value.
    pub fn respond_next(&self, behaviour: Behaviour, times: usize) {
        behaviour.validate();
        if times > 0 {
            self.handle
                .shared
                .lock()
                .queued
                .push_back((behaviour, times));
        }
    }

    /// Answers this way until `until` (e.g. "down for 2 minutes"), replacing any earlier window.
    /// Requests queued with `respond_next` still come first.
    ///
    /// # Panics
    /// As [`Receiver::respond_next`].
    pub fn respond_until(&self, behaviour: Behaviour, until: Instant) {
        behaviour.validate();
        self.handle.shared.lock().window = Some((behaviour, until));
    }

    /// How to answer when nothing is queued and no window is active.
    ///
    /// # Panics
    /// As [`Receiver::respond_next`].
    pub fn set_default(&self, behaviour: Behaviour) {
        behaviour.validate();
        self.handle.shared.lock().default = behaviour;
    }

    /// Reseeds the dice of [`Behaviour::Chaos`]: the same seed and the same requests give the
    /// same answers. A new receiver starts from a fixed seed.
    pub fn seed(&self, seed: u64) {
        self.handle.shared.lock().dice.seed(seed);
    }

    /// Forgets the recorded requests (queued behaviours, window and default stay).
    pub fn clear(&self) {
        let mut state = self.handle.shared.lock();
        state.requests.clear();
        state.serials.clear();
    }

    /// Stops accepting, drops every open connection (hanging ones included) and waits for the
    /// server task to end. Stops the server for every clone of this handle.
    pub async fn shutdown(self) {
        self.handle.stop.send_replace(true);
        let accept_task = self
            .handle
            .accept_task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = accept_task
            && let Err(error) = task.await
            && error.is_panic()
        {
            std::panic::resume_unwind(error.into_panic());
        }
    }
}

impl fmt::Debug for Receiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("addr", &self.handle.addr)
            .field("requests", &self.request_count())
            .finish()
    }
}

/// How many requests a timeout message lists individually (the most recent ones).
const DESCRIBED_REQUESTS: usize = 20;

fn describe_timeout(deadline: Duration, requests: &[ReceivedRequest]) -> String {
    let mut text = format!(
        "condition not met within {}; the receiver saw {} request(s)",
        humantime::format_duration(deadline),
        requests.len()
    );
    let skipped = requests.len().saturating_sub(DESCRIBED_REQUESTS);
    if skipped > 0 {
        let _ = write!(text, " ({skipped} earlier not shown)");
    }
    for (index, request) in requests.iter().enumerate().skip(skipped) {
        let answer = match request.status {
            Some(status) => status.to_string(),
            None => "no answer".to_string(),
        };
        let _ = write!(
            text,
            "\n  #{} {} {} -> {answer}, {} body bytes: {}",
            index + 1,
            request.method,
            request.path,
            request.body.len(),
            body_preview(&request.body)
        );
    }
    text
}

/// The start of a body, for messages.
fn body_preview(body: &[u8]) -> String {
    const PREVIEW_BYTES: usize = 120;
    let shown = String::from_utf8_lossy(&body[..body.len().min(PREVIEW_BYTES)]).into_owned();
    if body.len() > PREVIEW_BYTES {
        format!("{shown}…")
    } else {
        shown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(default: Behaviour, seed: u64) -> State {
        State {
            requests: Vec::new(),
            serials: Vec::new(),
            next_serial: 0,
            queued: VecDeque::new(),
            window: None,
            default,
            dice: fastrand::Rng::with_seed(seed),
        }
    }

    fn answers(state: &mut State, n: usize) -> Vec<Behaviour> {
        (0..n)
            .map(|_| state.next_behaviour(Instant::now()))
            .collect()
    }

    #[test]
    fn chaos_answers_errors_drops_and_oks_in_about_the_given_shares() {
        let chaos = Behaviour::Chaos {
            error_percent: 10,
            drop_percent: 5,
        };
        let seen = answers(&mut state(chaos, 1), 10_000);
        let count = |b: &Behaviour| seen.iter().filter(|s| *s == b).count();
        let (errors, drops, oks) = (
            count(&Behaviour::Status(500)),
            count(&Behaviour::CloseConnection),
            count(&Behaviour::Ok),
        );
        assert_eq!(errors + drops + oks, 10_000, "only 500, drop or 200");
        assert!((800..=1200).contains(&errors), "{errors} errors");
        assert!((350..=650).contains(&drops), "{drops} drops");
    }

    #[test]
    fn chaos_is_replayable_from_its_seed() {
        let chaos = Behaviour::Chaos {
            error_percent: 30,
            drop_percent: 30,
        };
        let a = answers(&mut state(chaos.clone(), 9), 200);
        let b = answers(&mut state(chaos.clone(), 9), 200);
        let c = answers(&mut state(chaos, 10), 200);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn chaos_can_also_be_queued_or_windowed() {
        let mut s = state(Behaviour::Ok, 3);
        s.queued.push_back((
            Behaviour::Chaos {
                error_percent: 100,
                drop_percent: 0,
            },
            2,
        ));
        assert_eq!(
            answers(&mut s, 3),
            [
                Behaviour::Status(500),
                Behaviour::Status(500),
                Behaviour::Ok
            ]
        );
        s.window = Some((
            Behaviour::Chaos {
                error_percent: 0,
                drop_percent: 100,
            },
            Instant::now() + Duration::from_secs(60),
        ));
        assert_eq!(answers(&mut s, 1), [Behaviour::CloseConnection]);
    }

    #[test]
    #[should_panic(expected = "add up to more than 100")]
    fn chaos_percentages_over_100_are_refused() {
        Behaviour::Chaos {
            error_percent: 60,
            drop_percent: 50,
        }
        .validate();
    }
}
