//! `pollerd store copy`: moves a single host's sled store into PostgreSQL, for the step from one
//! host to several nodes (README, "Several nodes"). The daemon must be stopped: sled's own lock
//! on the state directory (what stops two daemons sharing it) refuses the copy while one runs.
//! The target is written in one transaction and refused when it already holds any of the
//! instances; the URL is shown only as server and database, never with its password.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::config::Environment;
use crate::config::settings::{Settings, StoreEngine, StoreUrl};
use crate::store::{PostgresStore, SledStore, SnapshotCounts};

/// The copy's connections to PostgreSQL: one transaction needs one.
const POOL_SIZE: usize = 2;
/// sled's page cache while reading the store out.
const CACHE_BYTES: u64 = 64 * 1024 * 1024;

pub struct CopyRequest<'a> {
    pub config: Option<&'a Path>,
    pub from: &'a str,
    pub to: Option<&'a str>,
    pub dry_run: bool,
}

pub fn copy(request: &CopyRequest<'_>) -> ExitCode {
    match try_copy(request) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("pollerd store copy: {message}");
            ExitCode::FAILURE
        }
    }
}

fn try_copy(request: &CopyRequest<'_>) -> Result<(), String> {
    let dir = sled_dir(request.from)?;
    let url = target_url(request.config, request.to)?;
    let source = SledStore::open(&dir, CACHE_BYTES).map_err(|e| e.to_string())?;
    let snapshot = source.snapshot().map_err(|e| e.to_string())?;
    drop(source);
    let target = PostgresStore::open(&url, POOL_SIZE).map_err(|e| e.to_string())?;
    let counts = snapshot.counts();
    let occupied = target
        .instances_with_state(snapshot.instances())
        .map_err(|e| e.to_string())?;
    if !occupied.is_empty() {
        return Err(format!(
            "{} already holds state for instance(s) {}; nothing was copied (a copy never \
             merges into existing state: remove those instances' rows, or copy into an empty \
             database)",
            target.target(),
            occupied.join(", ")
        ));
    }
    let from = format!("sled:{}", dir.display());
    if request.dry_run {
        println!("dry run: would copy {from} to {}", target.target());
    } else {
        target.import(snapshot).map_err(|e| e.to_string())?;
        println!("copied {from} to {}", target.target());
    }
    print_counts(&counts);
    Ok(())
}

/// `--from sled:PATH`: the only source engine there is.
fn sled_dir(from: &str) -> Result<PathBuf, String> {
    let path = from
        .strip_prefix("sled:")
        .ok_or_else(|| format!("--from {from}: write sled:/path/to/state_dir"))?;
    let dir = PathBuf::from(path);
    // sled would create an empty store where there is none: a mistyped path must not copy nothing.
    if !dir.join("db").is_file() {
        return Err(format!(
            "--from {from}: {} holds no sled store (no db file)",
            dir.display()
        ));
    }
    Ok(dir)
}

/// `--to` (a connection string or a secret reference, as `[store] url` takes), else the
/// settings' `[store] url`.
fn target_url(config: Option<&Path>, to: Option<&str>) -> Result<String, String> {
    let env = Environment::from_process();
    let url = match to {
        Some(written) if written.trim().starts_with("${") => {
            StoreUrl::Reference(written.trim().to_string())
        }
        Some(written) => StoreUrl::Literal(crate::config::secret::Secret::new(written)),
        None => {
            let settings = Settings::load(config, &env).map_err(|d| d.to_string())?;
            match settings.store_engine {
                StoreEngine::Postgres(postgres) => postgres.url,
                StoreEngine::Sled => {
                    return Err(
                        "give --to, or settings with engine = \"postgres\" and [store] url".into(),
                    );
                }
            }
        }
    };
    let resolved = url
        .resolve(&env)
        .map_err(|reason| format!("--to: {reason}"))?;
    Ok(resolved.expose().to_string())
}

fn print_counts(counts: &SnapshotCounts) {
    let rows = [
        ("instances", counts.instances),
        ("resources", counts.resources),
        ("watermarks", counts.watermarks),
        ("seen ids", counts.seen_ids),
        ("known ids", counts.known_ids),
        ("queued", counts.queued),
        ("dead letters", counts.dead_letters),
    ];
    for (kind, count) in rows {
        println!("  {kind:<13} {count}");
    }
}
