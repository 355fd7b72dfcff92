//! Simulated ConnectWise Manage REST API: a real HTTP server on `127.0.0.1:0`.
//!
//! Used by integration tests, benchmarks and `pollerd demo`. It behaves like the parts of the
//! real API pollerd relies on:
//!
//! - endpoints under [`ConnectWiseSim::base_url`] (`…/v4_6_release/apis/3.0`): `GET
//!   /company/contacts`, `/company/companies`, `/service/tickets` (lists), `…/{id}` (one record),
//!   `…/count` (`{"count": n}`), and `/system/info`; `DELETE …/{id}` (204, as ConnectWise answers);
//! - auth: `Authorization: Basic base64("{company}+{public}:{private}")` and a `clientId` header,
//!   else 401 with ConnectWise's error body `{"code","message","errors"}`; several companies
//!   (tenants, as on ConnectWise's cloud hosts) can be served on one port
//!   ([`ConnectWiseSim::tenant_configuration`]), their requests logged and counted in flight
//!   apart ([`RequestLog::company`], [`ConnectWiseSim::peak_in_flight_of`]);
//! - `conditions` on `id`, `lastUpdated`/`_info/lastUpdated`, `dateEntered`/`_info/dateEntered`
//!   (see [`conditions`]), a bad value answered with 400;
//! - `fields` (e.g. `fields=id` or `fields=id,_info/lastUpdated`): records cut down to those
//!   fields, on lists and single records alike (see [`fields`]);
//! - forward-only keyset paging (header `pagination-type: forward-only`, `pageId`, `pageSize`) and
//!   page paging (`page`, `pageSize`), both ordered by id with `Link` headers; `orderBy` is
//!   ignored (lists are always in id order, which is what keyset paging needs anyway);
//! - a `Date` header from the simulator's clock, which can be skewed from the local clock;
//! - injectable faults ([`Fault`]), one-shot actions run before a given list request
//!   ([`ConnectWiseSim::before_list_request`]), and a request log ([`RequestLog`]).
//!
//! Queries are evaluated at request time, so a record updated during a scan keeps its id and
//! moves in `lastUpdated`, as in the real API.

mod actions;
mod conditions;
mod faults;
mod fields;
mod records;
mod server;

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, SubsecRound, Utc};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use actions::{PendingAction, Then};
use faults::FaultTable;
use records::{RecordTable, StoredRecord};

/// The path prefix of the API, as on ConnectWise cloud servers.
pub const API_PREFIX: &str = "/v4_6_release/apis/3.0";

/// How many requests [`ConnectWiseSim::requests`] keeps (the oldest are dropped beyond this, so a
/// long-running demo does not grow without bound); [`ConnectWiseSim::request_count`] counts all.
pub const REQUEST_LOG_CAPACITY: usize = 100_000;

/// The credentials the simulator accepts.
#[derive(Clone)]
pub struct SimConfig {
    pub company: String,
    pub public_key: String,
    pub private_key: String,
    pub client_id: String,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            company: "simco".to_string(),
            public_key: "simpublic".to_string(),
            private_key: "simprivate".to_string(),
            client_id: "sim-client-id".to_string(),
        }
    }
}

impl fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimConfig")
            .field("company", &self.company)
            .field("public_key", &self.public_key)
            .field("private_key", &"<redacted>")
            .field("client_id", &self.client_id)
            .finish()
    }
}

/// The kinds of records the simulator serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// `/company/contacts`: `_info.lastUpdated` only.
    Contact,
    /// `/company/companies`: `_info.dateEntered` and `_info.lastUpdated`.
    Company,
    /// `/service/tickets`: `_info.dateEntered` and `_info.lastUpdated`.
    Ticket,
}

impl RecordKind {
    pub const ALL: [RecordKind; 3] = [RecordKind::Contact, RecordKind::Company, RecordKind::Ticket];

    /// The endpoint, relative to the base URL.
    pub fn path(self) -> &'static str {
        match self {
            RecordKind::Contact => "/company/contacts",
            RecordKind::Company => "/company/companies",
            RecordKind::Ticket => "/service/tickets",
        }
    }

    fn plural(self) -> &'static str {
        match self {
            RecordKind::Contact => "contacts",
            RecordKind::Company => "companies",
            RecordKind::Ticket => "tickets",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A misbehaviour to inject; see [`ConnectWiseSim::inject`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Delay the answer (which is otherwise normal, unless another fault applies too).
    Latency(Duration),
    /// 500 with a ConnectWise error body.
    ServerError,
    /// 429 with `Retry-After: retry_after_secs` and a ConnectWise error body.
    TooManyRequests { retry_after_secs: u64 },
    /// 503 with a `text/html` maintenance page.
    HtmlMaintenance,
    /// 200 with a `text/html` body (a login page, as a misconfigured proxy would answer).
    HtmlOk,
    /// The normal answer, labelled JSON, with its body cut in half.
    TruncatedJson,
    /// 401 whatever the credentials.
    Unauthorized,
    /// `302 Found` with this `Location` (another host, or http for an https API).
    Redirect(String),
    /// The normal answer, its `Link` naming this origin (`http://host:port`) instead of the
    /// simulator's, as an API gateway that does not rewrite links answers.
    LinkOrigin(String),
    /// The normal answer, its `Link` written the awkward ways RFC 8288 allows: a relative
    /// reference, in a second header line after a `rel="first"` line, with several relation types
    /// and a quoted parameter holding a comma.
    AwkwardLink,
    /// The normal answer with a `Link` header nobody can read (an unclosed `<`).
    UnreadableLink,
    /// The normal answer without the last record's `id`.
    LastRecordWithoutId,
    /// 200, labelled JSON, with a body that never ends (`[{"id":1},{"id":1},…`).
    EndlessBody,
    /// 429 with this exact `Retry-After` text.
    RetryAfterText(String),
    /// The normal answer with its `Date` header this many seconds off the simulator's clock.
    DateOffset(i64),
    /// 500 whose error message is very long and holds terminal control sequences.
    HostileErrorText,
}

/// Which requests a fault affects: those whose path contains `path_contains` (all when `None`);
/// the first `skip` of them pass, the next `count` are affected (`usize::MAX`: until cleared).
/// Each injected fault counts matching requests on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultScope {
    pub path_contains: Option<String>,
    pub skip: usize,
    pub count: usize,
}

impl FaultScope {
    /// Every request, until cleared.
    pub fn always() -> Self {
        FaultScope {
            path_contains: None,
            skip: 0,
            count: usize::MAX,
        }
    }

    /// The next `count` requests.
    pub fn next(count: usize) -> Self {
        FaultScope {
            path_contains: None,
            skip: 0,
            count,
        }
    }
}

/// Which list request an action runs before, or a fault hits; see
/// [`ConnectWiseSim::before_list_request`] and [`ConnectWiseSim::inject_at`].
///
/// List requests (`GET` of the list endpoint of `kind`, not `…/count` or `…/{id}`) are counted
/// as they arrive, from when the action is added, whatever their answer (faults and auth come
/// after).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListRequest {
    pub kind: RecordKind,
    /// Only requests whose decoded query (`name=value&…`) contains this text count, e.g.
    /// `fields=id` for a reconcile scan's pages; every list request of `kind` when `None`.
    pub query_contains: Option<String>,
    /// The action runs before the `nth` counted request (1-based: 3 is the third page of a scan
    /// that began after the action was added) is answered.
    pub nth: usize,
}

impl ListRequest {
    /// The `nth` list request of `kind` whose query contains `query_contains`.
    pub fn nth(kind: RecordKind, query_contains: &str, nth: usize) -> Self {
        ListRequest {
            kind,
            query_contains: Some(query_contains.to_string()),
            nth,
        }
    }
}

/// One request as the simulator saw and answered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLog {
    /// When it was answered, on the simulator's clock (the `Date` header sent).
    pub at: DateTime<Utc>,
    /// When it arrived, on the simulator's clock. The log is in answer order; a request held
    /// back by [`Fault::Latency`] can be answered after later ones, so sort by this for arrival
    /// order.
    pub received_at: DateTime<Utc>,
    /// The injected latency it waited ([`Fault::Latency`]); zero when none. A client whose
    /// timeout is shorter gave up on it, whatever the log says it was answered.
    pub delayed: Duration,
    pub method: String,
    /// The full path, e.g. `/v4_6_release/apis/3.0/company/contacts`.
    pub path: String,
    /// The raw query string, without `?` (empty when none).
    pub query: String,
    pub status: u16,
    /// Whether the `Authorization` header held the configured credentials.
    pub had_valid_auth: bool,
    /// The company (tenant) of those credentials, when they were valid.
    pub company: Option<String>,
    /// The `clientId` header, as sent.
    pub client_id: Option<String>,
    /// The `pagination-type` header, as sent.
    pub pagination_type: Option<String>,
    /// `conditions`, decoded.
    pub conditions: Option<String>,
    /// `fields`, decoded.
    pub fields: Option<String>,
    pub page: Option<u64>,
    pub page_id: Option<u64>,
    pub page_size: Option<u64>,
    /// The injected fault that shaped the answer, if any (`Debug` form, e.g. `ServerError`).
    pub fault: Option<String>,
    /// The length of the body sent (0 for [`Fault::EndlessBody`], which has none).
    pub body_bytes: usize,
}

/// What the endpoints of one kind of record have served since the start: every request to the
/// list, `…/count` and `…/{id}`, whatever its answer; see [`ConnectWiseSim::served`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Served {
    pub requests: u64,
    /// Bytes of response bodies (headers not counted).
    pub bytes: u64,
}

/// [`Served`], counted as requests are answered.
#[derive(Default)]
struct ServedCounter {
    requests: AtomicU64,
    bytes: AtomicU64,
}

impl ServedCounter {
    fn add(&self, body_bytes: usize) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(
            u64::try_from(body_bytes).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    fn load(&self) -> Served {
        Served {
            requests: self.requests.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }
}

/// A handle on a running simulator; clones share it. The server stops on
/// [`ConnectWiseSim::shutdown`] or when the last handle is dropped.
#[derive(Clone)]
pub struct ConnectWiseSim {
    state: Arc<SimState>,
    server: Arc<ServerTask>,
}

impl fmt::Debug for ConnectWiseSim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectWiseSim")
            .field("base_url", &self.state.base_url)
            .finish()
    }
}

/// Everything the server and the handles share.
struct SimState {
    config: SimConfig,
    /// The companies served, `config.company` first: valid Basic credentials are
    /// `{company}+{public}:{private}` with any of them.
    companies: RwLock<HashSet<String>>,
    base_url: String,
    clock_skew_ms: AtomicI64,
    tables: RwLock<[RecordTable; 3]>,
    faults: Mutex<FaultTable>,
    actions: Mutex<Vec<PendingAction>>,
    log: Mutex<RequestJournal>,
    /// By [`RecordKind::index`].
    served: [ServedCounter; 3],
    /// Requests being answered (a delayed one until its answer is logged, or dropped).
    in_flight: AtomicUsize,
    /// The same per company with valid credentials, and the most there ever were at once.
    tenant_load: Mutex<HashMap<String, TenantLoad>>,
    /// The server, for handles given to actions; weak, so that a pending action does not keep
    /// the server up after the last handle is dropped.
    server: OnceLock<Weak<ServerTask>>,
}

/// Requests of one company being answered.
#[derive(Clone, Copy, Debug, Default)]
struct TenantLoad {
    in_flight: usize,
    peak: usize,
}

#[derive(Default)]
struct RequestJournal {
    entries: VecDeque<RequestLog>,
    total: usize,
}

impl SimState {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::milliseconds(self.clock_skew_ms.load(Ordering::Relaxed))
    }

    fn record_request(&self, entry: RequestLog) {
        let mut log = self.log.lock().expect("request log lock");
        if log.entries.len() == REQUEST_LOG_CAPACITY {
            log.entries.pop_front();
        }
        log.entries.push_back(entry);
        log.total += 1;
    }
}

/// Stops the server when the last handle goes away.
struct ServerTask {
    stop: Mutex<Option<oneshot::Sender<()>>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl ServerTask {
    fn signal_stop(&self) {
        if let Some(stop) = self.stop.lock().expect("stop lock").take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for ServerTask {
    fn drop(&mut self) {
        self.signal_stop();
    }
}

impl ConnectWiseSim {
    /// Binds `127.0.0.1:0` and serves on the current Tokio runtime.
    pub async fn start(config: SimConfig) -> std::io::Result<ConnectWiseSim> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let address = listener.local_addr()?;
        let companies = RwLock::new(HashSet::from([config.company.clone()]));
        let state = Arc::new(SimState {
            config,
            companies,
            base_url: format!("http://{address}{API_PREFIX}"),
            clock_skew_ms: AtomicI64::new(0),
            tables: RwLock::new(Default::default()),
            faults: Mutex::new(FaultTable::default()),
            actions: Mutex::new(Vec::new()),
            log: Mutex::new(RequestJournal::default()),
            served: Default::default(),
            in_flight: AtomicUsize::new(0),
            tenant_load: Mutex::default(),
            server: OnceLock::new(),
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let app = server::router(Arc::clone(&state));
        let task = tokio::spawn(async move {
            let serving = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            if let Err(error) = serving.await {
                tracing::error!(%error, "ConnectWise simulator stopped with an error");
            }
        });
        let server = ServerTask {
            stop: Mutex::new(Some(stop)),
            task: Mutex::new(Some(task)),
        };
        let server = Arc::new(server);
        let _ = state.server.set(Arc::downgrade(&server));
        Ok(ConnectWiseSim { state, server })
    }

    /// `http://127.0.0.1:PORT/v4_6_release/apis/3.0`
    pub fn base_url(&self) -> String {
        self.state.base_url.clone()
    }

    /// The `Authorization` header value that the simulator accepts.
    pub fn authorization_header(&self) -> String {
        let c = self.config();
        let credentials = format!("{}+{}:{}", c.company, c.public_key, c.private_key);
        let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
        format!("Basic {encoded}")
    }

    pub fn config(&self) -> &SimConfig {
        &self.state.config
    }

    /// The connection keys of a `connectwisecrmrest` instance's `configuration` that reach this
    /// simulator: `baseUrl`, `company`, `public.key`, `private.key`, `connectwise.clientID`.
    pub fn instance_configuration(&self) -> serde_json::Map<String, serde_json::Value> {
        let c = self.config();
        let mut m = serde_json::Map::new();
        m.insert("baseUrl".into(), self.base_url().into());
        m.insert("company".into(), c.company.clone().into());
        m.insert("public.key".into(), c.public_key.clone().into());
        m.insert("private.key".into(), c.private_key.clone().into());
        m.insert("connectwise.clientID".into(), c.client_id.clone().into());
        m
    }

    /// [`Self::instance_configuration`] for another tenant of this host: `company` is served from
    /// now on (the same records, keys and client id as every company).
    pub fn tenant_configuration(
        &self,
        company: &str,
    ) -> serde_json::Map<String, serde_json::Value> {
        self.state
            .companies
            .write()
            .expect("companies lock")
            .insert(company.to_string());
        let mut m = self.instance_configuration();
        m.insert("company".into(), company.into());
        m
    }

    /// One resource of a `connectwisecrmrest` instance polling this simulator, as operators write
    /// it: the hub path filtered on `lastUpdated`, `id`, and the records' date fields
    /// (`_info.lastUpdated`, and `created_field`: `_info.dateEntered` where records have one).
    pub fn resource_configuration(hub_path: &str, created_field: &str) -> serde_json::Value {
        serde_json::json!({
            "url": format!("{hub_path}?where=lastUpdated>'${{gmtDate:yyyy-MM-dd'T'HH:mm:ss'Z'}}'"),
            "idField": "id",
            "datesConfiguration": {
                "updatedDateField": "_info.lastUpdated",
                "updatedDateFormat": "yyyy-MM-dd'T'HH:mm:ss'Z'",
                "updatedDateTimezone": "GMT",
                "createdDateField": created_field,
                "createdDateFormat": "yyyy-MM-dd'T'HH:mm:ss'Z'",
                "createdDateTimezone": "GMT"
            }
        })
    }

    /// The simulator's clock: the local clock plus the skew.
    pub fn now(&self) -> DateTime<Utc> {
        self.state.now()
    }

    /// Moves the simulator's clock (the `Date` header and default record dates) from the local one.
    pub fn set_clock_skew(&self, skew: chrono::Duration) {
        self.state
            .clock_skew_ms
            .store(skew.num_milliseconds(), Ordering::Relaxed);
    }

    /// Creates a record dated `at` (the simulator's now when `None`), returns its id.
    pub fn create(&self, kind: RecordKind, at: Option<DateTime<Utc>>) -> u64 {
        self.create_many(kind, 1, at)[0]
    }

    /// Creates `n` records with ascending ids, all dated `at` (the simulator's now when `None`).
    pub fn create_many(&self, kind: RecordKind, n: usize, at: Option<DateTime<Utc>>) -> Vec<u64> {
        let at = at.unwrap_or_else(|| self.now()).trunc_subsecs(0);
        // Ids are reserved under the lock, records rendered outside it, so that requests are
        // not held up while a large batch renders.
        let first_id = {
            let mut tables = self.state.tables.write().expect("records lock");
            let table = &mut tables[kind.index()];
            table.last_id += n as u64;
            table.last_id + 1 - n as u64
        };
        let ids: Vec<u64> = (first_id..first_id + n as u64).collect();
        let rendered: Vec<StoredRecord> = ids
            .iter()
            .map(|&id| StoredRecord {
                revision: 0,
                date_entered: at,
                last_updated: at,
                json: records::render(kind, &self.state.base_url, id, 0, at, at),
            })
            .collect();
        let mut tables = self.state.tables.write().expect("records lock");
        tables[kind.index()]
            .records
            .extend(ids.iter().copied().zip(rendered));
        ids
    }

    /// Sets `_info.lastUpdated` to `at` (the simulator's now when `None`) and changes a field.
    /// Returns false when there is no such record.
    pub fn update(&self, kind: RecordKind, id: u64, at: Option<DateTime<Utc>>) -> bool {
        let at = at.unwrap_or_else(|| self.now()).trunc_subsecs(0);
        let mut tables = self.state.tables.write().expect("records lock");
        let Some(record) = tables[kind.index()].records.get_mut(&id) else {
            return false;
        };
        record.revision += 1;
        record.last_updated = at;
        record.json = records::render(
            kind,
            &self.state.base_url,
            id,
            record.revision,
            record.date_entered,
            at,
        );
        true
    }

    /// Deletes a record, as `DELETE …/{id}` does: it leaves every list and count, `GET …/{id}`
    /// answers 404, and its id is not given to a new record. Returns false when there was no
    /// such record.
    pub fn delete(&self, kind: RecordKind, id: u64) -> bool {
        self.delete_many(kind, &[id]) == 1
    }

    /// Deletes the records of `kind` with these ids; returns how many existed.
    pub fn delete_many(&self, kind: RecordKind, ids: &[u64]) -> usize {
        let mut tables = self.state.tables.write().expect("records lock");
        let records = &mut tables[kind.index()].records;
        ids.iter().filter(|id| records.remove(id).is_some()).count()
    }

    /// The ids of the records of `kind`, ascending.
    pub fn ids(&self, kind: RecordKind) -> Vec<u64> {
        self.state.tables.read().expect("records lock")[kind.index()]
            .records
            .keys()
            .copied()
            .collect()
    }

    /// The record as the API would return it.
    pub fn record(&self, kind: RecordKind, id: u64) -> Option<serde_json::Value> {
        let tables = self.state.tables.read().expect("records lock");
        let record = tables[kind.index()].records.get(&id)?;
        Some(serde_json::from_slice(&record.json).expect("stored records are JSON"))
    }

    /// How many records of `kind` exist.
    pub fn len(&self, kind: RecordKind) -> usize {
        self.state.tables.read().expect("records lock")[kind.index()]
            .records
            .len()
    }

    /// Whether no record of `kind` exists.
    pub fn is_empty(&self, kind: RecordKind) -> bool {
        self.len(kind) == 0
    }

    /// Adds a fault; see [`FaultScope`] for which requests it affects.
    pub fn inject(&self, fault: Fault, scope: FaultScope) {
        self.state
            .faults
            .lock()
            .expect("faults lock")
            .add(fault, scope, None);
    }

    /// Adds a fault that hits each request in `scope` with probability `percent` / 100 (0–100),
    /// decided by the simulator's seeded dice (see [`ConnectWiseSim::seed_faults`]). Several
    /// random faults roll independently; where more than one hits, the first added shapes the
    /// answer, as with [`ConnectWiseSim::inject`].
    ///
    /// A separate method rather than a `FaultScope` field, so that scopes written as struct
    /// literals keep compiling.
    ///
    /// # Panics
    /// When `percent` is over 100.
    pub fn inject_random(&self, fault: Fault, scope: FaultScope, percent: u8) {
        assert!(
            percent <= 100,
            "a fault percentage is 0..=100, not {percent}"
        );
        self.state
            .faults
            .lock()
            .expect("faults lock")
            .add(fault, scope, Some(percent));
    }

    /// Runs `action` once, just before the simulator answers the list request `which` names, so
    /// that a test can change records between the pages of a scan: what the action creates,
    /// updates or deletes shows in that very answer and those after it. The action gets a handle
    /// on this simulator; it must not block (it runs on the server's runtime). The returned
    /// receiver resolves once the action has run (an error when the simulator stopped first, or
    /// the action panicked, which also cuts that request's connection).
    pub fn before_list_request<F>(&self, which: ListRequest, action: F) -> oneshot::Receiver<()>
    where
        F: FnOnce(&ConnectWiseSim) + Send + 'static,
    {
        let (ran, has_run) = oneshot::channel();
        self.state
            .actions
            .lock()
            .expect("actions lock")
            .push(PendingAction::new(
                which,
                Then::Run {
                    action: Box::new(action),
                    ran,
                },
            ));
        has_run
    }

    /// Answers the one list request `which` names with `fault`, e.g. a 500 on the third page of
    /// a scan asking `fields=id` while other requests go on normally. Where a fault injected with
    /// [`ConnectWiseSim::inject`] also applies, that one shapes the answer; latencies add up.
    pub fn inject_at(&self, fault: Fault, which: ListRequest) {
        self.state
            .actions
            .lock()
            .expect("actions lock")
            .push(PendingAction::new(which, Then::Fault(fault)));
    }

    /// How many actions of [`ConnectWiseSim::before_list_request`] and faults of
    /// [`ConnectWiseSim::inject_at`] are still waiting for their request.
    pub fn pending_actions(&self) -> usize {
        self.state.actions.lock().expect("actions lock").len()
    }

    /// Reseeds the dice of random faults: the same seed and the same requests give the same
    /// faults. A new simulator starts from a fixed seed.
    pub fn seed_faults(&self, seed: u64) {
        self.state.faults.lock().expect("faults lock").reseed(seed);
    }

    pub fn clear_faults(&self) {
        self.state.faults.lock().expect("faults lock").clear();
    }

    /// The answered requests, oldest first (at most [`REQUEST_LOG_CAPACITY`]).
    pub fn requests(&self) -> Vec<RequestLog> {
        self.state
            .log
            .lock()
            .expect("request log lock")
            .entries
            .iter()
            .cloned()
            .collect()
    }

    /// Requests and body bytes served for records of `kind` since the start (not bounded by
    /// [`REQUEST_LOG_CAPACITY`]), e.g. to compare scans with and without `fields=id`.
    pub fn served(&self, kind: RecordKind) -> Served {
        self.state.served[kind.index()].load()
    }

    /// How many requests have been answered since the start.
    pub fn request_count(&self) -> usize {
        self.state.log.lock().expect("request log lock").total
    }

    /// Requests arrived and not yet answered (e.g. held back by [`Fault::Latency`] after the
    /// client gave up): a test reading [`Self::requests`] waits for 0 to see every answer.
    pub fn in_flight(&self) -> usize {
        self.state.in_flight.load(Ordering::SeqCst)
    }

    /// The most requests of `company` (valid credentials) that were being answered at once.
    pub fn peak_in_flight_of(&self, company: &str) -> usize {
        let load = self.state.tenant_load.lock().expect("tenant load lock");
        load.get(company).map_or(0, |load| load.peak)
    }

    /// Stops the server (for every handle) and waits for it, at most 10 s, for requests in
    /// flight; after that they are cut.
    pub async fn shutdown(self) {
        self.server.signal_stop();
        let task = self.server.task.lock().expect("task lock").take();
        if let Some(mut task) = task
            && tokio::time::timeout(Duration::from_secs(10), &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}
