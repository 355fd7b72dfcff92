//! The outbox against a model: random commits (pages of up to 600 notifications with event ids
//! of random length, so runs split at different places), acks, failures, dead letters, replays,
//! reads ahead and reopens, checked after every step against plain queues in memory. The seed is
//! printed and named in a failure. The seen set likewise, against a map of latest dates.

use std::collections::{BTreeMap, VecDeque};

use pollerd::store::{NewNotification, PageCommit, ResourceKey};

use super::{Opened, Place, at, key};

/// A queued notification as the model keeps it.
#[derive(Clone, Debug, PartialEq)]
struct Queued {
    event_id: String,
    attempts: u32,
    failure: Option<(i64, String)>,
}

#[derive(Default)]
struct Model {
    queues: BTreeMap<ResourceKey, VecDeque<Queued>>,
    /// Dead letter id (the event id: they are unique here) → its resource.
    dead: BTreeMap<String, ResourceKey>,
}

fn body_of(event_id: &str) -> Vec<u8> {
    format!(r#"{{"id":"{event_id}"}}"#).into_bytes()
}

/// Checks the store's queues, depths, counters and dead letters against the model.
fn check(store: &Opened, model: &Model, step: usize, seed: u64) {
    let context = format!("seed {seed}, step {step}");
    let keys: Vec<ResourceKey> = model
        .queues
        .iter()
        .filter(|(_, q)| !q.is_empty())
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(store.queues().unwrap(), keys, "{context}");
    let total: usize = model.queues.values().map(VecDeque::len).sum();
    let stats = store.stats().unwrap();
    assert_eq!(stats.outbox_depth, total as u64, "{context}");
    assert_eq!(stats.dead_letters, model.dead.len() as u64, "{context}");
    for (k, queue) in &model.queues {
        assert_eq!(
            store.outbox_depth(k).unwrap(),
            queue.len() as u64,
            "{context}"
        );
        let head = store.outbox_head(k).unwrap();
        match (head, queue.front()) {
            (None, None) => {}
            (Some(head), Some(expected)) => {
                assert_eq!(head.event_id, expected.event_id, "{context}: head of {k}");
                assert_eq!(head.body, body_of(&expected.event_id), "{context}");
                assert_eq!(head.attempts, expected.attempts, "{context}");
                let failure = head
                    .next_attempt_at
                    .map(|next| (next.timestamp(), head.last_error.clone().unwrap()));
                let expected_failure = expected
                    .failure
                    .clone()
                    .map(|(seconds, error)| (at(seconds).timestamp(), error));
                assert_eq!(failure, expected_failure, "{context}");
            }
            (head, expected) => panic!("{context}: head of {k} is {head:?}, model {expected:?}"),
        }
    }
    let dead: BTreeMap<String, ResourceKey> = store
        .dead_letters()
        .unwrap()
        .into_iter()
        .map(|letter| {
            assert_eq!(letter.body, body_of(&letter.event_id), "{context}");
            (letter.id, letter.key)
        })
        .collect();
    assert_eq!(dead, model.dead, "{context}");
}

fn run_model(new_place: fn() -> Place, seed: u64, steps: usize) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let dir = new_place();
    let keys = [
        key("cw", "contacts"),
        key("cw", "tickets"),
        key("hub", "contacts"),
    ];
    let mut store = dir.open();
    let mut model = Model::default();
    let mut next_id = 0usize;
    for step in 0..steps {
        let k = &keys[rng.usize(..keys.len())];
        let context = format!("seed {seed}, step {step}");
        let head = store.outbox_head(k).unwrap();
        match rng.u32(..100) {
            0..=14 => {
                let count = match rng.u32(..10) {
                    0 => 0,
                    1 => rng.usize(200..600),
                    _ => rng.usize(1..40),
                };
                let mut commit = PageCommit::new(k.clone());
                for _ in 0..count {
                    next_id += 1;
                    // Ids of 2 to ~200 bytes, so runs hold different numbers of entries.
                    let event_id = format!("e{next_id}-{}", "x".repeat(rng.usize(..200)));
                    commit.notifications.push(NewNotification {
                        body: body_of(&event_id),
                        event_id: event_id.clone(),
                        created_at: at(step as i64),
                    });
                    model
                        .queues
                        .entry(k.clone())
                        .or_default()
                        .push_back(Queued {
                            event_id,
                            attempts: 0,
                            failure: None,
                        });
                }
                store.commit(commit).unwrap();
            }
            15..=64 => {
                // Acknowledge a few heads, as a worker with a backlog does.
                for _ in 0..rng.usize(1..30) {
                    let Some(head) = store.outbox_head(k).unwrap() else {
                        break;
                    };
                    store.ack(k, head.seq).unwrap();
                    store.ack(k, head.seq).unwrap(); // a repeated ack changes nothing
                    let expected = model.queues.get_mut(k).unwrap().pop_front().unwrap();
                    assert_eq!(head.event_id, expected.event_id, "{context}");
                }
            }
            65..=74 => {
                if let Some(head) = head {
                    let attempts = head.attempts + 1;
                    let error = format!("HTTP 503 #{step}");
                    store
                        .record_failure(k, head.seq, attempts, at(step as i64 + 60), &error)
                        .unwrap();
                    let front = model.queues.get_mut(k).unwrap().front_mut().unwrap();
                    front.attempts = attempts;
                    front.failure = Some((step as i64 + 60, error));
                }
            }
            75..=82 => {
                if let Some(head) = head {
                    store
                        .dead_letter(k, head.seq, head.attempts + 1, Some(410), "gone")
                        .unwrap();
                    let dead = model.queues.get_mut(k).unwrap().pop_front().unwrap();
                    model.dead.insert(dead.event_id, k.clone());
                }
            }
            83..=87 => {
                let ids: Vec<String> = model.dead.keys().cloned().collect();
                if !ids.is_empty() {
                    let id = &ids[rng.usize(..ids.len())];
                    assert!(store.replay_dead_letter(id).unwrap(), "{context}");
                    let owner = model.dead.remove(id).unwrap();
                    model.queues.entry(owner).or_default().push_back(Queued {
                        event_id: id.clone(),
                        attempts: 0,
                        failure: None,
                    });
                }
            }
            88..=94 => {
                let limit = rng.usize(1..50);
                let front = store.outbox_front(k, limit).unwrap();
                let expected: Vec<&str> = model
                    .queues
                    .get(k)
                    .map(|q| q.iter().take(limit).map(|e| e.event_id.as_str()).collect())
                    .unwrap_or_default();
                let got: Vec<&str> = front.iter().map(|e| e.event_id.as_str()).collect();
                assert_eq!(got, expected, "{context}: front of {k}, limit {limit}");
                assert!(front.windows(2).all(|pair| pair[0].seq < pair[1].seq));
                assert!(front.iter().skip(1).all(|e| e.attempts == 0));
                for entry in &front {
                    assert_eq!(entry.body, body_of(&entry.event_id), "{context}");
                }
            }
            _ => {
                // A clean stop and start: acks held in memory are written on drop.
                drop(store);
                store = dir.open();
            }
        }
        check(&store, &model, step, seed);
    }
}

fn the_outbox_behaves_as_plain_queues_under_random_operations(new_place: fn() -> Place) {
    for _ in 0..3 {
        let seed = fastrand::u64(..);
        println!("outbox model: seed {seed}");
        run_model(new_place, seed, 600);
    }
}

/// An id as providers write them: mostly numbers (ConnectWise), some that only look like one.
fn random_object_id(rng: &mut fastrand::Rng) -> String {
    let n = rng.u64(..60);
    match rng.u32(..6) {
        0 => format!("0{n}"),
        1 => format!("id-{n}"),
        2 => format!("{}", u64::MAX - n),
        _ => n.to_string(),
    }
}

fn the_seen_set_behaves_as_a_map_of_latest_dates_under_random_commits_and_prunes(
    new_place: fn() -> Place,
) {
    for _ in 0..3 {
        let seed = fastrand::u64(..);
        println!("seen model: seed {seed}");
        let mut rng = fastrand::Rng::with_seed(seed);
        let dir = new_place();
        let k = key("cw", "contacts");
        let mut store = dir.open();
        let mut model: BTreeMap<String, i64> = BTreeMap::new();
        let mut clock = 0i64;
        for step in 0..300 {
            let context = format!("seed {seed}, step {step}");
            clock += rng.i64(0..3);
            let mut commit = PageCommit::new(k.clone());
            for _ in 0..rng.usize(0..20) {
                let id = random_object_id(&mut rng);
                let seconds = clock - rng.i64(0..5);
                commit.seen.push((id.clone(), at(seconds)));
                let known = model.entry(id).or_insert(seconds);
                *known = (*known).max(seconds);
            }
            if rng.u32(..8) == 0 {
                let cutoff = clock - rng.i64(0..6);
                commit.prune_seen_before = Some(at(cutoff));
                model.retain(|_, seconds| *seconds >= cutoff);
            }
            store.commit(commit).unwrap();
            if rng.u32(..20) == 0 {
                drop(store);
                store = dir.open();
            }
            let ids: Vec<String> = (0..30).map(|_| random_object_id(&mut rng)).collect();
            let asked: Vec<&str> = ids.iter().map(String::as_str).collect();
            let expected: Vec<_> = ids.iter().map(|id| model.get(id).map(|s| at(*s))).collect();
            assert_eq!(store.seen_dates(&k, &asked).unwrap(), expected, "{context}");
            assert_eq!(
                store.seen_count(&k).unwrap(),
                model.len() as u64,
                "{context}"
            );
        }
    }
}

on_both_engines!(
    the_outbox_behaves_as_plain_queues_under_random_operations,
    the_seen_set_behaves_as_a_map_of_latest_dates_under_random_commits_and_prunes,
);
