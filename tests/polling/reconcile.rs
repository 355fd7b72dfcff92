//! DELETED events (issue 15): reconciles against the ConnectWise simulator over real HTTP on
//! loopback, in process, reading what they queued from the store.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::support::{in_process, load_spec, seed_example};
use pollerd::config::InstanceSpec;
use pollerd::element::Element;
use pollerd::object_id::ObjectId;
use pollerd::poller::reconcile::{
    ReconcileOutcome, ReconcileReport, ReconcileRequest, reconcile_resource,
};
use pollerd::poller::{PollShared, run_resource};
use pollerd::sim::connectwise::{ConnectWiseSim, Fault, ListRequest, RecordKind};
use pollerd::store::{ResourceKey, Store};
use serde_json::Value;

struct Harness {
    sim: ConnectWiseSim,
    store: Arc<dyn Store>,
    shared: PollShared,
    dir: tempfile::TempDir,
}

const CONFIRMED: ReconcileRequest = ReconcileRequest {
    dry_run: false,
    allow_mass_delete: true,
};

impl Harness {
    async fn new() -> Harness {
        let (sim, store, shared, dir) = in_process().await;
        Harness {
            sim,
            store,
            shared,
            dir,
        }
    }

    /// The seed example's contacts, reconciled every 6 h, `page_size` records a page.
    fn instance(&self, page_size: u64) -> InstanceSpec {
        let mut v = seed_example(&self.sim);
        let contacts = &mut v["configuration"]["event.poller.configuration"]["contacts"];
        contacts["deletedCheckInterval"] = "6h".into();
        contacts["pageSize"] = page_size.into();
        load_spec(&self.dir.path().join("instance.json"), &v)
    }

    async fn reconcile(
        &self,
        spec: &InstanceSpec,
        request: ReconcileRequest,
    ) -> Result<ReconcileReport, pollerd::poller::PollError> {
        let element = Element::new(&spec.element);
        let resource = spec.resource("contacts").unwrap();
        reconcile_resource(&self.shared, spec, &element, resource, request).await
    }

    async fn reconcile_ok(&self, spec: &InstanceSpec) -> ReconcileReport {
        self.reconcile(spec, ReconcileRequest::default())
            .await
            .unwrap_or_else(|e| panic!("reconcile failed: {e}"))
    }

    fn key(&self, spec: &InstanceSpec) -> ResourceKey {
        ResourceKey::new(&spec.name, "contacts")
    }

    fn known(&self, spec: &InstanceSpec) -> BTreeSet<ObjectId> {
        let known = self.store.known_ids(&self.key(spec)).unwrap();
        known.ids.into_iter().collect()
    }

    /// Every queued notification body of the contacts, in queue order.
    fn queued(&self, spec: &InstanceSpec) -> Vec<Value> {
        let entries = self.store.outbox_front(&self.key(spec), 100_000).unwrap();
        entries
            .iter()
            .map(|e| serde_json::from_slice(&e.body).unwrap())
            .collect()
    }
}

/// (objectId, eventType) of every event in `bodies`.
fn events(bodies: &[Value]) -> Vec<(String, String)> {
    bodies
        .iter()
        .flat_map(|b| b["message"]["events"].as_array().unwrap().clone())
        .map(|e| {
            (
                e["objectId"].as_str().unwrap().to_string(),
                e["eventType"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn deleted_ids(bodies: &[Value]) -> BTreeSet<u64> {
    events(bodies)
        .into_iter()
        .filter(|(_, kind)| kind == "DELETED")
        .map(|(id, _)| id.parse().unwrap())
        .collect()
}

fn ids(ids: &[u64]) -> BTreeSet<u64> {
    ids.iter().copied().collect()
}

#[tokio::test]
async fn three_deleted_of_a_thousand_are_reported_once_each_in_the_usual_envelope() {
    let h = Harness::new().await;
    let all = h.sim.create_many(RecordKind::Contact, 1000, None);
    let spec = h.instance(1000);

    let first = h.reconcile_ok(&spec).await;
    assert_eq!(first.outcome, ReconcileOutcome::Baseline, "{first:?}");
    assert_eq!(h.known(&spec).len(), 1000);
    assert!(
        h.queued(&spec).is_empty(),
        "the first reconcile only learns"
    );

    let gone = [all[3], all[500], all[999]];
    assert_eq!(h.sim.delete_many(RecordKind::Contact, &gone), 3);
    let second = h.reconcile_ok(&spec).await;
    let bodies = h.queued(&spec);
    assert_eq!(deleted_ids(&bodies), ids(&gone));
    assert_eq!(events(&bodies).len(), 3, "each once: {:?}", events(&bodies));
    assert_eq!(h.known(&spec).len(), 997);
    assert!(
        matches!(&second.outcome, ReconcileOutcome::Deleted { deleted, .. } if deleted.len() == 3)
    );

    // The envelope: Cloud Elements' shape, the id alone under raw.contacts, the scan's start.
    let body = &bodies[0];
    assert_eq!(body["message"]["raw"]["objectType"], "contacts");
    let raw: Vec<u64> = body["message"]["raw"]["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r.as_object().unwrap().len(), 1, "only the id: {r}");
            r["id"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(ids(&raw), ids(&gone));
    let event = &body["message"]["events"][0];
    assert_eq!(event["objectType"], "contacts");
    assert_eq!(event["elementKey"], "connectwisecrmrest");
    let date = chrono::DateTime::parse_from_rfc3339(event["date"].as_str().unwrap()).unwrap();
    assert_eq!(date.timestamp(), second.started.timestamp());
    assert_eq!(body["id"], body["message"]["eventId"]);

    // Only ids were asked for.
    let scans: Vec<_> = h
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.fields.as_deref() == Some("id"))
        .collect();
    assert!(scans.len() >= 2, "reconcile pages ask for fields=id");

    let third = h.reconcile_ok(&spec).await;
    assert!(
        matches!(&third.outcome, ReconcileOutcome::Deleted { deleted, notifications: 0, .. } if deleted.is_empty()),
        "{third:?}"
    );
    assert_eq!(h.queued(&spec).len(), bodies.len(), "nothing new");
}

#[tokio::test]
async fn a_record_created_mid_scan_is_not_reported_and_one_deleted_mid_scan_is_reported_once() {
    let h = Harness::new().await;
    let all = h.sim.create_many(RecordKind::Contact, 1000, None);
    let spec = h.instance(100);
    h.reconcile_ok(&spec).await;

    // Between page 2 and page 3 of the next scan: one record is created, one already read (page
    // 1) and one not yet read (page 8) are deleted.
    let (read, unread) = (all[10], all[750]);
    let created = Arc::new(std::sync::Mutex::new(None));
    let created_by_action = created.clone();
    let fired = h.sim.before_list_request(
        ListRequest::nth(RecordKind::Contact, "fields=id", 3),
        move |sim| {
            *created_by_action.lock().unwrap() = Some(sim.create(RecordKind::Contact, None));
            sim.delete_many(RecordKind::Contact, &[read, unread]);
        },
    );
    h.reconcile_ok(&spec).await;
    fired.await.expect("the action ran mid-scan");
    let new_id = created.lock().unwrap().expect("a record was created");
    assert_eq!(deleted_ids(&h.queued(&spec)), ids(&[unread]));

    h.reconcile_ok(&spec).await;
    let bodies = h.queued(&spec);
    assert_eq!(deleted_ids(&bodies), ids(&[read, unread]));
    assert_eq!(events(&bodies).len(), 2, "each once");
    assert!(!deleted_ids(&bodies).contains(&new_id));
    assert!(h.known(&spec).contains(&ObjectId::Number(new_id)));
}

#[tokio::test]
async fn a_500_on_the_third_page_reports_nothing_and_keeps_the_known_set() {
    let h = Harness::new().await;
    let all = h.sim.create_many(RecordKind::Contact, 1000, None);
    let spec = h.instance(100);
    h.reconcile_ok(&spec).await;
    let gone = [all[0], all[420]];
    h.sim.delete_many(RecordKind::Contact, &gone);
    let known_before = h.known(&spec);

    h.sim.inject_at(
        Fault::ServerError,
        ListRequest::nth(RecordKind::Contact, "fields=id", 3),
    );
    let failed = h.reconcile(&spec, ReconcileRequest::default()).await;
    let error = failed
        .expect_err("a 500 on page 3 fails the reconcile")
        .to_string();
    assert!(error.contains("page 3"), "{error}");
    assert!(error.contains("contacts"), "{error}");
    assert!(h.queued(&spec).is_empty(), "nothing reported");
    assert_eq!(h.known(&spec), known_before, "known set untouched");

    h.reconcile_ok(&spec).await;
    assert_eq!(deleted_ids(&h.queued(&spec)), ids(&gone));
}

#[tokio::test]
async fn deleting_sixty_percent_is_refused_until_confirmed() {
    let h = Harness::new().await;
    let all = h.sim.create_many(RecordKind::Contact, 100, None);
    let spec = h.instance(1000);
    h.reconcile_ok(&spec).await;
    h.sim.delete_many(RecordKind::Contact, &all[..60]);

    let refused = h.reconcile_ok(&spec).await;
    assert_eq!(
        refused.outcome,
        ReconcileOutcome::MassDeleteRefused { would_delete: 60 }
    );
    assert!(h.queued(&spec).is_empty());
    assert_eq!(h.known(&spec).len(), 100);

    let dry = h
        .reconcile(
            &spec,
            ReconcileRequest {
                dry_run: true,
                allow_mass_delete: true,
            },
        )
        .await
        .unwrap();
    assert!(
        matches!(&dry.outcome, ReconcileOutcome::Deleted { deleted, .. } if deleted.len() == 60)
    );
    assert!(h.queued(&spec).is_empty(), "a dry run changes nothing");
    assert_eq!(h.known(&spec).len(), 100);

    h.reconcile(&spec, CONFIRMED).await.unwrap();
    assert_eq!(deleted_ids(&h.queued(&spec)), ids(&all[..60]));
    assert_eq!(h.known(&spec).len(), 40);
}

#[tokio::test]
async fn a_record_first_seen_by_a_poll_is_known_and_its_deletion_reported() {
    let h = Harness::new().await;
    let an_hour_ago = h.sim.now() - chrono::Duration::hours(1);
    h.sim
        .create_many(RecordKind::Contact, 20, Some(an_hour_ago));
    let spec = h.instance(1000);
    let element = Element::new(&spec.element);
    let resource = spec.resource("contacts").unwrap();
    // Baseline poll and reconcile, then a record the next poll emits.
    run_resource(&h.shared, &spec, &element, resource, &mut None)
        .await
        .unwrap();
    h.reconcile_ok(&spec).await;
    let id = h.sim.create(RecordKind::Contact, Some(h.sim.now()));
    let report = run_resource(&h.shared, &spec, &element, resource, &mut None)
        .await
        .unwrap();
    assert_eq!(report.events, 1);
    assert!(h.known(&spec).contains(&ObjectId::Number(id)));

    h.sim.delete(RecordKind::Contact, id);
    h.reconcile_ok(&spec).await;
    let bodies = h.queued(&spec);
    assert_eq!(
        events(&bodies),
        [
            (id.to_string(), "CREATED".to_string()),
            (id.to_string(), "DELETED".to_string())
        ],
        "created, then deleted, in that order in one queue"
    );
}
