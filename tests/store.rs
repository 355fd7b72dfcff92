//! The durable store, on both engines: durability across reopen, atomic page commits, queue
//! order through ack / dead letter / replay, counters, the seen set. sled runs in temporary
//! directories, PostgreSQL on a throwaway server (`support/postgres.rs`), a database per test.
//! The sled-only tests are those about its files and locks: disk space given back and the seen
//! set's size on disk, opening a path that is a file, the lock within and across processes,
//! `kill -9` of a writing process (`store/processes.rs`), and the dead-letter summary's test
//! (it corrupts a stored sled value).

mod support;

use std::collections::HashMap;
use std::ops::Deref;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use pollerd::store::{
    NewNotification, OutboxEntry, PageCommit, PostgresStore, ResourceKey, SledStore, Store,
    StoreError, StoreStats,
};

/// Runs each named test (a `fn(fn() -> Place)`) once per engine: `sled_engine::NAME`, and
/// `postgres_engine::NAME`, ignored unless asked for (`.ci/run` asks where PostgreSQL is
/// installed; see `support/postgres.rs`).
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {
        mod sled_engine {
            $(
                #[test]
                fn $name() {
                    super::$name(crate::Place::sled)
                }
            )*
        }
        mod postgres_engine {
            $(
                #[test]
                #[ignore = "needs PostgreSQL 15: cargo test --test store -- --ignored postgres_engine"]
                fn $name() {
                    super::$name(crate::Place::postgres)
                }
            )*
        }
    };
}

/// Tests that run a second process: the lock across processes and `kill -9`.
#[path = "store/processes.rs"]
mod processes;

/// Queues that span several stored runs: acks, failures and dead letters at the head only.
#[path = "store/outbox.rs"]
mod outbox;

/// The outbox against plain queues in memory, under random operations.
#[path = "store/model.rs"]
mod model;

/// Idle commits held back in memory and written in batches.
#[path = "store/idle.rs"]
mod idle;

/// The PostgreSQL engine's own: concurrent schema creation, errors, the daemon on it.
#[path = "store/postgres_only.rs"]
mod postgres_engine_only;

const CACHE_BYTES: u64 = 16 * 1024 * 1024;
const POSTGRES_POOL_SIZE: usize = 4;

fn open(dir: &Path) -> SledStore {
    SledStore::open(dir, CACHE_BYTES).expect("open the store")
}

/// Where one test's store lives, so that it can be opened again.
enum Place {
    Sled(tempfile::TempDir),
    Postgres(String),
}

impl Place {
    fn sled() -> Place {
        Place::Sled(tempfile::tempdir().unwrap())
    }

    fn postgres() -> Place {
        Place::Postgres(support::postgres::fresh_database())
    }

    fn open(&self) -> Opened {
        match self {
            Place::Sled(dir) => Opened::Sled(open(dir.path())),
            Place::Postgres(url) => Opened::Postgres(
                PostgresStore::open(url, POSTGRES_POOL_SIZE).expect("open the PostgreSQL store"),
            ),
        }
    }
}

/// An open store of either engine: the contract through `Deref`, and the few inspection
/// methods both engines have beside it.
#[allow(clippy::large_enum_variant)] // one or two per test: their size does not matter
enum Opened {
    Sled(SledStore),
    Postgres(PostgresStore),
}

impl Deref for Opened {
    type Target = dyn Store;
    fn deref(&self) -> &(dyn Store + 'static) {
        match self {
            Opened::Sled(store) => store,
            Opened::Postgres(store) => store,
        }
    }
}

/// A store of either engine as the contract, for helpers that take both.
trait AsStore {
    fn as_store(&self) -> &dyn Store;
}

impl AsStore for SledStore {
    fn as_store(&self) -> &dyn Store {
        self
    }
}

impl AsStore for Opened {
    fn as_store(&self) -> &dyn Store {
        &**self
    }
}

impl Opened {
    fn seen_count(&self, key: &ResourceKey) -> Result<u64, StoreError> {
        match self {
            Opened::Sled(store) => store.seen_count(key),
            Opened::Postgres(store) => store.seen_count(key),
        }
    }

    fn watermarks(&self) -> Result<Vec<(ResourceKey, DateTime<Utc>)>, StoreError> {
        match self {
            Opened::Sled(store) => store.watermarks(),
            Opened::Postgres(store) => store.watermarks(),
        }
    }

    fn forget_resource(&self, key: &ResourceKey) -> Result<(), StoreError> {
        match self {
            Opened::Sled(store) => store.forget_resource(key),
            Opened::Postgres(store) => store.forget_resource(key),
        }
    }
}

fn key(instance: &str, resource: &str) -> ResourceKey {
    ResourceKey::new(instance, resource)
}

fn at(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_767_225_600 + seconds, 0).unwrap() // 2026-01-01T00:00:00Z + seconds
}

fn notification(event_id: &str, created_at: DateTime<Utc>) -> NewNotification {
    NewNotification {
        event_id: event_id.to_string(),
        body: format!(r#"{{"id":"{event_id}","message":{{"raw":[]}}}}"#).into_bytes(),
        created_at,
    }
}

fn page(key: &ResourceKey, event_ids: &[&str], watermark: DateTime<Utc>) -> PageCommit {
    let mut commit = PageCommit::new(key.clone());
    commit.notifications = event_ids
        .iter()
        .map(|id| notification(id, watermark))
        .collect();
    commit.watermark = Some(watermark);
    commit
}

/// Reads the whole queue the way delivery does: head, ack, head, …
fn drain(store: &impl AsStore, key: &ResourceKey) -> Vec<OutboxEntry> {
    let store = store.as_store();
    let mut entries = Vec::new();
    while let Some(head) = store.outbox_head(key).unwrap() {
        assert!(entries.len() < 100_000, "queue of {key} does not drain");
        store.ack(key, head.seq).unwrap();
        entries.push(head);
    }
    entries
}

fn event_ids(entries: &[OutboxEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.event_id.as_str()).collect()
}

fn a_commit_is_visible_after_drop_and_reopen(new_place: fn() -> Place) {
    let dir = new_place();
    let contacts = key("cw", "contacts");
    let mut commit = page(&contacts, &["e1", "e2", "e3"], at(60));
    commit.seen = vec![("14682".into(), at(10)), ("14683".into(), at(20))];
    let expected_bodies: Vec<Vec<u8>> = commit
        .notifications
        .iter()
        .map(|n| n.body.clone())
        .collect();
    {
        let store = dir.open();
        store.commit(commit).unwrap();
    }
    let store = dir.open();
    assert_eq!(store.watermark(&contacts).unwrap(), Some(at(60)));
    assert_eq!(
        store.watermarks().unwrap(),
        vec![(contacts.clone(), at(60))]
    );
    assert_eq!(
        store
            .seen_dates(&contacts, &["14683", "nope", "14682"])
            .unwrap(),
        vec![Some(at(20)), None, Some(at(10))]
    );
    assert_eq!(store.stats().unwrap().outbox_depth, 3);
    let entries = drain(&store, &contacts);
    assert_eq!(event_ids(&entries), ["e1", "e2", "e3"]);
    let bodies: Vec<Vec<u8>> = entries.iter().map(|e| e.body.clone()).collect();
    assert_eq!(bodies, expected_bodies);
    assert!(
        entries
            .iter()
            .all(|e| e.attempts == 0 && e.created_at == at(60))
    );
}

fn watermarks_keep_millisecond_precision(new_place: fn() -> Place) {
    let dir = new_place();
    let store = dir.open();
    let k = key("cw", "tickets");
    let precise = Utc.timestamp_millis_opt(1_534_778_974_827).unwrap();
    store.commit(page(&k, &[], precise)).unwrap();
    assert_eq!(store.watermark(&k).unwrap(), Some(precise));
}

fn an_invalid_commit_lands_nothing(new_place: fn() -> Place) {
    let dir = new_place();
    let store = dir.open();
    let k = key("cw", "contacts");
    // The second notification is refused, so neither it, the first one, the seen date nor the
    // watermark may appear.
    let mut commit = page(&k, &["good", ""], at(60));
    commit.seen = vec![("1".into(), at(5))];
    let error = store.commit(commit).unwrap_err();
    assert!(matches!(error, StoreError::InvalidCommit { .. }), "{error}");
    assert!(error.to_string().contains("cw/contacts"), "{error}");
    assert_eq!(store.watermark(&k).unwrap(), None);
    assert_eq!(store.outbox_head(&k).unwrap(), None);
    assert_eq!(store.seen_dates(&k, &["1"]).unwrap(), vec![None]);
    assert_eq!(store.stats().unwrap(), StoreStats::default());
}

fn a_concurrent_reader_never_sees_half_a_page(new_place: fn() -> Place) {
    let dir = new_place();
    let store = std::sync::Arc::new(dir.open());
    let k = key("cw", "contacts");
    const PAGES: i64 = 60;
    // The writer starts once the reader is reading, so the two overlap.
    let (reader_started, start_writing) = std::sync::mpsc::channel::<()>();
    let writer = {
        let (store, k) = (store.clone(), k.clone());
        std::thread::spawn(move || {
            start_writing.recv().unwrap();
            for i in 1..=PAGES {
                // Page i: queue grows to 2·i entries, "obj-i" is seen, watermark becomes at(i).
                let ids = [format!("p{i}a"), format!("p{i}b")];
                let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                let mut commit = page(&k, &ids, at(i));
                commit.seen = vec![(format!("obj-{i}"), at(i))];
                store.commit(commit).unwrap();
            }
        })
    };
    let pages_by_watermark = || {
        store
            .watermark(&k)
            .unwrap()
            .map_or(0, |w| (w - at(0)).num_seconds())
    };
    let seen = |page: i64| {
        let id = format!("obj-{page}");
        store.seen_dates(&k, &[&id]).unwrap()[0].is_some()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let finished = writer.is_finished();
        // Each pair of reads goes from the part written "first" to the part written "last"
        // and back, so a page split in two would show in one of them.
        let pages = pages_by_watermark();
        assert!(
            pages == 0 || seen(pages),
            "watermark of page {pages} without its seen id"
        );
        let depth = store.outbox_depth(&k).unwrap() as i64;
        assert!(
            depth >= 2 * pages,
            "watermark of page {pages}, {depth} entries"
        );
        let next = pages + 1;
        if next <= PAGES && seen(next) {
            let pages = pages_by_watermark();
            assert!(
                pages >= next,
                "seen id of page {next} with the watermark of page {pages}"
            );
        }
        let depth = store.outbox_depth(&k).unwrap() as i64;
        let pages = pages_by_watermark();
        assert!(
            2 * pages >= depth,
            "{depth} entries with the watermark of page {pages}"
        );
        let _ = reader_started.send(());
        if finished {
            break;
        }
        assert!(Instant::now() < deadline, "writer did not finish");
    }
    writer.join().unwrap();
    assert_eq!(store.outbox_depth(&k).unwrap(), 2 * PAGES as u64);
    assert!(seen(PAGES));
}

fn queues_are_fifo_per_key_across_many_commits(new_place: fn() -> Place) {
    let dir = new_place();
    let store = dir.open();
    let (contacts, tickets, idle) = (
        key("cw", "contacts"),
        key("cw", "tickets"),
        key("cw", "idle"),
    );
    let mut expected: HashMap<ResourceKey, Vec<String>> = HashMap::new();
    for round in 0..20 {
        for k in [&contacts, &tickets] {
            let ids: Vec<String> = (0..3)
                .map(|n| format!("{}-{round}-{n}", k.resource))
                .collect();
            let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            store.commit(page(k, &refs, at(round))).unwrap();
            expected.entry(k.clone()).or_default().extend(ids);
        }
    }
    store.commit(page(&idle, &[], at(0))).unwrap(); // watermark only: no queue
    assert_eq!(
        store.queues().unwrap(),
        vec![contacts.clone(), tickets.clone()]
    );
    assert_eq!(store.outbox_depth(&contacts).unwrap(), 60);
    assert_eq!(store.outbox_depth(&idle).unwrap(), 0);

    // ack removes the head and only the head.
    let head = store.outbox_head(&tickets).unwrap().unwrap();
    assert_eq!(head.event_id, "tickets-0-0");
    store.ack(&tickets, head.seq).unwrap();
    store.ack(&tickets, head.seq).unwrap(); // a repeated ack changes nothing
    assert_eq!(
        store.outbox_head(&tickets).unwrap().unwrap().event_id,
        "tickets-0-1"
    );
    assert_eq!(store.outbox_depth(&tickets).unwrap(), 59);

    let drained = drain(&store, &contacts);
    assert_eq!(event_ids(&drained), expected[&contacts]);
    assert!(drained.windows(2).all(|pair| pair[0].seq < pair[1].seq));
    assert_eq!(store.queues().unwrap(), vec![tickets.clone()]);
    assert_eq!(event_ids(&drain(&store, &tickets)), expected[&tickets][1..]);
    assert!(store.queues().unwrap().is_empty());
}

fn new_entries_after_reopen_queue_behind_the_old_ones(new_place: fn() -> Place) {
    let dir = new_place();
    let k = key("cw", "contacts");
    for (round, id) in ["before-1", "before-2"].iter().enumerate() {
        let store = dir.open();
        store.commit(page(&k, &[id], at(round as i64))).unwrap();
    }
    let store = dir.open();
    store.commit(page(&k, &["after"], at(9))).unwrap();
    assert_eq!(
        event_ids(&drain(&store, &k)),
        ["before-1", "before-2", "after"]
    );
}

fn record_failure_persists_across_reopen(new_place: fn() -> Place) {
    let dir = new_place();
    let k = key("cw", "contacts");
    let long_error = "x".repeat(2_000);
    let seq = {
        let store = dir.open();
        store.commit(page(&k, &["e1", "e2"], at(0))).unwrap();
        let head = store.outbox_head(&k).unwrap().unwrap();
        store
            .record_failure(&k, head.seq, 1, at(4), "HTTP 503")
            .unwrap();
        store
            .record_failure(&k, head.seq, 2, at(20), &long_error)
            .unwrap();
        head.seq
    };
    let store = dir.open();
    let head = store.outbox_head(&k).unwrap().unwrap();
    assert_eq!((head.seq, head.event_id.as_str()), (seq, "e1"));
    assert_eq!((head.attempts, head.next_attempt_at), (2, Some(at(20))));
    assert_eq!(head.last_error.as_deref(), Some(&long_error[..512]));
    assert_eq!(store.outbox_depth(&k).unwrap(), 2);
    let error = store
        .record_failure(&k, seq + 1_000_000, 1, at(1), "x")
        .unwrap_err();
    assert!(matches!(error, StoreError::NotInOutbox { .. }), "{error}");
}

fn dead_letter_moves_the_head_and_replay_goes_to_the_tail(new_place: fn() -> Place) {
    let dir = new_place();
    let store = dir.open();
    let k = key("cw", "contacts");
    store.commit(page(&k, &["e1", "e2", "e3"], at(0))).unwrap();
    let head = store.outbox_head(&k).unwrap().unwrap();
    let response = format!("{{\"error\":\"{}\"}}", "é".repeat(400)); // 800+ bytes, 2-byte chars
    store
        .dead_letter(&k, head.seq, 10, Some(410), &response)
        .unwrap();

    assert_eq!(store.outbox_head(&k).unwrap().unwrap().event_id, "e2");
    let letters = store.dead_letters().unwrap();
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!((letter.event_id.as_str(), &letter.key), ("e1", &k));
    assert_eq!((letter.attempts, letter.last_status), (10, Some(410)));
    assert_eq!(letter.body, head.body);
    assert!(letter.last_error.len() <= 512 && response.starts_with(&letter.last_error));
    assert!(letter.last_error.len() > 500, "snippet cut too short");
    assert_eq!(
        store.stats().unwrap(),
        StoreStats {
            outbox_depth: 2,
            dead_letters: 1,
            corrupt_set_aside: 0
        }
    );

    assert!(!store.replay_dead_letter("no-such-id").unwrap());
    assert!(store.replay_dead_letter(&letter.id).unwrap());
    assert!(store.dead_letters().unwrap().is_empty());
    let queue = drain(&store, &k);
    assert_eq!(event_ids(&queue), ["e2", "e3", "e1"]);
    let replayed = &queue[2];
    assert_eq!((replayed.attempts, replayed.next_attempt_at), (0, None));
    assert_eq!(
        (&replayed.body, replayed.created_at),
        (&head.body, head.created_at)
    );
    assert!(replayed.seq > queue[1].seq);
}

fn dead_letters_list_drop_and_counters_survive_reopen(new_place: fn() -> Place) {
    let dir = new_place();
    let (contacts, tickets) = (key("cw", "contacts"), key("other", "tickets"));
    {
        let store = dir.open();
        store
            .commit(page(&contacts, &["c1", "c2", "c3"], at(0)))
            .unwrap();
        store.commit(page(&tickets, &["t1", "t2"], at(0))).unwrap();
        let head = store.outbox_head(&contacts).unwrap().unwrap();
        store
            .dead_letter(&contacts, head.seq, 3, None, "connection refused")
            .unwrap();
        let head = store.outbox_head(&tickets).unwrap().unwrap();
        store
            .dead_letter(&tickets, head.seq, 1, Some(400), "bad request")
            .unwrap();
        let head = store.outbox_head(&tickets).unwrap().unwrap();
        store.ack(&tickets, head.seq).unwrap();
        assert_eq!(
            store.stats().unwrap(),
            StoreStats {
                outbox_depth: 2,
                dead_letters: 2,
                corrupt_set_aside: 0
            }
        );
    }
    let store = dir.open();
    assert_eq!(
        store.stats().unwrap(),
        StoreStats {
            outbox_depth: 2,
            dead_letters: 2,
            corrupt_set_aside: 0
        }
    );
    assert_eq!(store.queues().unwrap(), vec![contacts.clone()]);
    let mut letters = store.dead_letters().unwrap();
    letters.sort_by(|a, b| a.event_id.cmp(&b.event_id));
    let summary: Vec<_> = letters
        .iter()
        .map(|l| {
            (
                l.event_id.as_str(),
                l.key.clone(),
                l.last_status,
                l.last_error.as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("c1", contacts.clone(), None, "connection refused"),
            ("t1", tickets.clone(), Some(400), "bad request"),
        ]
    );
    assert!(store.drop_dead_letter(&letters[0].id).unwrap());
    assert!(!store.drop_dead_letter(&letters[0].id).unwrap());
    drop(store);
    let store = dir.open();
    assert_eq!(
        store.stats().unwrap(),
        StoreStats {
            outbox_depth: 2,
            dead_letters: 1,
            corrupt_set_aside: 0
        }
    );
    assert_eq!(store.dead_letters().unwrap()[0].event_id, "t1");
}

on_both_engines!(
    a_commit_is_visible_after_drop_and_reopen,
    watermarks_keep_millisecond_precision,
    an_invalid_commit_lands_nothing,
    a_concurrent_reader_never_sees_half_a_page,
    queues_are_fifo_per_key_across_many_commits,
    new_entries_after_reopen_queue_behind_the_old_ones,
    record_failure_persists_across_reopen,
    dead_letter_moves_the_head_and_replay_goes_to_the_tail,
    dead_letters_list_drop_and_counters_survive_reopen,
    seen_dates_follow_the_latest_emission_and_pruning,
    seen_dates_of_many_unpruned_pages_survive_a_reopen,
    forget_resource_drops_polling_state_but_not_the_outbox,
);

/// Dead-letters every entry queued for `key`.
fn bury_all(store: &SledStore, key: &ResourceKey) {
    while let Some(head) = store.outbox_head(key).unwrap() {
        store
            .dead_letter(key, head.seq, 5, Some(500), "HTTP 500")
            .unwrap();
    }
}

#[test]
fn the_dead_letter_summary_follows_every_change_and_reads_the_same_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (contacts, tickets) = (key("cw", "contacts"), key("other", "tickets"));
    let started = Utc::now().timestamp();
    let store = open(dir.path());
    store
        .commit(page(&contacts, &["c1", "c2", "c3", "c4"], at(0)))
        .unwrap();
    store.commit(page(&tickets, &["t1", "t2"], at(0))).unwrap();
    bury_all(&store, &contacts);
    bury_all(&store, &tickets);
    let counts = |store: &SledStore| {
        let summary = store.dead_letter_summary().unwrap();
        let of = |k: &ResourceKey| summary.of(k).map(|q| (q.count, q.corrupt));
        (
            summary.total(),
            of(&contacts),
            of(&tickets),
            summary.corrupt(),
        )
    };
    assert_eq!(counts(&store), (6, Some((4, 0)), Some((2, 0)), 0));
    let summary = store.dead_letter_summary().unwrap();
    let (oldest, newest) = (summary.oldest().unwrap(), summary.newest().unwrap());
    assert!(
        started <= oldest.timestamp() && oldest <= newest,
        "{summary:?}"
    );
    assert!(newest.timestamp() <= Utc::now().timestamp(), "{summary:?}");

    assert!(store.replay_dead_letter("c1").unwrap());
    assert!(store.drop_dead_letter("t1").unwrap());
    assert_eq!(counts(&store), (4, Some((3, 0)), Some((1, 0)), 0));
    // Unreadable, its queue too: a corrupt entry of no known queue, before and after the
    // listing sets it aside.
    assert!(
        store
            .overwrite_dead_letter_for_tests("c2", b"\x04\x00")
            .unwrap()
    );
    let unknown = |store: &SledStore| {
        let summary = store.dead_letter_summary().unwrap();
        summary
            .queues
            .iter()
            .find(|q| q.key.is_none())
            .map(|q| (q.count, q.corrupt))
    };
    assert_eq!(counts(&store), (4, Some((2, 0)), Some((1, 0)), 1));
    assert_eq!(unknown(&store), Some((1, 1)));
    assert_eq!(store.corrupt_entries().unwrap().len(), 1);
    assert_eq!(
        (counts(&store), unknown(&store)),
        ((4, Some((2, 0)), Some((1, 0)), 1), Some((1, 1)))
    );
    // The replayed letter dies again: counted once more.
    bury_all(&store, &contacts);
    assert_eq!(counts(&store), (5, Some((3, 0)), Some((1, 0)), 1));

    let before = store.dead_letter_summary().unwrap();
    assert_eq!(store.stats().unwrap().dead_letters, before.total());
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.dead_letter_summary().unwrap(), before);
    assert_eq!(store.stats().unwrap().dead_letters, 5);
}

fn seen_dates_follow_the_latest_emission_and_pruning(new_place: fn() -> Place) {
    let dir = new_place();
    let store = dir.open();
    let k = key("cw", "contacts");
    let mut first = PageCommit::new(k.clone());
    first.seen = vec![
        ("a".into(), at(1)),
        ("b".into(), at(1)),
        ("c".into(), at(1)),
    ];
    store.commit(first).unwrap();
    // "a" is re-emitted later (twice in one page), "c" is re-emitted but still too old.
    let mut second = PageCommit::new(k.clone());
    second.seen = vec![
        ("a".into(), at(5)),
        ("c".into(), at(2)),
        ("a".into(), at(7)),
    ];
    second.prune_seen_before = Some(at(3));
    store.commit(second).unwrap();
    assert_eq!(
        store.seen_dates(&k, &["a", "b", "c"]).unwrap(),
        vec![Some(at(7)), None, None]
    );
    assert_eq!(store.seen_count(&k).unwrap(), 1);
    // The old index entries of "a" must be gone too: pruning past 7 s empties the set.
    let mut third = PageCommit::new(k.clone());
    third.prune_seen_before = Some(at(8));
    store.commit(third).unwrap();
    assert_eq!(store.seen_count(&k).unwrap(), 0);
}

fn seen_dates_of_many_unpruned_pages_survive_a_reopen(new_place: fn() -> Place) {
    // A run that fails midway has committed pages but not pruned: its retry, possibly after a
    // restart, must still find every id at its latest date.
    let dir = new_place();
    let k = key("cw", "contacts");
    {
        let store = dir.open();
        for page in 0..5i64 {
            let mut commit = PageCommit::new(k.clone());
            commit.seen = vec![
                (format!("id-{page}"), at(page)),
                ("moving".into(), at(10 + page)),
            ];
            store.commit(commit).unwrap();
        }
    }
    let store = dir.open();
    assert_eq!(
        store
            .seen_dates(&k, &["id-0", "id-4", "moving", "never"])
            .unwrap(),
        vec![Some(at(0)), Some(at(4)), Some(at(14)), None]
    );
    assert_eq!(store.seen_count(&k).unwrap(), 6);
    // The run finally completes: pruning keeps what the next lower bound still needs.
    let mut last = PageCommit::new(k.clone());
    last.prune_seen_before = Some(at(3));
    store.commit(last).unwrap();
    drop(store);
    let store = dir.open();
    assert_eq!(
        store.seen_dates(&k, &["id-2", "id-3", "moving"]).unwrap(),
        vec![None, Some(at(3)), Some(at(14))]
    );
    assert_eq!(store.seen_count(&k).unwrap(), 3);
}

fn forget_resource_drops_polling_state_but_not_the_outbox(new_place: fn() -> Place) {
    let dir = new_place();
    let store = dir.open();
    let (k, other) = (key("cw", "contacts"), key("cw", "tickets"));
    let mut commit = page(&k, &["e1"], at(5));
    commit.seen = vec![("1".into(), at(5))];
    store.commit(commit.clone()).unwrap();
    commit.key = other.clone();
    commit.notifications.clear();
    store.commit(commit).unwrap();
    store.forget_resource(&k).unwrap();
    assert_eq!(store.watermark(&k).unwrap(), None);
    assert_eq!(store.seen_count(&k).unwrap(), 0);
    assert_eq!(store.outbox_head(&k).unwrap().unwrap().event_id, "e1");
    assert_eq!(store.watermark(&other).unwrap(), Some(at(5)));
    assert_eq!(store.seen_count(&other).unwrap(), 1);
}

/// Bytes allocated on disk under `dir`, as `du` counts them (sled's files may be sparse).
fn size_on_disk(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                size_on_disk(&entry.path())
            } else {
                meta.blocks() * 512
            }
        })
        .sum()
}

#[test]
fn delivered_bodies_give_their_disk_space_back() {
    // 80 MiB of bodies that do not compress, acknowledged one by one as delivery does: once
    // the queue is empty the state directory must not still carry them.
    const BODIES: usize = 400;
    const BODY_BYTES: usize = 200 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let k = key("cw", "contacts");
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut noise = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let bodies: Vec<Vec<u8>> = (0..BODIES)
        .map(|_| {
            (0..BODY_BYTES / 8)
                .flat_map(|_| noise().to_le_bytes())
                .collect()
        })
        .collect();
    {
        let store = open(dir.path());
        for (page, chunk) in bodies.chunks(50).enumerate() {
            let mut commit = PageCommit::new(k.clone());
            commit.notifications = chunk
                .iter()
                .enumerate()
                .map(|(i, body)| NewNotification {
                    event_id: format!("e{page}-{i}"),
                    body: body.clone(),
                    created_at: at(page as i64),
                })
                .collect();
            store.commit(commit).unwrap();
        }
        let queued = size_on_disk(dir.path());
        assert!(
            queued > (BODIES * BODY_BYTES) as u64,
            "{queued} bytes for the queued bodies"
        );
        let delivered = drain(&store, &k);
        assert_eq!(delivered.len(), BODIES);
        assert!(
            delivered
                .iter()
                .zip(&bodies)
                .all(|(entry, body)| &entry.body == body)
        );
    }
    let after = size_on_disk(dir.path());
    assert!(
        after < 8 << 20,
        "{after} bytes left on disk after every body was acknowledged"
    );
    // And nothing the queue needs went with them.
    let store = open(dir.path());
    assert_eq!(store.stats().unwrap().outbox_depth, 0);
}

#[test]
fn the_seen_set_stays_bounded_under_a_long_stream_of_updates() {
    const UPDATES: u64 = 100_000;
    const DISTINCT_IDS: u64 = 1_000;
    const PAGE: u64 = 100;
    // One update per second: the window spans 8 pages, so entries outlive several commits.
    const WINDOW_SECONDS: i64 = 800;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let k = key("cw", "contacts");
    let started = Instant::now();
    let mut model: HashMap<String, DateTime<Utc>> = HashMap::new();
    let mut random = 0x2545_f491_4f6c_dd1d_u64; // xorshift: ids in no particular order
    let mut sizes = Vec::new();
    for page_start in (0..UPDATES).step_by(PAGE as usize) {
        let mut commit = PageCommit::new(k.clone());
        for update in page_start..page_start + PAGE {
            random ^= random << 13;
            random ^= random >> 7;
            random ^= random << 17;
            let id = format!("obj-{}", random % DISTINCT_IDS);
            model.insert(id.clone(), at(update as i64));
            commit.seen.push((id, at(update as i64)));
        }
        let cutoff = at((page_start + PAGE) as i64 - WINDOW_SECONDS);
        commit.prune_seen_before = Some(cutoff);
        store.commit(commit).unwrap();
        model.retain(|_, date| *date >= cutoff);
        if (page_start / PAGE) % 200 == 199 {
            assert_eq!(store.seen_count(&k).unwrap(), model.len() as u64);
            sizes.push(size_on_disk(dir.path()));
        }
    }
    let kept = store.seen_count(&k).unwrap();
    assert_eq!(kept, model.len() as u64);
    assert!(
        kept <= WINDOW_SECONDS as u64,
        "{kept} seen entries for a {WINDOW_SECONDS}-update window"
    );
    let sample: Vec<String> = (0..DISTINCT_IDS)
        .step_by(7)
        .map(|n| format!("obj-{n}"))
        .collect();
    let sample: Vec<&str> = sample.iter().map(String::as_str).collect();
    let expected: Vec<Option<DateTime<Utc>>> =
        sample.iter().map(|id| model.get(*id).copied()).collect();
    assert_eq!(store.seen_dates(&k, &sample).unwrap(), expected);
    store.flush().unwrap();
    sizes.push(size_on_disk(dir.path()));
    println!(
        "seen set: {kept} entries kept after {UPDATES} updates in {:?}; store size on disk \
         at each fifth of the run: {sizes:?} bytes",
        started.elapsed()
    );
    let first = sizes[0];
    let last = *sizes.last().unwrap();
    assert!(
        last <= 2 * first + 2 * 1024 * 1024,
        "store grew from {first} to {last} bytes over the run"
    );
}

#[test]
fn opening_from_a_path_that_is_a_file_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-directory");
    std::fs::write(&file, b"x").unwrap();
    let error = SledStore::open(&file, CACHE_BYTES)
        .err()
        .expect("open must fail");
    assert!(
        error.to_string().contains(&*file.to_string_lossy()),
        "{error}"
    );
}

fn assert_locked(error: StoreError, dir: &Path) {
    let text = error.to_string();
    assert!(matches!(error, StoreError::Locked { .. }), "{text}");
    assert!(text.contains(&*dir.to_string_lossy()), "{text}");
    assert!(text.contains("is another pollerd running?"), "{text}");
}

#[test]
fn a_second_open_in_the_same_process_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path());
    assert_locked(
        SledStore::open(dir.path(), CACHE_BYTES).err().unwrap(),
        dir.path(),
    );
    drop(first);
    open(dir.path()); // free again once the holder is gone
}
