//! Tasks that must never die quietly: a resource's poll task and its queue's delivery worker.
//!
//! [`run_restarting`] runs such a task's future and watches how it ends. A panic
//! (a bug) is logged as an error naming the instance and resource, recorded in [`TaskPanics`]
//! (which `pollerd status` shows), counted by the caller's hook (a metric), and the task is
//! started again after a backoff, so the resource is polled and its queue delivered again.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::FutureExt as _;
use tokio_util::sync::CancellationToken;

use crate::store::ResourceKey;

/// Longest panic message kept: it may quote a value from outside (an index, a date).
const MAX_MESSAGE_CHARS: usize = 500;

/// Which task of a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TaskKind {
    Poll,
    Delivery,
}

impl TaskKind {
    /// The name shown in logs, `status` and the `task` label of the metric.
    pub fn name(self) -> &'static str {
        match self {
            TaskKind::Poll => "poll",
            TaskKind::Delivery => "delivery",
        }
    }

    fn described(self) -> &'static str {
        match self {
            TaskKind::Poll => "poll task",
            TaskKind::Delivery => "delivery worker",
        }
    }
}

/// The panics of one task of one resource since the daemon started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskPanic {
    pub kind: TaskKind,
    pub count: u64,
    pub last_at: DateTime<Utc>,
    /// The last panic's message, bounded, control characters escaped.
    pub last_message: String,
}

/// Every task panic since the daemon started, by resource. Cheap to clone; clones share it.
/// It holds one entry per resource and task kind, however often they panic.
#[derive(Clone, Debug, Default)]
pub struct TaskPanics {
    by_task: Arc<Mutex<BTreeMap<(ResourceKey, TaskKind), TaskPanic>>>,
}

impl TaskPanics {
    /// Notes a panic of `kind` for `key`; returns how many that task has had.
    pub fn record(&self, key: &ResourceKey, kind: TaskKind, message: &str) -> u64 {
        let mut by_task = self.by_task.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = by_task
            .entry((key.clone(), kind))
            .or_insert_with(|| TaskPanic {
                kind,
                count: 0,
                last_at: Utc::now(),
                last_message: String::new(),
            });
        entry.count = entry.count.saturating_add(1);
        entry.last_at = Utc::now();
        entry.last_message = message.to_string();
        entry.count
    }

    /// The panics of `key`'s tasks, poll task first.
    pub fn of(&self, key: &ResourceKey) -> Vec<TaskPanic> {
        let by_task = self.by_task.lock().unwrap_or_else(PoisonError::into_inner);
        [TaskKind::Poll, TaskKind::Delivery]
            .iter()
            .filter_map(|kind| by_task.get(&(key.clone(), *kind)).cloned())
            .collect()
    }
}

/// Waits between a panic and the next start: `first`, doubling after each panic up to `max`;
/// back to `first` once a run has lasted longer than `max` (the panic was not a loop).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

/// What [`run_restarting`] watches over.
pub struct GuardedTask {
    pub kind: TaskKind,
    pub key: ResourceKey,
    pub panics: TaskPanics,
    pub backoff: Backoff,
    /// Told of each panic at once, after it is logged and recorded (to count it in a metric,
    /// to clear the poison of locks the task may have held).
    pub on_panic: Box<dyn Fn(TaskKind) + Send + Sync>,
}

/// Runs `start()`'s future until it ends by itself; after a panic, logs it, records it and starts
/// it again after the backoff. Returns when a run ends without panicking, or when `cancel` fires
/// during a backoff. The panic is caught in this task rather than by spawning the future on a task
/// of its own: one task per resource instead of two, which counts with ten thousand of them.
/// Not an `async fn`, so that its arguments are held once (an `async fn` keeps each twice).
#[allow(clippy::manual_async_fn)]
pub fn run_restarting<F, Fut>(
    task: GuardedTask,
    cancel: CancellationToken,
    mut start: F,
) -> impl Future<Output = ()> + Send
where
    F: FnMut() -> Fut + Send,
    Fut: Future<Output = ()> + Send + 'static,
{
    async move {
        let mut delay = task.backoff.first;
        loop {
            let started = Instant::now();
            // Unwind safety: what a panicking run shared (status, counters behind locks) is plain
            // data; the hook clears the poison of those locks.
            let Err(payload) = std::panic::AssertUnwindSafe(start()).catch_unwind().await else {
                return;
            };
            if started.elapsed() > task.backoff.max {
                delay = task.backoff.first;
            }
            let message = panic_message(payload.as_ref());
            report(&task, &message, delay);
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
            delay = delay.saturating_mul(2).min(task.backoff.max);
        }
    }
}

fn report(task: &GuardedTask, message: &str, restart_in: Duration) {
    let count = task.panics.record(&task.key, task.kind, message);
    tracing::error!(
        instance = %task.key.instance,
        resource = %task.key.resource,
        task = task.kind.name(),
        panics = count,
        "the {} panicked ({message}); it starts again in {restart_in:?} (a bug: please report it)",
        task.kind.described(),
    );
    (task.on_panic)(task.kind);
}

/// A panic's message (`panic!` gives a `&str` or a `String`), bounded and on one line.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message");
    let mut shown = String::new();
    for c in text.chars().take(MAX_MESSAGE_CHARS) {
        if c.is_control() {
            shown.extend(c.escape_default());
        } else {
            shown.push(c);
        }
    }
    if text.chars().nth(MAX_MESSAGE_CHARS).is_some() {
        shown.push('…');
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_messages_are_bounded_and_on_one_line() {
        let text: Box<dyn std::any::Any + Send> = Box::new("index 7 out of range\nfor 3");
        assert_eq!(panic_message(text.as_ref()), "index 7 out of range\\nfor 3");
        let long: Box<dyn std::any::Any + Send> = Box::new("x".repeat(10_000));
        let shown = panic_message(long.as_ref());
        assert_eq!(shown.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(shown.ends_with('…'));
        let other: Box<dyn std::any::Any + Send> = Box::new(42_u32);
        assert_eq!(panic_message(other.as_ref()), "a panic without a message");
    }

    #[test]
    fn panics_are_counted_per_resource_and_task() {
        let panics = TaskPanics::default();
        let key = ResourceKey::new("acme", "contacts");
        assert_eq!(panics.record(&key, TaskKind::Delivery, "first"), 1);
        assert_eq!(panics.record(&key, TaskKind::Delivery, "second"), 2);
        assert_eq!(panics.record(&key, TaskKind::Poll, "poll"), 1);
        let seen = panics.of(&key);
        assert_eq!(seen.len(), 2);
        assert_eq!((seen[0].kind, seen[0].count), (TaskKind::Poll, 1));
        assert_eq!(
            (seen[1].kind, seen[1].count, seen[1].last_message.as_str()),
            (TaskKind::Delivery, 2, "second")
        );
        assert!(panics.of(&ResourceKey::new("acme", "other")).is_empty());
    }
}
