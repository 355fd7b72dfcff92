//! Steady state: many instances × 3 resources polling an idle simulator on a short interval, the
//! cost that decides how many resources one machine serves. After every first (baseline) poll has
//! committed, a window of many polls: the daemon's CPU per poll and per resource-hour, beside the
//! simulator's own CPU (it runs in this process), so a slow simulator would show.

use std::time::{Duration, Instant};

use pollerd::sim::connectwise::{ConnectWiseSim, SimConfig};

use crate::Bench;
use crate::harness::{BenchDaemon, DaemonDir, ProcSample, thread_cpu_seconds};
use crate::instances::{RESOURCES, write_idle_instances};
use crate::report::{Metric, Target, metric, targeted};

const MIB: f64 = 1048576.0;

/// One steady-state measurement: how many instances, polled how often, watched how long.
#[derive(Clone, Copy, Debug)]
pub struct SteadyShape {
    pub instances: usize,
    pub interval: Duration,
    pub window: Duration,
    /// Targets: CPU per poll (µs) and daemon CPU (% of one core), where this shape has them.
    pub targets: (Option<f64>, Option<f64>),
}

pub async fn run(bench: &Bench) -> anyhow::Result<Vec<Metric>> {
    let mut out = Vec::new();
    let chosen = |shape: &&SteadyShape| bench.steady_instances.is_none_or(|n| n == shape.instances);
    for shape in bench.scale.steady.iter().filter(chosen) {
        let shape = SteadyShape {
            interval: bench.steady_interval.unwrap_or(shape.interval),
            window: bench.steady_window.unwrap_or(shape.window),
            ..*shape
        };
        out.extend(measure(bench, &shape).await?);
    }
    Ok(out)
}

pub async fn measure(bench: &Bench, shape: &SteadyShape) -> anyhow::Result<Vec<Metric>> {
    let sim = ConnectWiseSim::start(SimConfig::default()).await?;
    let dir = DaemonDir::new("")?;
    let interval_minutes = shape.interval.as_secs_f64() / 60.0;
    write_idle_instances(&sim, &dir, "steady", shape.instances, interval_minutes)?;
    let mut daemon = dir.start(&bench.pollerd).await?;
    let ready = daemon.wait_ready().await?;
    daemon
        .wait_baselines(shape.instances * RESOURCES.len())
        .await?;
    let window = watch(&daemon, &sim, shape.window).await?;
    daemon.stop().await?;
    Ok(steady_metrics(shape, &window, ready))
}

/// What one window saw: the daemon's samples, the simulator's CPU and the requests it served.
struct Window {
    before: ProcSample,
    after: ProcSample,
    /// RSS once a second, sorted.
    rss: Vec<u64>,
    sim_cpu_seconds: f64,
    polls: usize,
    seconds: f64,
}

async fn watch(
    daemon: &BenchDaemon,
    sim: &ConnectWiseSim,
    length: Duration,
) -> anyhow::Result<Window> {
    let requests_before = sim.request_count();
    let (own_before, _) = thread_cpu_seconds("")?;
    let before = daemon.sample()?;
    let started = Instant::now();
    let mut rss = Vec::new();
    while started.elapsed() < length {
        tokio::time::sleep(Duration::from_secs(1).min(length)).await;
        rss.push(daemon.sample()?.rss_bytes);
    }
    let after = daemon.sample()?;
    let (own_after, _) = thread_cpu_seconds("")?;
    let seconds = started.elapsed().as_secs_f64();
    rss.sort_unstable();
    Ok(Window {
        before,
        after,
        rss,
        sim_cpu_seconds: own_after - own_before,
        polls: sim.request_count().saturating_sub(requests_before),
        seconds,
    })
}

/// CPU per poll and per resource-hour, the daemon's and the simulator's share of a core, polls
/// per second, steady and peak RSS, and spawn → READY=1, labelled with the shape.
fn steady_metrics(shape: &SteadyShape, w: &Window, ready: Duration) -> Vec<Metric> {
    let label = format!("{}x3_{}s", shape.instances, shape.interval.as_secs());
    let cpu = w.after.cpu_seconds - w.before.cpu_seconds;
    let polls = w.polls.max(1) as f64;
    let resources = (shape.instances * RESOURCES.len()) as f64;
    let per_poll_us = cpu / polls * 1e6;
    let daemon_percent = cpu / w.seconds * 100.0;
    let per_resource_hour_ms = cpu / resources / (w.seconds / 3600.0) * 1000.0;
    let (poll_target, percent_target) = shape.targets;
    vec![
        with_target(
            format!("cpu_per_poll_{label}"),
            "µs",
            per_poll_us,
            poll_target,
        ),
        with_target(
            format!("daemon_cpu_{label}"),
            "% core",
            daemon_percent,
            percent_target,
        ),
        metric(
            format!("cpu_per_resource_hour_{label}"),
            "ms",
            per_resource_hour_ms,
        ),
        metric(
            format!("simulator_cpu_{label}"),
            "% core",
            w.sim_cpu_seconds / w.seconds * 100.0,
        ),
        metric(format!("polls_per_s_{label}"), "polls/s", polls / w.seconds),
        metric(
            format!("steady_rss_{label}"),
            "MiB",
            w.rss[w.rss.len() / 2] as f64 / MIB,
        ),
        metric(
            format!("peak_rss_{label}"),
            "MiB",
            w.after.peak_rss_bytes as f64 / MIB,
        ),
        metric(
            format!("start_to_ready_{label}"),
            "ms",
            ready.as_secs_f64() * 1000.0,
        ),
    ]
}

fn with_target(name: String, unit: &'static str, value: f64, at_most: Option<f64>) -> Metric {
    match at_most {
        Some(t) => targeted(name, unit, value, Target::AtMost(t)),
        None => metric(name, unit, value),
    }
}
