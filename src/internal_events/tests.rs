//! Each event updates its metric, as `/metrics` shows it, and logs one line that carries the
//! instance and resource of the span it is emitted in, in each output format.

use std::time::Duration;

use super::*;
use crate::logging::{Output, written_while};
use crate::metrics::Metrics;

/// The value of the `/metrics` sample `series` (name and labels as the exposition writes them).
fn sample(metrics: &Metrics, series: &str) -> f64 {
    let text = metrics.render();
    let prefix = format!("{series} ");
    let line = text
        .lines()
        .find(|line| line.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"));
    line[prefix.len()..].parse().expect("a number")
}

fn in_poll_span(emit: impl FnOnce()) -> String {
    written_while(Output::Text, "debug", || {
        let _poll = poll_span("acme", "contacts").entered();
        emit();
    })
}

fn in_delivery_span(emit: impl FnOnce()) -> String {
    written_while(Output::Text, "debug", || {
        let _queue = delivery_span("acme", "contacts").entered();
        emit();
    })
}

/// The one line `out` holds, checked to carry the span's instance and resource.
fn one_line_in_span(out: &str) -> &str {
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(lines[0].contains("instance=acme"), "{out}");
    assert!(lines[0].contains("resource=contacts"), "{out}");
    lines[0]
}

/// A run of 7 records, 1 of them skipped, giving 3 events (1 CREATED) in 2 notifications.
fn finished_run(took: Duration) -> PollFinished {
    PollFinished {
        baseline: false,
        records: 7,
        events: 3,
        created: 1,
        notifications: 2,
        skipped: 1,
        took,
    }
}

#[test]
fn a_finished_poll_counts_its_run_records_and_events_and_logs_them_in_its_span() {
    let metrics = Metrics::new();
    let out = in_poll_span(|| finished_run(Duration::from_millis(300)).emit(Some(&metrics)));

    let line = one_line_in_span(&out);
    assert!(line.contains(" INFO poll{"), "{line}");
    assert!(
        line.contains("3 event(s) in 2 notification(s) from 7 record(s)"),
        "{line}"
    );
    assert_eq!(
        sample(&metrics, r#"pollerd_polls_total{outcome="ok"}"#),
        1.0
    );
    let baselines = sample(&metrics, r#"pollerd_polls_total{outcome="baseline"}"#);
    assert_eq!(baselines, 0.0);
    assert_eq!(sample(&metrics, "pollerd_records_fetched_total"), 7.0);
    assert_eq!(sample(&metrics, "pollerd_records_skipped_total"), 1.0);
    let created = sample(&metrics, r#"pollerd_events_total{type="CREATED"}"#);
    let updated = sample(&metrics, r#"pollerd_events_total{type="UPDATED"}"#);
    assert_eq!((created, updated), (1.0, 2.0));
    assert_eq!(sample(&metrics, "pollerd_poll_duration_seconds_count"), 1.0);
}

#[test]
fn a_baseline_run_is_counted_as_one_and_logs_nothing() {
    let metrics = Metrics::new();
    let baseline = PollFinished {
        baseline: true,
        records: 4,
        events: 0,
        created: 0,
        notifications: 0,
        skipped: 0,
        took: Duration::ZERO,
    };
    let out = in_poll_span(|| baseline.emit(Some(&metrics)));
    assert_eq!(out, "");
    let baselines = sample(&metrics, r#"pollerd_polls_total{outcome="baseline"}"#);
    assert_eq!(baselines, 1.0);
    assert_eq!(
        sample(&metrics, r#"pollerd_polls_total{outcome="ok"}"#),
        0.0
    );
}

#[test]
fn a_failed_poll_is_counted_each_time_and_logged_as_an_error_once() {
    let metrics = Metrics::new();
    let error = "instance acme, resource contacts, page 1: timed out";
    let failed = |repeated| PollFailed {
        error: &error,
        repeated,
        took: Duration::from_secs(1),
    };
    let first = in_poll_span(|| failed(false).emit(Some(&metrics)));
    let again = in_poll_span(|| failed(true).emit(Some(&metrics)));

    let line = one_line_in_span(&first);
    assert!(line.contains("ERROR"), "{line}");
    assert!(line.contains("polling failed: instance acme"), "{line}");
    let line = one_line_in_span(&again);
    assert!(line.contains("DEBUG"), "{line}");
    assert!(line.contains("polling still failing: "), "{line}");
    let errors = sample(&metrics, r#"pollerd_polls_total{outcome="error"}"#);
    assert_eq!(errors, 2.0);
}

fn failed_delivery(attempt: u32, repeated: bool) -> DeliveryFailed<'static> {
    DeliveryFailed {
        event_id: "e-1",
        url: "https://receiver.example:443/hook",
        error: "HTTP 503: busy",
        attempt,
        retry_in: Duration::from_secs(10),
        repeated,
    }
}

#[test]
fn delivery_outcomes_are_counted_and_logged_with_the_queue_and_event_id() {
    let metrics = Metrics::new();
    let out = in_delivery_span(|| failed_delivery(1, false).emit(Some(&metrics)));
    let line = one_line_in_span(&out);
    assert!(line.contains(" WARN delivery{"), "{line}");
    assert!(line.contains("event_id=e-1"), "{line}");
    let said =
        "delivery to https://receiver.example:443/hook failed (HTTP 503: busy); retrying in 10s";
    assert!(line.contains(said), "{line}");

    let out = in_delivery_span(|| {
        let why = "the receiver rejected the notification (HTTP 400: no)";
        let event_id = "e-1";
        DeadLettered { event_id, why }.emit(Some(&metrics));
    });
    let line = one_line_in_span(&out);
    assert!(line.contains("ERROR"), "{line}");
    let said = "moved to dead letters (pollerd dead-letters replay e-1)";
    assert!(line.contains(said), "{line}");

    let out = in_delivery_span(|| {
        let latency = Some(Duration::from_millis(400));
        let event_id = "e-2";
        let recovered = true;
        NotificationDelivered {
            event_id,
            latency,
            recovered,
        }
        .emit(Some(&metrics));
    });
    assert!(
        one_line_in_span(&out).contains("delivery recovered"),
        "{out}"
    );

    for outcome in ["ok", "retry", "dead"] {
        let series = format!(r#"pollerd_deliveries_total{{outcome="{outcome}"}}"#);
        assert_eq!(sample(&metrics, &series), 1.0, "{series}");
    }
    let latencies = sample(&metrics, "pollerd_delivery_latency_seconds_count");
    assert_eq!(latencies, 1.0);
}

#[test]
fn a_delivery_that_goes_on_failing_is_counted_but_not_warned_of_again() {
    let metrics = Metrics::new();
    let out = in_delivery_span(|| failed_delivery(2, true).emit(Some(&metrics)));
    let line = one_line_in_span(&out);
    assert!(
        line.contains("DEBUG") && line.contains("attempt=2"),
        "{line}"
    );
    let retries = sample(&metrics, r#"pollerd_deliveries_total{outcome="retry"}"#);
    assert_eq!(retries, 1.0);
}

#[test]
fn a_reload_with_errors_is_counted_as_one_and_names_what_changed() {
    let metrics = Metrics::new();
    let started = ["acme".to_string()];
    let out = written_while(Output::Text, "info", || {
        ReloadFinished {
            started: &started,
            restarted: &[],
            stopped: &[],
            unchanged: 2,
            errors: 1,
        }
        .emit(&metrics);
    });
    let said = "instances: started [\"acme\"], restarted [], stopped [], 2 unchanged";
    assert!(out.contains(said), "{out}");
    let errors = sample(&metrics, r#"pollerd_reloads_total{result="error"}"#);
    let oks = sample(&metrics, r#"pollerd_reloads_total{result="ok"}"#);
    assert_eq!((errors, oks), (1.0, 0.0));
    // What PollerdReloadFailed reads: 0 until a reload uses every file again.
    assert_eq!(
        sample(&metrics, "pollerd_config_last_reload_successful"),
        0.0
    );
    ReloadFinished {
        started: &[],
        restarted: &[],
        stopped: &[],
        unchanged: 3,
        errors: 0,
    }
    .emit(&metrics);
    assert_eq!(
        sample(&metrics, "pollerd_config_last_reload_successful"),
        1.0
    );
}

#[test]
fn lease_events_log_the_instance_and_epoch_and_count_held_takeovers_and_losses() {
    let metrics = Metrics::new();
    let out = written_while(Output::Text, "info", || {
        LeaseClaimed {
            instance: "acme",
            epoch: 3,
            expired_owner: None,
            held: 1,
        }
        .emit(&metrics);
        LeaseClaimed {
            instance: "globex",
            epoch: 8,
            expired_owner: Some("node-b"),
            held: 2,
        }
        .emit(&metrics);
        LeaseReleased {
            instance: "acme",
            epoch: 3,
            reason: ReleaseReason::Rebalance,
            held: 1,
        }
        .emit(&metrics);
        LeaseLost {
            instance: "globex",
            cause: crate::metrics::LeaseLossCause::Write,
            held: 0,
        }
        .emit(&metrics);
    });
    for said in [
        "lease claimed: instance acme (epoch 3, 1 held)",
        "lease takeover: instance globex from node node-b, whose lease expired (epoch 8, 2 held)",
        "lease released: instance acme (more than this node's share; epoch 3, 1 held)",
        "lease lost: instance globex (a write was refused: another node holds it now)",
    ] {
        assert!(out.contains(said), "{said:?} not in {out}");
    }
    assert_eq!(sample(&metrics, "pollerd_leases_held"), 0.0);
    assert_eq!(sample(&metrics, "pollerd_lease_takeovers_total"), 1.0);
    let lost = |cause: &str| {
        sample(
            &metrics,
            &format!("pollerd_lease_lost_total{{cause=\"{cause}\"}}"),
        )
    };
    assert_eq!(
        (lost("write"), lost("renewal"), lost("expired")),
        (1.0, 0.0, 0.0)
    );
}

#[test]
fn events_without_metrics_still_log() {
    let out = in_poll_span(|| finished_run(Duration::ZERO).emit(None));
    assert!(one_line_in_span(&out).contains("3 event(s)"), "{out}");
}

#[test]
fn json_lines_carry_the_instance_and_resource_of_their_span_at_the_top_level() {
    let out = written_while(Output::Json, "info", || {
        let _queue = delivery_span("acme", "contacts").entered();
        failed_delivery(1, false).emit(None);
    });
    let line: serde_json::Value = serde_json::from_str(out.trim()).expect(&out);
    assert_eq!(line["instance"], "acme", "{line}");
    assert_eq!(line["resource"], "contacts", "{line}");
    assert_eq!(line["event_id"], "e-1", "{line}");
    assert_eq!(line["level"], "WARN", "{line}");
    assert_eq!(line["target"], "pollerd::delivery::queue", "{line}");
    let message = line["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("delivery to https://"), "{line}");
    assert!(
        line.get("spans").is_none() && line.get("span").is_none(),
        "{line}"
    );
}

#[test]
fn a_narrow_filter_keeps_the_instance_and_resource_of_the_lines_it_lets_through() {
    // Only the scan's lines: the poll loop's span is of another target, and is kept anyway.
    let out = written_while(Output::Text, "pollerd::poller::scan=warn", || {
        let _poll = poll_span("acme", "contacts").entered();
        PollRecovered { was: "timeout" }.emit();
        let why = "no id";
        RecordSkipped {
            index: 2,
            page: 1,
            why: &why,
        }
        .emit();
    });
    let line = one_line_in_span(&out);
    assert!(line.contains("skipped record 3 of page 1: no id"), "{line}");
}

#[test]
fn a_wait_for_the_tenants_budget_is_counted_and_shown_as_waiting_until_it_ends() {
    let metrics = Metrics::new();
    let long = in_poll_span(|| {
        TenantThrottled {
            wait: Duration::from_millis(12_300),
        }
        .emit(Some(&metrics))
    });
    let line = one_line_in_span(&long);
    assert!(line.contains(" INFO poll{"), "{line}");
    assert!(
        line.contains(
            "waiting 12s 300ms for the tenant's request budget ([polling] tenant_requests_per_minute)"
        ),
        "{line}"
    );
    assert_eq!(sample(&metrics, "pollerd_tenant_throttled_waiting"), 1.0);
    // A short wait, as a budget spent steadily gives all the time: counted, logged at debug.
    let short = in_poll_span(|| {
        TenantThrottled {
            wait: Duration::from_millis(60),
        }
        .emit(Some(&metrics))
    });
    assert!(one_line_in_span(&short).contains("DEBUG"), "{short}");
    assert_eq!(sample(&metrics, "pollerd_tenant_throttled_total"), 2.0);
    assert_eq!(sample(&metrics, "pollerd_tenant_throttled_waiting"), 2.0);
    let ended = in_poll_span(|| {
        TenantThrottleEnded.emit(Some(&metrics));
        TenantThrottleEnded.emit(Some(&metrics));
    });
    assert_eq!(ended, "");
    assert_eq!(sample(&metrics, "pollerd_tenant_throttled_waiting"), 0.0);
    assert_eq!(sample(&metrics, "pollerd_tenant_throttled_total"), 2.0);
}
