//! Idle commits held back ([`IdleWatermarks`]): a poll that found nothing moves its watermark in
//! memory, and the moves are written in batches. What must hold: until its batch the store (what
//! `status` shows, what a restart reads) keeps the durable watermark and the seen ids the wider
//! window needs; a batch lands the latest move only; a later commit that sets a watermark is
//! never overwritten by an older move.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use pollerd::store::{IdleWatermarks, PageCommit, PostgresStore, ResourceKey, Store};

use super::{Place, at, key, page};

fn shared(place: &Place) -> Arc<dyn Store> {
    match place {
        Place::Sled(dir) => Arc::new(super::open(dir.path())),
        Place::Postgres(url) => Arc::new(
            PostgresStore::open(url, super::POSTGRES_POOL_SIZE).expect("open the PostgreSQL store"),
        ),
    }
}

/// The last commit of a run that found nothing: its watermark, and the seen ids below the next
/// lower bound pruned.
fn idle(k: &ResourceKey, watermark: i64, prune_before: i64) -> PageCommit {
    let mut commit = PageCommit::new(k.clone());
    commit.watermark = Some(at(watermark));
    commit.prune_seen_before = Some(at(prune_before));
    commit
}

fn held_back(layer: &Arc<IdleWatermarks>, commit: PageCommit) {
    assert!(layer.defer(commit).is_none(), "an idle commit is held back");
}

fn an_idle_move_stays_in_memory_until_its_batch_and_a_crash_keeps_the_durable_state(
    new_place: fn() -> Place,
) {
    let place = new_place();
    let k = key("cw", "contacts");
    {
        let store = shared(&place);
        let layer = IdleWatermarks::written_by_caller(store.clone());
        let mut first = page(&k, &["e1"], at(20));
        first.seen = vec![("7".into(), at(10))];
        layer.commit(first).unwrap();
        held_back(&layer, idle(&k, 30, 15));
        assert_eq!(layer.watermark(&k).unwrap(), Some(at(30)), "the next run");
        assert_eq!(store.watermark(&k).unwrap(), Some(at(20)), "the store's");
        assert_eq!(
            store.seen_dates(&k, &["7"]).unwrap(),
            [Some(at(10))],
            "the pruning waits with its watermark"
        );
        assert_eq!(layer.pending(), 1);
    } // the layer gone without its batch, as in a crash: the move is lost
    let store = shared(&place);
    assert_eq!(store.watermark(&k).unwrap(), Some(at(20)));
    assert_eq!(
        store.seen_dates(&k, &["7"]).unwrap(),
        [Some(at(10))],
        "the wider window's records are still seen: nothing is sent twice"
    );
    let layer = IdleWatermarks::written_by_caller(store.clone());
    held_back(&layer, idle(&k, 30, 15));
    assert_eq!(layer.write_pending().unwrap(), 1);
    assert_eq!(layer.pending(), 0);
    assert_eq!(store.watermark(&k).unwrap(), Some(at(30)));
    assert_eq!(store.seen_dates(&k, &["7"]).unwrap(), [None]);
    assert_eq!(
        layer.write_pending().unwrap(),
        0,
        "nothing is written twice"
    );
    drop((layer, store));
    let store = shared(&place);
    assert_eq!(store.watermark(&k).unwrap(), Some(at(30)), "durable");
}

fn a_batch_writes_the_latest_move_and_never_overtakes_a_later_commit(new_place: fn() -> Place) {
    let place = new_place();
    let store = shared(&place);
    let layer = IdleWatermarks::written_by_caller(store.clone());
    let (k, other) = (key("cw", "contacts"), key("cw", "companies"));

    // A commit that sets a watermark supersedes the move held back.
    held_back(&layer, idle(&k, 30, 0));
    layer.commit(page(&k, &["e1"], at(40))).unwrap();
    assert_eq!(layer.pending(), 0);
    assert_eq!(layer.write_pending().unwrap(), 0);
    assert_eq!(store.watermark(&k).unwrap(), Some(at(40)));

    // Of two moves of one resource, the later is written; each resource its own.
    held_back(&layer, idle(&k, 50, 0));
    held_back(&layer, idle(&k, 60, 0));
    held_back(&layer, idle(&other, 55, 0));
    assert_eq!(layer.write_pending().unwrap(), 2);
    assert_eq!(store.watermark(&k).unwrap(), Some(at(60)));
    assert_eq!(store.watermark(&other).unwrap(), Some(at(55)));

    // A page commit (notifications, no watermark) leaves the move for the batch.
    held_back(&layer, idle(&k, 70, 0));
    let mut queued = page(&k, &["e2"], at(0));
    queued.watermark = None;
    layer.commit(queued).unwrap();
    assert_eq!(layer.watermark(&k).unwrap(), Some(at(70)));
    assert_eq!(layer.write_pending().unwrap(), 1);
    assert_eq!(store.watermark(&k).unwrap(), Some(at(70)));

    // A commit that queues something is never held back.
    let refused = layer.defer(page(&k, &["e3"], at(80)));
    assert!(refused.is_some(), "only idle commits are held back");
}

/// Moves held back and commits that set the watermark, one resource, while batches are written
/// from another thread: the store's watermark never goes back, and ends at the last one.
fn batches_written_meanwhile_never_move_a_watermark_back(new_place: fn() -> Place) {
    let place = new_place();
    let store = shared(&place);
    let layer = IdleWatermarks::written_by_caller(store.clone());
    let k = key("cw", "contacts");
    layer.commit(page(&k, &["e0"], at(0))).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (layer, done) = (layer.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Acquire) {
                layer.write_pending().unwrap();
            }
        })
    };
    let watcher = {
        let (store, done, k) = (store.clone(), done.clone(), k.clone());
        std::thread::spawn(move || {
            let mut last = at(0);
            while !done.load(Ordering::Acquire) {
                let now = store.watermark(&k).unwrap().unwrap();
                assert!(now >= last, "the watermark went back from {last} to {now}");
                last = now;
            }
        })
    };
    let last = 300;
    for second in 1..=last {
        match second % 3 {
            0 => layer
                .commit(page(&k, &[&format!("e{second}")], at(second)))
                .unwrap(),
            _ => held_back(&layer, idle(&k, second, 0)),
        }
    }
    layer.write_pending().unwrap();
    done.store(true, Ordering::Release);
    writer.join().unwrap();
    watcher.join().unwrap();
    assert_eq!(store.watermark(&k).unwrap(), Some(at(last)));
}

#[test]
fn without_an_async_runtime_an_idle_commit_is_not_held_back() {
    let place = Place::sled();
    let layer = IdleWatermarks::new(shared(&place));
    let k = key("cw", "contacts");
    assert!(
        layer.defer(idle(&k, 30, 0)).is_some(),
        "given back, to commit"
    );
    assert_eq!(layer.pending(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_task_writes_the_moves_within_seconds() {
    let place = Place::sled();
    let store = shared(&place);
    let layer = IdleWatermarks::new(store.clone());
    let k = key("cw", "contacts");
    held_back(&layer, idle(&k, 30, 0));
    let deadline = std::time::Instant::now() + crate::support::WAIT;
    // The writer removes a move from the pending set just after its commit lands: wait for both.
    while store.watermark(&k).unwrap() != Some(at(30)) || layer.pending() != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the move was not written and let go"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(layer.pending(), 0);
}

on_both_engines!(
    an_idle_move_stays_in_memory_until_its_batch_and_a_crash_keeps_the_durable_state,
    a_batch_writes_the_latest_move_and_never_overtakes_a_later_commit,
    batches_written_meanwhile_never_move_a_watermark_back,
);
