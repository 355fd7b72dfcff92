//! Corrupt values in a real store: each kind is set aside with its raw bytes, listed, droppable,
//! never replayed, and the queue behind it is delivered in order.

use std::path::Path;

use chrono::{DateTime, TimeZone, Utc};

use crate::store::codec;
use crate::store::{
    CorruptEntry, NewNotification, PageCommit, ResourceKey, SledStore, Store, StoreError,
};

const CACHE_BYTES: u64 = 8 << 20;

fn open(dir: &Path) -> SledStore {
    SledStore::open(dir, CACHE_BYTES).expect("open the store")
}

fn key() -> ResourceKey {
    ResourceKey::new("cw", "contacts")
}

fn created() -> DateTime<Utc> {
    Utc.timestamp_opt(1_767_225_600, 0).unwrap()
}

/// One commit: its notifications form one run.
fn commit(store: &SledStore, event_ids: &[&str]) {
    let mut commit = PageCommit::new(key());
    commit.notifications = event_ids
        .iter()
        .map(|id| NewNotification {
            event_id: id.to_string(),
            body: format!(r#"{{"id":"{id}"}}"#).into_bytes(),
            created_at: created(),
        })
        .collect();
    store.commit(commit).unwrap();
}

/// Delivers the whole queue the way delivery does (front, ack) and returns the event ids,
/// checking each body.
fn drain(store: &SledStore) -> Vec<String> {
    let mut delivered = Vec::new();
    while let Some(head) = store.outbox_head(&key()).unwrap() {
        assert!(delivered.len() < 1_000, "the queue does not drain");
        assert_eq!(
            head.body,
            format!(r#"{{"id":"{}"}}"#, head.event_id).into_bytes()
        );
        store.ack(&key(), head.seq).unwrap();
        delivered.push(head.event_id);
    }
    delivered
}

fn only_corrupt_entry(store: &SledStore) -> CorruptEntry {
    let mut entries = store.corrupt_entries().unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    entries.pop().unwrap()
}

/// The stored value of the queue's first run.
fn first_run(store: &SledStore) -> Vec<u8> {
    let engine = store.engine().unwrap();
    let prefix = codec::resource_prefix(codec::TAG_OUTBOX, &key());
    let (_, value) = engine.db.scan_prefix(prefix).next().unwrap().unwrap();
    value.to_vec()
}

/// Dead-letters every entry of the queue, as delivery does when a receiver answers 410.
fn bury_all(store: &SledStore) {
    while let Some(head) = store.outbox_head(&key()).unwrap() {
        store
            .dead_letter(&key(), head.seq, 10, Some(410), "410 Gone")
            .unwrap();
    }
}

#[test]
fn a_head_run_damaged_while_open_goes_aside_whole_and_the_queue_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    commit(&store, &["c1", "c2"]);
    commit(&store, &["g1"]);
    commit(&store, &["g2"]);
    // A run claiming 9 entries in 5 bytes.
    let garbage = b"\x04\x00\x00\x00\x09";
    assert!(
        store
            .overwrite_first_run_for_tests(&key(), garbage)
            .unwrap()
    );

    let front = store.outbox_front(&key(), 10).unwrap();
    let ids: Vec<&str> = front.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids, ["g1", "g2"]);
    assert_eq!(store.outbox_depth(&key()).unwrap(), 2);
    let entry = only_corrupt_entry(&store);
    assert!(entry.id.starts_with("corrupt-"), "{entry:?}");
    assert_eq!((entry.key.as_ref(), entry.size), (Some(&key()), 5));
    assert!(entry.reason.contains("outbox run"), "{entry:?}");
    assert!(entry.reason.contains("9 entries in 5 bytes"), "{entry:?}");
    assert_eq!(
        store.corrupt_entry_bytes(&entry.id).unwrap().unwrap(),
        garbage
    );
    let stats = store.stats().unwrap();
    assert_eq!(
        (
            stats.outbox_depth,
            stats.dead_letters,
            stats.corrupt_set_aside
        ),
        (2, 1, 1)
    );
    assert_eq!(drain(&store), ["g1", "g2"]);
    assert!(store.dead_letters().unwrap().is_empty());

    // Still aside after a reopen; it cannot be replayed, it can be dropped.
    drop(store);
    let store = open(dir.path());
    assert_eq!(only_corrupt_entry(&store), entry);
    let error = store.replay_dead_letter(&entry.id).unwrap_err();
    assert!(
        matches!(&error, StoreError::CorruptDeadLetter { id, .. } if *id == entry.id),
        "{error}"
    );
    assert!(store.drop_dead_letter(&entry.id).unwrap());
    assert!(store.corrupt_entries().unwrap().is_empty());
    assert_eq!(store.stats().unwrap().dead_letters, 0);
}

#[test]
fn a_run_found_unreadable_at_open_goes_aside_and_the_store_opens() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        commit(&store, &["c1"]);
        commit(&store, &["g1", "g2"]);
        assert!(
            store
                .overwrite_first_run_for_tests(&key(), &[9, 1, 2])
                .unwrap()
        );
    }
    let store = open(dir.path());
    assert_eq!(store.outbox_depth(&key()).unwrap(), 2);
    let entry = only_corrupt_entry(&store);
    assert!(entry.reason.contains("version 9"), "{entry:?}");
    assert_eq!(entry.key, Some(key()));
    assert_eq!(store.stats().unwrap().corrupt_set_aside, 1);
    assert_eq!(drain(&store), ["g1", "g2"]);
}

#[test]
fn a_head_entry_that_does_not_decode_goes_aside_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    commit(&store, &["b1", "g1", "g2"]);
    let mut value = first_run(&store);
    // Entry 0's event id length (the last 4 bytes of its slot) points past the value.
    let id_len_at = 5 + 8 + 24 + 4;
    value[id_len_at..id_len_at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(store.overwrite_first_run_for_tests(&key(), &value).unwrap());

    assert_eq!(drain(&store), ["g1", "g2"]);
    let entry = only_corrupt_entry(&store);
    assert!(entry.reason.contains("entry 0 of outbox run"), "{entry:?}");
    assert!(entry.reason.contains("out of bounds"), "{entry:?}");
    assert_eq!(
        store.corrupt_entry_bytes(&entry.id).unwrap().unwrap(),
        value
    );
    let stats = store.stats().unwrap();
    assert_eq!((stats.outbox_depth, stats.dead_letters), (0, 1));
}

#[test]
fn a_damaged_body_at_the_head_goes_aside_with_its_stored_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    commit(&store, &["b1", "g1"]);
    // The first body of a fresh store starts its segment: one byte of it flips.
    let segment = std::fs::read_dir(dir.path().join("bodies"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.metadata().unwrap().len() > 0)
        .expect("a segment holding the bodies");
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[4] ^= 0xff;
    std::fs::write(&segment, &bytes).unwrap();

    assert_eq!(drain(&store), ["g1"]);
    let entry = only_corrupt_entry(&store);
    assert_eq!(entry.event_id.as_deref(), Some("b1"));
    assert_eq!(entry.created_at, Some(created()));
    assert!(entry.reason.contains("checksum mismatch"), "{entry:?}");
    let kept = store.corrupt_entry_bytes(&entry.id).unwrap().unwrap();
    assert_eq!(kept, bytes[..kept.len()], "the damaged bytes as stored");
    assert!(!kept.is_empty());
}

#[test]
fn a_missing_body_segment_does_not_keep_the_store_from_opening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        commit(&store, &["m1", "m2"]);
    }
    for segment in std::fs::read_dir(dir.path().join("bodies")).unwrap() {
        std::fs::remove_file(segment.unwrap().path()).unwrap();
    }
    let store = open(dir.path());
    commit(&store, &["g1"]);
    assert_eq!(drain(&store), ["g1"]);
    let entries = store.corrupt_entries().unwrap();
    let lost: Vec<Option<&str>> = entries.iter().map(|e| e.event_id.as_deref()).collect();
    assert_eq!(lost, [Some("m1"), Some("m2")]);
    assert!(entries[0].reason.contains("missing"), "{entries:?}");
}

#[test]
fn an_unreadable_queue_front_goes_aside_and_its_run_is_sent_again_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        commit(&store, &["a1", "a2", "a3"]);
        let head = store.outbox_head(&key()).unwrap().unwrap();
        store.ack(&key(), head.seq).unwrap();
        store.flush().unwrap();
        let engine = store.engine().unwrap();
        engine
            .db
            .insert(codec::queue_front_key(&key()), &b"\x04\x07"[..])
            .unwrap();
        engine.db.flush().unwrap();
    }
    let store = open(dir.path());
    // a1 again: a duplicate, which receivers tell by its event id; nothing is lost.
    assert_eq!(drain(&store), ["a1", "a2", "a3"]);
    let entry = only_corrupt_entry(&store);
    assert!(
        entry.reason.contains("queue front of cw/contacts"),
        "{entry:?}"
    );
    assert_eq!(entry.key, Some(key()));
}

#[test]
fn an_unreadable_dead_letter_is_listed_as_corrupt_droppable_and_never_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    commit(&store, &["d1", "d2", "d3"]);
    bury_all(&store);
    // Its names read, then it is cut short.
    let mut damaged = vec![4];
    for name in ["cw", "contacts"] {
        damaged.extend_from_slice(&(name.len() as u32).to_be_bytes());
        damaged.extend_from_slice(name.as_bytes());
    }
    damaged.extend_from_slice(&[0, 0, 0]);
    assert!(
        store
            .overwrite_dead_letter_for_tests("d2", &damaged)
            .unwrap()
    );

    let readable: Vec<String> = store
        .dead_letters()
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(readable, ["d1", "d3"]);
    let entry = only_corrupt_entry(&store);
    assert_eq!(entry.id, "d2", "it keeps the id the operator knows");
    assert_eq!(entry.key, Some(key()));
    assert_eq!(entry.size, damaged.len() as u64);
    assert!(entry.reason.contains("dead letter d2"), "{entry:?}");
    assert!(entry.reason.contains("truncated"), "{entry:?}");
    // Listed twice, set aside once.
    assert_eq!(only_corrupt_entry(&store), entry);
    assert_eq!(store.stats().unwrap().corrupt_set_aside, 1);
    assert_eq!(store.corrupt_entry_bytes("d2").unwrap().unwrap(), damaged);

    let error = store.replay_dead_letter("d2").unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("dead letter d2 is corrupt") && text.contains("drop d2"),
        "{text}"
    );
    assert!(store.replay_dead_letter("d1").unwrap());
    assert_eq!(drain(&store), ["d1"]);
    assert_eq!(store.stats().unwrap().dead_letters, 2);
    assert!(store.drop_dead_letter("d2").unwrap());
    assert!(store.corrupt_entries().unwrap().is_empty());
    assert_eq!(store.dead_letters().unwrap()[0].id, "d3");
    assert_eq!(store.stats().unwrap().dead_letters, 1);
}

#[test]
fn a_dead_letter_whose_id_is_not_utf8_gets_an_id_that_drops_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        let engine = store.engine().unwrap();
        let raw_key = [codec::TAG_DEAD, 0xff, 0xfe];
        engine.db.insert(raw_key, &b"\x04"[..]).unwrap();
        engine.db.flush().unwrap();
    }
    let store = open(dir.path());
    assert_eq!(store.stats().unwrap().dead_letters, 1);
    assert!(store.dead_letters().unwrap().is_empty());
    let entry = only_corrupt_entry(&store);
    assert!(entry.id.starts_with("corrupt-"), "{entry:?}");
    assert!(entry.reason.contains("not UTF-8 (0xfffe)"), "{entry:?}");
    assert!(store.drop_dead_letter(&entry.id).unwrap());
    assert!(store.corrupt_entries().unwrap().is_empty());
    assert_eq!(store.stats().unwrap().dead_letters, 0);
}
