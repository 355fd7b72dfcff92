//! The poll engine against the ConnectWise simulator over real HTTP on loopback: events,
//! envelopes, watermarks, dedup, failures, clock skew (SPEC §5, §7).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use crate::support::{in_process, load_spec, seed_example, wait_for};
use chrono::DateTime;
use chrono::DurationRound;
use pollerd::config::InstanceSpec;
use pollerd::element::{Element, ProviderClient};
use pollerd::poller::{PollShared, Resume, RunReport, run_resource};
use pollerd::sim::connectwise::{ConnectWiseSim, Fault, FaultScope, RecordKind};
use pollerd::store::{ResourceKey, Store};
use serde_json::Value;

struct Harness {
    sim: ConnectWiseSim,
    store: Arc<dyn Store>,
    shared: PollShared,
    dir: tempfile::TempDir,
    /// Where a failed run of each resource stopped.
    resume: std::sync::Mutex<HashMap<String, Option<Resume>>>,
}

impl Harness {
    async fn new() -> Harness {
        let (sim, store, shared, dir) = in_process().await;
        Harness {
            sim,
            store,
            shared,
            dir,
            resume: Default::default(),
        }
    }

    /// The seed example pointed at the simulator, with `edit` applied to its JSON.
    fn seed_instance(&self, edit: impl FnOnce(&mut Value)) -> InstanceSpec {
        let mut v = seed_example(&self.sim);
        edit(&mut v);
        self.load(&v)
    }

    fn load(&self, v: &Value) -> InstanceSpec {
        load_spec(&self.dir.path().join("instance.json"), v)
    }

    async fn run(
        &self,
        spec: &InstanceSpec,
        resource: &str,
    ) -> Result<RunReport, pollerd::poller::PollError> {
        let element = Element::new(&spec.element);
        // Carried from run to run of a resource, as the daemon's poll loop does.
        let mut resume = self.resume.lock().unwrap().remove(resource).flatten();
        let result = run_resource(
            &self.shared,
            spec,
            &element,
            spec.resource(resource).unwrap(),
            &mut resume,
        )
        .await;
        self.resume
            .lock()
            .unwrap()
            .insert(resource.to_string(), resume);
        result
    }

    /// The seed instance reading contacts 1,000 per page, after its first (baseline) run.
    async fn contacts_by_the_thousand(&self) -> InstanceSpec {
        let spec = self.seed_instance(|v| {
            v["configuration"]["event.poller.configuration"]["contacts"]["pageSize"] = 1000.into();
        });
        self.run_ok(&spec, "contacts").await;
        spec
    }

    /// The next run's third contacts request (its page 3) is answered 500.
    fn fail_the_third_contacts_request(&self) {
        self.sim.inject(
            Fault::ServerError,
            FaultScope {
                path_contains: Some("/company/contacts".into()),
                skip: 2,
                count: 1,
            },
        );
    }

    async fn run_ok(&self, spec: &InstanceSpec, resource: &str) -> RunReport {
        self.run(spec, resource).await.unwrap()
    }

    /// Every queued notification of a resource, oldest first, as JSON (read by acking).
    fn drain(&self, instance: &str, resource: &str) -> Vec<Value> {
        let key = ResourceKey::new(instance, resource);
        let mut out = Vec::new();
        for _ in 0..100_000 {
            let Some(head) = self.store.outbox_head(&key).unwrap() else {
                break;
            };
            let body: Value = serde_json::from_slice(&head.body).unwrap();
            assert_eq!(body["id"], head.event_id);
            out.push(body);
            self.store.ack(&key, head.seq).unwrap();
        }
        out
    }
}

/// (objectId, date, eventType) of every event in the notifications.
fn events(notifications: &[Value]) -> Vec<(String, String, String)> {
    notifications
        .iter()
        .flat_map(|n| n["message"]["events"].as_array().unwrap().clone())
        .map(|e| {
            (
                e["objectId"].as_str().unwrap().to_string(),
                e["date"].as_str().unwrap().to_string(),
                e["eventType"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn last_updated(record: &Value) -> String {
    record["_info"]["lastUpdated"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn the_seed_instance_turns_a_new_contact_into_one_created_event() {
    let h = Harness::new().await;
    let spec = h.seed_instance(|_| {});
    let first = h.run_ok(&spec, "contacts").await;
    assert!(first.baseline, "the first run only sets the watermark");
    assert!(h.drain("API_Polling", "contacts").is_empty());

    let id = h.sim.create(RecordKind::Contact, None);
    let report = h.run_ok(&spec, "contacts").await;
    assert_eq!((report.events, report.notifications), (1, 1), "{report:?}");
    let notes = h.drain("API_Polling", "contacts");
    assert_eq!(notes.len(), 1);
    let n = &notes[0];
    let record = h.sim.record(RecordKind::Contact, id).unwrap();

    // The envelope, field by field (SPEC §5).
    let event_id = n["id"].as_str().unwrap();
    assert_eq!(
        n["topic"],
        format!("instance-{}-connectwisecrmrest-events", spec.id)
    );
    assert_eq!(n["action"], "create");
    assert!(DateTime::parse_from_rfc3339(n["createdDate"].as_str().unwrap()).is_ok());
    let m = &n["message"];
    assert_eq!(m["elementKey"], "connectwisecrmrest");
    assert_eq!(m["eventId"], event_id);
    assert_eq!(m["instanceId"], spec.id);
    assert_eq!(m["instance_id"], spec.id);
    assert_eq!(m["instanceName"], "API_Polling");
    assert_eq!(m["instanceTags"], serde_json::json!(["Test"]));
    assert_eq!(
        m["raw"]["contacts"],
        serde_json::json!([record]),
        "raw holds the vendor object unchanged"
    );
    assert_eq!(m["raw"]["objectType"], "contacts");
    let poll_ms = m["raw"]["pollDate"].as_i64().unwrap();
    let e = &m["events"][0];
    assert_eq!(m["events"].as_array().unwrap().len(), 1);
    assert_eq!(
        e["eventType"], "CREATED",
        "equal date fields: Cloud Elements' rule says CREATED"
    );
    assert_eq!(e["objectId"], id.to_string());
    assert_eq!(e["objectType"], "contacts");
    assert_eq!(e["hubKey"], "crm");
    assert_eq!(e["elementKey"], "connectwisecrmrest");
    assert_eq!(e["date"], last_updated(&record));
    let poll_date = DateTime::parse_from_rfc3339(e["pollDate"].as_str().unwrap()).unwrap();
    assert!(e["pollDate"].as_str().unwrap().ends_with('Z'));
    assert_eq!(poll_date.timestamp_millis() / 1000, poll_ms / 1000);

    // Nothing changed: nothing sent.
    let again = h.run_ok(&spec, "contacts").await;
    assert_eq!(again.events, 0, "{again:?}");
    assert!(h.drain("API_Polling", "contacts").is_empty());

    // Requests carried ConnectWise's auth, clientId and keyset paging.
    let log = h.sim.requests();
    assert!(
        log.iter()
            .all(|r| r.had_valid_auth && r.client_id.as_deref() == Some("sim-client-id"))
    );
    assert!(
        log.iter()
            .all(|r| r.pagination_type.as_deref() == Some("forward-only"))
    );
    assert!(
        log.iter().all(|r| r
            .conditions
            .as_deref()
            .is_some_and(|c| c.starts_with("lastUpdated>["))),
        "{log:#?}"
    );
}

fn companies_instance(h: &Harness) -> InstanceSpec {
    h.seed_instance(|v| {
        let conf = &mut v["configuration"]["event.poller.configuration"];
        let mut companies = conf["contacts"].clone();
        companies["url"] =
            "/hubs/crm/accounts?where=lastUpdated>'${gmtDate:yyyy-MM-dd'T'HH:mm:ss'Z'}'".into();
        companies["datesConfiguration"]["createdDateField"] = "_info.dateEntered".into();
        *conf = serde_json::json!({ "companies": companies });
    })
}

#[tokio::test]
async fn a_company_is_created_then_updated() {
    let h = Harness::new().await;
    let spec = companies_instance(&h);
    assert!(h.run_ok(&spec, "companies").await.baseline);
    let created_at = h.sim.now();
    let id = h.sim.create(RecordKind::Company, Some(created_at));
    h.run_ok(&spec, "companies").await;
    h.sim.update(
        RecordKind::Company,
        id,
        Some(created_at + chrono::Duration::seconds(30)),
    );
    h.run_ok(&spec, "companies").await;
    let got = events(&h.drain("API_Polling", "companies"));
    let types: Vec<&str> = got.iter().map(|(_, _, t)| t.as_str()).collect();
    assert_eq!(types, ["CREATED", "UPDATED"], "{got:?}");
    assert!(got.iter().all(|(o, _, _)| *o == id.to_string()));
}

#[tokio::test]
async fn same_second_changes_are_neither_lost_nor_doubled() {
    let h = Harness::new().await;
    let spec = h.seed_instance(|_| {});
    h.run_ok(&spec, "contacts").await;
    let t = h.sim.now();
    let a = h.sim.create(RecordKind::Contact, Some(t));
    h.run_ok(&spec, "contacts").await;
    // In the very same second: a new record, and a second version of `a` with the same date.
    let b = h.sim.create(RecordKind::Contact, Some(t));
    let c = h.sim.create(RecordKind::Contact, Some(t));
    h.run_ok(&spec, "contacts").await;
    h.run_ok(&spec, "contacts").await;
    let got: Vec<String> = events(&h.drain("API_Polling", "contacts"))
        .into_iter()
        .map(|(o, _, _)| o)
        .collect();
    let mut expected = vec![a.to_string(), b.to_string(), c.to_string()];
    expected.sort();
    let mut sorted = got.clone();
    sorted.sort();
    assert_eq!(sorted, expected, "each record exactly once: {got:?}");
}

#[tokio::test]
async fn changes_made_during_a_multi_page_scan_are_neither_lost_nor_doubled() {
    let h = Harness::new().await;
    let spec = h.contacts_by_the_thousand().await;
    let ids = h.sim.create_many(RecordKind::Contact, 2500, None);
    // Slow down page 2 so the changes land while the scan is under way.
    h.sim.inject(
        Fault::Latency(Duration::from_secs(2)),
        FaultScope {
            path_contains: Some("/company/contacts".into()),
            skip: 1,
            count: 1,
        },
    );
    let before = h.sim.request_count();
    let (early, late) = (ids[10], ids[2400]); // on page 1 (already read) and page 3 (not yet)
    let sim = h.sim.clone();
    let changer = tokio::spawn(async move {
        wait_for("page 1 to be answered", Duration::from_secs(30), || {
            sim.request_count() > before
        })
        .await;
        let later = sim.now() + chrono::Duration::seconds(1);
        sim.update(RecordKind::Contact, early, Some(later));
        sim.update(RecordKind::Contact, late, Some(later));
    });
    let scan = h.run_ok(&spec, "contacts").await;
    changer.await.unwrap();
    assert_eq!(scan.pages, 3);
    let after = h.run_ok(&spec, "contacts").await;
    assert!(!after.baseline);
    h.run_ok(&spec, "contacts").await;

    let got = events(&h.drain("API_Polling", "contacts"));
    let mut versions: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (id, date, _) in &got {
        assert!(
            versions.entry(id.clone()).or_default().insert(date.clone()),
            "duplicate event {id} {date}"
        );
    }
    assert_eq!(versions.len(), 2500, "every record at least once");
    for id in [early, late] {
        let latest = last_updated(&h.sim.record(RecordKind::Contact, id).unwrap());
        assert!(
            versions[&id.to_string()].contains(&latest),
            "{id}: latest version {latest} missing from {:?}",
            versions[&id.to_string()]
        );
    }
}

#[tokio::test]
async fn a_provider_clock_ten_minutes_off_loses_nothing() {
    for skew_minutes in [-10i64, 10] {
        let h = Harness::new().await;
        h.sim
            .set_clock_skew(chrono::Duration::minutes(skew_minutes));
        let spec = h.seed_instance(|_| {});
        h.run_ok(&spec, "contacts").await;
        let a = h.sim.create(RecordKind::Contact, None);
        h.run_ok(&spec, "contacts").await;
        let b = h.sim.create(RecordKind::Contact, None);
        h.sim.update(
            RecordKind::Contact,
            a,
            Some(h.sim.now() + chrono::Duration::seconds(2)),
        );
        h.run_ok(&spec, "contacts").await;
        h.run_ok(&spec, "contacts").await;
        let got = events(&h.drain("API_Polling", "contacts"));
        let ids: Vec<&str> = got.iter().map(|(o, _, _)| o.as_str()).collect();
        assert_eq!(
            ids.iter().filter(|o| **o == a.to_string()).count(),
            2,
            "skew {skew_minutes}: {got:?}"
        );
        assert_eq!(
            ids.iter().filter(|o| **o == b.to_string()).count(),
            1,
            "skew {skew_minutes}: {got:?}"
        );
        assert_eq!(got.len(), 3, "skew {skew_minutes}: {got:?}");
    }
}

/// The contacts requests the simulator saw from index `from` of its log on.
fn contacts_requests(h: &Harness, from: usize) -> Vec<pollerd::sim::connectwise::RequestLog> {
    let mut log: Vec<_> = h.sim.requests().into_iter().skip(from).collect();
    log.retain(|r| r.path.ends_with("/company/contacts"));
    log.sort_by_key(|r| r.received_at);
    log
}

#[tokio::test]
async fn a_failing_page_leaves_the_watermark_and_the_retry_resumes_after_the_last_commit() {
    let h = Harness::new().await;
    let spec = h.contacts_by_the_thousand().await;
    let key = ResourceKey::new("API_Polling", "contacts");
    let watermark = h.shared.idle.watermark(&key).unwrap().unwrap();
    h.sim.create_many(RecordKind::Contact, 4500, None);
    let before = h.sim.request_count();
    h.fail_the_third_contacts_request();
    let err = h.run(&spec, "contacts").await.unwrap_err();
    assert!(err.to_string().contains("page 3"), "{err}");
    assert!(err.to_string().contains("HTTP 500"), "{err}");
    assert_eq!(
        h.store.watermark(&key).unwrap(),
        Some(watermark),
        "a failed run must not move the watermark"
    );
    let failed = contacts_requests(&h, before);
    assert_eq!(failed.len(), 3);
    let after_failure = h.sim.request_count();

    let retry = h.run_ok(&spec, "contacts").await;
    let resumed = contacts_requests(&h, after_failure);
    assert_eq!(
        retry.pages, 3,
        "pages 3 to 5: the two committed pages are not read again"
    );
    assert_eq!(
        resumed[0].page_id, failed[2].page_id,
        "the retry starts at the page that failed"
    );
    assert!(resumed[0].page_id.is_some());
    assert_eq!(
        resumed[0].conditions, failed[0].conditions,
        "with the failed run's lower bound"
    );
    let got = events(&h.drain("API_Polling", "contacts"));
    let unique: BTreeSet<&str> = got.iter().map(|(o, _, _)| o.as_str()).collect();
    assert_eq!(unique.len(), 4500, "every record");
    assert_eq!(got.len(), 4500, "none twice");
    // The completed retry set the watermark to the provider's clock at the failed run's first
    // page (Date headers have whole seconds).
    let first_page_clock = failed[0]
        .at
        .duration_trunc(chrono::Duration::seconds(1))
        .unwrap();
    assert_eq!(
        h.shared.idle.watermark(&key).unwrap(),
        Some(first_page_clock)
    );
    assert_eq!(retry.watermark, Some(first_page_clock));
}

#[tokio::test]
async fn a_record_changed_behind_a_resumed_run_is_found_by_the_next_run() {
    let h = Harness::new().await;
    let spec = h.contacts_by_the_thousand().await;
    let ids = h.sim.create_many(RecordKind::Contact, 3500, None);
    h.fail_the_third_contacts_request();
    h.run(&spec, "contacts").await.unwrap_err();
    // Pages 1 and 2 were committed; the resumed run will not read them again. The change lands
    // two seconds later on the provider's clock (ConnectWise dates have whole seconds).
    h.sim.set_clock_skew(chrono::Duration::seconds(2));
    let early = ids[10];
    assert!(h.sim.update(RecordKind::Contact, early, None));
    let resumed = h.run_ok(&spec, "contacts").await;
    assert_eq!(resumed.pages, 2);
    h.run_ok(&spec, "contacts").await;
    let got = events(&h.drain("API_Polling", "contacts"));
    // (The seed example's contacts have one date for created and updated: both are CREATED.)
    let early_dates: Vec<&str> = got
        .iter()
        .filter(|(id, _, _)| *id == early.to_string())
        .map(|(_, date, _)| date.as_str())
        .collect();
    assert_eq!(early_dates.len(), 2, "contact {early}: {early_dates:?}");
    assert!(early_dates[0] < early_dates[1], "{early_dates:?}");
    let unique: BTreeSet<&str> = got.iter().map(|(o, _, _)| o.as_str()).collect();
    assert_eq!(unique.len(), 3500, "every record");
    assert_eq!(got.len(), 3501, "each version once");
}

#[tokio::test]
async fn editing_the_instance_file_keeps_the_watermark() {
    let h = Harness::new().await;
    let v1 = h.seed_instance(|_| {});
    assert!(h.run_ok(&v1, "contacts").await.baseline);
    let id = h.sim.create(RecordKind::Contact, None);
    let v2 =
        h.seed_instance(|v| v["configuration"]["event.poller.refresh_interval"] = "0.5".into());
    assert_ne!(v1.fingerprint, v2.fingerprint);
    let report = h.run_ok(&v2, "contacts").await;
    assert!(
        !report.baseline,
        "a new interval must not reset the watermark"
    );
    let got = events(&h.drain("API_Polling", "contacts"));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, id.to_string());
}

#[tokio::test]
async fn batches_hold_at_most_batch_size_events_with_their_records_in_order() {
    let h = Harness::new().await;
    let spec =
        h.seed_instance(|v| v["configuration"]["event.notification.batch.size"] = "3".into());
    h.run_ok(&spec, "contacts").await;
    h.sim.create_many(RecordKind::Contact, 7, None);
    h.run_ok(&spec, "contacts").await;
    let notes = h.drain("API_Polling", "contacts");
    let sizes: Vec<usize> = notes
        .iter()
        .map(|n| n["message"]["events"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [3, 3, 1]);
    for n in &notes {
        let ids: Vec<String> = n["message"]["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["objectId"].as_str().unwrap().to_string())
            .collect();
        let raw: Vec<String> = n["message"]["raw"]["contacts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].to_string())
            .collect();
        assert_eq!(
            ids, raw,
            "raw holds exactly these events' records, in the same order"
        );
    }
    let event_ids: BTreeSet<&str> = notes.iter().map(|n| n["id"].as_str().unwrap()).collect();
    assert_eq!(event_ids.len(), 3, "eventId is unique per notification");
}

#[tokio::test]
async fn records_without_id_or_date_are_skipped_and_counted() {
    let h = Harness::new().await;
    let spec = h.seed_instance(|v| {
        // Point the id at a field only some records have, and the date at a field none has.
        v["configuration"]["event.poller.configuration"]["contacts"]["idField"] = "id".into();
    });
    h.run_ok(&spec, "contacts").await;
    h.sim.create_many(RecordKind::Contact, 3, None);
    let broken = h.seed_instance(|v| {
        v["configuration"]["event.poller.configuration"]["contacts"]["datesConfiguration"]["updatedDateField"] = "_info.missing".into();
    });
    let report = h.run_ok(&broken, "contacts").await;
    assert_eq!((report.skipped, report.events), (3, 0), "{report:?}");

    // A record that really has no id (the simulator drops the last one's): skipped and counted,
    // the others of its page emitted.
    h.sim.create_many(RecordKind::Contact, 3, None);
    h.sim
        .inject(Fault::LastRecordWithoutId, FaultScope::next(1));
    let report = h.run_ok(&spec, "contacts").await;
    assert_eq!(report.skipped, 1, "{report:?}");
    assert_eq!(report.events, report.records - 1, "{report:?}");
}

#[tokio::test]
async fn requests_to_one_provider_host_respect_max_per_host() {
    let mut h = Harness::new().await;
    h.shared = PollShared::new(
        ProviderClient::new(Duration::from_secs(30), 1).unwrap(),
        h.store.clone(),
        8,
    );
    let spec = h.seed_instance(|v| {
        let conf = &mut v["configuration"]["event.poller.configuration"];
        let mut companies = conf["contacts"].clone();
        companies["url"] = "/hubs/crm/accounts".into();
        conf["companies"] = companies;
    });
    h.sim.inject(
        Fault::Latency(Duration::from_millis(400)),
        FaultScope::always(),
    );
    let element = Element::new(&spec.element);
    let (mut resume_a, mut resume_b) = (None, None);
    let (a, b) = tokio::join!(
        run_resource(
            &h.shared,
            &spec,
            &element,
            spec.resource("contacts").unwrap(),
            &mut resume_a,
        ),
        run_resource(
            &h.shared,
            &spec,
            &element,
            spec.resource("companies").unwrap(),
            &mut resume_b,
        ),
    );
    a.unwrap();
    b.unwrap();
    let log = h.sim.requests();
    assert_eq!(log.len(), 2);
    // One at a time: the second was answered at least one full latency after the first.
    let gap = (log[1].at - log[0].at).abs();
    assert!(
        gap >= chrono::Duration::milliseconds(390),
        "requests overlapped: answered {gap} apart"
    );
}
