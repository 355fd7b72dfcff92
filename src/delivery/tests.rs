//! A worker reads its queue ahead of what it has sent: what it read must never outrun a failing
//! head, and a dead letter must not be sent again. Clients of `tls.caFile` bundles are shared.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::{Deliverer, Target};
use crate::callback::Endpoint;
use crate::config::settings::DeliverySettings;
use crate::sim::receiver::{Behaviour, ReceivedRequest, Receiver};
use crate::store::{NewNotification, PageCommit, ResourceKey, SledStore, Store};

const WAIT: Duration = Duration::from_secs(30);

fn ids_of(requests: &[ReceivedRequest]) -> Vec<String> {
    requests
        .iter()
        .map(|r| r.header("webhook-id").expect("webhook-id").to_string())
        .collect()
}

#[tokio::test]
async fn a_backlog_read_ahead_still_waits_behind_a_retry_and_skips_a_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SledStore::open(&dir.path().join("state"), 8 << 20).unwrap());
    let key = ResourceKey::new("backlog", "contacts");
    let mut commit = PageCommit::new(key.clone());
    for i in 0..10 {
        commit.notifications.push(NewNotification {
            event_id: format!("n-{i}"),
            body: format!("{{\"n\":{i}}}").into_bytes(),
            created_at: Utc::now(),
        });
    }
    store.commit(commit).unwrap();

    let receiver = Receiver::start().await.unwrap();
    // n-0..n-2 pass, n-3 fails twice then passes, n-4 is refused, the rest pass.
    receiver.respond_next(Behaviour::Ok, 3);
    receiver.respond_next(Behaviour::Status(503), 2);
    receiver.respond_next(Behaviour::Ok, 1);
    receiver.respond_next(Behaviour::Status(400), 1);
    let settings = DeliverySettings {
        timeout: Duration::from_secs(5),
        schedule: vec![Duration::from_millis(50); 5],
        max_in_flight: 8,
        grace_period: Duration::from_secs(5),
    };
    let deliverer = Deliverer::new(store.clone(), &settings, None).unwrap();
    deliverer.set_target(
        "backlog",
        Target {
            callback: Endpoint::parse(&receiver.url()).unwrap(),
            signature_key: None,
            webhook_secret: None,
        },
    );
    deliverer.wake_all().unwrap();
    receiver.wait_until(WAIT, |r| r.len() == 12).await.unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while store.stats().unwrap().outbox_depth > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the outbox never emptied"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    deliverer.shutdown().await;

    let expected_attempts = [
        "n-0", "n-1", "n-2", "n-3", "n-3", "n-3", "n-4", "n-5", "n-6", "n-7", "n-8", "n-9",
    ];
    assert_eq!(ids_of(&receiver.requests()), expected_attempts);
    let expected_accepted = [
        "n-0", "n-1", "n-2", "n-3", "n-5", "n-6", "n-7", "n-8", "n-9",
    ];
    assert_eq!(ids_of(&receiver.accepted()), expected_accepted);
    let dead: Vec<String> = store
        .dead_letters()
        .unwrap()
        .into_iter()
        .map(|d| d.event_id)
        .collect();
    assert_eq!(dead, ["n-4"]);
}

#[test]
fn instances_trusting_the_same_ca_bundle_share_one_client() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SledStore::open(&dir.path().join("state"), 8 << 20).unwrap());
    let settings = super::client_tests::settings(Duration::from_secs(5));
    let deliverer = Deliverer::new(store, &settings, None).unwrap();
    let read = |name: &str, pem: &str| {
        crate::config::TlsCa::from_pem(format!("/etc/pollerd/{name}.pem").into(), pem.as_bytes())
            .unwrap()
    };
    let internal_pem = super::client_tests::private_ca(&[]).0;
    let internal = read("internal", &internal_pem);
    let partner = read("partner", &super::client_tests::private_ca(&[]).0);
    // The same bundle read from another path is the same trust: one client.
    let internal_copy = read("copy", &internal_pem);
    deliverer.set_trusted_ca("a", Some(&internal)).unwrap();
    deliverer.set_trusted_ca("b", Some(&internal)).unwrap();
    deliverer.set_trusted_ca("c", Some(&internal_copy)).unwrap();
    assert_eq!(deliverer.ca_client_count(), 1);
    deliverer.set_trusted_ca("d", Some(&partner)).unwrap();
    assert_eq!(deliverer.ca_client_count(), 2);
    // Once no instance uses a bundle, its client goes; trusting it again builds a new one.
    for instance in ["a", "b", "c"] {
        deliverer.set_trusted_ca(instance, None).unwrap();
    }
    assert_eq!(deliverer.ca_client_count(), 1);
    deliverer.set_trusted_ca("a", Some(&internal)).unwrap();
    assert_eq!(deliverer.ca_client_count(), 2);
}
