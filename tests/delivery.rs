//! Delivery against the test receiver over real HTTP: headers and signatures, retry on the
//! schedule, Retry-After, dead letters and replay, per-resource order (SPEC §5, §6). Store state
//! changes tell the receiver nothing, so some waits poll the store (`support::wait_for`).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use chrono::Utc;
use hmac::{Hmac, Mac};
use pollerd::callback::Endpoint;
use pollerd::config::Secret;
use pollerd::config::settings::DeliverySettings;
use pollerd::delivery::{Deliverer, Target};
use pollerd::signing::WebhookSecret;
use pollerd::sim::receiver::{Behaviour, ReceivedRequest, Receiver};
use pollerd::store::{NewNotification, PageCommit, ResourceKey, SledStore, Store};
use sha2::Sha256;
use support::wait_for;

const WAIT: Duration = Duration::from_secs(30);

fn settings(schedule: &[u64]) -> DeliverySettings {
    DeliverySettings {
        timeout: Duration::from_secs(5),
        schedule: schedule
            .iter()
            .map(|ms| Duration::from_millis(*ms))
            .collect(),
        max_in_flight: 8,
        grace_period: Duration::from_secs(5),
    }
}

fn open_store(dir: &std::path::Path) -> Arc<dyn Store> {
    Arc::new(SledStore::open(&dir.join("state"), 8 << 20).unwrap())
}

/// Queues `n` notifications for `key`, with ids `<prefix>-0…`.
fn enqueue(store: &Arc<dyn Store>, key: &ResourceKey, prefix: &str, n: usize) -> Vec<String> {
    let mut commit = PageCommit::new(key.clone());
    let mut ids = Vec::new();
    for i in 0..n {
        let id = format!("{prefix}-{i}");
        let body = serde_json::json!({"id": id, "n": i, "text": "ünïcode"})
            .to_string()
            .into_bytes();
        commit.notifications.push(NewNotification {
            event_id: id.clone(),
            body,
            created_at: Utc::now(),
        });
        ids.push(id);
    }
    store.commit(commit).unwrap();
    ids
}

fn target(url: String) -> Target {
    Target {
        callback: Endpoint::parse(&url).unwrap(),
        signature_key: None,
        webhook_secret: None,
    }
}

fn ids_of(requests: &[ReceivedRequest]) -> Vec<String> {
    requests
        .iter()
        .map(|r| r.header("webhook-id").unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn notifications_carry_ids_timestamps_and_both_signatures() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let receiver = Receiver::start().await.unwrap();
    let key = ResourceKey::new("inst", "contacts");
    enqueue(&store, &key, "evt", 1);
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let deliverer = Deliverer::new(store.clone(), &settings(&[1000]), None).unwrap();
    deliverer.set_target(
        "inst",
        Target {
            callback: Endpoint::parse(&receiver.url()).unwrap(),
            signature_key: Some(Secret::new("MySecretEventSignatureKey")),
            webhook_secret: Some(WebhookSecret::parse(secret).unwrap()),
        },
    );
    deliverer.wake_all().unwrap();
    receiver.wait_until(WAIT, |r| !r.is_empty()).await.unwrap();
    let r = &receiver.requests()[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("elements-webhook-id"), Some("evt-0"));
    assert_eq!(r.header("webhook-id"), Some("evt-0"));
    let ts: i64 = r.header("webhook-timestamp").unwrap().parse().unwrap();
    assert!((Utc::now().timestamp() - ts).abs() < 60);

    // Verified here from the two schemes' definitions, independently of pollerd's code.
    let mut mac = Hmac::<Sha256>::new_from_slice(b"MySecretEventSignatureKey").unwrap();
    mac.update(&r.body);
    let expected = format!(
        "sha256={}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    assert_eq!(
        r.header("elements-webhook-signature"),
        Some(expected.as_str())
    );
    let key_bytes = base64::engine::general_purpose::STANDARD
        .decode(&secret["whsec_".len()..])
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key_bytes).unwrap();
    mac.update(format!("evt-0.{ts}.").as_bytes());
    mac.update(&r.body);
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    assert_eq!(r.header("webhook-signature"), Some(expected.as_str()));

    let queued = serde_json::json!({"id": "evt-0", "n": 0, "text": "ünïcode"}).to_string();
    assert_eq!(r.body, queued.as_bytes(), "the exact stored bytes are sent");
    wait_for("an empty outbox", WAIT, || {
        store.outbox_depth(&key).unwrap() == 0
    })
    .await;
}

#[tokio::test]
async fn two_failures_then_success_keeps_the_event_id_and_body() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let receiver = Receiver::start().await.unwrap();
    receiver.respond_next(Behaviour::Status(500), 2);
    let key = ResourceKey::new("inst", "contacts");
    enqueue(&store, &key, "evt", 1);
    let deliverer = Deliverer::new(store.clone(), &settings(&[1000, 1000, 1000]), None).unwrap();
    deliverer.set_target("inst", target(receiver.url()));
    deliverer.wake_all().unwrap();
    receiver
        .wait_until(WAIT, |r| r.iter().any(|r| r.status == Some(200)))
        .await
        .unwrap();
    let all = receiver.requests();
    assert_eq!(all.len(), 3, "delivered on the third attempt");
    assert_eq!(
        all.iter().map(|r| r.status).collect::<Vec<_>>(),
        [Some(500), Some(500), Some(200)]
    );
    assert!(
        all.iter()
            .all(|r| r.header("webhook-id") == Some("evt-0") && r.body == all[0].body)
    );
    let ts: Vec<i64> = all
        .iter()
        .map(|r| r.header("webhook-timestamp").unwrap().parse().unwrap())
        .collect();
    assert!(
        ts[0] < ts[1] && ts[1] < ts[2],
        "webhook-timestamp is the time of each attempt: {ts:?}"
    );
    wait_for("an empty outbox", WAIT, || {
        store.outbox_depth(&key).unwrap() == 0
    })
    .await;
}

#[tokio::test]
async fn retry_after_is_honoured_when_longer_than_the_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let receiver = Receiver::start().await.unwrap();
    receiver.respond_next(Behaviour::StatusWithRetryAfter(429, "3".into()), 1);
    let key = ResourceKey::new("inst", "contacts");
    enqueue(&store, &key, "evt", 1);
    let deliverer = Deliverer::new(store.clone(), &settings(&[100, 5_000]), None).unwrap();
    deliverer.set_target("inst", target(receiver.url()));
    deliverer.wake_all().unwrap();
    receiver.wait_until(WAIT, |r| r.len() >= 2).await.unwrap();
    let all = receiver.requests();
    let gap = all[1].at.duration_since(all[0].at).unwrap();
    assert!(
        gap >= Duration::from_secs(3),
        "retried after {gap:?}, before Retry-After: 3"
    );
}

#[tokio::test]
async fn a_400_is_a_dead_letter_at_once_and_replay_delivers_it_with_its_event_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let receiver = Receiver::start().await.unwrap();
    receiver.respond_next(Behaviour::Status(400), 1);
    let key = ResourceKey::new("inst", "contacts");
    enqueue(&store, &key, "evt", 2);
    let deliverer = Deliverer::new(store.clone(), &settings(&[1000]), None).unwrap();
    deliverer.set_target("inst", target(receiver.url()));
    deliverer.wake_all().unwrap();
    // The queue moves on: evt-1 is delivered after evt-0 was rejected.
    receiver
        .wait_until(WAIT, |r| r.iter().any(|r| r.status == Some(200)))
        .await
        .unwrap();
    assert_eq!(ids_of(&receiver.requests()), ["evt-0", "evt-1"]);
    let dead = store.dead_letters().unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (
            dead[0].event_id.as_str(),
            dead[0].last_status,
            dead[0].attempts
        ),
        ("evt-0", Some(400), 1)
    );
    assert!(
        dead[0].last_error.contains("HTTP 400"),
        "{}",
        dead[0].last_error
    );

    assert!(store.replay_dead_letter(&dead[0].id).unwrap());
    deliverer.wake(&key);
    receiver
        .wait_until(WAIT, |r| {
            r.iter().filter(|r| r.status == Some(200)).count() == 2
        })
        .await
        .unwrap();
    let accepted = receiver.accepted();
    assert_eq!(ids_of(&accepted), ["evt-1", "evt-0"]);
    assert_eq!(
        accepted[1].body,
        receiver.requests()[0].body,
        "replayed with the same body"
    );
    assert!(store.dead_letters().unwrap().is_empty());
}

#[tokio::test]
async fn an_exhausted_schedule_is_a_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let receiver = Receiver::start().await.unwrap();
    receiver.set_default(Behaviour::Status(503));
    let key = ResourceKey::new("inst", "contacts");
    enqueue(&store, &key, "evt", 1);
    let deliverer = Deliverer::new(store.clone(), &settings(&[50, 50]), None).unwrap();
    deliverer.set_target("inst", target(receiver.url()));
    deliverer.wake_all().unwrap();
    wait_for("a dead letter", WAIT, || {
        !store.dead_letters().unwrap().is_empty()
    })
    .await;
    assert_eq!(
        receiver.request_count(),
        3,
        "first attempt plus one per schedule step"
    );
    assert_eq!(store.dead_letters().unwrap()[0].attempts, 3);
}

#[tokio::test]
async fn a_failing_resource_keeps_its_order_and_holds_back_no_other() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let slow = Receiver::start().await.unwrap();
    let fine = Receiver::start().await.unwrap();
    slow.respond_until(
        Behaviour::Status(503),
        Instant::now() + Duration::from_secs(3),
    );
    let a = ResourceKey::new("a", "contacts");
    let b = ResourceKey::new("b", "contacts");
    let a_ids = enqueue(&store, &a, "a", 5);
    let b_ids = enqueue(&store, &b, "b", 5);
    let deliverer = Deliverer::new(
        store.clone(),
        &settings(&[300, 300, 300, 300, 300, 300, 300, 300, 300, 300, 300, 300]),
        None,
    )
    .unwrap();
    deliverer.set_target("a", target(slow.url()));
    deliverer.set_target("b", target(fine.url()));
    deliverer.wake_all().unwrap();
    fine.wait_until(WAIT, |r| r.len() == 5).await.unwrap();
    assert!(
        slow.accepted().is_empty(),
        "b was delivered while a was still failing"
    );
    assert_eq!(ids_of(&fine.accepted()), b_ids);
    slow.wait_until(WAIT, |r| {
        r.iter().filter(|r| r.status == Some(200)).count() == 5
    })
    .await
    .unwrap();
    assert_eq!(ids_of(&slow.accepted()), a_ids, "creation order");
    // While a's head waited, nothing after it was attempted.
    let attempted: Vec<String> = ids_of(&slow.requests());
    let first_ok = slow
        .requests()
        .iter()
        .position(|r| r.status == Some(200))
        .unwrap();
    assert!(
        attempted[..first_ok].iter().all(|id| id == "a-0"),
        "{attempted:?}"
    );
}

#[tokio::test]
async fn a_restart_keeps_the_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await.unwrap();
    receiver.respond_next(Behaviour::Status(500), 1);
    let key = ResourceKey::new("inst", "contacts");
    {
        let store = open_store(dir.path());
        enqueue(&store, &key, "evt", 1);
        let deliverer = Deliverer::new(store.clone(), &settings(&[3000]), None).unwrap();
        deliverer.set_target("inst", target(receiver.url()));
        deliverer.wake_all().unwrap();
        wait_for("the failed attempt to be recorded", WAIT, || {
            store
                .outbox_head(&key)
                .unwrap()
                .is_some_and(|h| h.attempts == 1)
        })
        .await;
        deliverer.shutdown().await;
    }
    let store = open_store(dir.path());
    let head = store.outbox_head(&key).unwrap().unwrap();
    let due = head
        .next_attempt_at
        .expect("the next attempt time is stored");
    assert!(
        due > Utc::now() + chrono::Duration::milliseconds(1000),
        "{due}"
    );
    let deliverer = Deliverer::new(store.clone(), &settings(&[3000]), None).unwrap();
    deliverer.set_target("inst", target(receiver.url()));
    deliverer.wake_all().unwrap();
    receiver.wait_until(WAIT, |r| r.len() == 2).await.unwrap();
    let second: chrono::DateTime<Utc> = receiver.requests()[1].at.into();
    assert!(
        second >= due,
        "retried at {second}, before the stored {due}"
    );
}
