//! Footprint: the daemon with few and with many instances (3 resources each, 15-minute
//! intervals) against an idle simulator: time from spawn to READY=1, then, once every resource's
//! first (baseline) poll is committed, RSS and CPU over an idle window.

use std::time::{Duration, Instant};

use pollerd::sim::connectwise::{ConnectWiseSim, SimConfig};

use crate::Bench;
use crate::harness::{BenchDaemon, DaemonDir, ProcSample};
use crate::instances::{RESOURCES, write_idle_instances};
use crate::report::{Metric, Target, metric, targeted};

const MIB: f64 = 1048576.0;

pub async fn run(bench: &Bench) -> anyhow::Result<Vec<Metric>> {
    let [small, large] = bench.scale.footprint_instances;
    let mut out = measure(bench, small, 25.0, None).await?;
    out.extend(measure(bench, large, 80.0, Some((1.0, 500.0))).await?);
    Ok(out)
}

/// `cpu_and_ready`: targets for idle CPU (% of a core) and start → READY (ms), where set.
async fn measure(
    bench: &Bench,
    instances: usize,
    rss_target_mib: f64,
    cpu_and_ready: Option<(f64, f64)>,
) -> anyhow::Result<Vec<Metric>> {
    let sim = ConnectWiseSim::start(SimConfig::default()).await?;
    let dir = DaemonDir::new("")?;
    // Every 15 minutes: no poll falls due during the idle window.
    write_idle_instances(&sim, &dir, "footprint", instances, 15.0)?;
    let mut daemon = dir.start(&bench.pollerd).await?;
    let ready = daemon.wait_ready().await?;
    daemon.wait_baselines(instances * RESOURCES.len()).await?;
    let idle = idle_window(&daemon, bench.scale.idle).await?;
    daemon.stop().await?;
    let label = format!("{instances}x3");
    Ok(footprint_metrics(
        &label,
        &idle,
        ready,
        rss_target_mib,
        cpu_and_ready,
    ))
}

/// The daemon's memory and CPU over an idle window.
struct IdleWindow {
    before: ProcSample,
    after: ProcSample,
    /// RSS once a second, sorted.
    rss: Vec<u64>,
    seconds: f64,
}

async fn idle_window(daemon: &BenchDaemon, idle: Duration) -> anyhow::Result<IdleWindow> {
    let before = daemon.sample()?;
    let started = Instant::now();
    let mut rss = Vec::new();
    while started.elapsed() < idle {
        tokio::time::sleep(Duration::from_secs(1).min(idle)).await;
        rss.push(daemon.sample()?.rss_bytes);
    }
    let after = daemon.sample()?;
    let seconds = started.elapsed().as_secs_f64();
    rss.sort_unstable();
    Ok(IdleWindow {
        before,
        after,
        rss,
        seconds,
    })
}

/// Steady and peak RSS, idle CPU, start → READY and the CPU the start took, in that order.
fn footprint_metrics(
    label: &str,
    idle: &IdleWindow,
    ready: Duration,
    rss_target_mib: f64,
    cpu_and_ready: Option<(f64, f64)>,
) -> Vec<Metric> {
    let steady = idle.rss[idle.rss.len() / 2] as f64 / MIB;
    let cpu_percent = (idle.after.cpu_seconds - idle.before.cpu_seconds) / idle.seconds * 100.0;
    let ready_ms = ready.as_secs_f64() * 1000.0;
    let mut out = vec![
        targeted(
            format!("steady_rss_{label}"),
            "MiB",
            steady,
            Target::AtMost(rss_target_mib),
        ),
        metric(
            format!("peak_rss_{label}"),
            "MiB",
            idle.after.peak_rss_bytes as f64 / MIB,
        ),
    ];
    match cpu_and_ready {
        Some((cpu_target, ready_target)) => {
            out.push(targeted(
                format!("idle_cpu_{label}"),
                "% core",
                cpu_percent,
                Target::AtMost(cpu_target),
            ));
            out.push(targeted(
                format!("start_to_ready_{label}"),
                "ms",
                ready_ms,
                Target::AtMost(ready_target),
            ));
        }
        None => {
            out.push(metric(format!("idle_cpu_{label}"), "% core", cpu_percent));
            out.push(metric(format!("start_to_ready_{label}"), "ms", ready_ms));
        }
    }
    out.push(metric(
        format!("start_cpu_{label}"),
        "s",
        idle.before.cpu_seconds,
    ));
    out
}
