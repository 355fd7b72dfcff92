//! A task that panics is never silently gone: the guard the daemon runs every poll task and
//! delivery worker under logs the panic with the instance and resource, records it where
//! `pollerd status` reads it, counts it in the metric, and runs the task again.

mod support;

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pollerd::metrics::Metrics;
use pollerd::store::ResourceKey;
use pollerd::task_guard::{Backoff, GuardedTask, TaskKind, TaskPanics, run_restarting};
use support::wait_for;
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(30);

/// Log lines written while the test runs (the daemon's fmt layer, without colours).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every log line of this test binary (one global subscriber: a per-thread one races with the
/// other tests over tracing's callsite cache). Tests tell their lines apart by resource name.
fn logs() -> &'static Captured {
    static LOGS: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
        captured
    })
}

fn guarded(kind: TaskKind, panics: &TaskPanics, metrics: &Metrics) -> GuardedTask {
    guarded_resource("contacts", kind, panics, metrics)
}

fn guarded_resource(
    resource: &str,
    kind: TaskKind,
    panics: &TaskPanics,
    metrics: &Metrics,
) -> GuardedTask {
    let metrics = metrics.clone();
    GuardedTask {
        kind,
        key: ResourceKey::new("acme", resource),
        panics: panics.clone(),
        backoff: Backoff {
            first: Duration::from_millis(10),
            max: Duration::from_millis(40),
        },
        on_panic: Box::new(move |kind| metrics.task_panic(kind)),
    }
}

fn metric_line(metrics: &Metrics, task: &str) -> String {
    let wanted = format!("pollerd_task_panics_total{{task=\"{task}\"}} ");
    metrics
        .render()
        .lines()
        .find(|line| line.starts_with(&wanted))
        .unwrap_or_else(|| panic!("no {wanted} in\n{}", metrics.render()))
        .to_string()
}

/// Runs the guard over a task that panics on its first `panicking` runs and then ends normally;
/// returns how many times it ran.
async fn run_task_panicking_first(task: GuardedTask, panicking: u64) -> u64 {
    let runs = Arc::new(AtomicU64::new(0));
    let counted = runs.clone();
    let guard = run_restarting(task, CancellationToken::new(), move || {
        let run = counted.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            // Yield once, so the panic strikes a task that is running, not one being spawned.
            tokio::task::yield_now().await;
            if run <= panicking {
                panic!("index {run} out of range\nfor a test");
            }
        }
    });
    tokio::time::timeout(DEADLINE, guard)
        .await
        .expect("the guard returns once the task ends without a panic");
    runs.load(Ordering::SeqCst)
}

#[tokio::test]
async fn a_panicking_poll_task_is_logged_recorded_counted_and_run_again() {
    let logs = logs();
    let panics = TaskPanics::default();
    let metrics = Metrics::new();
    assert_eq!(
        metric_line(&metrics, "poll"),
        "pollerd_task_panics_total{task=\"poll\"} 0"
    );

    let task = guarded_resource("logged-contacts", TaskKind::Poll, &panics, &metrics);
    let runs = run_task_panicking_first(task, 2).await;

    assert_eq!(runs, 3, "run again after each of the two panics");
    let recorded = panics.of(&ResourceKey::new("acme", "logged-contacts"));
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0].kind, TaskKind::Poll);
    assert_eq!(recorded[0].count, 2);
    // The message on one line, as status shows it.
    assert_eq!(
        recorded[0].last_message,
        "index 2 out of range\\nfor a test"
    );
    assert_eq!(
        metric_line(&metrics, "poll"),
        "pollerd_task_panics_total{task=\"poll\"} 2"
    );
    assert_eq!(
        metric_line(&metrics, "delivery"),
        "pollerd_task_panics_total{task=\"delivery\"} 0"
    );

    let text = logs.text();
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("logged-contacts"))
        .collect();
    assert_eq!(errors.len(), 2, "one error line per panic:\n{text}");
    for line in &errors {
        assert!(line.contains("instance=acme"), "{line}");
        assert!(line.contains("resource=logged-contacts"), "{line}");
        assert!(line.contains("the poll task panicked (index "), "{line}");
        assert!(line.contains("it starts again in"), "{line}");
    }
    assert!(errors[1].contains("panics=2"), "{}", errors[1]);
}

#[tokio::test]
async fn a_panicking_delivery_worker_is_recorded_in_the_deliverers_registry() {
    // The registry status reads is the deliverer's, shared with the supervisor's poll tasks.
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn pollerd::store::Store> =
        Arc::new(pollerd::store::SledStore::open(dir.path(), 1 << 20).unwrap());
    let settings = pollerd::config::settings::DeliverySettings {
        timeout: Duration::from_secs(5),
        schedule: vec![Duration::from_secs(1)],
        max_in_flight: 8,
        grace_period: Duration::from_secs(5),
    };
    let deliverer = pollerd::delivery::Deliverer::new(store, &settings, None).unwrap();
    let metrics = Metrics::new();
    let panics = deliverer.task_panics();

    let runs = run_task_panicking_first(guarded(TaskKind::Delivery, &panics, &metrics), 1).await;

    assert_eq!(runs, 2);
    let recorded = deliverer
        .task_panics()
        .of(&ResourceKey::new("acme", "contacts"));
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(
        (recorded[0].kind, recorded[0].count),
        (TaskKind::Delivery, 1)
    );
    assert_eq!(
        metric_line(&metrics, "delivery"),
        "pollerd_task_panics_total{task=\"delivery\"} 1"
    );
}

#[tokio::test]
async fn a_task_that_keeps_panicking_is_retried_with_a_growing_pause_until_stopped() {
    let panics = TaskPanics::default();
    let metrics = Metrics::new();
    let mut task = guarded(TaskKind::Poll, &panics, &metrics);
    task.backoff = Backoff {
        first: Duration::from_millis(20),
        max: Duration::from_millis(80),
    };
    let starts = Arc::new(Mutex::new(Vec::<tokio::time::Instant>::new()));
    let seen = starts.clone();
    let cancel = CancellationToken::new();
    let guard = tokio::spawn(run_restarting(task, cancel.clone(), move || {
        seen.lock().unwrap().push(tokio::time::Instant::now());
        async { panic!("always") }
    }));
    wait_for("the task to be run again", DEADLINE, || {
        starts.lock().unwrap().len() >= 5
    })
    .await;
    cancel.cancel();
    tokio::time::timeout(DEADLINE, guard)
        .await
        .expect("a stop during the pause ends the guard")
        .unwrap();
    let starts = starts.lock().unwrap().clone();
    let pauses: Vec<Duration> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    // 20, 40, 80, 80 ms at least: doubling, then capped.
    for (pause, least) in pauses.iter().zip([20, 40, 80, 80]) {
        assert!(*pause >= Duration::from_millis(least), "{pauses:?}");
    }
    let count = panics.of(&ResourceKey::new("acme", "contacts"))[0].count;
    assert!(count >= 5, "{count}");
}

#[tokio::test]
async fn a_task_that_ends_normally_is_not_run_again() {
    let panics = TaskPanics::default();
    let metrics = Metrics::new();
    let runs = run_task_panicking_first(guarded(TaskKind::Poll, &panics, &metrics), 0).await;
    assert_eq!(runs, 1);
    assert!(panics.of(&ResourceKey::new("acme", "contacts")).is_empty());
    assert_eq!(
        metric_line(&metrics, "poll"),
        "pollerd_task_panics_total{task=\"poll\"} 0"
    );
}

#[tokio::test]
async fn what_a_panicked_task_held_is_released_before_it_starts_again() {
    // A poll task counts itself in `pollers` while it lives (a guard value it holds): after a
    // panic the count must drop back before the next start, or status would show two pollers.
    let panics = TaskPanics::default();
    let metrics = Metrics::new();
    let held = Arc::new(());
    let holders_at_start = Arc::new(Mutex::new(Vec::new()));
    let seen = holders_at_start.clone();
    let witness = held.clone();
    let runs = Arc::new(AtomicU64::new(0));
    let guard = run_restarting(
        guarded(TaskKind::Poll, &panics, &metrics),
        CancellationToken::new(),
        move || {
            seen.lock().unwrap().push(Arc::strong_count(&witness));
            let mine = witness.clone();
            let run = runs.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::task::yield_now().await;
                let _held_while_running = mine;
                if run == 0 {
                    panic!("first run");
                }
            }
        },
    );
    tokio::time::timeout(DEADLINE, guard).await.unwrap();
    // Counted at each start, before this run's own clone: the witness and the test's `held`.
    assert_eq!(*holders_at_start.lock().unwrap(), [2, 2]);
    assert_eq!(Arc::strong_count(&held), 1, "nothing kept after the end");
}
