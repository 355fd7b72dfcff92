//! The PostgreSQL engine: the store's state as tables (`schema.rs`), each page or reconcile commit
//! one transaction (`commits.rs`), queues as rows ordered by an identity column and acknowledged
//! rows deleted (`outbox.rs`). All tokio-postgres and deadpool types stay in these files.
//!
//! The [`Store`] trait is synchronous and its callers already run it on blocking threads, but a
//! few (the status gauges) call it from async code. So the engine owns a small runtime of its own
//! (one worker) that runs the client, its pool and its connections; a method spawns its work
//! there and waits on a plain channel. That never nests one runtime's `block_on` inside another
//! (which tokio refuses), wherever it is called from.

mod acks;
mod commits;
mod import;
mod leases;
mod outbox;
mod schema;
mod seen;

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::types::ToSql;
use tokio_postgres_rustls::MakeRustlsConnect;

pub use self::leases::{ClusterView, Heartbeat, LeaseClaim, LeaseView, NodeView};
use super::{
    CorruptEntry, DeadLetter, DeadLetterSummary, Fence, KnownIds, OutboxEntry, PageCommit,
    ReconcileCommit, ResourceKey, Store, StoreError, StoreFuture, StoreStats,
};

/// How long an operation waits for a pooled connection, and for a new one to be made.
const POOL_WAIT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The store in a PostgreSQL database shared by whoever opens it with the same URL.
pub struct PostgresStore {
    db: Db,
    /// `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
}

/// What every operation needs, cheap to clone into the engine's runtime.
#[derive(Clone)]
struct Db {
    pool: Pool,
    /// The server and database (never the password), for messages.
    target: Arc<str>,
    /// Corrupt entries set aside since the store was opened.
    set_aside: Arc<AtomicU64>,
    /// When set, every write of an instance's state checks this node's lease first.
    fence: Option<Arc<Fence>>,
    /// Deliveries acknowledged and not yet deleted (`acks.rs`).
    acks: Arc<acks::PendingAcks>,
    /// Copies of the seen sets this store read or wrote (`seen.rs`).
    seen: Arc<seen::SeenCopies>,
}

impl PostgresStore {
    /// Connects to the database `url` names (a `postgres://` URL or `key=value` pairs), with at
    /// most `pool_size` connections, and creates or migrates the schema. TLS is used as the URL's
    /// `sslmode` says (the default, `prefer`, uses it when the server offers it), verified
    /// against the system's root certificates.
    pub fn open(url: &str, pool_size: usize) -> Result<PostgresStore, StoreError> {
        PostgresStore::open_with(url, pool_size, None)
    }

    /// As [`PostgresStore::open`], for a node sharing the database with others: every write of
    /// an instance's state is refused with [`StoreError::LeaseLost`] unless `fence` holds the
    /// instance's lease at the epoch the database has. A session left idle inside a transaction
    /// for a third of `lease_ttl` is ended by the server: a node frozen mid-write (SIGSTOP, a
    /// long pause) must not keep its lease row locked against a takeover.
    pub fn open_fenced(
        url: &str,
        pool_size: usize,
        fence: Arc<Fence>,
        lease_ttl: Duration,
    ) -> Result<PostgresStore, StoreError> {
        let idle_limit = (lease_ttl / 3).max(Duration::from_millis(100));
        PostgresStore::open_with(url, pool_size, Some((fence, idle_limit)))
    }

    fn open_with(
        url: &str,
        pool_size: usize,
        fencing: Option<(Arc<Fence>, Duration)>,
    ) -> Result<PostgresStore, StoreError> {
        let config: tokio_postgres::Config = url.parse().map_err(|e| StoreError::Engine {
            action: "open the PostgreSQL store".into(),
            reason: format!(
                "its url is not a PostgreSQL connection string ({})",
                describe(&e)
            ),
        })?;
        let target: Arc<str> = target_of(&config).into();
        let open_error = |reason: String| StoreError::Engine {
            action: format!("open the PostgreSQL store at {target}"),
            reason,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("pollerd-postgres")
            .enable_all()
            .build()
            .map_err(|e| open_error(format!("cannot start its runtime: {e}")))?;
        let mut config = config;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        // Statements are prepared once per connection, but planned at each run with its values:
        // a plan made generic while a table was small (a seen set filling from empty) would
        // stay a scan of the whole table once it holds 100,000 rows.
        let mut options = format!(
            "{} -c plan_cache_mode=force_custom_plan",
            config.get_options().unwrap_or("")
        );
        if let Some((_, idle_limit)) = &fencing {
            options.push_str(&format!(
                " -c idle_in_transaction_session_timeout={}",
                idle_limit.as_millis()
            ));
        }
        config.options(options.trim());
        let manager = Manager::from_config(
            config,
            MakeRustlsConnect::new(tls_config().map_err(open_error)?),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| open_error(format!("cannot build its connection pool: {e}")))?;
        let store = PostgresStore {
            db: Db {
                pool,
                target: target.clone(),
                set_aside: Arc::new(AtomicU64::new(0)),
                fence: fencing.map(|(fence, _)| fence),
                acks: Arc::default(),
                seen: Arc::default(),
            },
            runtime: Some(runtime),
        };
        if let Some(runtime) = &store.runtime {
            runtime.spawn(store.db.clone().write_acks_forever());
        }
        store.run(|db| async move {
            let mut client = db.client("open the store").await?;
            schema::migrate(&mut client)
                .await
                .map_err(|reason| StoreError::Engine {
                    action: format!("create or migrate the schema at {}", db.target),
                    reason,
                })
        })?;
        Ok(store)
    }

    /// The server and database this store uses, as messages name them.
    pub fn target(&self) -> &str {
        &self.db.target
    }

    /// Runs `work` on the engine's runtime and waits for its result.
    fn run<T, F, Fut>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Db) -> Fut,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let runtime = self.runtime.as_ref().expect("present until drop");
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        let future = work(self.db.clone());
        runtime.spawn(async move {
            let _ = sender.send(future.await);
        });
        receiver.recv().unwrap_or_else(|_| {
            Err(StoreError::Engine {
                action: "use the PostgreSQL store".into(),
                reason: "its runtime stopped".into(),
            })
        })
    }

    /// Runs `work` on the engine's runtime; the future answers from any runtime (the lease
    /// manager's calls must not block the daemon's workers, and are bounded by its deadline).
    fn call<T, F, Fut>(
        &self,
        work: F,
    ) -> impl Future<Output = Result<T, StoreError>> + Send + use<T, F, Fut>
    where
        T: Send + 'static,
        F: FnOnce(Db) -> Fut,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let runtime = self.runtime.as_ref().expect("present until drop");
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let future = work(self.db.clone());
        runtime.spawn(async move {
            let _ = sender.send(future.await);
        });
        async move {
            receiver.await.unwrap_or_else(|_| {
                Err(StoreError::Engine {
                    action: "use the PostgreSQL store".into(),
                    reason: "its runtime stopped".into(),
                })
            })
        }
    }

    /// `node`'s heartbeat, and its leases in `held` renewed for `ttl` (see [`Heartbeat`]).
    pub fn heartbeat(
        &self,
        node: &str,
        held: Vec<(String, i64)>,
        wanted: Vec<String>,
        ttl: Duration,
    ) -> impl Future<Output = Result<Heartbeat, StoreError>> + Send + use<> {
        let node = node.to_string();
        self.call(move |db| async move { db.heartbeat(&node, &held, &wanted, ttl).await })
    }

    /// Claims up to `limit` free leases among `wanted` for `node`, and any free for over `ttl`.
    pub fn claim(
        &self,
        node: &str,
        wanted: Vec<String>,
        limit: u64,
        ttl: Duration,
    ) -> impl Future<Output = Result<Vec<LeaseClaim>, StoreError>> + Send + use<> {
        let node = node.to_string();
        self.call(move |db| async move { db.claim(&node, &wanted, limit, ttl).await })
    }

    /// Frees the leases in `held` that `node` still holds at their epoch; those freed.
    pub fn release(
        &self,
        node: &str,
        held: Vec<(String, i64)>,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send + use<> {
        let node = node.to_string();
        self.call(move |db| async move { db.release(&node, &held).await })
    }

    /// Removes `node`'s row, so the other nodes stop counting it at once.
    pub fn leave(&self, node: &str) -> impl Future<Output = Result<(), StoreError>> + Send + use<> {
        let node = node.to_string();
        self.call(move |db| async move { db.leave(&node).await })
    }

    /// The nodes whose heartbeat is younger than `ttl`, and every lease (for `status`).
    pub fn cluster(&self, ttl: Duration) -> Result<ClusterView, StoreError> {
        self.run(move |db| async move { db.cluster(ttl).await })
    }

    /// The head of `key`'s queue, as on any engine (`<dyn Store>::outbox_head`).
    pub fn outbox_head(&self, key: &ResourceKey) -> Result<Option<OutboxEntry>, StoreError> {
        (self as &dyn Store).outbox_head(key)
    }

    /// Number of seen entries kept for `key` (for tests and diagnostics).
    #[doc(hidden)]
    pub fn seen_count(&self, key: &ResourceKey) -> Result<u64, StoreError> {
        let key = key.clone();
        self.run(|db| async move { db.seen_count(&key).await })
    }

    /// Every resource with a watermark, ordered by key (for tests and diagnostics).
    #[doc(hidden)]
    pub fn watermarks(&self) -> Result<Vec<(ResourceKey, DateTime<Utc>)>, StoreError> {
        self.run(|db| async move { db.watermarks().await })
    }

    /// Drops the watermark and seen ids of `key`, not its outbox (for tests and diagnostics).
    #[doc(hidden)]
    pub fn forget_resource(&self, key: &ResourceKey) -> Result<(), StoreError> {
        let key = key.clone();
        self.run(|db| async move { db.forget_resource(&key).await })
    }

    /// The raw bytes kept of a corrupt entry (for inspection and tests).
    #[doc(hidden)]
    pub fn corrupt_entry_bytes(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let id = id.to_string();
        self.run(|db| async move { db.corrupt_entry_bytes(&id).await })
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which tokio refuses inside async code; every write has
        // committed already, so nothing is left to wait for.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Db {
    async fn client(&self, action: &str) -> Result<deadpool_postgres::Client, StoreError> {
        self.pool.get().await.map_err(|e| StoreError::Engine {
            action: action.to_string(),
            reason: format!("no connection to PostgreSQL at {}: {e}", self.target),
        })
    }

    /// `sql` run with `params` through `client` (a connection or a transaction), prepared once
    /// per connection: a statement run for every page, lookup or ack is not parsed again, nor
    /// does it cost a round trip to prepare. Its rows; errors name `action`.
    async fn query_cached(
        &self,
        client: &impl GenericClient,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        action: &str,
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let statement = client
            .prepare_cached(sql)
            .await
            .map_err(|e| self.error(action, &e))?;
        client
            .query(&statement, params)
            .await
            .map_err(|e| self.error(action, &e))
    }

    /// As [`Db::query_cached`], for a statement that returns no rows: how many it changed.
    async fn execute_cached(
        &self,
        client: &impl GenericClient,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        action: &str,
    ) -> Result<u64, StoreError> {
        let statement = client
            .prepare_cached(sql)
            .await
            .map_err(|e| self.error(action, &e))?;
        client
            .execute(&statement, params)
            .await
            .map_err(|e| self.error(action, &e))
    }

    fn error(&self, action: impl Into<String>, e: &tokio_postgres::Error) -> StoreError {
        StoreError::Engine {
            action: action.into(),
            reason: format!("PostgreSQL at {}: {}", self.target, describe(e)),
        }
    }
}

/// A client error in words: the server's message for a database error, else the client's.
/// Neither holds the connection's password.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

/// `host:port/dbname` of a connection config, for messages.
fn target_of(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("{host}:{port}/{db}")
}

/// rustls with ring and the system's root certificates, as delivery uses.
fn tls_config() -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        // A system certificate rustls cannot use is skipped, as delivery skips it.
        let _ = roots.add(cert);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Milliseconds since the epoch, as stored.
fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

/// A stored time back; Err(reason) when it is out of range (only a hand-edited row can be).
fn from_millis(ms: i64) -> Result<DateTime<Utc>, String> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| format!("time {ms} ms is out of range"))
}

/// Text as PostgreSQL can store it: a NUL (which a receiver's error body may hold) becomes U+FFFD.
fn storable(text: &str) -> std::borrow::Cow<'_, str> {
    match text.contains('\0') {
        true => text.replace('\0', "\u{fffd}").into(),
        false => text.into(),
    }
}

fn seq_param(seq: u64) -> Option<i64> {
    i64::try_from(seq).ok()
}

impl Store for PostgresStore {
    fn watermark(&self, key: &ResourceKey) -> Result<Option<DateTime<Utc>>, StoreError> {
        let key = key.clone();
        self.run(|db| async move { db.watermark(&key).await })
    }

    fn seen_dates(
        &self,
        key: &ResourceKey,
        object_ids: &[&str],
    ) -> Result<Vec<Option<DateTime<Utc>>>, StoreError> {
        if object_ids.is_empty() {
            return Ok(Vec::new());
        }
        let key = key.clone();
        let ids: Vec<Vec<u8>> = object_ids.iter().map(|id| id.as_bytes().to_vec()).collect();
        self.run(|db| async move { db.seen_dates(&key, &ids).await })
    }

    fn commit(&self, commit: PageCommit) -> Result<(), StoreError> {
        commits::check_event_ids(&commit.key, &commit.notifications)?;
        self.run(|db| async move { db.commit(commit).await })
    }

    /// Commits that only move a watermark, one per resource, in one transaction that checks
    /// each instance's lease; any other batch commits one by one.
    fn commit_many(&self, commits: Vec<PageCommit>) -> Vec<Result<(), StoreError>> {
        let only_moves = commits.iter().all(crate::store::IdleWatermarks::is_idle);
        let keys: HashSet<&ResourceKey> = commits.iter().map(|c| &c.key).collect();
        if !only_moves || keys.len() != commits.len() {
            return commits.into_iter().map(|c| self.commit(c)).collect();
        }
        let keys: Vec<ResourceKey> = commits.iter().map(|c| c.key.clone()).collect();
        match self.run(|db| async move { db.commit_watermarks(&commits).await }) {
            Ok(results) => results,
            Err(error) => {
                let reason = error.to_string();
                keys.iter()
                    .map(|key| {
                        Err(StoreError::Engine {
                            action: format!("write the watermark of {key}"),
                            reason: reason.clone(),
                        })
                    })
                    .collect()
            }
        }
    }

    fn known_ids(&self, key: &ResourceKey) -> Result<KnownIds, StoreError> {
        let key = key.clone();
        self.run(|db| async move { db.known_ids(&key).await })
    }

    fn commit_reconcile(&self, commit: ReconcileCommit) -> Result<(), StoreError> {
        commits::check_event_ids(&commit.key, &commit.notifications)?;
        self.run(|db| async move { db.commit_reconcile(commit).await })
    }

    fn forget_known_ids(&self, key: &ResourceKey) -> Result<bool, StoreError> {
        let key = key.clone();
        self.run(|db| async move { db.forget_known_ids(&key).await })
    }

    fn queues(&self) -> Result<Vec<ResourceKey>, StoreError> {
        self.run(|db| async move { db.queues().await })
    }

    fn outbox_front(
        &self,
        key: &ResourceKey,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let read = self.outbox_front_async(key, limit);
        self.run(|_| read)
    }

    fn outbox_depth(&self, key: &ResourceKey) -> Result<u64, StoreError> {
        let key = key.clone();
        self.run(|db| async move { db.outbox_depth(&key).await })
    }

    fn ack(&self, key: &ResourceKey, seq: u64) -> Result<(), StoreError> {
        let key = key.clone();
        self.run(|db| async move { db.ack(&key, seq).await })
    }

    fn record_failure(
        &self,
        key: &ResourceKey,
        seq: u64,
        attempts: u32,
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        let write = self.record_failure_async(key, seq, attempts, next_attempt_at, error);
        self.run(|_| write)
    }

    fn dead_letter(
        &self,
        key: &ResourceKey,
        seq: u64,
        attempts: u32,
        status: Option<u16>,
        error: &str,
    ) -> Result<(), StoreError> {
        let write = self.dead_letter_async(key, seq, attempts, status, error);
        self.run(|_| write)
    }

    fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError> {
        self.run(|db| async move { db.dead_letters().await })
    }

    fn dead_letter_summary(&self) -> Result<DeadLetterSummary, StoreError> {
        self.run(|db| async move { db.dead_letter_summary().await })
    }

    fn corrupt_entries(&self) -> Result<Vec<CorruptEntry>, StoreError> {
        self.run(|db| async move { db.corrupt_entries().await })
    }

    fn replay_dead_letter(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.run(|db| async move { db.replay_dead_letter(&id).await })
    }

    fn drop_dead_letter(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.run(|db| async move { db.drop_dead_letter(&id).await })
    }

    fn stats(&self) -> Result<StoreStats, StoreError> {
        self.run(|db| async move { db.stats().await })
    }

    /// Every change but an ack made through [`Store::ack_async`] is committed durably when its
    /// call returns (PostgreSQL's default `synchronous_commit`); those acks are written here.
    fn flush(&self) -> Result<(), StoreError> {
        self.run(|db| async move { db.write_acks().await })
    }

    fn outbox_front_async(&self, key: &ResourceKey, limit: usize) -> StoreFuture<Vec<OutboxEntry>> {
        let key = key.clone();
        Box::pin(self.call(move |db| async move { db.outbox_front(&key, limit).await }))
    }

    /// The head as last read is noted, not waited for: the ack writer deletes it with the
    /// others noted meanwhile (`acks.rs`); until then the entry is hidden from this store's
    /// reads of its queue.
    fn ack_async(&self, key: &ResourceKey, seq: u64) -> StoreFuture<()> {
        // Noting is a lock and a push: done in place, with no hop to the engine's runtime.
        if self.db.note_ack(key, seq) {
            return Box::pin(std::future::ready(Ok(())));
        }
        let key = key.clone();
        Box::pin(self.call(move |db| async move { db.ack(&key, seq).await }))
    }

    fn record_failure_async(
        &self,
        key: &ResourceKey,
        seq: u64,
        attempts: u32,
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> StoreFuture<()> {
        let (key, error) = (key.clone(), error.to_string());
        Box::pin(self.call(move |db| async move {
            db.record_failure(&key, seq, attempts, next_attempt_at, &error)
                .await
        }))
    }

    fn dead_letter_async(
        &self,
        key: &ResourceKey,
        seq: u64,
        attempts: u32,
        status: Option<u16>,
        error: &str,
    ) -> StoreFuture<()> {
        let (key, error) = (key.clone(), error.to_string());
        Box::pin(self.call(move |db| async move {
            db.dead_letter(&key, seq, attempts, status, &error).await
        }))
    }
}

/// The corrupt-entry counter is this store's, for [`StoreStats::corrupt_set_aside`].
impl Db {
    fn count_set_aside(&self) {
        self.set_aside.fetch_add(1, Ordering::Relaxed);
    }
}
