//! Limits per tenant, not per host: two ConnectWise companies on one simulator port (as cloud
//! tenants share `api-na.myconnectwise.net`), each with its own request budget and its own
//! requests at once, read from what the simulator saw.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{WAIT, in_process, load_spec, seed_example, wait_for};
use pollerd::config::InstanceSpec;
use pollerd::element::{Element, ProviderClient, TenantLimits, ThrottleWatch};
use pollerd::poller::{PollError, PollShared, RunReport, run_resource};
use pollerd::sim::connectwise::{ConnectWiseSim, Fault, FaultScope, RecordKind, RequestLog};
use serde_json::Value;

/// The waits for a tenant's budget that one client's requests were told of.
#[derive(Default)]
struct Waits(Mutex<Vec<Duration>>);

impl Waits {
    fn seen(&self) -> Vec<Duration> {
        self.0.lock().unwrap().clone()
    }
}

impl ThrottleWatch for Waits {
    fn waiting(&self, wait: Duration) {
        self.0.lock().unwrap().push(wait);
    }

    fn done(&self) {}

    fn resume(&self) -> futures_util::future::BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// The seed example as an instance of `company` on the simulator, named after it, reading every
/// contact since 2000 `page_size` a page, with `extra` resources (name, hub URL) beside contacts.
fn tenant_instance(
    sim: &ConnectWiseSim,
    dir: &tempfile::TempDir,
    company: &str,
    page_size: u64,
    extra: &[(&str, &str)],
) -> InstanceSpec {
    let mut v = seed_example(sim);
    v["name"] = company.into();
    let conf = v["configuration"].as_object_mut().unwrap();
    conf.extend(sim.tenant_configuration(company));
    let resources = &mut v["configuration"]["event.poller.configuration"];
    resources["contacts"]["pageSize"] = page_size.into();
    resources["contacts"]["backfillSince"] = "2000-01-01T00:00:00Z".into();
    for (name, url) in extra {
        let mut resource: Value = resources["contacts"].clone();
        resource["url"] =
            format!("{url}?where=lastUpdated>'${{gmtDate:yyyy-MM-dd'T'HH:mm:ss'Z'}}'").into();
        resources[*name] = resource;
    }
    load_spec(&dir.path().join(format!("{company}.json")), &v)
}

/// One run of `resource`, as the daemon's poll loop makes it.
async fn run_once(
    shared: PollShared,
    spec: InstanceSpec,
    resource: &str,
) -> Result<RunReport, PollError> {
    let element = Element::new(&spec.element);
    run_resource(
        &shared,
        &spec,
        &element,
        spec.resource(resource).unwrap(),
        &mut None,
    )
    .await
}

fn of(log: &[RequestLog], company: &str) -> Vec<RequestLog> {
    log.iter()
        .filter(|r| r.company.as_deref() == Some(company))
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_tenant_out_of_budget_waits_while_another_on_the_same_host_goes_on() {
    let (sim, store, _, dir) = in_process().await;
    sim.create_many(RecordKind::Contact, 5, None);
    let client = ProviderClient::new(Duration::from_secs(30), 64)
        .unwrap()
        .with_tenant_limits(TenantLimits {
            max_per_tenant: 4,
            requests_per_minute: NonZeroU32::new(3),
        });
    let (alpha_waits, bravo_waits) = (Arc::new(Waits::default()), Arc::new(Waits::default()));
    // Both instances' clients share the limits, as every instance's do in the daemon.
    let alpha_shared = PollShared::new(client.watched_by(alpha_waits.clone()), store.clone(), 4);
    let bravo_shared = PollShared::new(client.watched_by(bravo_waits.clone()), store.clone(), 4);
    // alpha reads its 5 contacts one a page: 6 requests, 3 more than its budget of 3 a minute.
    let alpha = tenant_instance(&sim, &dir, "alpha", 1, &[]);
    // bravo reads them in one page: 1 request.
    let bravo = tenant_instance(&sim, &dir, "bravo", 1000, &[]);

    let started = Instant::now();
    let alpha_run = tokio::spawn(run_once(alpha_shared, alpha, "contacts"));
    wait_for("alpha's 4th request waiting for its budget", WAIT, || {
        !alpha_waits.seen().is_empty()
    })
    .await;
    let bravo_report = run_once(bravo_shared, bravo, "contacts").await.unwrap();
    let elapsed = started.elapsed();

    assert_eq!(bravo_report.records, 5, "{bravo_report:?}");
    assert!(bravo_waits.seen().is_empty(), "bravo never waited");
    let first_wait = alpha_waits.seen()[0];
    assert!(
        first_wait > Duration::from_secs(10) && first_wait <= Duration::from_secs(20),
        "3 a minute: the 4th request waits for the 1st's turn to come back, 20 s after it: {first_wait:?}"
    );
    let log = sim.requests();
    let (alpha_log, bravo_log) = (of(&log, "alpha"), of(&log, "bravo"));
    // alpha's budget gives it one more request every 20 s after the first three.
    let allowed = 3 + (elapsed.as_secs() / 20) as usize;
    assert!(
        alpha_log.len() <= allowed,
        "alpha sent {} requests in {elapsed:?}: {log:#?}",
        alpha_log.len()
    );
    assert_eq!(bravo_log.len(), 1, "{log:#?}");
    assert_eq!(bravo_log[0].status, 200);
    // In the order the simulator answered them: alpha's three, then bravo's, sent while alpha
    // waited (on one host with one limit for all, bravo would have waited behind alpha).
    let companies: Vec<&str> = log.iter().filter_map(|r| r.company.as_deref()).collect();
    assert_eq!(
        companies[..4],
        ["alpha", "alpha", "alpha", "bravo"],
        "{log:#?}"
    );
    assert!(!alpha_run.is_finished(), "alpha still waits for its budget");
    alpha_run.abort();
}

#[tokio::test]
async fn a_tenant_has_at_most_max_per_tenant_requests_at_once_while_another_goes_on() {
    let (sim, store, _, dir) = in_process().await;
    // Every answer takes a second: requests that go together overlap in the simulator.
    sim.inject(Fault::Latency(Duration::from_secs(1)), FaultScope::always());
    let client = ProviderClient::new(Duration::from_secs(30), 64)
        .unwrap()
        .with_tenant_limits(TenantLimits {
            max_per_tenant: 2,
            requests_per_minute: None,
        });
    let shared = PollShared::new(client, store.clone(), 8);
    let alpha = tenant_instance(
        &sim,
        &dir,
        "alpha",
        1000,
        &[
            ("companies", "/hubs/crm/accounts"),
            ("tickets", "/hubs/crm/incidents"),
            ("people", "/hubs/crm/contacts"),
        ],
    );
    let bravo = tenant_instance(&sim, &dir, "bravo", 1000, &[]);

    // alpha's four resources and bravo's one, all at once: one request each.
    let runs = ["contacts", "companies", "tickets", "people"]
        .map(|resource| tokio::spawn(run_once(shared.clone(), alpha.clone(), resource)));
    let bravo_run = tokio::spawn(run_once(shared.clone(), bravo, "contacts"));
    for run in runs {
        run.await.unwrap().unwrap();
    }
    bravo_run.await.unwrap().unwrap();

    assert_eq!(sim.peak_in_flight_of("alpha"), 2);
    assert_eq!(sim.peak_in_flight_of("bravo"), 1);
    let log = sim.requests();
    let (alpha_log, bravo_log) = (of(&log, "alpha"), of(&log, "bravo"));
    assert_eq!((alpha_log.len(), bravo_log.len()), (4, 1), "{log:#?}");
    // bravo's request was in the simulator together with two of alpha's: alpha at its limit did
    // not hold bravo back.
    let bravo = &bravo_log[0];
    let beside = alpha_log
        .iter()
        .filter(|a| a.received_at < bravo.at && bravo.received_at < a.at)
        .count();
    assert_eq!(beside, 2, "{log:#?}");
}
