//! The instances-directory watcher on a real filesystem: what an operator does to the directory
//! (edit, copy, move, delete, replace the directory) is reported, and editor litter is not.
//!
//! Every wait is on the receiver with a generous deadline; nothing sleeps to synchronise.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use pollerd::watch::{Changes, InstanceWatcher, watch_instances};
use tokio::sync::mpsc::Receiver;

const DEBOUNCE: Duration = Duration::from_millis(250);
/// Generous: the machine running the tests may be busy.
const DEADLINE: Duration = Duration::from_secs(20);

struct Fixture {
    _tmp: tempfile::TempDir,
    /// The parent of `dir`, for things moved in and out.
    root: PathBuf,
    dir: PathBuf,
    watcher: Option<InstanceWatcher>,
    changes: Receiver<Changes>,
}

/// A watched `root/instances.d` holding `files` (or missing, if `create_dir` is false).
fn fixture(create_dir: bool, files: &[&str]) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let dir = root.join("instances.d");
    if create_dir {
        std::fs::create_dir(&dir).unwrap();
        for name in files {
            std::fs::write(dir.join(name), "{}").unwrap();
        }
    }
    let (watcher, changes) = watch_instances(&dir, DEBOUNCE).unwrap();
    Fixture {
        _tmp: tmp,
        root,
        dir,
        watcher: Some(watcher),
        changes,
    }
}

impl Fixture {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Every report up to and including the first one `done` accepts.
    async fn receive_until(&mut self, what: &str, done: impl Fn(&Changes) -> bool) -> Vec<Changes> {
        let deadline = Instant::now() + DEADLINE;
        let mut received = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.changes.recv()).await {
                Ok(Some(changes)) => {
                    let finished = done(&changes);
                    received.push(changes);
                    if finished {
                        return received;
                    }
                }
                Ok(None) => panic!("watcher stopped while waiting for {what}; got {received:?}"),
                Err(_) => panic!("no report of {what} within {DEADLINE:?}; got {received:?}"),
            }
        }
    }

    async fn receive_path(&mut self, name: &str) -> Vec<Changes> {
        let path = self.path(name);
        self.receive_until(&path.display().to_string(), |c| c.paths.contains(&path))
            .await
    }

    /// Writes `zz-final.json` and receives up to its report: every one of `written` was named on
    /// the way.
    async fn assert_all_reported(&mut self, written: &[String]) {
        std::fs::write(self.path("zz-final.json"), "{}").unwrap();
        let batches = self.receive_path("zz-final.json").await;
        let reported = names(&batches);
        let missing: Vec<&String> = written.iter().filter(|n| !reported.contains(n)).collect();
        assert!(
            missing.is_empty(),
            "not reported: {missing:?}; got {batches:?}"
        );
    }

    async fn receive_rescan(&mut self) -> Vec<Changes> {
        self.receive_until("a rescan", |c| c.rescan).await
    }

    /// Proves the directory is being watched (again): writes fresh probe files until one is
    /// reported by name. A probe written before the watch was re-armed goes unseen, so one try
    /// may not be enough; the overall deadline still bounds the loop.
    async fn assert_watched(&mut self) {
        let deadline = Instant::now() + DEADLINE;
        for attempt in 0.. {
            assert!(
                Instant::now() < deadline,
                "{} is not watched again after {DEADLINE:?}",
                self.dir.display()
            );
            let probe = self.path(&format!("probe-{attempt}.json"));
            std::fs::write(&probe, "{}").unwrap();
            let wait = Instant::now() + Duration::from_secs(2);
            while let Ok(Some(changes)) =
                tokio::time::timeout_at(wait.into(), self.changes.recv()).await
            {
                if changes.paths.contains(&probe) {
                    return;
                }
            }
        }
    }
}

fn names(batches: &[Changes]) -> Vec<String> {
    batches
        .iter()
        .flat_map(|c| &c.paths)
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test]
async fn a_new_file_is_reported() {
    let mut f = fixture(true, &[]);
    std::fs::write(f.path("new.json"), "{}").unwrap();
    f.receive_path("new.json").await;
}

#[tokio::test]
async fn a_modified_file_is_reported() {
    let mut f = fixture(true, &["existing.toml"]);
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(f.path("existing.toml"))
        .unwrap();
    file.write_all(b"\n# edited\n").unwrap();
    drop(file);
    f.receive_path("existing.toml").await;
}

#[tokio::test]
async fn a_removed_file_is_reported() {
    let mut f = fixture(true, &["doomed.json"]);
    std::fs::remove_file(f.path("doomed.json")).unwrap();
    f.receive_path("doomed.json").await;
}

#[tokio::test]
async fn an_atomic_save_reports_the_saved_file_not_the_temporary() {
    let mut f = fixture(true, &["edited.json"]);
    // What editors and config-management tools do: write a temporary, rename it over the file.
    let temporary = f.path("edited.json.tmp");
    std::fs::write(&temporary, r#"{"name": "edited"}"#).unwrap();
    std::fs::rename(&temporary, f.path("edited.json")).unwrap();
    let batches = f.receive_path("edited.json").await;
    assert!(
        batches.iter().all(|c| !c.paths.contains(&temporary)),
        "{batches:?}"
    );
}

#[tokio::test]
async fn vim_swap_and_backup_files_are_never_reported() {
    let mut f = fixture(true, &["real.json"]);
    // vim's litter: swap files, the write-permission probe `4913`, a backup `~` file.
    std::fs::write(f.path(".real.json.swp"), "swap").unwrap();
    std::fs::write(f.path(".real.json.swx"), "swap").unwrap();
    std::fs::write(f.path("4913"), "").unwrap();
    std::fs::remove_file(f.path("4913")).unwrap();
    std::fs::copy(f.path("real.json"), f.path("real.json~")).unwrap();
    std::fs::remove_file(f.path(".real.json.swx")).unwrap();
    // Positive control: a real instance file written afterwards is reported, and nothing else.
    std::fs::write(f.path("marker.json"), "{}").unwrap();
    let batches = f.receive_path("marker.json").await;
    assert_eq!(names(&batches), ["marker.json"], "{batches:?}");
}

#[tokio::test]
async fn reading_files_and_listing_the_directory_report_nothing() {
    // The daemon reads what it is told about; that must not be reported back as a change.
    let mut f = fixture(true, &["read.json"]);
    std::fs::read_to_string(f.path("read.json")).unwrap();
    pollerd::config::list_instance_files(&f.dir).unwrap();
    std::fs::write(f.path("marker.json"), "{}").unwrap();
    let batches = f.receive_path("marker.json").await;
    assert_eq!(names(&batches), ["marker.json"], "{batches:?}");
    assert!(batches.iter().all(|c| !c.rescan), "{batches:?}");
}

#[tokio::test]
async fn a_copied_in_file_is_reported() {
    let mut f = fixture(true, &[]);
    let source = f.root.join("template.json");
    std::fs::write(&source, "{}").unwrap();
    std::fs::copy(&source, f.path("copied.json")).unwrap();
    f.receive_path("copied.json").await;
}

#[tokio::test]
async fn a_file_moved_in_is_reported() {
    let mut f = fixture(true, &[]);
    let elsewhere = f.root.join("staging");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("moved-in.json"), "{}").unwrap();
    std::fs::rename(elsewhere.join("moved-in.json"), f.path("moved-in.json")).unwrap();
    f.receive_path("moved-in.json").await;
}

#[tokio::test]
async fn a_file_moved_in_from_the_parent_directory_is_reported() {
    // The parent is watched too, so this rename is seen from both ends.
    let mut f = fixture(true, &[]);
    std::fs::write(f.root.join("from-parent.json"), "{}").unwrap();
    std::fs::rename(f.root.join("from-parent.json"), f.path("from-parent.json")).unwrap();
    f.receive_path("from-parent.json").await;
}

#[tokio::test]
async fn a_file_moved_out_is_reported() {
    let mut f = fixture(true, &["moved-out.json"]);
    let elsewhere = f.root.join("retired");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::rename(f.path("moved-out.json"), elsewhere.join("moved-out.json")).unwrap();
    f.receive_path("moved-out.json").await;
}

#[tokio::test]
async fn a_deleted_and_recreated_directory_is_rescanned_and_watched_again() {
    let mut f = fixture(true, &["before.json"]);
    std::fs::remove_dir_all(&f.dir).unwrap();
    f.receive_rescan().await;

    std::fs::create_dir(&f.dir).unwrap();
    std::fs::write(f.path("after.json"), "{}").unwrap();
    f.receive_rescan().await;
    f.assert_watched().await;
}

#[tokio::test]
async fn a_directory_replaced_by_a_rename_is_rescanned_and_the_old_one_forgotten() {
    let mut f = fixture(true, &["old.json"]);
    let replacement = f.root.join("instances.d.new");
    let retired = f.root.join("instances.d.old");
    std::fs::create_dir(&replacement).unwrap();
    std::fs::write(replacement.join("new.json"), "{}").unwrap();
    std::fs::rename(&f.dir, &retired).unwrap();
    std::fs::rename(&replacement, &f.dir).unwrap();
    f.receive_rescan().await;
    f.assert_watched().await;

    // The retired directory's changes must not be reported under the watched name.
    std::fs::write(retired.join("stale.json"), "{}").unwrap();
    std::fs::write(f.path("marker.json"), "{}").unwrap();
    let batches = f.receive_path("marker.json").await;
    assert!(
        !names(&batches).contains(&"stale.json".to_string()),
        "{batches:?}"
    );
}

#[tokio::test]
async fn a_directory_missing_at_start_is_reported_once_it_appears() {
    let mut f = fixture(false, &[]);
    assert!(!f.dir.exists());
    std::fs::create_dir(&f.dir).unwrap();
    std::fs::write(f.path("first.json"), "{}").unwrap();
    f.receive_rescan().await;
    f.assert_watched().await;
}

#[tokio::test]
async fn a_burst_of_writes_names_every_file() {
    let mut f = fixture(true, &[]);
    let files: Vec<String> = (0..50).map(|i| format!("burst-{i:02}.json")).collect();
    // 200 writes, interleaved across the 50 files.
    for round in 0..4 {
        for name in &files {
            std::fs::write(f.path(name), format!("{{\"round\": {round}}}")).unwrap();
        }
    }
    f.assert_all_reported(&files).await;
}

#[tokio::test]
async fn a_consumer_that_stops_reading_misses_nothing() {
    // Fill the channel to the brim without reading, then keep changing files: the watcher must
    // neither block nor drop them, but merge them into what it hands over once there is room.
    let mut f = fixture(true, &[]);
    let mut written = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    while f.changes.len() < f.changes.max_capacity() {
        let name = format!("queued-{:02}.json", written.len());
        std::fs::write(f.path(&name), "{}").unwrap();
        written.push(name);
        // Polls the queue length (a condition), with a deadline; reading would defeat the test.
        let reports_before = f.changes.len();
        while f.changes.len() == reports_before {
            assert!(Instant::now() < deadline, "reports stopped queueing");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    for i in 0..20 {
        let name = format!("while-full-{i:02}.json");
        std::fs::write(f.path(&name), "{}").unwrap();
        written.push(name);
    }
    f.assert_all_reported(&written).await;
}

#[tokio::test]
async fn dropping_the_watcher_closes_the_channel() {
    let mut f = fixture(true, &[]);
    drop(f.watcher.take());
    let closed = tokio::time::timeout(DEADLINE, async {
        while f.changes.recv().await.is_some() {}
    })
    .await;
    assert!(closed.is_ok(), "the receiver was not closed");
}

#[test]
fn a_missing_parent_directory_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let parent = tmp.path().join("no-such-dir");
    let error = watch_instances(&parent.join("instances.d"), DEBOUNCE).unwrap_err();
    let message = format!("{error:#}");
    assert!(message.contains(&parent.display().to_string()), "{message}");
}

/// The inodes this process's inotify descriptors watch now (from `/proc/self/fdinfo`).
fn watched_inodes() -> Vec<u64> {
    let mut inodes = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fdinfo").unwrap().flatten() {
        let Ok(info) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        for line in info.lines().filter(|l| l.starts_with("inotify wd:")) {
            let inode = line
                .split_whitespace()
                .find_map(|field| field.strip_prefix("ino:"))
                .and_then(|hex| u64::from_str_radix(hex, 16).ok());
            inodes.extend(inode);
        }
    }
    inodes
}

/// Before the watcher unwatched on stop, notify's own thread closed its descriptor a moment
/// after the drop returned, and a directory removed in that moment (as `pollerd demo` removes
/// its temporary one) made notify warn `WatchNotFound`. 20 watchers in a row make that moment
/// likely to show.
#[tokio::test]
async fn a_dropped_watcher_leaves_no_watch_behind() {
    use std::os::unix::fs::MetadataExt;

    for round in 0..20 {
        let mut fixture = fixture(true, &["a.json"]);
        let dir = std::fs::metadata(&fixture.dir).unwrap().ino();
        let root = std::fs::metadata(&fixture.root).unwrap().ino();
        let watched = watched_inodes();
        assert!(
            watched.contains(&dir) && watched.contains(&root),
            "the directory and its parent are watched while the watcher lives"
        );
        drop(fixture.watcher.take());
        let left = watched_inodes();
        assert!(
            !left.contains(&dir) && !left.contains(&root),
            "round {round}: watches left once the drop returned: {left:?}"
        );
    }
}
