//! One run of one resource: render the URL from the lower bound, fetch every page through the
//! element, turn new or changed records into notifications, and commit each page atomically.
//!
//! Watermarks follow the provider's clock (the `Date` header of a run's first response), so a
//! skewed provider loses nothing; a run that fails midway leaves the watermark where it was, and
//! the seen set keeps its retry from emitting anything twice (SPEC §7). A run paged by id
//! (ConnectWise's keyset paging) that fails midway is resumed by the next attempt from the last
//! page it committed ([`Resume`]), instead of reading its backlog again from the start.

#![deny(clippy::arithmetic_side_effects)]

mod extract;
pub mod notification;
pub mod reconcile;
mod scan;
pub mod schedule;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::Instrument as _;

pub use extract::{Candidate, Skip};
pub use notification::EventType;

use crate::config::{InstanceSpec, ResourceSpec};
use crate::element::{Cursor, Element, FetchError, ProviderClient};
use crate::internal_events::{RunResumed, poll_span};
use crate::store::{IdleWatermarks, NewNotification, PageCommit, ResourceKey, Store, StoreError};
use scan::RunContext;

/// The overlap added below every lower bound: Date headers have whole seconds.
pub const OVERLAP: Duration = Duration::from_secs(1);
/// A run that pages this far is assumed to be looping.
const MAX_PAGES: usize = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error("instance {instance}, resource {resource}, page {page}: {source}")]
    Fetch {
        instance: String,
        resource: String,
        page: usize,
        #[source]
        source: FetchError,
    },
    #[error("instance {instance}, resource {resource}: {source}")]
    Store {
        instance: String,
        resource: String,
        #[source]
        source: StoreError,
    },
    #[error(
        "instance {instance}, resource {resource}: more than {MAX_PAGES} pages; is the provider repeating a page?"
    )]
    TooManyPages { instance: String, resource: String },
    #[error("instance {instance}, resource {resource}: reconcile: {message}")]
    Reconcile {
        instance: String,
        resource: String,
        message: String,
    },
}

impl PollError {
    /// A short class of the failure, for logging once per change of state.
    pub fn class(&self) -> String {
        match self {
            PollError::Fetch { source, .. } => source.class(),
            PollError::Store { .. } => "store".into(),
            PollError::TooManyPages { .. } => "paging".into(),
            PollError::Reconcile { .. } => "reconcile".into(),
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunReport {
    pub pages: usize,
    pub records: usize,
    pub events: usize,
    /// Of `events`: how many were CREATED (the rest UPDATED).
    pub created: usize,
    pub notifications: usize,
    /// Records without an id or with an unusable date.
    pub skipped: usize,
    /// The watermark the run left.
    pub watermark: Option<DateTime<Utc>>,
    /// The resource's first run: it only set the watermark.
    pub baseline: bool,
    /// The provider's `Date` was too far from the local clock to be trusted for this run.
    pub untrusted_date: Option<UntrustedDate>,
}

/// A provider `Date` more than `[polling] max_clock_skew` from the local clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UntrustedDate {
    pub provider: DateTime<Utc>,
    pub local: DateTime<Utc>,
}

impl std::fmt::Display for UntrustedDate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let skew = self.provider.signed_duration_since(self.local);
        let (sign, skew) = if skew < chrono::TimeDelta::zero() {
            ("-", skew.abs())
        } else {
            ("+", skew)
        };
        let skew = humantime::format_duration(skew.to_std().unwrap_or_default());
        write!(
            f,
            "the provider's Date header says {} but the local clock says {} (skew {sign}{skew}); \
             this run follows the earlier of the two",
            self.provider
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            self.local
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        )
    }
}

/// The clock a run starts at, which becomes the watermark when it completes: the provider's
/// `Date` (its records are stamped by its clock) when it is within `max_skew` of the local clock.
/// Otherwise the earlier of the two, never below the watermark the run started from: a `Date` far
/// ahead would move the watermark past records not yet changed, and one far behind would move it
/// back for nothing.
fn run_clock(
    provider: Option<DateTime<Utc>>,
    local: DateTime<Utc>,
    floor: Option<DateTime<Utc>>,
    max_skew: Duration,
) -> (DateTime<Utc>, Option<UntrustedDate>) {
    let Some(provider) = provider else {
        return (local, None);
    };
    let skew = provider.signed_duration_since(local).abs();
    let max_skew = chrono::TimeDelta::from_std(max_skew).unwrap_or(chrono::TimeDelta::MAX);
    if skew <= max_skew {
        return (provider, None);
    }
    let start = provider.min(local);
    let start = floor.map_or(start, |floor| start.max(floor));
    (start, Some(UntrustedDate { provider, local }))
}

/// Where a run's results go: the store (daemon) or memory (`pollerd poll`).
pub trait RunSink: Send {
    fn seen_dates(
        &mut self,
        key: &ResourceKey,
        ids: &[&str],
    ) -> Result<Vec<Option<DateTime<Utc>>>, StoreError>;
    fn commit(&mut self, commit: PageCommit)
    -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The last commit of a run that read every page: only its watermark and the pruning of
    /// the seen set. It may be held back and written later with others ([`IdleWatermarks`]); by
    /// default it is committed as any other.
    fn commit_idle(
        &mut self,
        commit: PageCommit,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.commit(commit)
    }
}

/// Called after each commit that queued notifications (delivery wakes the queue's worker).
pub type CommitListener = Arc<dyn Fn(&ResourceKey) + Send + Sync>;

/// What every poll shares.
#[derive(Clone)]
pub struct PollShared {
    pub client: ProviderClient,
    pub store: Arc<dyn Store>,
    /// The idle commits held back, over `store`: what runs read their watermark from.
    pub idle: Arc<IdleWatermarks>,
    /// `[polling] max_concurrent`.
    pub permits: Arc<tokio::sync::Semaphore>,
    pub on_commit: Option<CommitListener>,
    /// Poll tasks alive per resource: must never exceed 1 (checked through status).
    pub active_pollers: Arc<std::sync::Mutex<HashMap<ResourceKey, u32>>>,
    pub metrics: Option<crate::metrics::Metrics>,
    /// The running resources that reconcile, for `pollerd reconcile`.
    pub reconcile_desk: reconcile::ReconcileDesk,
}

impl PollShared {
    pub fn new(client: ProviderClient, store: Arc<dyn Store>, max_concurrent: usize) -> PollShared {
        PollShared {
            client,
            idle: IdleWatermarks::new(store.clone()),
            store,
            permits: Arc::new(tokio::sync::Semaphore::new(max_concurrent.max(1))),
            on_commit: None,
            active_pollers: Arc::default(),
            metrics: None,
            reconcile_desk: Arc::default(),
        }
    }
}

/// Commits to the store; the fsync runs off the async threads, and a run's idle last commit is
/// held back in memory (no hop to a blocking thread, no write of its own).
pub struct StoreSink {
    idle: Arc<IdleWatermarks>,
    on_commit: Option<CommitListener>,
}

impl RunSink for StoreSink {
    fn seen_dates(
        &mut self,
        key: &ResourceKey,
        ids: &[&str],
    ) -> Result<Vec<Option<DateTime<Utc>>>, StoreError> {
        self.idle.store().seen_dates(key, ids)
    }

    async fn commit(&mut self, commit: PageCommit) -> Result<(), StoreError> {
        let (key, queued) = (commit.key.clone(), !commit.notifications.is_empty());
        let idle = self.idle.clone();
        committed(&self.on_commit, &key, queued, move || idle.commit(commit)).await
    }

    async fn commit_idle(&mut self, commit: PageCommit) -> Result<(), StoreError> {
        match self.idle.defer(commit) {
            None => Ok(()),
            Some(commit) => self.commit(commit).await,
        }
    }
}

/// Runs `commit` off the async threads (it waits for an fsync) and, when it queued
/// notifications, tells the commit listener.
async fn committed(
    on_commit: &Option<CommitListener>,
    key: &ResourceKey,
    queued: bool,
    commit: impl FnOnce() -> Result<(), StoreError> + Send + 'static,
) -> Result<(), StoreError> {
    tokio::task::spawn_blocking(commit)
        .await
        .expect("store commit task panicked")?;
    if let (true, Some(listener)) = (queued, on_commit) {
        listener(key);
    }
    Ok(())
}

/// Keeps everything in memory and touches no state: the dry run.
#[derive(Default)]
pub struct MemorySink {
    seen: HashMap<String, DateTime<Utc>>,
    pub notifications: Vec<NewNotification>,
}

impl RunSink for MemorySink {
    fn seen_dates(
        &mut self,
        _: &ResourceKey,
        ids: &[&str],
    ) -> Result<Vec<Option<DateTime<Utc>>>, StoreError> {
        Ok(ids.iter().map(|id| self.seen.get(*id).copied()).collect())
    }

    async fn commit(&mut self, commit: PageCommit) -> Result<(), StoreError> {
        self.seen.extend(commit.seen);
        self.notifications.extend(commit.notifications);
        Ok(())
    }
}

/// Where a failed run stopped, so that the next attempt goes on from there.
///
/// Only keyset cursors (records after an id, [`Element::can_resume_at`]) are resumed: an offset
/// page or a next-page token may mean something else, or nothing, by the time of the next
/// attempt. The resumed attempt keeps the run's lower bound and its start (the provider's clock
/// at its first page), so when it completes the watermark is set to that start: records with a
/// smaller id that changed meanwhile were changed after it, and the next run finds them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resume {
    /// The stored watermark the run started from: the resume is void once it has changed.
    watermark: Option<DateTime<Utc>>,
    start: ScanStart,
}

/// Where a scan starts: from its first page, or from where a failed attempt stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ScanStart {
    from: DateTime<Utc>,
    /// The watermark the scan started from: an untrusted `Date` never moves it back.
    floor: Option<DateTime<Utc>>,
    started: DateTime<Utc>,
    provider_start: Option<DateTime<Utc>>,
    cursor: Cursor,
}

/// The lower bound of a run from a watermark (SPEC §7).
pub fn lower_bound(watermark: DateTime<Utc>, resource: &ResourceSpec) -> DateTime<Utc> {
    let before = chrono::Duration::from_std(resource.poll_delay.saturating_add(OVERLAP));
    watermark
        .checked_sub_signed(before.unwrap_or(chrono::TimeDelta::MAX))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Runs one resource of one instance against the store. `resume` carries where a failed run
/// stopped from one attempt to the next: pass the same one to every run of the resource.
pub async fn run_resource(
    shared: &PollShared,
    instance: &InstanceSpec,
    element: &Element,
    resource: &ResourceSpec,
    resume: &mut Option<Resume>,
) -> Result<RunReport, PollError> {
    let run = RunContext {
        client: &shared.client,
        instance,
        element,
        resource,
    };
    let watermark = shared
        .idle
        .watermark(&run.key())
        .map_err(|e| run.store_error(e))?;
    let mut sink = StoreSink {
        idle: shared.idle.clone(),
        on_commit: shared.on_commit.clone(),
    };
    let start = match (resume.take(), watermark, resource.backfill_since) {
        (Some(stopped), _, _) if stopped.watermark == watermark => {
            RunResumed.emit();
            stopped.start
        }
        (_, Some(w), _) => ScanStart::first_page(lower_bound(w, resource), Some(w)),
        (_, None, Some(since)) => ScanStart::first_page(since, None),
        (_, None, None) => return baseline(run, &mut sink).await,
    };
    let mut stopped = None;
    let result = scan::scan_from(run, &mut sink, start, &mut stopped).await;
    if result.is_err() {
        *resume = stopped.map(|start| Resume { watermark, start });
    }
    result
}

impl ScanStart {
    fn first_page(from: DateTime<Utc>, floor: Option<DateTime<Utc>>) -> ScanStart {
        ScanStart {
            from,
            floor,
            started: Utc::now(),
            provider_start: None,
            cursor: Cursor::First,
        }
    }
}

/// The first run of a resource: no backfill, so it only learns the provider's clock and sets
/// the watermark there ("the time the resource was first enabled", in the provider's time).
async fn baseline(run: RunContext<'_>, sink: &mut impl RunSink) -> Result<RunReport, PollError> {
    let started = Utc::now();
    let url = run.resource.url.render(started);
    let page = run
        .element
        .fetch_page(run.client, run.resource, &url, &Cursor::First)
        .await
        .map_err(|source| run.fetch_error(1, source))?;
    let max_skew = run.client.limits().max_clock_skew;
    let (watermark, untrusted_date) = run_clock(page.provider_date, started, None, max_skew);
    let mut commit = PageCommit::new(run.key());
    commit.watermark = Some(watermark);
    sink.commit(commit)
        .await
        .map_err(|source| run.store_error(source))?;
    Ok(RunReport {
        pages: 1,
        records: page.records.len(),
        watermark: Some(watermark),
        baseline: true,
        untrusted_date,
        ..RunReport::default()
    })
}

/// Fetches every page from `from` on and commits what is new, page by page; sets the watermark
/// only when every page was read. Runs in the resource's [`poll_span`], as the daemon's runs do.
pub async fn scan(
    client: &ProviderClient,
    sink: &mut impl RunSink,
    instance: &InstanceSpec,
    element: &Element,
    resource: &ResourceSpec,
    from: DateTime<Utc>,
) -> Result<RunReport, PollError> {
    let run = RunContext {
        client,
        instance,
        element,
        resource,
    };
    scan::scan_from(run, sink, ScanStart::first_page(from, None), &mut None)
        .instrument(poll_span(&instance.name, &resource.name))
        .await
}
