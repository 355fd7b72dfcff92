//! Instance files changing under the running binary (SPEC §9): added, edited, broken, fixed,
//! renamed away, deleted, and a burst of mixed changes — checked through `pollerd status --json`.

mod support;

use std::collections::BTreeSet;
use std::time::Instant;

use pollerd::sim::connectwise::{ConnectWiseSim, RecordKind, SimConfig};
use pollerd::sim::receiver::{Behaviour, Receiver};
use serde_json::Value;
use support::*;

fn instance_names(s: &Value) -> BTreeSet<String> {
    s["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect()
}

/// Requests the simulator saw with this page size (each instance version uses its own).
fn polls_with_page_size(sim: &ConnectWiseSim, size: u64) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.page_size == Some(size))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_files_apply_by_themselves() {
    let sim = ConnectWiseSim::start(SimConfig::default()).await.unwrap();
    let receiver = Receiver::start().await.unwrap();
    let dd = DaemonDir::new("");
    let daemon = dd.start(&[]);
    wait_for("the admin socket", WAIT, || status(&dd).is_some()).await;
    assert!(instance_names(&status(&dd).unwrap()).is_empty());

    // Added: it polls without a signal.
    let written = Instant::now();
    dd.write_instance(
        "a.json",
        &sized_instance(&sim, &receiver.url(), "a", 101, "10"),
    );
    wait_for("instance a to poll", WAIT, || {
        polls_with_page_size(&sim, 101) >= 1
    })
    .await;
    println!("added file → first request in {:?}", written.elapsed());
    wait_for("a's watermark", WAIT, || {
        status(&dd).is_some_and(|s| !s["instances"][0]["resources"][0]["watermark"].is_null())
    })
    .await;
    let watermark = status(&dd).unwrap()["instances"][0]["resources"][0]["watermark"].clone();

    // Edited (a 10-minute interval becomes 0.6 s): applied, watermark kept.
    let id = sim.create(RecordKind::Contact, None);
    dd.write_instance(
        "a.json",
        &sized_instance(&sim, &receiver.url(), "a", 102, "0.01"),
    );
    wait_for("the edited version to poll repeatedly", WAIT, || {
        polls_with_page_size(&sim, 102) >= 3
    })
    .await;
    wait_for("the contact created before the edit", WAIT, || {
        receiver
            .accepted()
            .iter()
            .any(|r| r.json()["message"]["events"][0]["objectId"] == id.to_string().as_str())
    })
    .await;
    let s = status(&dd).unwrap();
    assert!(
        s["instances"][0]["resources"][0]["watermark"].as_str() >= watermark.as_str(),
        "{s}"
    );

    // Broken: the old version keeps polling; the error names file, line and column.
    std::fs::write(
        dd.instances().join("a.json"),
        "{\n  \"name\": \"a\",\n  \"element\": \n}\n",
    )
    .unwrap();
    wait_for("the parse error in the log", WAIT, || {
        dd.logs().contains("a.json:4:1: error: invalid JSON")
    })
    .await;
    let before = polls_with_page_size(&sim, 102);
    wait_for("the last good version to keep polling", WAIT, || {
        polls_with_page_size(&sim, 102) >= before + 2
    })
    .await;
    let s = status(&dd).unwrap();
    assert!(
        s["instances"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("a.json:4:1")),
        "{s}"
    );

    // Fixed: applied.
    dd.write_instance(
        "a.json",
        &sized_instance(&sim, &receiver.url(), "a", 103, "0.01"),
    );
    wait_for("the fixed version to poll", WAIT, || {
        polls_with_page_size(&sim, 103) >= 1
    })
    .await;
    assert!(status(&dd).unwrap()["instances"][0]["error"].is_null());

    // Deleted while its notifications wait for a receiver that is down: stopped, still delivered.
    receiver.set_default(Behaviour::Status(503));
    let pending = sim.create(RecordKind::Contact, None);
    wait_for("the pending notification", WAIT, || {
        receiver
            .requests()
            .iter()
            .any(|r| r.json()["message"]["events"][0]["objectId"] == pending.to_string().as_str())
    })
    .await;
    std::fs::remove_file(dd.instances().join("a.json")).unwrap();
    wait_for("a to stop", WAIT, || {
        status(&dd).is_some_and(|s| instance_names(&s).is_empty())
    })
    .await;
    let stopped_at = polls_with_page_size(&sim, 103);
    receiver.set_default(Behaviour::Ok);
    wait_for(
        "the pending notification after the file is gone",
        WAIT,
        || {
            receiver.accepted().iter().any(|r| {
                r.json()["message"]["events"][0]["objectId"] == pending.to_string().as_str()
            })
        },
    )
    .await;
    assert!(
        polls_with_page_size(&sim, 103) <= stopped_at + 1,
        "a removed instance must stop polling"
    );

    // Renamed away from *.json: stopped.
    dd.write_instance(
        "b.json",
        &sized_instance(&sim, &receiver.url(), "b", 104, "0.01"),
    );
    wait_for("b to run", WAIT, || {
        status(&dd).is_some_and(|s| instance_names(&s).contains("b"))
    })
    .await;
    std::fs::rename(
        dd.instances().join("b.json"),
        dd.instances().join("b.json.disabled"),
    )
    .unwrap();
    wait_for("b to stop", WAIT, || {
        status(&dd).is_some_and(|s| instance_names(&s).is_empty())
    })
    .await;

    daemon.signal("TERM");
    assert!(daemon.wait_exit(WAIT).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_changes_ends_with_the_final_files_and_one_poller_each() {
    let sim = ConnectWiseSim::start(SimConfig::default()).await.unwrap();
    let receiver = Receiver::start().await.unwrap();
    let dd = DaemonDir::new("");
    let daemon = dd.start(&[]);
    wait_for("the admin socket", WAIT, || status(&dd).is_some()).await;

    fastrand::seed(7);
    for step in 0..200u64 {
        let n = fastrand::usize(0..12);
        let file = dd.instances().join(format!("i{n}.json"));
        match fastrand::u8(0..5) {
            0 | 1 => dd.write_instance(
                &format!("i{n}.json"),
                &sized_instance(&sim, &receiver.url(), &format!("i{n}"), 200 + step, "0.05"),
            ),
            2 => {
                let _ = std::fs::remove_file(&file);
            }
            3 => {
                let to = dd
                    .instances()
                    .join(format!("i{}.json", fastrand::usize(0..12)));
                let _ = std::fs::rename(&file, &to);
            }
            _ => std::fs::write(&file, "{ \"broken\": ").unwrap(),
        }
    }
    // The files as they ended: valid ones, by instance name.
    let mut expected = BTreeSet::new();
    for entry in std::fs::read_dir(dd.instances()).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        if let Ok(v) = serde_json::from_str::<Value>(&text) {
            expected.insert(v["name"].as_str().unwrap().to_string());
        }
    }
    // Broken files that once were valid keep their last good version running.
    wait_for("the running set to settle", WAIT, || {
        status(&dd).is_some_and(|s| {
            let names = instance_names(&s);
            expected.is_subset(&names)
                && s["instances"].as_array().unwrap().iter().all(|i| {
                    let broken = i["error"].is_string();
                    (expected.contains(i["name"].as_str().unwrap()) || broken)
                        && i["resources"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .all(|r| r["pollers"] == 1)
                })
        })
    })
    .await;
    let s = status(&dd).unwrap();
    for i in s["instances"].as_array().unwrap() {
        for r in i["resources"].as_array().unwrap() {
            assert_eq!(r["pollers"], 1, "exactly one poller per resource: {s}");
        }
    }
    daemon.signal("TERM");
    assert!(daemon.wait_exit(WAIT).await.success());
}
