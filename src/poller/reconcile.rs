//! Finding deleted records (issue 15): a reconcile scan lists every id the resource's URL selects
//! now; the ids pollerd knows to exist that the scan did not see were deleted. Only a scan that
//! read every page decides anything, and a scan that would delete most of what is known is refused
//! until an operator confirms it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use super::notification::{self, EventRecord, EventType};
use super::scan::RunContext;
use super::{MAX_PAGES, PollError, PollShared, run_clock};
use crate::config::{InstanceSpec, ResourceSpec};
use crate::element::{Cursor, Element, Page, raw};
use crate::object_id::ObjectId;
use crate::store::{KnownIds, NewNotification, ReconcileCommit, ResourceKey, Store};

/// A reconcile may report more deletions than this without tripping the mass-delete guard,
/// whatever the fraction: deleting 3 of 4 records is not a sign of a broken scan.
pub const MASS_DELETE_MIN: usize = 10;

/// The mass-delete guard of one reconcile.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Guard {
    /// `deletedMaxFraction`: the largest share of the known ids one reconcile may delete.
    pub max_fraction: f64,
    /// `pollerd reconcile --allow-mass-delete`: the operator confirmed this once.
    pub allow_mass_delete: bool,
}

/// What a complete scan means for the known set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The resource's first reconcile: the known set becomes what the scan saw, and no event is
    /// sent (pollerd cannot tell what was deleted before it knew the records).
    Baseline { seen: usize },
    /// `deleted` become DELETED events and leave the known set; `added` (seen, not known) join it.
    Apply {
        deleted: Vec<ObjectId>,
        added: Vec<ObjectId>,
    },
    /// More than the guard allows would be deleted: nothing changes.
    MassDeleteRefused { would_delete: usize, known: usize },
}

/// Compares the ids known before the scan with those it saw. `baselined` is false until the
/// resource's first reconcile committed. Deleted ids come in ascending order, so the events of
/// one reconcile are always batched the same way.
pub fn decide(
    known: &HashSet<ObjectId>,
    baselined: bool,
    seen: &HashSet<ObjectId>,
    guard: Guard,
) -> Verdict {
    if !baselined {
        return Verdict::Baseline { seen: seen.len() };
    }
    let mut deleted: Vec<ObjectId> = known.difference(seen).cloned().collect();
    deleted.sort_unstable();
    if is_mass_delete(deleted.len(), known.len(), guard) {
        return Verdict::MassDeleteRefused {
            would_delete: deleted.len(),
            known: known.len(),
        };
    }
    let mut added: Vec<ObjectId> = seen.difference(known).cloned().collect();
    added.sort_unstable();
    Verdict::Apply { deleted, added }
}

fn is_mass_delete(deleted: usize, known: usize, guard: Guard) -> bool {
    if guard.allow_mass_delete || deleted <= MASS_DELETE_MIN {
        return false;
    }
    // Counts far below 2^53: exact as floating point.
    deleted as f64 > guard.max_fraction * known as f64
}

/// A reconcile asked for through the admin socket (`pollerd reconcile`), and where its answer goes.
pub struct ReconcileAsk {
    pub request: ReconcileRequest,
    pub reply: tokio::sync::oneshot::Sender<Result<ReconcileReport, String>>,
}

/// Where `pollerd reconcile` finds each running resource with a DELETED check: its poll loop
/// registers here while it runs, and runs what it is asked between its polls.
pub type ReconcileDesk = Arc<Mutex<HashMap<ResourceKey, tokio::sync::mpsc::Sender<ReconcileAsk>>>>;

/// How one reconcile was asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReconcileRequest {
    /// Report what would be deleted; change nothing.
    pub dry_run: bool,
    /// `--allow-mass-delete`: let this reconcile pass the mass-delete guard.
    pub allow_mass_delete: bool,
}

/// What a reconcile found and did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReconcileReport {
    pub pages: usize,
    /// Ids the scan saw.
    pub seen: usize,
    /// Ids known before it.
    pub known: usize,
    pub outcome: ReconcileOutcome,
    /// The scan's start on the provider's clock: the date of its DELETED events.
    pub started: DateTime<Utc>,
    pub dry_run: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReconcileOutcome {
    /// The first reconcile of the resource: the known set was filled, no event sent.
    Baseline,
    /// `deleted` were reported (or, in a dry run, would be) in `notifications` notifications.
    Deleted {
        deleted: Vec<ObjectId>,
        added: usize,
        notifications: usize,
    },
    /// The mass-delete guard stopped it: nothing changed.
    MassDeleteRefused { would_delete: usize },
}

/// The ids a complete reconcile scan saw, and when it started.
struct ScannedIds {
    seen: HashSet<ObjectId>,
    pages: usize,
    /// Local clock at the first request (the `pollDate` of its events).
    local_start: DateTime<Utc>,
    /// Provider clock at the first page (the `date` of its events).
    provider_start: DateTime<Utc>,
}

/// Runs one reconcile of `resource`: lists every id its URL selects, compares them with the known
/// set and commits the result (DELETED notifications and the known set's changes, in one
/// transaction). The caller runs it in the resource's own task, never beside one of its polls, so
/// nothing joins the known set while the scan is under way.
pub async fn reconcile_resource(
    shared: &PollShared,
    instance: &InstanceSpec,
    element: &Element,
    resource: &ResourceSpec,
    request: ReconcileRequest,
) -> Result<ReconcileReport, PollError> {
    let run = RunContext {
        client: &shared.client,
        instance,
        element,
        resource,
    };
    let key = run.key();
    let scanned = scan_ids(run).await?;
    let known = read_known(&shared.store, &key)
        .await
        .map_err(|e| run.store_error(e))?;
    let guard = Guard {
        max_fraction: resource
            .deleted_check
            .as_ref()
            .map_or(DEFAULT_MAX_FRACTION, |check| check.max_fraction),
        allow_mass_delete: request.allow_mass_delete,
    };
    let verdict = decide(&known.ids, known.baselined, &scanned.seen, guard);
    let (commit, outcome) = settle(run, &known, &scanned, verdict);
    if let (false, Some(commit)) = (request.dry_run, commit) {
        commit_reconcile(shared, commit)
            .await
            .map_err(|e| run.store_error(e))?;
    }
    Ok(ReconcileReport {
        pages: scanned.pages,
        seen: scanned.seen.len(),
        known: known.ids.len(),
        outcome,
        started: scanned.provider_start,
        dry_run: request.dry_run,
    })
}

/// `deletedMaxFraction` when the resource does not set it.
pub const DEFAULT_MAX_FRACTION: f64 = 0.5;

/// Reads every page of the resource's id listing. Any failure, and any record without a usable
/// id (it might be a live record the comparison would miss), fails the whole scan.
async fn scan_ids(run: RunContext<'_>) -> Result<ScannedIds, PollError> {
    let listing = run.element.id_listing(run.resource);
    let url = listing.render(EARLIEST);
    let id_path = raw::segments(&run.resource.id_field);
    let local_start = Utc::now();
    let mut scanned = ScannedIds {
        seen: HashSet::new(),
        pages: 0,
        local_start,
        provider_start: local_start,
    };
    let mut cursor = Cursor::First;
    loop {
        scanned.pages = scanned.pages.saturating_add(1);
        if scanned.pages > MAX_PAGES {
            return Err(PollError::TooManyPages {
                instance: run.instance.name.clone(),
                resource: run.resource.name.clone(),
            });
        }
        let page = run
            .element
            .fetch_page(run.client, &listing.resource, &url, &cursor)
            .await
            .map_err(|source| run.fetch_error(scanned.pages, source))?;
        if scanned.pages == 1 {
            let max_skew = run.client.limits().max_clock_skew;
            scanned.provider_start = run_clock(page.provider_date, local_start, None, max_skew).0;
        }
        collect_ids(run, &page, &id_path, scanned.pages, &mut scanned.seen).map_err(|message| {
            PollError::Reconcile {
                instance: run.instance.name.clone(),
                resource: run.resource.name.clone(),
                message,
            }
        })?;
        match page.next {
            Some(next) if !page.records.is_empty() => cursor = next,
            _ => return Ok(scanned),
        }
    }
}

/// The lower bound a reconcile renders its URL with: every record changed since 1970, so every
/// other condition of the URL still applies ("deleted" means "no longer selected").
pub const EARLIEST: DateTime<Utc> = DateTime::UNIX_EPOCH;

/// Adds the page's ids to `seen`; the message says which record has none.
fn collect_ids(
    run: RunContext<'_>,
    page: &Page,
    id_path: &[&str],
    page_number: usize,
    seen: &mut HashSet<ObjectId>,
) -> Result<(), String> {
    for (index, record) in page.records.iter().enumerate() {
        let id = raw::select(record.get(), &[id_path])
            .pop()
            .flatten()
            .and_then(raw::id_text);
        let Some(id) = id else {
            return Err(format!(
                "record {} of page {page_number} has no usable {}; nothing is reported as \
                 deleted from a scan that cannot read every id",
                index.saturating_add(1),
                run.resource.id_field
            ));
        };
        seen.insert(ObjectId::from_text(&id));
    }
    Ok(())
}

async fn read_known(
    store: &Arc<dyn Store>,
    key: &ResourceKey,
) -> Result<KnownIds, crate::store::StoreError> {
    let (store, key) = (store.clone(), key.clone());
    tokio::task::spawn_blocking(move || store.known_ids(&key))
        .await
        .expect("reading the known ids panicked")
}

async fn commit_reconcile(
    shared: &PollShared,
    commit: ReconcileCommit,
) -> Result<(), crate::store::StoreError> {
    let (key, queued) = (commit.key.clone(), !commit.notifications.is_empty());
    let store = shared.store.clone();
    let commit = move || store.commit_reconcile(commit);
    super::committed(&shared.on_commit, &key, queued, commit).await
}

/// The commit a verdict needs (none when refused) and how to report it.
fn settle(
    run: RunContext<'_>,
    known: &KnownIds,
    scanned: &ScannedIds,
    verdict: Verdict,
) -> (Option<ReconcileCommit>, ReconcileOutcome) {
    let mut commit = ReconcileCommit::new(run.key());
    match verdict {
        Verdict::Baseline { .. } => {
            commit.removed = known.ids.difference(&scanned.seen).cloned().collect();
            commit.added = scanned.seen.difference(&known.ids).cloned().collect();
            (Some(commit), ReconcileOutcome::Baseline)
        }
        Verdict::Apply { deleted, added } => {
            commit.notifications = deleted_notifications(run, scanned, &deleted);
            let outcome = ReconcileOutcome::Deleted {
                added: added.len(),
                notifications: commit.notifications.len(),
                deleted: deleted.clone(),
            };
            commit.removed = deleted;
            commit.added = added;
            (Some(commit), outcome)
        }
        Verdict::MassDeleteRefused { would_delete, .. } => {
            (None, ReconcileOutcome::MassDeleteRefused { would_delete })
        }
    }
}

/// DELETED notifications for `deleted`, in batches of `batch.size`, with the same envelope and
/// event-id rules as every other notification.
fn deleted_notifications(
    run: RunContext<'_>,
    scanned: &ScannedIds,
    deleted: &[ObjectId],
) -> Vec<NewNotification> {
    let (instance, resource) = (run.instance, &run.resource.name);
    let batch_size = instance
        .notifications
        .as_ref()
        .map_or(10, |n| n.batch_size)
        .max(1);
    let id_field = run.resource.id_field.as_str();
    let created = Utc::now();
    deleted
        .chunks(batch_size)
        .map(|batch| {
            let records: Vec<Box<serde_json::value::RawValue>> = batch
                .iter()
                .map(|id| notification::deleted_record(id_field, id))
                .collect();
            let events: Vec<EventRecord<'_>> = batch
                .iter()
                .zip(&records)
                .map(|(id, record)| EventRecord {
                    object_id: id.to_string(),
                    updated: scanned.provider_start,
                    event_type: EventType::Deleted,
                    record,
                })
                .collect();
            let event_id = notification::event_id(&instance.name, resource, &events);
            let started = scanned.local_start;
            let body =
                notification::envelope(instance, resource, &event_id, &events, started, created);
            NewNotification {
                event_id,
                body,
                created_at: created,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(range: std::ops::Range<u64>) -> HashSet<ObjectId> {
        range.map(ObjectId::Number).collect()
    }

    const GUARD: Guard = Guard {
        max_fraction: 0.5,
        allow_mass_delete: false,
    };

    #[test]
    fn the_first_reconcile_only_learns_what_exists() {
        let verdict = decide(&HashSet::new(), false, &ids(0..5), GUARD);
        assert_eq!(verdict, Verdict::Baseline { seen: 5 });
        // Even when ids were known from polls before it.
        assert_eq!(
            decide(&ids(0..9), false, &ids(0..5), GUARD),
            Verdict::Baseline { seen: 5 }
        );
    }

    #[test]
    fn known_ids_not_seen_are_deleted_and_new_ones_join() {
        let mut seen = ids(0..1000);
        for gone in [3, 500, 999] {
            seen.remove(&ObjectId::Number(gone));
        }
        seen.insert(ObjectId::Number(1000));
        let verdict = decide(&ids(0..1000), true, &seen, GUARD);
        assert_eq!(
            verdict,
            Verdict::Apply {
                deleted: [3, 500, 999].map(ObjectId::Number).to_vec(),
                added: vec![ObjectId::Number(1000)],
            }
        );
    }

    #[test]
    fn deleting_more_than_the_fraction_is_refused_unless_allowed() {
        let known = ids(0..100);
        let seen = ids(60..100);
        assert_eq!(
            decide(&known, true, &seen, GUARD),
            Verdict::MassDeleteRefused {
                would_delete: 60,
                known: 100
            }
        );
        let allowed = Guard {
            allow_mass_delete: true,
            ..GUARD
        };
        let Verdict::Apply { deleted, .. } = decide(&known, true, &seen, allowed) else {
            panic!("an allowed mass delete applies");
        };
        assert_eq!(deleted.len(), 60);
        // Exactly half is within the guard.
        assert!(matches!(
            decide(&known, true, &ids(50..100), GUARD),
            Verdict::Apply { .. }
        ));
    }

    #[test]
    fn a_few_deletions_never_trip_the_guard() {
        let verdict = decide(&ids(0..12), true, &ids(10..12), GUARD);
        assert!(
            matches!(&verdict, Verdict::Apply { deleted, .. } if deleted.len() == 10),
            "{verdict:?}"
        );
        let verdict = decide(&ids(0..12), true, &ids(11..12), GUARD);
        assert!(matches!(verdict, Verdict::MassDeleteRefused { .. }));
    }
}
