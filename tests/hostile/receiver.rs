//! The real daemon delivering to a receiver whose `Retry-After` answers are hostile (issue 13
//! item 4): huge numbers, a date in year 9999, negative numbers and garbage. A wait longer than
//! the schedule's largest step is cut to it, garbage is ignored, and nothing panics.

use std::time::Duration;

use crate::support::*;
use pollerd::sim::connectwise::{ConnectWiseSim, RecordKind, SimConfig};
use pollerd::sim::receiver::{Behaviour, Receiver};

/// Whether the receiver accepted (2xx) a notification of this contact.
fn accepted(receiver: &Receiver, id: u64) -> bool {
    receiver.accepted().iter().any(|r| {
        r.try_json().is_ok_and(|b| {
            b["message"]["events"][0]["objectId"] == serde_json::json!(id.to_string())
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_retry_after_values_are_cut_to_the_largest_step_or_ignored() {
    let sim = ConnectWiseSim::start(SimConfig::default()).await.unwrap();
    let receiver = Receiver::start().await.unwrap();
    // The largest step is 300 ms: the ten answers below cost seconds when cut, years when not.
    let dd = DaemonDir::new(
        "[delivery]\nschedule = [\"100ms\", \"300ms\", \"300ms\", \"300ms\", \"300ms\", \"300ms\", \"300ms\", \"300ms\", \"300ms\", \"300ms\"]\n",
    );
    dd.write_instance(
        "contacts.json",
        &seed_instance(&sim, &receiver.url(), "0.01"),
    );
    let mut daemon = dd.start(&[]);
    wait_for("the baseline run", WAIT, || {
        status(&dd).is_some_and(|s| !s["instances"][0]["resources"][0]["watermark"].is_null())
    })
    .await;
    // Each answered once, in this order, before the receiver accepts.
    for (n, value) in HOSTILE_RETRY_AFTER.iter().enumerate() {
        let status = if n % 2 == 0 { 429 } else { 503 };
        receiver.respond_next(
            Behaviour::StatusWithRetryAfter(status, value.to_string()),
            1,
        );
    }
    let id = sim.create(RecordKind::Contact, None);
    wait_for("the notification to be accepted", WAIT, || {
        accepted(&receiver, id)
    })
    .await;
    let attempts = receiver.requests().len();
    assert_eq!(
        attempts,
        HOSTILE_RETRY_AFTER.len() + 1,
        "one attempt per answer"
    );

    // The daemon is alive, the queue is empty, and a later change goes through too.
    assert!(daemon.child.try_wait().unwrap().is_none(), "{}", dd.logs());
    let later = sim.create(RecordKind::Contact, None);
    wait_for("the later change", WAIT, || accepted(&receiver, later)).await;
    let contacts = status(&dd).unwrap()["instances"][0]["resources"][0].clone();
    assert_eq!(contacts["outbox_depth"], 0, "{contacts}");
    assert_eq!(contacts["dead_letters"], 0, "{contacts}");
    let logs = dd.logs();
    assert!(!logs.contains("panicked"), "{logs}");
    daemon.signal("TERM");
    let exit = daemon.wait_exit(Duration::from_secs(30)).await;
    assert!(exit.success(), "{exit:?}");
}
