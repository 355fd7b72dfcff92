//! The PostgreSQL engine under benchmark: `--store-url` names a server (any database on it that
//! the user may `CREATE DATABASE` from), and every scenario run gets a fresh, empty database of
//! its own there, so no run sees another's rows. The databases are left in place afterwards: the
//! server is meant to be a throwaway one.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, bail};
use pollerd::store::{PostgresStore, SledStore, Store};

use crate::report::Target;

/// Connections of the bench's own pool (the delivery fill) and of the takeover nodes' (as the
/// cluster test runs them).
pub const POOL_SIZE: usize = 4;

/// The server `--store-url` names.
pub struct PgServer {
    admin_url: reqwest::Url,
    created: AtomicUsize,
}

impl PgServer {
    pub fn new(url: &str) -> anyhow::Result<PgServer> {
        // The url is not repeated in errors: it may hold a password.
        let admin_url = reqwest::Url::parse(url).context("--store-url is not a URL")?;
        if !matches!(admin_url.scheme(), "postgres" | "postgresql") {
            bail!("--store-url must be a postgres:// URL");
        }
        Ok(PgServer {
            admin_url,
            created: AtomicUsize::new(0),
        })
    }

    /// Creates `bench_<pid>_<n>` and returns its URL.
    pub async fn fresh_database(&self) -> anyhow::Result<String> {
        let n = self.created.fetch_add(1, Ordering::Relaxed);
        let name = format!("bench_{}_{n}", std::process::id());
        let (client, connection) =
            tokio_postgres::connect(self.admin_url.as_str(), tokio_postgres::NoTls)
                .await
                .context("connecting to the --store-url server")?;
        let connection = tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .with_context(|| format!("CREATE DATABASE {name} on the --store-url server"))?;
        drop(client);
        let _ = connection.await;
        let mut url = self.admin_url.clone();
        url.set_path(&format!("/{name}"));
        Ok(url.to_string())
    }
}

/// Which engine a scenario run stores in.
pub enum StoreChoice {
    /// The daemon's default: sled under its `state_dir`.
    Sled,
    /// A fresh database of a [`PgServer`].
    Postgres { url: String },
}

impl StoreChoice {
    /// Sled, or a fresh database when `server` is given.
    pub async fn fresh(server: Option<&PgServer>) -> anyhow::Result<StoreChoice> {
        Ok(match server {
            None => StoreChoice::Sled,
            Some(s) => StoreChoice::Postgres {
                url: s.fresh_database().await?,
            },
        })
    }

    /// Ingest's records/s target: issue 17's for sled; issue 16's for PostgreSQL, which shares
    /// the machine's cores with the daemon.
    pub fn ingest_target(&self) -> Target {
        match self {
            StoreChoice::Sled => Target::AtLeast(100_000.0),
            StoreChoice::Postgres { .. } => Target::AtLeast(50_000.0),
        }
    }

    /// Delivery's target for its ratio to the loopback ceiling at `batch` events per
    /// notification, `postgres` or not: issue 17's table for sled, issue 16's one figure for
    /// PostgreSQL. (Asked before the delivery run's store exists.)
    pub fn delivery_ratio_target(postgres: bool, batch: u32) -> Target {
        match (postgres, batch) {
            (true, _) => Target::AtLeast(0.5),
            (false, 1) => Target::AtLeast(0.85),
            (false, _) => Target::AtLeast(0.8),
        }
    }

    /// The `[store]` table of pollerd.toml (empty for sled, the default); the daemon's pool is
    /// its default size.
    pub fn settings(&self) -> String {
        match self {
            StoreChoice::Sled => String::new(),
            StoreChoice::Postgres { url } => format!(
                "[store]\nengine = \"postgres\"\nurl = {}\n",
                toml::Value::String(url.clone())
            ),
        }
    }

    /// Opens the store the daemon will use, as the library does. Blocking (and the PostgreSQL
    /// store runs a runtime of its own): call it off the async runtime, and drop it there too.
    pub fn open(&self, state: &Path) -> anyhow::Result<Arc<dyn Store>> {
        Ok(match self {
            StoreChoice::Sled => {
                std::fs::create_dir_all(state)?;
                Arc::new(SledStore::open(state, 16 << 20)?)
            }
            StoreChoice::Postgres { url } => Arc::new(PostgresStore::open(url, POOL_SIZE)?),
        })
    }
}

/// `sled` or `postgres`, for the report.
pub fn engine_name(server: Option<&PgServer>) -> &'static str {
    if server.is_some() { "postgres" } else { "sled" }
}
