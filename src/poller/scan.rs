//! One scan of a resource, page by page, as named steps: fetch the next page → its fresh
//! candidates (extracted, inside the run's dates, one per id) → those changed since the seen set →
//! the page's commit (notifications in batches) → the next cursor; once no page is left, the
//! watermark.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::extract::{Candidate, Extractor};
use super::notification::{self, EventRecord, EventType};
use super::{MAX_PAGES, PollError, RunReport, RunSink, ScanStart, lower_bound, run_clock};
use crate::config::{InstanceSpec, ResourceSpec};
use crate::element::{Element, FetchError, Page, ProviderClient};
use crate::internal_events::RecordSkipped;
use crate::object_id::ObjectId;
use crate::store::{NewNotification, PageCommit, ResourceKey, StoreError};

/// What a run polls, and through which client.
#[derive(Clone, Copy)]
pub(super) struct RunContext<'a> {
    pub client: &'a ProviderClient,
    pub instance: &'a InstanceSpec,
    pub element: &'a Element,
    pub resource: &'a ResourceSpec,
}

impl RunContext<'_> {
    pub fn key(&self) -> ResourceKey {
        ResourceKey::new(&self.instance.name, &self.resource.name)
    }

    pub fn fetch_error(&self, page: usize, source: FetchError) -> PollError {
        PollError::Fetch {
            instance: self.instance.name.clone(),
            resource: self.resource.name.clone(),
            page,
            source,
        }
    }

    pub fn store_error(&self, source: StoreError) -> PollError {
        PollError::Store {
            instance: self.instance.name.clone(),
            resource: self.resource.name.clone(),
            source,
        }
    }
}

/// [`super::scan()`] from `start`; when it fails after committing a page read by id, `stopped`
/// says where the next attempt can go on.
pub(super) async fn scan_from(
    run: RunContext<'_>,
    sink: &mut impl RunSink,
    start: ScanStart,
    stopped: &mut Option<ScanStart>,
) -> Result<RunReport, PollError> {
    let mut scan = Scan::new(run, sink, start);
    loop {
        *stopped = scan.resume_point();
        let page = scan.fetch_next_page().await?;
        let run_start = scan.clock(&page);
        let fresh = scan.fresh_candidates(&page, run_start);
        let new = scan
            .changed_since_seen(&fresh)
            .map_err(|e| run.store_error(e))?;
        let commit = scan.page_commit(&page, &new);
        scan.commit_page(&new, commit).await?;
        if !scan.advance(page) {
            break;
        }
    }
    *stopped = None;
    scan.finish().await
}

/// A scan under way: what it reads, where it is, and what it did so far.
struct Scan<'a, S> {
    run: RunContext<'a>,
    sink: &'a mut S,
    key: ResourceKey,
    extractor: Extractor<'a>,
    batch_size: usize,
    /// The URL rendered from the lower bound, the same for every page.
    url: String,
    /// Where the scan is: its cursor moves page by page; its clock is set by the first page.
    at: ScanStart,
    report: RunReport,
}

impl<'a, S: RunSink> Scan<'a, S> {
    fn new(run: RunContext<'a>, sink: &'a mut S, start: ScanStart) -> Self {
        Scan {
            run,
            sink,
            key: run.key(),
            extractor: Extractor::new(run.resource),
            batch_size: run
                .instance
                .notifications
                .as_ref()
                .map_or(10, |n| n.batch_size),
            url: run.resource.url.render(start.from),
            at: start,
            report: RunReport::default(),
        }
    }

    /// Where a failure from here on can resume: everything before the cursor is committed. Only
    /// a keyset cursor resumes, and only once the run's clock is known.
    fn resume_point(&self) -> Option<ScanStart> {
        let resumable = self
            .run
            .element
            .can_resume_at(self.run.resource, &self.at.cursor);
        (self.at.provider_start.is_some() && resumable).then(|| self.at.clone())
    }

    /// Fetches the page at the cursor; a run of more than [`MAX_PAGES`] is taken to be looping.
    async fn fetch_next_page(&mut self) -> Result<Page, PollError> {
        let run = self.run;
        self.report.pages = self.report.pages.saturating_add(1);
        let pages = self.report.pages;
        if pages > MAX_PAGES {
            return Err(PollError::TooManyPages {
                instance: run.instance.name.clone(),
                resource: run.resource.name.clone(),
            });
        }
        let page = run
            .element
            .fetch_page(run.client, run.resource, &self.url, &self.at.cursor)
            .await
            .map_err(|source| run.fetch_error(pages, source))?;
        self.report.records = self.report.records.saturating_add(page.records.len());
        Ok(page)
    }

    /// The run's clock: chosen by [`run_clock`] from the first page's `Date`, kept after.
    fn clock(&mut self, page: &Page) -> DateTime<Utc> {
        if let Some(start) = self.at.provider_start {
            return start;
        }
        let max_skew = self.run.client.limits().max_clock_skew;
        let (start, untrusted) =
            run_clock(page.provider_date, self.at.started, self.at.floor, max_skew);
        self.report.untrusted_date = untrusted;
        *self.at.provider_start.insert(start)
    }

    /// The page's records that may be events: extracted (a record that cannot be is skipped and
    /// logged), inside the run's dates, one per id.
    fn fresh_candidates(&mut self, page: &Page, run_start: DateTime<Utc>) -> Vec<Candidate> {
        let (run, from) = (self.run, self.at.from);
        let resource = run.resource;
        let (extractor, report) = (&self.extractor, &mut self.report);
        let extracted = page
            .records
            .iter()
            .enumerate()
            .filter_map(|(index, record)| {
                extractor
                    .candidate(index, record)
                    .map_err(|why| {
                        report.skipped = report.skipped.saturating_add(1);
                        let page = report.pages;
                        RecordSkipped {
                            index,
                            page,
                            why: &why,
                        }
                        .emit();
                    })
                    .ok()
            });
        let in_dates = extracted.filter(|c| {
            let before_bound = resource.filter_by_updated_date && c.updated <= from;
            // After the run's start: the next run picks it up.
            let after_start = resource.filter_by_current_date && c.updated > run_start;
            !before_bound && !after_start
        });
        latest_per_id(in_dates)
    }

    /// Of `fresh`, those the seen set does not hold at their date or later.
    fn changed_since_seen<'c>(
        &mut self,
        fresh: &'c [Candidate],
    ) -> Result<Vec<&'c Candidate>, StoreError> {
        let ids: Vec<&str> = fresh.iter().map(|c| c.object_id.as_str()).collect();
        let seen = self.sink.seen_dates(&self.key, &ids)?;
        Ok(changed_since(fresh, seen))
    }

    /// The page's commit: `new` as notifications of at most `batch_size` events, and their seen
    /// dates.
    fn page_commit(&self, page: &Page, new: &[&Candidate]) -> PageCommit {
        let (instance, resource) = (self.run.instance, &self.run.resource.name);
        let mut commit = PageCommit::new(self.key.clone());
        let created = Utc::now();
        for batch in new.chunks(self.batch_size.max(1)) {
            let events: Vec<EventRecord<'_>> = batch
                .iter()
                .map(|c| EventRecord {
                    object_id: c.object_id.clone(),
                    updated: c.updated,
                    event_type: c.event_type,
                    record: &page.records[c.index],
                })
                .collect();
            let event_id = notification::event_id(&instance.name, resource, &events);
            let started = self.at.started;
            let body =
                notification::envelope(instance, resource, &event_id, &events, started, created);
            commit.notifications.push(NewNotification {
                event_id,
                body,
                created_at: created,
            });
            commit
                .seen
                .extend(batch.iter().map(|c| (c.object_id.clone(), c.updated)));
        }
        // An id an event was sent for is known to exist, for the DELETED check.
        if self.run.resource.deleted_check.is_some() {
            let ids = new.iter().map(|c| ObjectId::from_text(&c.object_id));
            commit.known.extend(ids);
        }
        commit
    }

    /// Counts the page's events and commits it, when it queued anything.
    async fn commit_page(
        &mut self,
        new: &[&Candidate],
        commit: PageCommit,
    ) -> Result<(), PollError> {
        let report = &mut self.report;
        report.events = report.events.saturating_add(new.len());
        let created_events = new
            .iter()
            .filter(|c| c.event_type == EventType::Created)
            .count();
        report.created = report.created.saturating_add(created_events);
        report.notifications = report
            .notifications
            .saturating_add(commit.notifications.len());
        if !commit.notifications.is_empty() {
            let run = self.run;
            self.sink
                .commit(commit)
                .await
                .map_err(|e| run.store_error(e))?;
        }
        Ok(())
    }

    /// Moves the cursor to the next page; false when `page` was the last (no next page, or no
    /// records).
    fn advance(&mut self, page: Page) -> bool {
        match page.next {
            Some(next) if !page.records.is_empty() => {
                self.at.cursor = next;
                true
            }
            _ => false,
        }
    }

    /// Every page was read: the watermark moves to the run's start.
    async fn finish(self) -> Result<RunReport, PollError> {
        let Scan {
            run,
            sink,
            key,
            at,
            mut report,
            ..
        } = self;
        let watermark = at.provider_start.unwrap_or(at.started);
        let mut commit = PageCommit::new(key);
        commit.watermark = Some(watermark);
        // Seen entries at or below the next lower bound can no longer matter.
        commit.prune_seen_before = Some(lower_bound(watermark, run.resource));
        sink.commit_idle(commit)
            .await
            .map_err(|e| run.store_error(e))?;
        report.watermark = Some(watermark);
        Ok(report)
    }
}

/// One candidate per id, in the order the ids first appear; of the same id twice in one page,
/// the later version (by its updated date; the first of two equal ones).
fn latest_per_id(candidates: impl IntoIterator<Item = Candidate>) -> Vec<Candidate> {
    let mut latest: Vec<Candidate> = Vec::new();
    let mut position: HashMap<String, usize> = HashMap::new();
    for c in candidates {
        match position.get(&c.object_id) {
            Some(&i) if latest[i].updated >= c.updated => {}
            Some(&i) => latest[i] = c,
            None => {
                position.insert(c.object_id.clone(), latest.len());
                latest.push(c);
            }
        }
    }
    latest
}

/// Of `fresh`, those whose seen date (`seen`, in the same order) is missing or older.
fn changed_since(fresh: &[Candidate], seen: Vec<Option<DateTime<Utc>>>) -> Vec<&Candidate> {
    fresh
        .iter()
        .zip(seen)
        .filter(|(c, seen)| seen.is_none_or(|s| s < c.updated))
        .map(|(c, _)| c)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: u32) -> DateTime<Utc> {
        chrono::TimeZone::with_ymd_and_hms(&Utc, 2024, 1, 1, 0, 0, second).unwrap()
    }

    fn candidate(index: usize, id: &str, updated: DateTime<Utc>) -> Candidate {
        Candidate {
            index,
            object_id: id.into(),
            updated,
            event_type: EventType::Updated,
        }
    }

    fn summary(candidates: &[Candidate]) -> Vec<(&str, usize)> {
        candidates
            .iter()
            .map(|c| (c.object_id.as_str(), c.index))
            .collect()
    }

    #[test]
    fn the_same_id_twice_in_a_page_keeps_its_later_version_in_its_first_place() {
        let page = [
            candidate(0, "7", at(1)),
            candidate(1, "8", at(5)),
            candidate(2, "7", at(3)),
            // An older copy after the newer one does not bring the older back.
            candidate(3, "8", at(2)),
            candidate(4, "9", at(1)),
        ];
        let kept = latest_per_id(page);
        assert_eq!(summary(&kept), [("7", 2), ("8", 1), ("9", 4)]);
    }

    #[test]
    fn of_two_copies_with_the_same_date_the_first_is_kept() {
        let kept = latest_per_id([candidate(0, "7", at(4)), candidate(1, "7", at(4))]);
        assert_eq!(summary(&kept), [("7", 0)]);
    }

    #[test]
    fn a_record_is_new_unless_seen_at_its_date_or_later() {
        let fresh = [
            candidate(0, "never-seen", at(5)),
            candidate(1, "seen-older", at(5)),
            candidate(2, "seen-same", at(5)),
            candidate(3, "seen-newer", at(5)),
        ];
        let seen = vec![None, Some(at(4)), Some(at(5)), Some(at(6))];
        let new: Vec<&str> = changed_since(&fresh, seen)
            .iter()
            .map(|c| c.object_id.as_str())
            .collect();
        assert_eq!(new, ["never-seen", "seen-older"]);
    }
}
