//! Disk full: the state directory on a small tmpfs that a filler file fills up while records
//! change. The daemon keeps running, logs the storage error, does not move the watermark, and
//! once the filler is gone catches up with nothing lost.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use pollerd::sim::connectwise::{ConnectWiseSim, RecordKind, SimConfig};
use pollerd::sim::receiver::Receiver;

use crate::ledger::Ledger;
use crate::support::*;
use crate::{current_versions, scale, status, tail, wait_costly};

/// A tmpfs mounted for the test; unmounted on drop, also when the test fails.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// `Err` with the reason when mounting is not permitted here (not root, no CAP_SYS_ADMIN).
    fn mount(path: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size},mode=0700"))
            .arg("tmpfs")
            .arg(path)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Tmpfs {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Still busy (a process holding a file): detach it now, freed when released.
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

/// Writes zeros into `path` until the file system says it is full; returns the bytes written.
fn fill(path: &Path) -> u64 {
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    let _ = file.sync_all();
    written
}

fn watermark(dd: &DaemonDir, resource: &str) -> Option<String> {
    let s = status(dd)?;
    s["instances"][0]["resources"]
        .as_array()?
        .iter()
        .find(|r| r["name"] == resource)
        .and_then(|r| r["watermark"].as_str().map(str::to_string))
}

/// Ignored by plain `cargo test`, which may not run as root; `.ci/run` runs it with `--ignored`
/// where a tmpfs mounts and prints `SKIP disk_full: ...` where one does not. Asked for and unable
/// to mount, it fails: a test that cannot run never passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root to mount a tmpfs: cargo test --test chaos -- --ignored disk_full"]
async fn a_full_disk_stops_progress_without_losing_anything() {
    let dd = DaemonDir::new(
        "[delivery]\nschedule = [\"200ms\", \"400ms\", \"800ms\", \"1s\", \"1s\", \"1s\", \"1s\", \"1s\", \"1s\", \"1s\", \"1s\", \"1s\"]\n",
    );
    let mount = Tmpfs::mount(&dd.path().join("state"), scale("32m", "64m"))
        .unwrap_or_else(|reason| panic!("cannot mount a tmpfs here (needs root): {reason}"));
    let sim = ConnectWiseSim::start(SimConfig::default()).await.unwrap();
    let receiver = Receiver::start().await.unwrap();
    let instance = with_page_size(seed_instance(&sim, &receiver.url(), "0.01"), 1000);
    dd.write_instance("contacts.json", &instance);
    let mut daemon = dd.start(&[]);
    wait_for("the first watermark", WAIT, || {
        watermark(&dd, "contacts").is_some()
    })
    .await;
    let mut ledger = Ledger::default();
    let mut ids = sim.create_many(RecordKind::Contact, 200, None);
    let versions = current_versions(&sim, RecordKind::Contact, &ids);
    wait_costly(&dd, "the first contacts", WAIT, || {
        ledger.refresh(&receiver);
        ledger.has_all("contacts", &versions)
    })
    .await;

    let filler = mount.path.join("filler");
    let filled = fill(&filler);
    let before = watermark(&dd, "contacts").unwrap();
    // The disk stays full this long while records keep changing, in large pages so that every
    // commit needs new space.
    let full_for = scale(Duration::from_secs(8), Duration::from_secs(90));
    // Fewer per second in the long form, so that what piles up fits the tmpfs once freed.
    let (creates, updates) = scale((400, 200), (100, 100));
    // Every change from here on is dated after this (the provider's clock).
    let changes_begin = sim.now();
    let full_since = Instant::now();
    let mut rounds = 0;
    while full_since.elapsed() < full_for {
        ids.extend(sim.create_many(RecordKind::Contact, creates, None));
        for k in 0..updates {
            let id = ids[(k * 7 + rounds) % ids.len()];
            sim.update(
                RecordKind::Contact,
                id,
                Some(sim.now() + chrono::Duration::seconds(1)),
            );
        }
        rounds += 1;
        // While the store cannot write, status shows the watermark on disk, or none while the
        // store is being reopened: that of a run that ended before the changes began (an idle
        // run's watermark reaches the disk up to about a second after the run, and a write that
        // small may still fit), never a later one, which could skip a change.
        let round_end = Instant::now() + Duration::from_secs(1);
        while Instant::now() < round_end {
            assert!(
                daemon.child.try_wait().unwrap().is_none(),
                "the daemon exited on a full disk:\n{}",
                tail(&dd.logs(), 40)
            );
            if let Some(now) = watermark(&dd, "contacts") {
                let at = |text: &str| chrono::DateTime::parse_from_rfc3339(text).unwrap();
                assert!(
                    at(&before) <= at(&now) && at(&now) <= changes_begin,
                    "the watermark moved past the changes while nothing could be stored: \
                     {now}, before {before}, changes from {changes_begin}"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert!(
        dd.logs().contains("No space left on device"),
        "the storage error is logged:\n{}",
        tail(&dd.logs(), 40)
    );

    std::fs::remove_file(&filler).unwrap();
    let versions = current_versions(&sim, RecordKind::Contact, &ids);
    wait_costly(&dd, "every change after space returned", WAIT * 3, || {
        ledger.refresh(&receiver);
        ledger.has_all("contacts", &versions)
    })
    .await;
    // An idle run's watermark is written within about a second of the run.
    wait_for("the watermark to move again", WAIT, || {
        watermark(&dd, "contacts").is_some_and(|now| now > before)
    })
    .await;
    ledger.assert_duplicates_repeat_event_ids();
    daemon.signal("TERM");
    assert!(daemon.wait_exit(WAIT).await.success());
    // The store opens again after all this.
    daemon = dd.start(&[]);
    wait_for("the daemon after the disk-full episode", WAIT, || {
        status(&dd).is_some()
    })
    .await;
    // (Not `assert_no_panic`: "cannot open the store" is expected while the disk is full.)
    assert!(!dd.logs().contains("panicked"), "{}", tail(&dd.logs(), 40));
    println!(
        "disk full for {full_for:?} ({rounds} rounds of {} changes), filler {} MiB: {} versions delivered, {} duplicate deliveries (same eventId), 0 lost",
        creates + updates,
        filled >> 20,
        ledger.versions().len(),
        ledger.duplicate_deliveries()
    );
    daemon.signal("TERM");
    assert!(daemon.wait_exit(WAIT).await.success());
    drop(mount);
}
