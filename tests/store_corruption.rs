//! Corrupt entries and dead letters in a stopped daemon's store, then the real binary started on
//! it: the queue behind a corrupt head is delivered, the log names the queue, `pollerd
//! dead-letters list` shows the corrupt entries as CORRUPT rows beside the good letters, replay
//! refuses only them, and drop removes them; `status` sums up many large dead letters.

mod support;

use std::path::Path;

use chrono::Utc;
use pollerd::sim::connectwise::{ConnectWiseSim, RecordKind, SimConfig};
use pollerd::sim::receiver::Receiver;
use pollerd::store::{NewNotification, PageCommit, ResourceKey, SledStore, Store};
use support::{DaemonDir, WAIT, pollerd, seed_instance, status, wait_for};

/// The instance and resource of the seed example that `seed_instance` writes.
fn contacts() -> ResourceKey {
    ResourceKey::new("API_Polling", "contacts")
}

fn body(event_id: &str) -> Vec<u8> {
    format!(r#"{{"id":"{event_id}","message":{{"events":[]}}}}"#).into_bytes()
}

/// One commit of notifications to the contacts queue: one stored run.
fn queue(store: &SledStore, event_ids: &[&str]) {
    let mut commit = PageCommit::new(contacts());
    commit.notifications = event_ids
        .iter()
        .map(|id| NewNotification {
            event_id: id.to_string(),
            body: body(id),
            created_at: Utc::now(),
        })
        .collect();
    store.commit(commit).unwrap();
}

/// The state a daemon left: dead letters d1, d2 (then damaged), d3; a queue whose head run
/// (c1) is damaged, with g1 and g2 behind it.
fn damaged_state(state: &Path) {
    let store = SledStore::open(state, 8 << 20).unwrap();
    queue(&store, &["d1", "d2", "d3"]);
    while let Some(head) = store.outbox_head(&contacts()).unwrap() {
        store
            .dead_letter(&contacts(), head.seq, 10, Some(410), "410 Gone")
            .unwrap();
    }
    queue(&store, &["c1"]);
    queue(&store, &["g1", "g2"]);
    // A run that claims 9 entries in 5 bytes; a dead letter cut after its version byte.
    assert!(
        store
            .overwrite_first_run_for_tests(&contacts(), b"\x04\x00\x00\x00\x09")
            .unwrap()
    );
    assert!(
        store
            .overwrite_dead_letter_for_tests("d2", b"\x04\x00\x00")
            .unwrap()
    );
}

fn delivered(receiver: &Receiver) -> Vec<String> {
    receiver
        .accepted()
        .iter()
        .filter_map(|r| r.header("webhook-id").map(str::to_string))
        .collect()
}

fn listing(dd: &DaemonDir) -> String {
    let out = pollerd(dd, &["dead-letters", "list"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The table row whose first column is `id`.
fn row<'a>(table: &'a str, id: &str) -> Option<&'a str> {
    table
        .lines()
        .find(|line| line.split_whitespace().next() == Some(id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_entries_are_set_aside_listed_and_dropped_while_the_rest_is_delivered() {
    let sim = ConnectWiseSim::start(SimConfig::default()).await.unwrap();
    let receiver = Receiver::start().await.unwrap();
    let dd = DaemonDir::new("");
    damaged_state(&dd.path().join("state"));
    dd.write_instance(
        "contacts.json",
        &seed_instance(&sim, &receiver.url(), "0.01"),
    );
    let daemon = dd.start(&[]);

    wait_for("g1 and g2 delivered", WAIT, || {
        let ids = delivered(&receiver);
        ids.contains(&"g1".to_string()) && ids.contains(&"g2".to_string())
    })
    .await;
    assert_eq!(delivered(&receiver), ["g1", "g2"], "in order, nothing else");
    let log = daemon.log_text();
    let error = log
        .lines()
        .find(|line| line.contains("corrupt entry in the outbox of API_Polling/contacts"))
        .unwrap_or_else(|| panic!("no error naming the queue:\n{log}"));
    assert!(error.contains("ERROR"), "{error}");

    // The good letters as always, both corrupt entries as CORRUPT rows with their size.
    let table = listing(&dd);
    for id in ["d1", "d3"] {
        let line = row(&table, id).unwrap_or_else(|| panic!("no row {id}:\n{table}"));
        assert!(line.contains("410") && !line.contains("CORRUPT"), "{table}");
    }
    let d2 = row(&table, "d2").unwrap_or_else(|| panic!("no row d2:\n{table}"));
    assert!(d2.contains("CORRUPT"), "{table}");
    let set_aside = table
        .lines()
        .find(|line| line.starts_with("corrupt-"))
        .unwrap_or_else(|| panic!("no row for the head set aside:\n{table}"));
    assert!(
        set_aside.contains("CORRUPT") && set_aside.contains("API_Polling"),
        "{table}"
    );
    let set_aside_id = set_aside.split_whitespace().next().unwrap().to_string();
    assert!(
        table.contains(&format!("  {set_aside_id}: 5 bytes kept; outbox run"))
            && table.contains("  d2: 3 bytes kept; dead letter d2"),
        "{table}"
    );
    assert!(
        table.contains("total: 4 dead letters\n2 corrupt entries ("),
        "{table}"
    );

    // Replaying the corrupt one fails naming it; a good one replays.
    let refused = pollerd(&dd, &["dead-letters", "replay", "d2"]);
    assert_eq!(refused.status.code(), Some(1));
    let text = String::from_utf8_lossy(&refused.stderr);
    assert!(
        text.contains("d2") && text.contains("corrupt") && text.contains("dead-letters drop"),
        "{text}"
    );
    let replayed = pollerd(&dd, &["dead-letters", "replay", "d1"]);
    assert!(
        replayed.status.success(),
        "{}",
        String::from_utf8_lossy(&replayed.stderr)
    );
    wait_for("d1 delivered", WAIT, || {
        delivered(&receiver).contains(&"d1".to_string())
    })
    .await;

    // --all replays the good one left and names both corrupt ones.
    let all = pollerd(&dd, &["dead-letters", "replay", "--all"]);
    assert_eq!(all.status.code(), Some(1));
    let text = String::from_utf8_lossy(&all.stderr);
    assert!(
        text.contains("replayed 1 dead letter(s); 2 corrupt")
            && text.contains("d2 (")
            && text.contains(&format!("{set_aside_id} (")),
        "{text}"
    );
    wait_for("d3 delivered", WAIT, || {
        delivered(&receiver).contains(&"d3".to_string())
    })
    .await;

    let dropped = pollerd(&dd, &["dead-letters", "drop", "d2", &set_aside_id]);
    assert!(
        dropped.status.success(),
        "{}",
        String::from_utf8_lossy(&dropped.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&dropped.stdout),
        "dropped 2 dead letters\n"
    );
    assert_eq!(listing(&dd), "no dead letters\n");
    let s = status(&dd).expect("the daemon answers");
    assert_eq!(
        (s["dead_letters"].as_u64(), s["outbox_depth"].as_u64()),
        (Some(0), Some(0)),
        "{s}"
    );
    assert!(!daemon.log_text().contains("panicked"));
    daemon.signal("TERM");
    assert!(daemon.wait_exit(WAIT).await.success());
    let ids = delivered(&receiver);
    assert_eq!(ids, ["g1", "g2", "d1", "d3"], "each once, c1 never");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_body_files_are_set_aside_and_later_changes_are_delivered() {
    let sim = ConnectWiseSim::start(SimConfig::default()).await.unwrap();
    let receiver = Receiver::start().await.unwrap();
    let dd = DaemonDir::new("");
    let state = dd.path().join("state");
    {
        let store = SledStore::open(&state, 8 << 20).unwrap();
        queue(&store, &["m1", "m2"]);
    }
    // The queued bodies' files are lost (a bad restore, a careless clean-up).
    for segment in std::fs::read_dir(state.join("bodies")).unwrap() {
        std::fs::remove_file(segment.unwrap().path()).unwrap();
    }
    dd.write_instance(
        "contacts.json",
        &seed_instance(&sim, &receiver.url(), "0.01"),
    );
    let daemon = dd.start(&[]);
    wait_for("the first poll", WAIT, || sim.request_count() >= 1).await;
    let ids = sim.create_many(RecordKind::Contact, 1, None);
    let created = ids[0].to_string();
    wait_for(
        "the contact created after the fault delivered",
        WAIT,
        || {
            receiver.accepted().iter().any(|r| {
                r.json()["message"]["events"]
                    .as_array()
                    .is_some_and(|events| events.iter().any(|e| e["objectId"] == created.as_str()))
            })
        },
    )
    .await;

    let table = listing(&dd);
    let corrupt: Vec<&str> = table
        .lines()
        .filter(|line| line.starts_with("corrupt-"))
        .collect();
    assert_eq!(corrupt.len(), 2, "{table}");
    for (line, event_id) in corrupt.iter().zip(["m1", "m2"]) {
        let columns: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(columns[1], event_id, "{table}");
        assert!(line.contains("CORRUPT"), "{table}");
    }
    // The note wraps long reasons: compare its words.
    let words = table.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(words.contains(".seg is missing"), "{table}");
    let log = daemon.log_text();
    assert!(
        log.contains("ERROR") && log.contains("is missing: 2 queued notification(s)"),
        "{log}"
    );
    assert!(
        log.contains("corrupt entry in the outbox of API_Polling/contacts"),
        "{log}"
    );
    assert!(
        !delivered(&receiver)
            .iter()
            .any(|id| id == "m1" || id == "m2")
    );
    let s = status(&dd).expect("the daemon answers");
    let resource = &s["instances"][0]["resources"][0];
    assert_eq!(resource["dead_letters"], 2, "{s}");
    assert!(resource["next_poll"].is_string(), "still scheduled: {s}");
    assert!(!log.contains("panicked"));
    daemon.signal("TERM");
    assert!(daemon.wait_exit(WAIT).await.success());
}

/// A dead-letter value whose queue reads and nothing after it: corrupt, counted with its queue.
fn cut_after_the_queue(key: &ResourceKey) -> Vec<u8> {
    let mut value = vec![4];
    for text in [&key.instance, &key.resource] {
        value.extend_from_slice(&(text.len() as u32).to_be_bytes());
        value.extend_from_slice(text.as_bytes());
    }
    value.push(0xff);
    value
}

/// Dead letters `prefix-0`… of `key`, each with a body of `body_bytes`.
fn dead_letters(store: &SledStore, key: &ResourceKey, prefix: &str, n: usize, body_bytes: usize) {
    for page in 0..n.div_ceil(50) {
        let mut commit = PageCommit::new(key.clone());
        commit.notifications = (page * 50..n.min(page * 50 + 50))
            .map(|i| NewNotification {
                event_id: format!("{prefix}-{i}"),
                body: vec![b'x'; body_bytes],
                created_at: Utc::now(),
            })
            .collect();
        store.commit(commit).unwrap();
    }
    for _ in 0..n {
        let head = store.outbox_head(key).unwrap().expect("queued");
        store
            .dead_letter(key, head.seq, 10, Some(410), "410 Gone")
            .unwrap();
    }
}

fn second_of(json: &serde_json::Value) -> i64 {
    let text = json
        .as_str()
        .unwrap_or_else(|| panic!("not a date: {json}"));
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap()
        .timestamp()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_summarises_many_large_dead_letters_in_a_small_answer() {
    let sim = ConnectWiseSim::start(SimConfig::default()).await.unwrap();
    let receiver = Receiver::start().await.unwrap();
    let dd = DaemonDir::new("");
    let removed = ResourceKey::new("Removed_Instance", "contacts");
    let before = Utc::now().timestamp();
    {
        let store = SledStore::open(&dd.path().join("state"), 8 << 20).unwrap();
        // 20 MB of bodies; one letter then damaged, its queue still readable.
        dead_letters(&store, &contacts(), "big", 200, 100 * 1024);
        dead_letters(&store, &removed, "gone", 3, 100);
        let damaged = cut_after_the_queue(&contacts());
        assert!(
            store
                .overwrite_dead_letter_for_tests("big-7", &damaged)
                .unwrap()
        );
    }
    let after = Utc::now().timestamp();
    dd.write_instance("contacts.json", &seed_instance(&sim, &receiver.url(), "60"));
    let daemon = dd.start(&[]);
    wait_for("the instance loaded", WAIT, || {
        status(&dd).is_some_and(|s| s["instances"][0]["resources"][0]["name"] == "contacts")
    })
    .await;

    let started = std::time::Instant::now();
    let out = pollerd(&dd, &["status", "--json"]);
    println!("status --json answered in {:?}", started.elapsed());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.len() < 16 * 1024, "{} bytes", out.stdout.len());
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["dead_letters"], 203, "{s}");
    assert_eq!(
        s["instances"][0]["resources"][0]["dead_letters"], 200,
        "{s}"
    );
    let summary = &s["dead_letter_summary"];
    assert_eq!(
        (&summary["corrupt"], &summary["not_loaded"]),
        (&1.into(), &3.into()),
        "{s}"
    );
    let (oldest, newest) = (second_of(&summary["oldest"]), second_of(&summary["newest"]));
    assert!(
        before <= oldest && oldest <= newest && newest <= after,
        "{s}"
    );

    let text = pollerd(&dd, &["status"]);
    // A long line wraps onto indented ones: read it as one.
    let text = String::from_utf8(text.stdout).unwrap().replace("\n  ", " ");
    let line = text
        .lines()
        .find(|line| line.starts_with("dead letters: "))
        .unwrap_or_else(|| panic!("no dead-letter line:\n{text}"));
    assert!(
        line.starts_with("dead letters: 203 (1 corrupt), dead-lettered ")
            && line.contains(", 3 of resources not loaded; `pollerd dead-letters list`"),
        "{text}"
    );

    // The counts follow a drop, and the listing still shows each letter.
    let dropped = pollerd(&dd, &["dead-letters", "drop", "gone-0"]);
    assert!(
        dropped.status.success(),
        "{}",
        String::from_utf8_lossy(&dropped.stderr)
    );
    let s = status(&dd).expect("the daemon answers");
    assert_eq!(
        (&s["dead_letters"], &s["dead_letter_summary"]["not_loaded"]),
        (&202.into(), &2.into()),
        "{s}"
    );
    let table = listing(&dd);
    assert!(
        row(&table, "gone-1").is_some() && row(&table, "big-199").is_some(),
        "{table}"
    );
    assert!(
        row(&table, "big-7").is_some_and(|line| line.contains("CORRUPT")),
        "{table}"
    );
    daemon.signal("TERM");
    assert!(daemon.wait_exit(WAIT).await.success());
}
