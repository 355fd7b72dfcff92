//! Crash soak: `kill -9` at random moments — inside polls, deliveries and store commits of
//! large pages, and right after the instance file was edited or touched (a reload under way) —
//! while records keep changing. Every record's final version must arrive, duplicates only as
//! repeated eventIds, and the store must open after every kill (SPEC §6). The generalised form of
//! `tests/crash_safety.rs` (10 kills, 5,000 changes), which stays as it is.

use std::time::Duration;

use pollerd::sim::connectwise::{ConnectWiseSim, RecordKind, SimConfig};
use pollerd::sim::receiver::Receiver;

use crate::ledger::Ledger;
use crate::support::*;
use crate::{assert_no_panic, current_versions, scale, status, wait_costly};

/// Records created in one go to make a large page and so a large commit.
const LARGE_BATCH: usize = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_polls_reloads_and_large_commits_loses_nothing() {
    let kills = scale(8, 50);
    let rounds = scale(20, 100);
    let sim = ConnectWiseSim::start(SimConfig::default()).await.unwrap();
    let receiver = Receiver::start().await.unwrap();
    let dd = DaemonDir::new(
        "[delivery]\nschedule = [\"200ms\", \"400ms\", \"800ms\", \"1s\", \"1s\", \"1s\", \"1s\", \"1s\", \"1s\"]\n",
    );
    let contacts =
        |page_size| with_page_size(seed_instance(&sim, &receiver.url(), "0.01"), page_size);
    let mut page_size = 200;
    dd.write_instance("contacts.json", &contacts(page_size));
    let mut daemon = dd.start(&[]);
    wait_for("the first poll", WAIT, || sim.request_count() >= 1).await;

    // Spread the changes over about as long as the kills take (a kill every second or so).
    let round_pause = Duration::from_millis(1000 * kills as u64 / rounds as u64);
    // Each round: 100 updates of earlier contacts and 100 new ones, or a large page's worth
    // every tenth round.
    let producer = {
        let sim = sim.clone();
        tokio::spawn(async move {
            let mut ids: Vec<u64> = Vec::new();
            let mut changes = 0;
            for round in 0..rounds {
                let new = if round % 10 == 9 { LARGE_BATCH } else { 100 };
                change_contacts(&sim, &mut ids, round, new);
                changes += new + 100;
                tokio::time::sleep(round_pause).await;
            }
            (ids, changes)
        })
    };

    let mut extra_ids = Vec::new();
    let (mut reload_kills, mut large_commit_kills) = (0, 0);
    for kill in 0..kills {
        match kill % 5 {
            // An edited file: the instance restarts with another page size.
            1 => {
                page_size = if page_size == 200 { 1000 } else { 200 };
                tokio::time::sleep(Duration::from_millis(fastrand::u64(150..800))).await;
                dd.write_instance("contacts.json", &contacts(page_size));
                tokio::time::sleep(Duration::from_millis(fastrand::u64(0..400))).await;
                reload_kills += 1;
            }
            // A touched file: same content, rewritten.
            3 => {
                tokio::time::sleep(Duration::from_millis(fastrand::u64(150..800))).await;
                dd.write_instance("contacts.json", &contacts(page_size));
                tokio::time::sleep(Duration::from_millis(fastrand::u64(0..400))).await;
                reload_kills += 1;
            }
            // A large page lands: the kill falls inside its fetch, commit or delivery.
            4 => {
                extra_ids.extend(sim.create_many(RecordKind::Contact, LARGE_BATCH, None));
                tokio::time::sleep(Duration::from_millis(fastrand::u64(300..1500))).await;
                large_commit_kills += 1;
            }
            _ => tokio::time::sleep(Duration::from_millis(fastrand::u64(150..1200))).await,
        }
        daemon.kill9();
        daemon = dd.start(&[]);
        // The store opens every time: the admin socket only answers once it has.
        wait_for("the restarted daemon to open its store", WAIT, || {
            status(&dd).is_some()
        })
        .await;
    }
    let (mut ids, changes) = producer.await.unwrap();
    let changes = changes + extra_ids.len();
    ids.extend(extra_ids);

    let mut ledger = Ledger::default();
    let versions = current_versions(&sim, RecordKind::Contact, &ids);
    wait_costly(&dd, "every change to be delivered", WAIT * 5, || {
        ledger.refresh(&receiver);
        ledger.has_all("contacts", &versions)
    })
    .await;
    daemon.signal("TERM");
    let exit = daemon.wait_exit(WAIT).await;
    assert!(exit.success(), "{exit:?}");

    ledger.refresh(&receiver);
    ledger.assert_duplicates_repeat_event_ids();
    let delivered = ledger.versions();
    let contacts: std::collections::BTreeSet<&String> =
        delivered.keys().map(|(_, object, _)| object).collect();
    assert_eq!(contacts.len(), ids.len(), "every contact arrived");
    assert_no_panic(&dd);
    println!(
        "crash soak: kill -9 × {kills} ({reload_kills} right after an instance file edit/touch, \
         {large_commit_kills} during {LARGE_BATCH}-record pages), {changes} record changes, \
         {} versions delivered, {} duplicate deliveries (same eventId), 0 lost",
        delivered.len(),
        ledger.duplicate_deliveries()
    );
}
