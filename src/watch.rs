//! Watches the instances directory and reports which instance files changed, debounced.
//!
//! Three threads are involved: notify's inotify loop, the debouncer's timer, and our own
//! worker, which owns the watcher (so it can re-arm it when the directory is replaced) and
//! hands [`Changes`] to the daemon. The debouncer only ever pushes into an unbounded queue, and
//! the worker only ever `try_send`s to the daemon, merging what could not be sent into the next
//! batch: a daemon that is slow to read can delay reports, never block or deadlock the watcher.
//!
//! The directory's parent is watched too: that is the only way to see the directory itself
//! being deleted, recreated or replaced by a rename, after which the directory is watched
//! again and a `rescan` is reported.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;
use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{EventKind, RecursiveMode};
use notify_debouncer_full::{
    DebounceEventResult, DebouncedEvent, Debouncer, RecommendedCache, new_debouncer,
};
use tokio::sync::mpsc::error::TrySendError;

use crate::config::is_instance_file;

/// What changed, after debouncing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Changes {
    /// Instance files (per [`is_instance_file`]) created, modified, removed or renamed in or out,
    /// as `dir.join(name)` with `dir` as given to [`watch_instances`].
    pub paths: BTreeSet<PathBuf>,
    /// The directory itself was replaced, removed or recreated, or events were lost: re-read
    /// the whole directory (which may be missing).
    pub rescan: bool,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty() && !self.rescan
    }

    /// Adds `other` to `self`: the union of both reports.
    pub fn merge(&mut self, other: Changes) {
        self.paths.extend(other.paths);
        self.rescan |= other.rescan;
    }
}

/// Watches one instances directory; dropping it stops watching and closes the receiver.
pub struct InstanceWatcher {
    input: std_mpsc::Sender<Input>,
    worker: Option<JoinHandle<()>>,
}

impl Drop for InstanceWatcher {
    fn drop(&mut self) {
        let _ = self.input.send(Input::Stop);
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

impl std::fmt::Debug for InstanceWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceWatcher").finish_non_exhaustive()
    }
}

/// How many reports may wait for the daemon; beyond that they are merged, not queued.
const CHANNEL_CAPACITY: usize = 16;
/// How soon to retry handing over a report the daemon had no room for.
const RETRY_FULL_CHANNEL: Duration = Duration::from_millis(50);
/// A zero timeout would make the debouncer's timer thread spin.
const MIN_DEBOUNCE: Duration = Duration::from_millis(10);

/// Starts watching `dir`. A missing `dir` is fine (a `rescan` is reported once it appears); a
/// missing parent directory is an error. Start watching before reading the directory, so that
/// nothing changed in between goes unreported.
pub fn watch_instances(
    dir: &Path,
    debounce: Duration,
) -> anyhow::Result<(InstanceWatcher, tokio::sync::mpsc::Receiver<Changes>)> {
    let watched_dir = std::path::absolute(dir)
        .with_context(|| format!("cannot resolve the instances directory {}", dir.display()))?;
    let parent = watched_dir
        .parent()
        .with_context(|| format!("cannot watch {}: it has no parent directory", dir.display()))?
        .to_path_buf();

    let (input_tx, input_rx) = std_mpsc::channel();
    let from_debouncer = input_tx.clone();
    let mut debouncer = new_debouncer(
        debounce.max(MIN_DEBOUNCE),
        None,
        move |batch: DebounceEventResult| {
            // Unbounded and never blocking; fails only once the worker has stopped.
            let _ = from_debouncer.send(Input::Batch(batch));
        },
    )
    .context("cannot start the file watcher")?;
    debouncer
        .watch(&parent, RecursiveMode::NonRecursive)
        .with_context(|| {
            format!(
                "cannot watch {} (the parent of the instances directory)",
                parent.display()
            )
        })?;
    let mut state = Watched {
        dir: watched_dir,
        parent,
        reported_dir: dir.to_path_buf(),
    };
    state.arm(&mut debouncer);

    let (output_tx, output_rx) = tokio::sync::mpsc::channel(CHANNEL_CAPACITY);
    let worker = std::thread::Builder::new()
        .name("pollerd-watch".into())
        .spawn(move || run(debouncer, state, input_rx, output_tx))
        .context("cannot start the file watcher thread")?;
    Ok((
        InstanceWatcher {
            input: input_tx,
            worker: Some(worker),
        },
        output_rx,
    ))
}

enum Input {
    Batch(DebounceEventResult),
    Stop,
}

type Watcher = Debouncer<notify::RecommendedWatcher, RecommendedCache>;

fn run(
    mut debouncer: Watcher,
    mut state: Watched,
    input: std_mpsc::Receiver<Input>,
    output: tokio::sync::mpsc::Sender<Changes>,
) {
    let mut pending = Changes::default();
    loop {
        let next = if pending.is_empty() {
            input.recv().unwrap_or(Input::Stop)
        } else {
            // A report is waiting for room: wake up to offer it again even if nothing new comes.
            match input.recv_timeout(RETRY_FULL_CHANNEL) {
                Ok(next) => next,
                Err(std_mpsc::RecvTimeoutError::Timeout) => Input::Batch(Ok(Vec::new())),
                Err(std_mpsc::RecvTimeoutError::Disconnected) => Input::Stop,
            }
        };
        match next {
            Input::Batch(batch) => state.absorb(batch, &mut debouncer, &mut pending),
            Input::Stop => return state.disarm(&mut debouncer),
        }
        // Whatever else is already queued joins the same report, so a burst becomes one.
        loop {
            match input.try_recv() {
                Ok(Input::Batch(batch)) => state.absorb(batch, &mut debouncer, &mut pending),
                Ok(Input::Stop) | Err(std_mpsc::TryRecvError::Disconnected) => {
                    return state.disarm(&mut debouncer);
                }
                Err(std_mpsc::TryRecvError::Empty) => break,
            }
        }
        if pending.is_empty() {
            continue;
        }
        match output.try_send(std::mem::take(&mut pending)) {
            Ok(()) => {}
            // The daemon is busy: keep merging into this report and offer it again shortly.
            Err(TrySendError::Full(unsent)) => pending = unsent,
            Err(TrySendError::Closed(_)) => return state.disarm(&mut debouncer),
        }
    }
}

/// The directory being watched, as notify spells it and as the caller does.
struct Watched {
    dir: PathBuf,
    parent: PathBuf,
    reported_dir: PathBuf,
}

impl Watched {
    /// Watches the directory if it exists now. The old watch goes first: should it outlive a
    /// rename (notify usually drops it on seeing the rename), it would follow the old
    /// directory and report that directory's files under our name.
    fn arm(&mut self, debouncer: &mut Watcher) {
        let _ = debouncer.unwatch(&self.dir);
        if !self.dir.is_dir() {
            tracing::debug!(dir = %self.dir.display(), "instances directory missing; waiting for it");
            return;
        }
        match debouncer.watch(&self.dir, RecursiveMode::NonRecursive) {
            Ok(()) => tracing::debug!(dir = %self.dir.display(), "watching instances directory"),
            // Gone again already: its parent's watch will tell us when it is back.
            Err(error) => {
                tracing::debug!(%error, dir = %self.dir.display(), "cannot watch instances directory yet")
            }
        }
    }

    /// Removes both watches before the watcher is dropped. Dropping it does not wait for
    /// notify's own thread, which would otherwise still see the directory go if it is removed
    /// right after the daemon stops (`pollerd demo` removes its temporary directory) and warn
    /// that it cannot remove a watch already gone. `unwatch` waits for that thread's answer.
    fn disarm(&self, debouncer: &mut Watcher) {
        let _ = debouncer.unwatch(&self.dir);
        let _ = debouncer.unwatch(&self.parent);
    }

    fn absorb(&mut self, batch: DebounceEventResult, debouncer: &mut Watcher, into: &mut Changes) {
        let events = match batch {
            Ok(events) => events,
            Err(errors) => {
                for error in errors {
                    tracing::warn!(%error, dir = %self.dir.display(), "file watcher error; rescanning instances directory");
                }
                into.rescan = true;
                return;
            }
        };
        let mut directory_changed = false;
        for event in &events {
            if event.need_rescan() {
                tracing::debug!(dir = %self.dir.display(), "file events were lost; rescanning");
                into.rescan = true;
                continue;
            }
            for path in &event.paths {
                if *path == self.dir {
                    directory_changed |= changes_directory(event);
                } else if path.parent() == Some(self.dir.as_path())
                    && is_instance_file(path)
                    && changes_file(event)
                    && let Some(name) = path.file_name()
                {
                    into.paths.insert(self.reported_dir.join(name));
                }
            }
        }
        if directory_changed {
            tracing::info!(dir = %self.dir.display(), "instances directory replaced, removed or recreated; rescanning");
            // Re-armed before the rescan is reported, so nothing after the rescan is missed.
            self.arm(debouncer);
            into.rescan = true;
        }
    }
}

/// Whether an event on a file means its content or presence may have changed. Opening and
/// reading do not (the daemon reading a file must not make it report that file again).
fn changes_file(event: &DebouncedEvent) -> bool {
    match event.kind {
        EventKind::Create(_) | EventKind::Remove(_) | EventKind::Modify(_) => true,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) | EventKind::Any | EventKind::Other => false,
    }
}

/// Whether an event on the directory's own path means a different directory (or none) may be
/// there now. Its metadata changing or it being listed does not.
fn changes_directory(event: &DebouncedEvent) -> bool {
    matches!(
        event.kind,
        EventKind::Create(_) | EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_changes_is_their_union() {
        let mut first = Changes {
            paths: [PathBuf::from("d/a.json")].into(),
            rescan: false,
        };
        first.merge(Changes {
            paths: [PathBuf::from("d/b.toml"), PathBuf::from("d/a.json")].into(),
            rescan: true,
        });
        assert_eq!(
            first,
            Changes {
                paths: [PathBuf::from("d/a.json"), PathBuf::from("d/b.toml")].into(),
                rescan: true,
            }
        );
        assert!(!first.is_empty());
        assert!(Changes::default().is_empty());
    }
}
