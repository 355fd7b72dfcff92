//! Tests that need a second process. The child is this same test binary run on one ignored
//! helper test, told its store directory through an environment variable.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use pollerd::store::{SledStore, Store};

use crate::support::child::this_test_binary;

use super::{CACHE_BYTES, assert_locked, at, drain, event_ids, key, open, page};

const CHILD_DIR_VAR: &str = "POLLERD_STORE_TEST_DIR";

/// A child process that is killed when the test ends, however it ends.
struct ChildProcess(Child);

impl ChildProcess {
    fn kill(&mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts this test binary on one ignored helper test; returns it and a channel of its lines.
/// Its stdin is a pipe that closes when this process dies, however it dies.
fn spawn_child(test_name: &str, dir: &Path) -> (ChildProcess, mpsc::Receiver<String>) {
    let mut child = this_test_binary(test_name)
        .env(CHILD_DIR_VAR, dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    (ChildProcess(child), lines)
}

/// Waits (at most 30 s) for a line from the child that `accept` returns Some for.
fn wait_for_line<T>(
    lines: &mpsc::Receiver<String>,
    mut accept: impl FnMut(&str) -> Option<T>,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .expect("child went quiet or exited");
        if let Some(found) = accept(&line) {
            return found;
        }
    }
}

fn child_dir() -> PathBuf {
    std::env::var_os(CHILD_DIR_VAR)
        .expect("a helper run by other tests in a child process")
        .into()
}

#[test]
#[ignore = "helper: run in a child process by another test"]
fn child_holds_the_store_open() {
    let store = open(&child_dir());
    // Leading newline: libtest's "test NAME ... " has none of its own.
    println!("\nstore open");
    // Keep the lock until the parent kills this process or goes away (stdin closes).
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(store);
}

#[test]
fn a_store_held_by_another_process_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, lines) = spawn_child("processes::child_holds_the_store_open", dir.path());
    wait_for_line(&lines, |line| (line == "store open").then_some(()));
    let result = SledStore::open(dir.path(), CACHE_BYTES);
    child.kill();
    assert_locked(
        result
            .err()
            .expect("open must fail while the child holds it"),
        dir.path(),
    );
}

const CRASH_KEY: (&str, &str) = ("crash", "contacts");
const CRASH_PAGE_SIZE: usize = 3;

#[test]
#[ignore = "helper: run in a child process by another test"]
fn child_commits_pages_until_killed() {
    let store = open(&child_dir());
    let k = key(CRASH_KEY.0, CRASH_KEY.1);
    for page_number in 0..100_000_i64 {
        let ids: Vec<String> = (0..CRASH_PAGE_SIZE)
            .map(|n| format!("p{page_number}-{n}"))
            .collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let mut commit = page(&k, &refs, at(page_number));
        commit.seen = vec![(format!("obj-{page_number}"), at(page_number))];
        store.commit(commit).unwrap();
        println!("\ncommitted {page_number}");
    }
}

#[test]
fn kill_9_keeps_every_committed_page_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, lines) = spawn_child("processes::child_commits_pages_until_killed", dir.path());
    let reported = wait_for_line(&lines, |line| {
        let page: i64 = line.strip_prefix("committed ")?.parse().ok()?;
        (page >= 30).then_some(page)
    });
    child.kill(); // SIGKILL: no destructor, no final flush
    // Pages reported before the kill were flushed; the page in flight may or may not be there.
    // Lines already written before the kill count too; the channel ends with the pipe.
    let later = lines
        .iter()
        .filter_map(|l| l.strip_prefix("committed ")?.parse::<i64>().ok());
    let reported = later.max().unwrap_or(reported).max(reported);

    let store = open(dir.path());
    let k = key(CRASH_KEY.0, CRASH_KEY.1);
    let watermark = store.watermark(&k).unwrap().expect("a watermark");
    let pages = (watermark - at(0)).num_seconds() + 1;
    assert!(
        pages > reported,
        "page {reported} was reported committed but only {pages} pages survived"
    );
    let expected: Vec<String> = (0..pages)
        .flat_map(|p| (0..CRASH_PAGE_SIZE).map(move |n| format!("p{p}-{n}")))
        .collect();
    assert_eq!(store.stats().unwrap().outbox_depth, expected.len() as u64);
    assert_eq!(event_ids(&drain(&store, &k)), expected);
    let last_seen = format!("obj-{}", pages - 1);
    assert_eq!(
        store.seen_dates(&k, &[&last_seen]).unwrap(),
        vec![Some(watermark)]
    );
    assert_eq!(store.seen_count(&k).unwrap(), pages as u64);
}
