//! The metrics exposition, read back with a strict parser written here, the HTTP server, and
//! the per-instance and per-resource series of the real daemon.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pollerd::metrics::{
    self, DeliveryOutcome, EventType, LeaseLossCause, Metrics, PollOutcome, ReloadOutcome,
};
use pollerd::task_guard::TaskKind;
use tokio_util::sync::CancellationToken;

type Labels = BTreeMap<String, String>;

#[derive(Debug)]
struct Sample {
    name: String,
    labels: Labels,
    value: f64,
}

#[derive(Debug)]
struct Family {
    kind: String,
    help: String,
    samples: Vec<Sample>,
}

/// A parsed exposition: families by name, in the order they came.
#[derive(Debug, Default)]
struct Exposition {
    families: HashMap<String, Family>,
}

impl Exposition {
    /// The value of the one sample with this name and exactly these labels.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let wanted: Labels = labels
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect();
        let found: Vec<f64> = self
            .families
            .values()
            .flat_map(|family| &family.samples)
            .filter(|sample| sample.name == name && sample.labels == wanted)
            .map(|sample| sample.value)
            .collect();
        assert_eq!(found.len(), 1, "exactly one sample {name}{wanted:?}");
        found[0]
    }

    fn kind(&self, family: &str) -> &str {
        &self.families.get(family).expect("family present").kind
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_' || first == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `{key="value",…}` (already stripped of its braces) with OpenMetrics escapes.
fn parse_labels(text: &str) -> Result<Labels, String> {
    let mut labels = Labels::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (key, after_key) = rest
            .split_once("=\"")
            .ok_or_else(|| format!("label without =\" in {text:?}"))?;
        if !valid_name(key) {
            return Err(format!("bad label name {key:?}"));
        }
        let mut value = String::new();
        let mut chars = after_key.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err(format!("unterminated label value in {text:?}")),
                Some((index, '"')) => break index,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape {other:?} in {text:?}")),
                },
                Some((_, c)) => value.push(c),
            }
        };
        if labels.insert(key.to_string(), value).is_some() {
            return Err(format!("duplicate label {key:?}"));
        }
        rest = &after_key[end + 1..];
        rest = match rest.strip_prefix(',') {
            Some(next) if !next.is_empty() => next,
            Some(_) => return Err(format!("trailing comma in {text:?}")),
            None if rest.is_empty() => rest,
            None => return Err(format!("junk after label value in {text:?}")),
        };
    }
    Ok(labels)
}

/// Which family a sample name belongs to, given the family's type.
fn sample_allowed(family: &str, kind: &str, sample: &str) -> bool {
    match kind {
        "counter" => sample == format!("{family}_total") || sample == format!("{family}_created"),
        "gauge" => sample == family,
        "histogram" => ["_bucket", "_sum", "_count", "_created"]
            .iter()
            .any(|suffix| sample == format!("{family}{suffix}")),
        _ => false,
    }
}

/// A strict reader of the text exposition: every line must be HELP, TYPE, a sample of the
/// family just declared, or the final `# EOF`.
fn parse(text: &str) -> Result<Exposition, String> {
    let mut exposition = Exposition::default();
    let mut current: Option<String> = None;
    let mut seen_samples = std::collections::HashSet::new();
    let lines: Vec<&str> = text.lines().collect();
    if lines.last() != Some(&"# EOF") || !text.ends_with('\n') {
        return Err("exposition does not end with \"# EOF\\n\"".to_string());
    }
    for line in &lines[..lines.len() - 1] {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').ok_or("HELP without text")?;
            if !valid_name(name) || exposition.families.contains_key(name) {
                return Err(format!("bad or repeated family {name:?}"));
            }
            exposition.families.insert(
                name.to_string(),
                Family {
                    kind: String::new(),
                    help: help.to_string(),
                    samples: Vec::new(),
                },
            );
            current = Some(name.to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').ok_or("TYPE without type")?;
            if current.as_deref() != Some(name) {
                return Err(format!("TYPE {name} not right after its HELP"));
            }
            if !["counter", "gauge", "histogram"].contains(&kind) {
                return Err(format!("unexpected type {kind:?} for {name}"));
            }
            let family = exposition.families.get_mut(name).expect("inserted by HELP");
            if !family.kind.is_empty() {
                return Err(format!("second TYPE for {name}"));
            }
            family.kind = kind.to_string();
        } else if line.starts_with('#') {
            return Err(format!("unexpected comment line {line:?}"));
        } else {
            let family_name = current.as_deref().ok_or("sample before any HELP")?;
            let family = exposition.families.get_mut(family_name).expect("current");
            if family.kind.is_empty() {
                return Err(format!("sample of {family_name} before its TYPE"));
            }
            let (series, value) = line.rsplit_once(' ').ok_or("sample without value")?;
            let value: f64 = value
                .parse()
                .map_err(|_| format!("bad value in {line:?}"))?;
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => {
                    let labels = labels
                        .strip_suffix('}')
                        .ok_or_else(|| format!("unclosed labels in {line:?}"))?;
                    (name, parse_labels(labels)?)
                }
                None => (series, Labels::new()),
            };
            if !sample_allowed(family_name, &family.kind, name) {
                return Err(format!("sample {name} does not belong to {family_name}"));
            }
            if !seen_samples.insert(format!("{name}{labels:?}")) {
                return Err(format!("repeated sample {line:?}"));
            }
            family.samples.push(Sample {
                name: name.to_string(),
                labels,
                value,
            });
        }
    }
    for (name, family) in &exposition.families {
        if family.kind.is_empty() || family.help.is_empty() {
            return Err(format!("{name} lacks TYPE or HELP"));
        }
        if family.kind == "histogram" {
            check_histogram(name, family)?;
        }
    }
    Ok(exposition)
}

/// Buckets cumulative, sorted by bound, ending at +Inf which equals `_count`.
fn check_histogram(name: &str, family: &Family) -> Result<(), String> {
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    let mut count = None;
    let mut sum = None;
    for sample in &family.samples {
        if sample.name.ends_with("_bucket") {
            let bound = sample.labels.get("le").ok_or("bucket without le")?;
            let bound: f64 = if bound == "+Inf" {
                f64::INFINITY
            } else {
                bound.parse().map_err(|_| format!("bad le {bound:?}"))?
            };
            buckets.push((bound, sample.value));
        } else if sample.name.ends_with("_count") {
            count = Some(sample.value);
        } else if sample.name.ends_with("_sum") {
            sum = Some(sample.value);
        }
    }
    let count = count.ok_or_else(|| format!("{name} without _count"))?;
    let sum = sum.ok_or_else(|| format!("{name} without _sum"))?;
    if sum < 0.0 {
        return Err(format!("{name}: negative sum"));
    }
    if buckets.last().map(|(bound, _)| *bound) != Some(f64::INFINITY) {
        return Err(format!("{name}: last bucket is not +Inf"));
    }
    for pair in buckets.windows(2) {
        if pair[1].0 <= pair[0].0 || pair[1].1 < pair[0].1 {
            return Err(format!("{name}: buckets not increasing: {pair:?}"));
        }
    }
    if buckets.last().map(|(_, cumulative)| *cumulative) != Some(count) {
        return Err(format!("{name}: +Inf bucket differs from _count"));
    }
    Ok(())
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn a_fresh_registry_shows_every_family_and_expected_series_at_zero() {
    let exposition = parse(&Metrics::new().render()).expect("parses");
    for (family, kind) in [
        ("pollerd_polls", "counter"),
        ("pollerd_poll_duration_seconds", "histogram"),
        ("pollerd_records_fetched", "counter"),
        ("pollerd_records_skipped", "counter"),
        ("pollerd_events", "counter"),
        ("pollerd_deliveries", "counter"),
        ("pollerd_delivery_latency_seconds", "histogram"),
        ("pollerd_outbox_depth", "gauge"),
        ("pollerd_dead_letters", "gauge"),
        ("pollerd_store_corrupt_set_aside", "gauge"),
        ("pollerd_reloads", "counter"),
        ("pollerd_config_last_reload_successful", "gauge"),
        ("pollerd_task_panics", "counter"),
        ("pollerd_leases_held", "gauge"),
        ("pollerd_lease_takeovers", "counter"),
        ("pollerd_lease_lost", "counter"),
        ("pollerd_tenant_throttled", "counter"),
        ("pollerd_tenant_throttled_waiting", "gauge"),
        // Per resource and instance: described, with no series until the daemon has instances.
        ("pollerd_resource_poll_interval_seconds", "gauge"),
        ("pollerd_resource_poll_started_timestamp_seconds", "gauge"),
        ("pollerd_resource_last_success_timestamp_seconds", "gauge"),
        ("pollerd_resource_consecutive_failed_polls", "gauge"),
        ("pollerd_resource_watermark_lag_seconds", "gauge"),
        ("pollerd_resource_outbox_depth", "gauge"),
        ("pollerd_resource_outbox_oldest_age_seconds", "gauge"),
        ("pollerd_resource_dead_letters", "gauge"),
        ("pollerd_resource_polls", "counter"),
        ("pollerd_resource_events", "counter"),
        ("pollerd_callback_last_success_timestamp_seconds", "gauge"),
        ("pollerd_callback_failing_since_timestamp_seconds", "gauge"),
        ("pollerd_callback_delivered", "counter"),
        ("pollerd_callback_delivery_latency_seconds", "counter"),
    ] {
        assert_eq!(exposition.kind(family), kind, "{family}");
    }
    for cause in ["write", "renewal", "expired"] {
        assert_eq!(
            exposition.value("pollerd_lease_lost_total", &[("cause", cause)]),
            0.0
        );
    }
    assert_eq!(exposition.value("pollerd_leases_held", &[]), 0.0);
    assert_eq!(exposition.value("pollerd_lease_takeovers_total", &[]), 0.0);
    assert_eq!(exposition.value("pollerd_tenant_throttled_total", &[]), 0.0);
    assert_eq!(
        exposition.value("pollerd_tenant_throttled_waiting", &[]),
        0.0
    );
    for outcome in ["ok", "error", "baseline"] {
        assert_eq!(
            exposition.value("pollerd_polls_total", &[("outcome", outcome)]),
            0.0
        );
    }
    for outcome in ["ok", "retry", "dead"] {
        assert_eq!(
            exposition.value("pollerd_deliveries_total", &[("outcome", outcome)]),
            0.0
        );
    }
    assert_eq!(
        exposition.value("pollerd_events_total", &[("type", "UPDATED")]),
        0.0
    );
    assert_eq!(
        exposition.value("pollerd_reloads_total", &[("result", "error")]),
        0.0
    );
    assert_eq!(exposition.value("pollerd_outbox_depth", &[]), 0.0);
    for task in ["poll", "delivery"] {
        assert_eq!(
            exposition.value("pollerd_task_panics_total", &[("task", task)]),
            0.0
        );
    }
}

#[test]
fn counters_gauges_and_histograms_equal_what_was_recorded() {
    let metrics = Metrics::new();
    // Updates through a clone land in the same registry.
    let poller_side = metrics.clone();
    poller_side.poll(PollOutcome::Ok, Duration::from_millis(200));
    poller_side.poll(PollOutcome::Ok, Duration::from_millis(1500));
    poller_side.poll(PollOutcome::Ok, Duration::from_millis(20));
    poller_side.poll(PollOutcome::Error, Duration::from_secs(7));
    poller_side.poll(PollOutcome::Baseline, Duration::from_millis(100));
    poller_side.records_fetched(120);
    poller_side.records_fetched(30);
    poller_side.records_skipped(2);
    poller_side.events(EventType::Created, 5);
    poller_side.events(EventType::Updated, 7);
    poller_side.events(EventType::Updated, 1);
    metrics.delivery(DeliveryOutcome::Ok, Some(Duration::from_millis(300)));
    metrics.delivery(DeliveryOutcome::Ok, Some(Duration::from_secs(90)));
    metrics.delivery(DeliveryOutcome::Retry, None);
    metrics.delivery(DeliveryOutcome::Retry, None);
    metrics.delivery(DeliveryOutcome::Retry, None);
    metrics.delivery(DeliveryOutcome::Dead, None);
    metrics.set_outbox_depth(9);
    metrics.set_outbox_depth(4);
    metrics.set_dead_letters(2);
    metrics.set_corrupt_set_aside(1);
    metrics.reload(ReloadOutcome::Ok);
    metrics.reload(ReloadOutcome::Error);
    metrics.reload(ReloadOutcome::Ok);
    metrics.task_panic(TaskKind::Delivery);
    metrics.task_panic(TaskKind::Poll);
    metrics.task_panic(TaskKind::Delivery);
    metrics.set_leases_held(34);
    metrics.set_leases_held(33);
    metrics.lease_takeover();
    metrics.lease_takeover();
    metrics.lease_lost(LeaseLossCause::Write);
    metrics.lease_lost(LeaseLossCause::Expired);
    metrics.lease_lost(LeaseLossCause::Expired);
    metrics.tenant_throttle_started();
    metrics.tenant_throttle_started();
    metrics.tenant_throttle_ended();

    let text = metrics.render();
    let exposition = parse(&text).unwrap_or_else(|problem| panic!("{problem}\n{text}"));

    let polls = |outcome| exposition.value("pollerd_polls_total", &[("outcome", outcome)]);
    assert_eq!(
        (polls("ok"), polls("error"), polls("baseline")),
        (3.0, 1.0, 1.0)
    );
    assert_eq!(
        exposition.value("pollerd_records_fetched_total", &[]),
        150.0
    );
    assert_eq!(exposition.value("pollerd_records_skipped_total", &[]), 2.0);
    assert_eq!(
        exposition.value("pollerd_events_total", &[("type", "CREATED")]),
        5.0
    );
    assert_eq!(
        exposition.value("pollerd_events_total", &[("type", "UPDATED")]),
        8.0
    );
    let deliveries =
        |outcome| exposition.value("pollerd_deliveries_total", &[("outcome", outcome)]);
    assert_eq!(
        (deliveries("ok"), deliveries("retry"), deliveries("dead")),
        (2.0, 3.0, 1.0)
    );
    assert_eq!(exposition.value("pollerd_outbox_depth", &[]), 4.0);
    assert_eq!(exposition.value("pollerd_dead_letters", &[]), 2.0);
    assert_eq!(
        exposition.value("pollerd_store_corrupt_set_aside", &[]),
        1.0
    );
    let reloads = |result| exposition.value("pollerd_reloads_total", &[("result", result)]);
    assert_eq!((reloads("ok"), reloads("error")), (2.0, 1.0));
    // The last of the three reloads was ok.
    assert_eq!(
        exposition.value("pollerd_config_last_reload_successful", &[]),
        1.0
    );
    let panics = |task| exposition.value("pollerd_task_panics_total", &[("task", task)]);
    assert_eq!((panics("poll"), panics("delivery")), (1.0, 2.0));
    assert_eq!(exposition.value("pollerd_leases_held", &[]), 33.0);
    assert_eq!(exposition.value("pollerd_lease_takeovers_total", &[]), 2.0);
    let lost = |cause| exposition.value("pollerd_lease_lost_total", &[("cause", cause)]);
    assert_eq!(
        (lost("write"), lost("renewal"), lost("expired")),
        (1.0, 0.0, 2.0)
    );
    assert_eq!(exposition.value("pollerd_tenant_throttled_total", &[]), 2.0);
    assert_eq!(
        exposition.value("pollerd_tenant_throttled_waiting", &[]),
        1.0
    );

    // Poll durations: 0.02, 0.1, 0.2, 1.5, 7 seconds.
    assert_eq!(
        exposition.value("pollerd_poll_duration_seconds_count", &[]),
        5.0
    );
    assert!(close(
        exposition.value("pollerd_poll_duration_seconds_sum", &[]),
        8.82
    ));
    let poll_bucket = |le| exposition.value("pollerd_poll_duration_seconds_bucket", &[("le", le)]);
    assert_eq!(poll_bucket("0.25"), 3.0);
    assert_eq!(poll_bucket("2.5"), 4.0);
    assert_eq!(poll_bucket("+Inf"), 5.0);

    // Only the two deliveries with a latency are observed: 0.3 s and 90 s.
    assert_eq!(
        exposition.value("pollerd_delivery_latency_seconds_count", &[]),
        2.0
    );
    assert!(close(
        exposition.value("pollerd_delivery_latency_seconds_sum", &[]),
        90.3
    ));
    let latency_bucket =
        |le| exposition.value("pollerd_delivery_latency_seconds_bucket", &[("le", le)]);
    assert_eq!(latency_bucket("0.25"), 0.0);
    assert_eq!(latency_bucket("0.5"), 1.0);
    assert_eq!(latency_bucket("30.0"), 1.0);
    assert_eq!(latency_bucket("120.0"), 2.0);
}

#[test]
fn odd_label_values_are_escaped_and_parse_back() {
    // pollerd's label values are fixed words (enums); the parser must still read back whatever
    // the encoder it uses writes of others.
    let mut registry = prometheus_client::registry::Registry::with_prefix("pollerd");
    let reloads = prometheus_client::metrics::family::Family::<
        [(&str, String); 1],
        prometheus_client::metrics::counter::Counter,
    >::default();
    registry.register(
        "reloads",
        "Configuration reloads by result",
        reloads.clone(),
    );
    reloads
        .get_or_create(&[("result", "quote \" backslash \\ newline \n end".to_string())])
        .inc();
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let exposition = parse(&text).unwrap_or_else(|problem| panic!("{problem}\n{text}"));
    assert_eq!(
        exposition.value(
            "pollerd_reloads_total",
            &[("result", "quote \" backslash \\ newline \n end")]
        ),
        1.0
    );
}

#[test]
fn the_strict_parser_rejects_broken_expositions() {
    let good = "# HELP x_total_thing a counter\n# TYPE x_total_thing counter\nx_total_thing_total 1\n# EOF\n";
    assert!(parse(good).is_ok());
    for broken in [
        // No EOF.
        "# HELP a h\n# TYPE a gauge\na 1\n",
        // Sample of another family.
        "# HELP a h\n# TYPE a gauge\nb 1\n# EOF\n",
        // Counter sample without _total.
        "# HELP a h\n# TYPE a counter\na 1\n# EOF\n",
        // Unterminated label value.
        "# HELP a h\n# TYPE a gauge\na{k=\"v} 1\n# EOF\n",
        // Histogram whose +Inf bucket differs from its count.
        "# HELP h h\n# TYPE h histogram\nh_sum 1\nh_count 2\nh_bucket{le=\"1.0\"} 1\nh_bucket{le=\"+Inf\"} 1\n# EOF\n",
        // Histogram buckets going down.
        "# HELP h h\n# TYPE h histogram\nh_sum 1\nh_count 2\nh_bucket{le=\"1.0\"} 2\nh_bucket{le=\"2.0\"} 1\nh_bucket{le=\"+Inf\"} 2\n# EOF\n",
    ] {
        assert!(parse(broken).is_err(), "accepted: {broken}");
    }
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

#[tokio::test]
async fn the_http_server_answers_metrics_healthz_and_ready() {
    let metrics = Metrics::new();
    metrics.events(EventType::Created, 3);
    let ready_flag = Arc::new(AtomicBool::new(false));
    let ready = {
        let ready_flag = ready_flag.clone();
        Arc::new(move || ready_flag.load(Ordering::SeqCst))
    };
    let cancel = CancellationToken::new();
    let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let bound = metrics::serve(listen, metrics.clone(), ready, cancel.clone())
        .await
        .expect("metrics server starts");
    assert!(bound.ip().is_loopback() && bound.port() != 0);
    let client = http_client();
    let url = |path: &str| format!("http://{bound}{path}");

    let health = client.get(url("/healthz")).send().await.expect("healthz");
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "ok");

    let not_ready = client.get(url("/ready")).send().await.expect("ready");
    assert_eq!(not_ready.status(), 503);
    ready_flag.store(true, Ordering::SeqCst);
    let ready = client.get(url("/ready")).send().await.expect("ready");
    assert_eq!(ready.status(), 200);

    let page = client.get(url("/metrics")).send().await.expect("metrics");
    assert_eq!(page.status(), 200);
    let content_type = page.headers()["content-type"].to_str().unwrap().to_string();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let exposition = parse(&page.text().await.unwrap()).expect("served text parses");
    assert_eq!(
        exposition.value("pollerd_events_total", &[("type", "CREATED")]),
        3.0
    );

    // Updates after the start are served too: the server reads the live registry.
    metrics.events(EventType::Created, 2);
    let page = client.get(url("/metrics")).send().await.expect("metrics");
    let exposition = parse(&page.text().await.unwrap()).expect("served text parses");
    assert_eq!(
        exposition.value("pollerd_events_total", &[("type", "CREATED")]),
        5.0
    );

    cancel.cancel();
}

#[tokio::test]
async fn a_busy_address_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = taken.local_addr().unwrap();
    let error = metrics::serve(
        address,
        Metrics::new(),
        Arc::new(|| true),
        CancellationToken::new(),
    )
    .await
    .expect_err("address in use");
    assert!(
        error
            .to_string()
            .contains(&format!("cannot listen for metrics on {address}")),
        "{error:#}"
    );
}

/// `/metrics` of the daemon at `address`, parsed strictly.
async fn scrape(address: SocketAddr) -> Exposition {
    let text = http_client()
        .get(format!("http://{address}/metrics"))
        .send()
        .await
        .expect("metrics answers")
        .text()
        .await
        .expect("metrics body");
    parse(&text).unwrap_or_else(|problem| panic!("{problem}\n{text}"))
}

/// The value of `name` for resource `contacts` of the seed instance.
fn of_contacts(exposition: &Exposition, name: &str) -> f64 {
    exposition.value(
        name,
        &[
            ("pollerd_instance", "API_Polling"),
            ("resource", "contacts"),
        ],
    )
}

fn of_callback(exposition: &Exposition, name: &str) -> f64 {
    exposition.value(name, &[("pollerd_instance", "API_Polling")])
}

/// Whether any series names pollerd instance `instance`.
fn has_instance(exposition: &Exposition, instance: &str) -> bool {
    exposition
        .families
        .values()
        .flat_map(|family| &family.samples)
        .any(|sample| sample.labels.get("pollerd_instance").map(String::as_str) == Some(instance))
}

fn unix_now() -> f64 {
    chrono::Utc::now().timestamp_millis() as f64 / 1000.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_daemon_serves_per_resource_series_that_follow_polls_deliveries_and_files() {
    use pollerd::sim::connectwise::RecordKind;
    use pollerd::sim::receiver::Behaviour;
    use support::{
        METRICS_ANY_PORT, WAIT, metrics_address, seed_daemon_dir, seed_instance, wait_for,
    };

    // Polled every 1.2 s; a second instance with events disabled.
    let (sim, receiver, dd) = seed_daemon_dir(METRICS_ANY_PORT, "0.02").await;
    let mut disabled = seed_instance(&sim, &receiver.url(), "0.02");
    disabled["name"] = "quiet".into();
    disabled["configuration"]["event.notification.enabled"] = false.into();
    dd.write_instance("quiet.json", &disabled);
    let started = unix_now();
    let daemon = dd.start(&[]);
    let address = metrics_address(&daemon).await;
    wait_for("the first poll", WAIT, || sim.request_count() >= 1).await;
    sim.create_many(RecordKind::Contact, 2, None);
    wait_for("both contacts delivered", WAIT, || {
        receiver
            .accepted()
            .iter()
            .map(|r| r.json()["message"]["events"].as_array().map_or(0, Vec::len))
            .sum::<usize>()
            >= 2
    })
    .await;

    let m = scrape(address).await;
    assert_eq!(
        of_contacts(&m, "pollerd_resource_poll_interval_seconds"),
        1.2
    );
    let loop_started = of_contacts(&m, "pollerd_resource_poll_started_timestamp_seconds");
    let last_success = of_contacts(&m, "pollerd_resource_last_success_timestamp_seconds");
    assert!(
        started - 1.0 <= loop_started && loop_started <= last_success,
        "{loop_started} {last_success}"
    );
    assert!(last_success <= unix_now() + 1.0);
    assert_eq!(
        of_contacts(&m, "pollerd_resource_consecutive_failed_polls"),
        0.0
    );
    assert!(of_contacts(&m, "pollerd_resource_watermark_lag_seconds") >= 0.0);
    assert_eq!(
        of_contacts(&m, "pollerd_resource_outbox_oldest_age_seconds"),
        0.0
    );
    let polls = |m: &Exposition, outcome: &str| {
        m.value(
            "pollerd_resource_polls_total",
            &[
                ("pollerd_instance", "API_Polling"),
                ("resource", "contacts"),
                ("outcome", outcome),
            ],
        )
    };
    assert_eq!(polls(&m, "baseline"), 1.0);
    assert!(polls(&m, "ok") >= 1.0);
    assert_eq!(polls(&m, "error"), 0.0);
    // The seed example's contacts have one date for both, so every event is CREATED.
    let events = |m: &Exposition, kind: &str| {
        m.value(
            "pollerd_resource_events_total",
            &[
                ("pollerd_instance", "API_Polling"),
                ("resource", "contacts"),
                ("type", kind),
            ],
        )
    };
    assert_eq!((events(&m, "CREATED"), events(&m, "UPDATED")), (2.0, 0.0));
    assert!(of_callback(&m, "pollerd_callback_delivered_total") >= 1.0);
    assert!(of_callback(&m, "pollerd_callback_last_success_timestamp_seconds") >= started - 1.0);
    assert!(of_callback(&m, "pollerd_callback_delivery_latency_seconds_total") > 0.0);
    assert_eq!(
        of_callback(&m, "pollerd_callback_failing_since_timestamp_seconds"),
        0.0
    );
    assert_eq!(m.value("pollerd_config_last_reload_successful", &[]), 1.0);
    assert!(
        !has_instance(&m, "quiet"),
        "a disabled instance has no series"
    );

    // The receiver fails: the queue holds the notification, and the callback is failing.
    receiver.set_default(Behaviour::Status(503));
    let failed_from = unix_now();
    sim.create_many(RecordKind::Contact, 1, None);
    let deadline = std::time::Instant::now() + WAIT;
    let m = loop {
        let m = scrape(address).await;
        if of_callback(&m, "pollerd_callback_failing_since_timestamp_seconds") > 0.0 {
            break m;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the callback never showed as failing"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        of_callback(&m, "pollerd_callback_failing_since_timestamp_seconds") >= failed_from - 1.0
    );
    assert_eq!(of_contacts(&m, "pollerd_resource_outbox_depth"), 1.0);
    assert!(of_contacts(&m, "pollerd_resource_outbox_oldest_age_seconds") > 0.0);

    // A broken file: the reload failed. Removing the instance takes its series away.
    std::fs::write(dd.instances().join("broken.json"), "{ not json").unwrap();
    std::fs::remove_file(dd.instances().join("contacts.json")).unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let m = scrape(address).await;
        if !has_instance(&m, "API_Polling")
            && m.value("pollerd_config_last_reload_successful", &[]) == 0.0
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the removed instance's series stayed, or the reload did not fail"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(daemon);
}
