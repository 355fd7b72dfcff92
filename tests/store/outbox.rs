//! The outbox is stored as runs of entries (one per commit, split when large) with a cursor per
//! queue; these check what delivery relies on across run boundaries and reopens.

use pollerd::store::StoreError;

use super::{Opened, Place, at, drain, event_ids, key, page};

/// Event ids as the poller makes them (UUIDs), so a page fills several stored runs.
fn uuid_like(n: usize) -> String {
    format!("3f2a7c9e-{n:04x}-4d7b-9c1e-0123456789ab")
}

fn a_big_page_drains_in_order_across_its_runs_and_a_reopen(new_place: fn() -> Place) {
    let dir = new_place();
    let k = key("cw", "contacts");
    let ids: Vec<String> = (0..2_000).map(uuid_like).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let first_part = {
        let store = dir.open();
        store.commit(page(&k, &refs, at(0))).unwrap();
        let mut delivered = Vec::new();
        for _ in 0..700 {
            let head = store.outbox_head(&k).unwrap().unwrap();
            store.ack(&k, head.seq).unwrap();
            delivered.push(head);
        }
        assert_eq!(store.outbox_depth(&k).unwrap(), 1_300);
        delivered
    }; // dropped: a clean stop keeps the acks
    let store = dir.open();
    assert_eq!(store.outbox_depth(&k).unwrap(), 1_300);
    assert_eq!(store.stats().unwrap().outbox_depth, 1_300);
    let rest = drain(&store, &k);
    let mut all = event_ids(&first_part);
    all.extend(event_ids(&rest));
    assert_eq!(all, refs, "every notification once, in order");
    let seqs: Vec<u64> = first_part.iter().chain(&rest).map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|pair| pair[0] < pair[1]));
    drop(store);
    let store = dir.open();
    assert_eq!(store.queues().unwrap(), []);
    assert_eq!(store.outbox_head(&k).unwrap(), None);
}

fn the_front_reads_ahead_across_runs(new_place: fn() -> Place) {
    let dir = new_place();
    let store = dir.open();
    let k = key("cw", "contacts");
    let ids: Vec<String> = (0..1_000).map(uuid_like).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    store.commit(page(&k, &refs, at(0))).unwrap();
    let front = store.outbox_front(&k, 1_000).unwrap();
    assert_eq!(event_ids(&front), refs);
    assert!(
        front
            .iter()
            .all(|e| e.body.starts_with(b"{\"id\":\"3f2a7c9e-"))
    );
}

fn only_the_head_leaves_a_queue(new_place: fn() -> Place) {
    let dir = new_place();
    let store = dir.open();
    let k = key("cw", "contacts");
    store.commit(page(&k, &["e1", "e2", "e3"], at(0))).unwrap();
    store.commit(page(&k, &["e4"], at(1))).unwrap();
    let front = store.outbox_front(&k, 4).unwrap();
    for behind in &front[1..] {
        let refused = [
            store.ack(&k, behind.seq).unwrap_err(),
            store
                .record_failure(&k, behind.seq, 1, at(9), "x")
                .unwrap_err(),
            store.dead_letter(&k, behind.seq, 1, None, "x").unwrap_err(),
        ];
        for error in refused {
            assert!(
                matches!(error, StoreError::NotHead { head, .. } if head == front[0].seq),
                "{error}"
            );
        }
    }
    assert_eq!(store.outbox_depth(&k).unwrap(), 4);
    assert_eq!(store.stats().unwrap().dead_letters, 0);
    assert_eq!(event_ids(&drain(&store, &k)), ["e1", "e2", "e3", "e4"]);
}

fn acks_failures_and_dead_letters_inside_a_run_survive_a_reopen(new_place: fn() -> Place) {
    let dir = new_place();
    let k = key("cw", "contacts");
    {
        let store = dir.open();
        store
            .commit(page(&k, &["e1", "e2", "e3", "e4", "e5"], at(0)))
            .unwrap();
        let head = |store: &Opened| store.outbox_head(&k).unwrap().unwrap();
        store.ack(&k, head(&store).seq).unwrap();
        store
            .dead_letter(&k, head(&store).seq, 3, Some(410), "gone")
            .unwrap();
        store.ack(&k, head(&store).seq).unwrap();
        store
            .record_failure(&k, head(&store).seq, 2, at(30), "HTTP 503")
            .unwrap();
    }
    let store = dir.open();
    assert_eq!(store.outbox_depth(&k).unwrap(), 2);
    let head = store.outbox_head(&k).unwrap().unwrap();
    assert_eq!(head.event_id, "e4");
    assert_eq!((head.attempts, head.next_attempt_at), (2, Some(at(30))));
    assert_eq!(head.last_error.as_deref(), Some("HTTP 503"));
    let letters = store.dead_letters().unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].event_id, "e2");
    assert!(letters[0].body.starts_with(b"{\"id\":\"e2\""));
    store.ack(&k, head.seq).unwrap();
    let last = store.outbox_head(&k).unwrap().unwrap();
    assert_eq!((last.event_id.as_str(), last.attempts), ("e5", 0));
}

/// Delivery's calls from async code: an ack hides its entry at once (PostgreSQL writes it with
/// the others noted meanwhile), the next write of the queue sees it gone, an ack behind the head
/// is refused, and a flush keeps them all across a reopen.
fn acks_from_async_code_take_effect_at_once_and_survive_a_flush_and_reopen(
    new_place: fn() -> Place,
) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = new_place();
    let k = key("cw", "contacts");
    {
        let store = dir.open();
        store
            .commit(page(&k, &["e1", "e2", "e3", "e4", "e5"], at(0)))
            .unwrap();
        let front = runtime.block_on(store.outbox_front_async(&k, 5)).unwrap();
        for delivered in &front[..2] {
            runtime
                .block_on(store.ack_async(&k, delivered.seq))
                .unwrap();
        }
        let rest = runtime.block_on(store.outbox_front_async(&k, 5)).unwrap();
        assert_eq!(event_ids(&rest), ["e3", "e4", "e5"]);
        assert_eq!(store.outbox_depth(&k).unwrap(), 3);
        // The head is e3 now for every write, not only for reads.
        runtime
            .block_on(store.record_failure_async(&k, rest[0].seq, 1, at(30), "HTTP 503"))
            .unwrap();
        // Behind the head: refused, and nothing removed.
        let behind = runtime.block_on(store.ack_async(&k, rest[2].seq));
        assert!(
            matches!(behind, Err(StoreError::NotHead { head, .. }) if head == rest[0].seq),
            "{behind:?}"
        );
        store.flush().unwrap();
        assert_eq!(store.outbox_depth(&k).unwrap(), 3);
    }
    let store = dir.open();
    let front = store.outbox_front(&k, 5).unwrap();
    assert_eq!(event_ids(&front), ["e3", "e4", "e5"]);
    assert_eq!(
        (front[0].attempts, front[0].next_attempt_at),
        (1, Some(at(30)))
    );
    runtime
        .block_on(store.dead_letter_async(&k, front[0].seq, 2, Some(503), "HTTP 503"))
        .unwrap();
    runtime.block_on(store.ack_async(&k, front[1].seq)).unwrap();
    store.flush().unwrap();
    drop(store);
    let store = dir.open();
    assert_eq!(event_ids(&drain(&store, &k)), ["e5"]);
    assert_eq!(store.dead_letters().unwrap()[0].event_id, "e3");
}

on_both_engines!(
    acks_from_async_code_take_effect_at_once_and_survive_a_flush_and_reopen,
    a_big_page_drains_in_order_across_its_runs_and_a_reopen,
    the_front_reads_ahead_across_runs,
    only_the_head_leaves_a_queue,
    acks_failures_and_dead_letters_inside_a_run_survive_a_reopen,
);
