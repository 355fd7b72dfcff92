//! Limits per tenant with the real daemon: a resource waiting for its tenant's request budget is
//! shown by `pollerd status` and `/metrics`, and lends its poll slot to other tenants meanwhile.
//! (The limits themselves, over real HTTP in process: `tests/polling/tenant_limits.rs`.)

mod support;

use std::time::{Duration, Instant};

use pollerd::sim::connectwise::{ConnectWiseSim, SimConfig};
use serde_json::Value;
use support::{
    DaemonDir, METRICS_ANY_PORT, WAIT, metrics_address, metrics_text, pollerd_async, seed_instance,
    wait_for,
};

/// An instance named `company`, of that company on the simulator, polling `resources` of
/// contacts, companies and tickets every 10 minutes: its first runs make one request each.
fn tenant_instance(sim: &ConnectWiseSim, company: &str, resources: usize) -> Value {
    let mut instance = seed_instance(sim, "http://127.0.0.1:9/hook", "10");
    instance["name"] = company.into();
    let configuration = instance["configuration"].as_object_mut().unwrap();
    configuration.extend(sim.tenant_configuration(company));
    let polled = &mut instance["configuration"]["event.poller.configuration"];
    let hubs = [
        ("companies", "/hubs/crm/accounts"),
        ("tickets", "/hubs/crm/incidents"),
    ];
    for (name, url) in hubs.into_iter().take(resources.saturating_sub(1)) {
        let mut resource = polled["contacts"].clone();
        resource["url"] =
            format!("{url}?where=lastUpdated>'${{gmtDate:yyyy-MM-dd'T'HH:mm:ss'Z'}}'").into();
        polled[name] = resource;
    }
    instance
}

/// The resources of `pollerd status --json` shown waiting for a tenant's budget, once there
/// are any.
async fn throttled_resources(dd: &DaemonDir, daemon: &support::Daemon) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let out = pollerd_async(dd, &["status", "--json"]).await;
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let throttled: Vec<Value> = report["instances"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|instance| {
                instance["resources"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter(|resource| resource.get("throttled").is_some())
            .collect();
        if !throttled.is_empty() {
            return throttled;
        }
        assert!(
            Instant::now() < deadline,
            "no resource was shown waiting for its tenant's budget; log:\n{}",
            daemon.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of the sample `name` (no labels) in `/metrics` at `address`.
async fn metric(address: std::net::SocketAddr, name: &str) -> f64 {
    let text = metrics_text(address).await;
    let prefix = format!("{name} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .parse()
        .unwrap()
}

/// The companies of the simulator's requests, in the order it answered them.
fn companies(sim: &ConnectWiseSim) -> Vec<String> {
    sim.requests()
        .into_iter()
        .filter_map(|r| r.company)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_waiting_for_its_tenants_budget_shows_in_status_and_metrics() {
    let sim = ConnectWiseSim::start(SimConfig::default()).await.unwrap();
    let dd = DaemonDir::new(&format!(
        "{METRICS_ANY_PORT}[polling]\ntenant_requests_per_minute = 2\n"
    ));
    // Three first runs, one more than a budget of 2 a minute: the third waits 30 s.
    dd.write_instance("alpha.json", &tenant_instance(&sim, "alpha", 3));
    let daemon = dd.start(&[]);
    let address = metrics_address(&daemon).await;

    let throttled = throttled_resources(&dd, &daemon).await;
    assert_eq!(throttled.len(), 1, "{throttled:#?}");
    assert_eq!(throttled[0]["throttled"]["reason"], "tenant request budget");
    let waiting = throttled[0]["throttled"]["waiting_seconds"]
        .as_u64()
        .unwrap();
    assert!((1..=30).contains(&waiting), "{throttled:#?}");
    assert_eq!(sim.request_count(), 2, "the budget let two requests go");

    let out = pollerd_async(&dd, &["status"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    // Waiting is not failing: every resource is still ok.
    assert_eq!(out.status.code(), Some(0), "{text}");
    let name = throttled[0]["name"].as_str().unwrap();
    let row = text
        .lines()
        .find(|line| line.starts_with("alpha") && line.contains(name))
        .unwrap_or_else(|| panic!("no row of {name}:\n{text}"));
    assert!(row.contains("throttled, waiting "), "{text}");
    assert!(
        text.replace("\n      ", " ").contains(&format!(
            "note: 1 resource waiting for a tenant's request budget ([polling] \
             tenant_requests_per_minute): alpha/{name}"
        )),
        "{text}"
    );

    assert_eq!(metric(address, "pollerd_tenant_throttled_total").await, 1.0);
    assert_eq!(
        metric(address, "pollerd_tenant_throttled_waiting").await,
        1.0
    );
    let log = daemon.log_text();
    assert!(
        log.contains("for the tenant's request budget ([polling] tenant_requests_per_minute)"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_waiting_for_its_tenants_budget_lends_its_poll_slot_to_other_tenants() {
    let sim = ConnectWiseSim::start(SimConfig::default()).await.unwrap();
    // One poll at a time: the run waiting for alpha's budget would hold the only slot.
    let dd = DaemonDir::new("[polling]\nmax_concurrent = 1\ntenant_requests_per_minute = 2\n");
    dd.write_instance("alpha.json", &tenant_instance(&sim, "alpha", 3));
    let daemon = dd.start(&[]);
    throttled_resources(&dd, &daemon).await;

    // bravo comes while alpha's third run waits 30 s for its turn.
    dd.write_instance("bravo.json", &tenant_instance(&sim, "bravo", 1));
    wait_for("bravo's first request", WAIT, || {
        companies(&sim).iter().any(|c| c == "bravo")
    })
    .await;
    assert_eq!(
        companies(&sim),
        ["alpha", "alpha", "bravo"],
        "bravo polled while alpha waited; log:\n{}",
        daemon.log_text()
    );
}
