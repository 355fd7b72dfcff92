//! Config chaos: random writes, in-place and atomic, renames, deletes, truncations, garbage and
//! invalid versions of instance files while the daemon polls. It must stay up and end with
//! exactly the final valid set: valid files run, a file that turned invalid keeps its last good
//! version (with its error shown), a file that never validated does not run, and every resource
//! has exactly one poller (SPEC §9).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use pollerd::sim::connectwise::{ConnectWiseSim, SimConfig};
use pollerd::sim::receiver::Receiver;
use serde_json::Value;

use crate::support::*;
use crate::{assert_no_panic, scale, status, tail};

/// File names the chaos plays with.
const FILES: usize = 12;

/// What a file holds now, as the test wrote it.
#[derive(Clone, Debug, PartialEq)]
enum Content {
    Valid(String),
    Invalid,
}

/// The instance files as written: current content, and every name each path ever held validly
/// (the daemon may have seen any of them as the last good version).
#[derive(Default)]
struct Model {
    now: BTreeMap<String, Content>,
    /// Files moved to a name the daemon ignores (`*~`), by that name.
    ignored: BTreeMap<String, Content>,
    ever_valid: BTreeMap<String, BTreeSet<String>>,
}

impl Model {
    fn set(&mut self, file: &str, content: Content) {
        if let Content::Valid(name) = &content {
            self.ever_valid
                .entry(file.to_string())
                .or_default()
                .insert(name.clone());
        }
        self.now.insert(file.to_string(), content);
    }

    fn valid_names(&self) -> BTreeSet<String> {
        self.now
            .values()
            .filter_map(|c| match c {
                Content::Valid(name) => Some(name.clone()),
                Content::Invalid => None,
            })
            .collect()
    }

    /// Why the running set in `s` is not the final valid set, or `None` when it is.
    fn mismatch(&self, s: &Value) -> Option<String> {
        let instances = s["instances"].as_array()?;
        let running: BTreeSet<String> = instances
            .iter()
            .map(|i| i["name"].as_str().unwrap().to_string())
            .collect();
        for name in self.valid_names() {
            if !running.contains(&name) {
                return Some(format!("{name} has a valid file but does not run"));
            }
        }
        for i in instances {
            let name = i["name"].as_str().unwrap();
            let file = Path::new(i["file"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .to_string();
            match self.now.get(&file) {
                None => return Some(format!("{name} runs from {file}, which is gone")),
                Some(Content::Valid(current)) if current == name => {
                    if !i["error"].is_null() {
                        return Some(format!("{name} from a valid {file} shows an error"));
                    }
                }
                Some(Content::Valid(current)) => {
                    return Some(format!(
                        "{name} runs from {file}, which now defines {current}"
                    ));
                }
                Some(Content::Invalid) => {
                    let ever = self.ever_valid.get(&file);
                    if !ever.is_some_and(|names| names.contains(name)) {
                        return Some(format!(
                            "{name} runs from {file}, which never validated as {name}"
                        ));
                    }
                    if i["error"].is_null() {
                        return Some(format!(
                            "{name} keeps its last good version, but the error of {file} is not shown"
                        ));
                    }
                }
            }
            for r in i["resources"].as_array().unwrap() {
                if r["pollers"] != 1 {
                    return Some(format!("{name}/{}: {} pollers", r["name"], r["pollers"]));
                }
            }
        }
        None
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_instance_file_changes_end_with_the_final_valid_set() {
    let steps = scale(200u64, 1000);
    let sim = ConnectWiseSim::start(SimConfig::default()).await.unwrap();
    let receiver = Receiver::start().await.unwrap();
    let dd = DaemonDir::new("");
    let mut daemon = dd.start(&[]);
    wait_for("the admin socket", WAIT, || status(&dd).is_some()).await;
    let seed = fastrand::u64(..);
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut model = Model::default();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for step in 0..steps {
        let n = rng.usize(0..FILES);
        let file = format!("i{n}.json");
        let path = dd.instances().join(&file);
        // A page size per step tells versions apart (1..=1000 is valid).
        let valid = sized_instance(
            &sim,
            &receiver.url(),
            &format!("i{}", rng.usize(0..FILES)),
            1 + step % 1000,
            "0.05",
        );
        let text = serde_json::to_string_pretty(&valid).unwrap();
        let what = match rng.u8(0..9) {
            0 | 1 => {
                dd.write_instance(&file, &valid);
                model.set(
                    &file,
                    Content::Valid(valid["name"].as_str().unwrap().into()),
                );
                "atomic valid write"
            }
            2 => {
                // In place, as a careless editor: the daemon may read it half written.
                std::fs::write(&path, &text).unwrap();
                model.set(
                    &file,
                    Content::Valid(valid["name"].as_str().unwrap().into()),
                );
                "in-place valid write"
            }
            3 => {
                let mut bad = valid.clone();
                match rng.u8(0..3) {
                    0 => bad["element"]["key"] = "nosuchelement".into(),
                    1 => bad["configuration"]["event.poller.refresh_interval"] = "soon".into(),
                    _ => {
                        bad["configuration"]["event.notification.callback.url"] = Value::Null;
                    }
                }
                dd.write_instance(&file, &bad);
                model.set(&file, Content::Invalid);
                "invalid version"
            }
            4 => {
                std::fs::write(&path, &text[..rng.usize(1..text.len() - 1)]).unwrap();
                model.set(&file, Content::Invalid);
                "truncation"
            }
            5 => {
                let garbage: Vec<u8> = (0..rng.usize(1..400)).map(|_| rng.u8(..)).collect();
                std::fs::write(&path, garbage).unwrap();
                model.set(&file, Content::Invalid);
                "garbage"
            }
            6 => {
                if std::fs::remove_file(&path).is_ok() {
                    model.now.remove(&file);
                }
                "delete"
            }
            7 => {
                let to = format!("i{}.json", rng.usize(0..FILES));
                if to != file && std::fs::rename(&path, dd.instances().join(&to)).is_ok() {
                    let moved = model.now.remove(&file).unwrap();
                    model.set(&to, moved);
                }
                "rename"
            }
            _ => {
                // Renamed to a name the daemon ignores, or back from it.
                let away = format!("i{n}.json~");
                let away_path = dd.instances().join(&away);
                if std::fs::rename(&path, &away_path).is_ok() {
                    let moved = model.now.remove(&file).unwrap();
                    model.ignored.insert(away, moved);
                } else if std::fs::rename(&away_path, &path).is_ok() {
                    let back = model.ignored.remove(&away).unwrap();
                    model.set(&file, back);
                }
                "rename to an ignored name or back"
            }
        };
        *counts.entry(what).or_default() += 1;
        // Now and then a pause, so the daemon applies intermediate states too (a file that
        // validated and then broke keeps that version).
        if rng.u8(0..10) == 0 {
            tokio::time::sleep(Duration::from_millis(rng.u64(300..700))).await;
        }
    }

    let mut last = String::new();
    let settled = async {
        loop {
            match status(&dd).map(|s| model.mismatch(&s)) {
                Some(None) => break,
                Some(Some(why)) => last = why,
                None => last = "the daemon does not answer".into(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    if tokio::time::timeout(WAIT, settled).await.is_err() {
        // Tell a missed file event from a wrong reload: a full re-read (SIGHUP) must settle it.
        daemon.signal("HUP");
        let after_hup = async {
            while status(&dd).is_none_or(|s| model.mismatch(&s).is_some()) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        let hup_fixed = tokio::time::timeout(WAIT / 4, after_hup).await.is_ok();
        panic!(
            "seed {seed}: the running set did not settle: {last} (a SIGHUP re-read {} it)\nfiles: {:?}\nignored: {:?}\n{}",
            if hup_fixed { "fixed" } else { "did not fix" },
            model.now,
            model.ignored,
            tail(&dd.logs(), 30)
        );
    }
    assert!(
        daemon.child.try_wait().unwrap().is_none(),
        "the daemon stays up:\n{}",
        tail(&dd.logs(), 40)
    );
    // Still polling: the final set's instances keep asking the simulator.
    let polls = sim.request_count();
    wait_for("the final set to poll", WAIT, || {
        sim.request_count() > polls
    })
    .await;
    let s = status(&dd).unwrap();
    assert_eq!(model.mismatch(&s), None, "{s}");
    daemon.signal("TERM");
    assert!(daemon.wait_exit(WAIT).await.success());
    assert_no_panic(&dd);
    // A restart reads only what the files hold now: exactly the valid ones run.
    daemon = dd.start(&[]);
    let expected = model.valid_names();
    wait_for("the restarted daemon to load the valid files", WAIT, || {
        status(&dd).is_some_and(|s| {
            let names: BTreeSet<String> = s["instances"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["name"].as_str().unwrap().to_string())
                .collect();
            names == expected
        })
    })
    .await;
    daemon.signal("TERM");
    assert!(daemon.wait_exit(WAIT).await.success());
    let kept: usize = s["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["error"].is_string())
        .count();
    println!(
        "config chaos (seed {seed}): {steps} changes {counts:?}; ended with {} running, \
         {kept} of them the last good version of a now-invalid file; one poller each",
        s["instances"].as_array().unwrap().len()
    );
}

/// Found by the chaos above: an instance whose definition moved to another file unchanged
/// (a rename, or a copy taking over from a deleted file) kept running but status still named
/// the old file, and the new file's errors were never shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_instance_that_moves_to_another_file_reports_the_new_file() {
    let sim = ConnectWiseSim::start(SimConfig::default()).await.unwrap();
    let receiver = Receiver::start().await.unwrap();
    let dd = DaemonDir::new("");
    let daemon = dd.start(&[]);
    wait_for("the admin socket", WAIT, || status(&dd).is_some()).await;
    let file_of = |s: &Value| s["instances"][0]["file"].as_str().map(str::to_string);
    dd.write_instance(
        "a.json",
        &sized_instance(&sim, &receiver.url(), "x", 100, "0.05"),
    );
    wait_for("x to run from a.json", WAIT, || {
        status(&dd).is_some_and(|s| file_of(&s).is_some_and(|f| f.ends_with("a.json")))
    })
    .await;
    std::fs::rename(dd.instances().join("a.json"), dd.instances().join("b.json")).unwrap();
    wait_for("x to run from b.json", WAIT, || {
        status(&dd).is_some_and(|s| file_of(&s).is_some_and(|f| f.ends_with("b.json")))
    })
    .await;
    // Its file's errors are its own now.
    std::fs::write(dd.instances().join("b.json"), "{ \"name\": \"x\", ").unwrap();
    wait_for("b.json's error on x", WAIT, || {
        status(&dd).is_some_and(|s| {
            s["instances"][0]["error"]
                .as_str()
                .is_some_and(|e| e.contains("b.json"))
        })
    })
    .await;
    let s = status(&dd).unwrap();
    assert_eq!(s["instances"].as_array().unwrap().len(), 1, "{s}");
    assert_eq!(s["instances"][0]["resources"][0]["pollers"], 1, "{s}");
    daemon.signal("TERM");
    assert!(daemon.wait_exit(WAIT).await.success());
}
