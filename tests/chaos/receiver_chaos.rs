//! Receiver chaos: the webhook receiver is down (connections cut) for a while, then slow (5 s
//! answers), then flaky (10 % 500s, 10 % dropped connections), while records keep changing in
//! two resources. Everything must arrive, each resource in creation order, with nothing
//! dead-lettered (SPEC §6).

use std::time::{Duration, Instant};

use pollerd::sim::connectwise::{ConnectWiseSim, RecordKind, SimConfig};
use pollerd::sim::receiver::{Behaviour, Receiver};

use crate::ledger::Ledger;
use crate::support::*;
use crate::{assert_no_panic, current_versions, scale, status, tail, wait_costly, with_accounts};

/// A `[delivery] schedule` whose retries outlast `down` (jitter only lengthens steps).
fn schedule_outlasting(down: Duration) -> String {
    let mut steps = vec![
        Duration::from_millis(200),
        Duration::from_millis(400),
        Duration::from_millis(800),
    ];
    let step = if down > Duration::from_secs(30) {
        Duration::from_secs(10)
    } else {
        Duration::from_secs(1)
    };
    while steps.iter().sum::<Duration>() < down * 2 {
        steps.push(step);
    }
    let list: Vec<String> = steps
        .iter()
        .map(|d| format!("\"{}ms\"", d.as_millis()))
        .collect();
    format!("[{}]", list.join(", "))
}

/// Waits until every contact's and company's current version has arrived, then checks what a
/// receiver would: each resource in order, duplicates only as repeated eventIds, and no dead
/// letter.
async fn everything_arrives_in_order(
    dd: &DaemonDir,
    sim: &ConnectWiseSim,
    receiver: &Receiver,
    contacts: &[u64],
    companies: &[u64],
) -> Ledger {
    let mut ledger = Ledger::default();
    let contact_versions = current_versions(sim, RecordKind::Contact, contacts);
    let company_versions = current_versions(sim, RecordKind::Company, companies);
    wait_costly(
        dd,
        "every change to be delivered",
        scale(WAIT * 3, WAIT * 20),
        || {
            ledger.refresh(receiver);
            ledger.has_all("contacts", &contact_versions)
                && ledger.has_all("accounts", &company_versions)
        },
    )
    .await;
    ledger.assert_in_order_per_resource();
    ledger.assert_duplicates_repeat_event_ids();
    let s = status(dd).expect("the daemon answers");
    for r in s["instances"][0]["resources"].as_array().unwrap() {
        assert_eq!(
            r["dead_letters"],
            0,
            "nothing should be dead-lettered: {r}\n{}",
            tail(&dd.logs(), 30)
        );
    }
    ledger
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_slow_and_flaky_receiver_gets_everything_in_order() {
    let down = scale(Duration::from_secs(5), Duration::from_secs(120));
    let slow = scale(Duration::from_secs(6), Duration::from_secs(30));
    let flaky = scale(Duration::from_secs(8), Duration::from_secs(90));
    let sim = ConnectWiseSim::start(SimConfig::default()).await.unwrap();
    let receiver = Receiver::start().await.unwrap();
    let seed = fastrand::u64(..);
    receiver.seed(seed);
    // The timeout is longer than the slow answers: those are deliveries, not failures.
    let dd = DaemonDir::new(&format!(
        "[delivery]\ntimeout = \"15s\"\nschedule = {}\n",
        schedule_outlasting(down)
    ));
    let mut instance = with_accounts(seed_instance(&sim, &receiver.url(), "0.01"));
    instance["configuration"]["event.notification.batch.size"] = "3".into();
    dd.write_instance("crm.json", &instance);
    let daemon = dd.start(&[]);
    wait_for("the first polls", WAIT, || sim.request_count() >= 2).await;

    let phases_end = Instant::now() + down + slow + flaky;
    let producer = {
        let sim = sim.clone();
        tokio::spawn(async move {
            let (mut contacts, mut companies) = (Vec::new(), Vec::new());
            while Instant::now() < phases_end {
                contacts.extend(sim.create_many(RecordKind::Contact, 5, None));
                companies.extend(sim.create_many(RecordKind::Company, 3, None));
                let later = Some(sim.now() + chrono::Duration::seconds(1));
                for _ in 0..3 {
                    let id = contacts[fastrand::usize(..contacts.len())];
                    sim.update(RecordKind::Contact, id, later);
                }
                let id = companies[fastrand::usize(..companies.len())];
                sim.update(RecordKind::Company, id, later);
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            (contacts, companies)
        })
    };

    // The phases are the chaos itself: each lasts its time whatever the daemon does.
    let started = Instant::now();
    receiver.respond_until(Behaviour::CloseConnection, started + down);
    let slow_from = started + down;
    tokio::time::sleep_until(slow_from.into()).await;
    receiver.respond_until(
        Behaviour::Delay(Duration::from_secs(5), 200),
        slow_from + slow,
    );
    tokio::time::sleep_until((slow_from + slow).into()).await;
    receiver.set_default(Behaviour::Chaos {
        error_percent: 10,
        drop_percent: 10,
    });
    let (contacts, companies) = producer.await.unwrap();

    // Still flaky while it catches up.
    // Every retry of a flaky answer waits its step of the schedule and holds its queue back:
    // the long form's backlog of thousands of notifications takes minutes to drain.
    let catch_up = Instant::now();
    let ledger = everything_arrives_in_order(&dd, &sim, &receiver, &contacts, &companies).await;
    let catch_up = catch_up.elapsed();
    daemon.signal("TERM");
    assert!(daemon.wait_exit(WAIT).await.success());
    assert_no_panic(&dd);

    let attempts = ledger.attempts();
    let count = |f: &dyn Fn(Option<u16>) -> bool| attempts.iter().filter(|a| f(a.status)).count();
    println!(
        "receiver chaos (seed {seed}): down {down:?}, slow {slow:?}, flaky {flaky:?}; {} versions in {} notifications \
         ({} contacts, {} companies), {} attempts: {} cut, {} answered 500, {} duplicate deliveries \
         (same eventId), 0 dead letters, 0 lost, order kept; caught up {catch_up:.0?} after the phases",
        ledger.versions().len(),
        ledger
            .accepted()
            .map(|n| &n.event_id)
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        contacts.len(),
        companies.len(),
        attempts.len(),
        count(&|s| s.is_none()),
        count(&|s| s == Some(500)),
        ledger.duplicate_deliveries()
    );
}

/// `Retry-After` answers no receiver should send (issue 13 item 4), mixed at random with 500s and
/// cut connections: each is cut to the schedule's largest step or ignored; everything arrives in
/// order, nothing is dead-lettered, nothing panics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_receiver_gets_everything_in_order() {
    let hostile = scale(Duration::from_secs(10), Duration::from_secs(120));
    let sim = ConnectWiseSim::start(SimConfig::default()).await.unwrap();
    let receiver = Receiver::start().await.unwrap();
    let seed = fastrand::u64(..);
    receiver.seed(seed);
    let mut dice = fastrand::Rng::with_seed(seed);
    // Every hostile answer is one failed attempt of the queue's head: the retries must outlast
    // all of them in a row (none is dead-lettered).
    let dd = DaemonDir::new(&format!(
        "[delivery]\nschedule = {}\n",
        schedule_outlasting(hostile * 3)
    ));
    let mut instance = with_accounts(seed_instance(&sim, &receiver.url(), "0.01"));
    instance["configuration"]["event.notification.batch.size"] = "3".into();
    dd.write_instance("crm.json", &instance);
    let daemon = dd.start(&[]);
    wait_for("the first polls", WAIT, || sim.request_count() >= 2).await;

    receiver.set_default(Behaviour::Chaos {
        error_percent: 10,
        drop_percent: 10,
    });
    let phase_end = Instant::now() + hostile;
    let (mut contacts, mut companies) = (Vec::new(), Vec::new());
    let mut hostile_answers = 0;
    while Instant::now() < phase_end {
        contacts.extend(sim.create_many(RecordKind::Contact, 5, None));
        companies.extend(sim.create_many(RecordKind::Company, 3, None));
        let later = Some(sim.now() + chrono::Duration::seconds(1));
        let id = contacts[dice.usize(..contacts.len())];
        sim.update(RecordKind::Contact, id, later);
        // Now and then a hostile answer before the next chaos ones.
        if dice.bool() {
            let value = HOSTILE_RETRY_AFTER[dice.usize(..HOSTILE_RETRY_AFTER.len())];
            let status = if dice.bool() { 429 } else { 503 };
            receiver.respond_next(Behaviour::StatusWithRetryAfter(status, value.into()), 1);
            hostile_answers += 1;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    receiver.set_default(Behaviour::Ok);

    let ledger = everything_arrives_in_order(&dd, &sim, &receiver, &contacts, &companies).await;
    daemon.signal("TERM");
    assert!(daemon.wait_exit(WAIT).await.success());
    assert_no_panic(&dd);
    println!(
        "hostile receiver chaos (seed {seed}): {hostile:?}, {hostile_answers} hostile Retry-After \
         answers among 10 % 500s and 10 % cut connections; {} versions, {} attempts, {} duplicate \
         deliveries (same eventId), 0 dead letters, 0 lost, order kept, 0 panics",
        ledger.versions().len(),
        ledger.attempts().len(),
        ledger.duplicate_deliveries()
    );
}
