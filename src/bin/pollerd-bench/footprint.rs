//! Footprint: the daemon with few and with many instances (3 resources each, 15-minute
//! intervals) against an idle simulator: time from spawn to READY=1, then, once every resource's
//! first (baseline) poll is committed, RSS and CPU over an idle window.

use std::time::{Duration, Instant};

use pollerd::sim::connectwise::{ConnectWiseSim, SimConfig};

use crate::Bench;
use crate::harness::{DaemonDir, WAIT_LIMIT, closed_port};
use crate::instances::{InstanceShape, RESOURCES, instance};
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
    let callback = format!("http://127.0.0.1:{}/hook", closed_port()?);
    for i in 0..instances {
        let name = format!("footprint-{i:04}");
        let shape = InstanceShape {
            name: &name,
            callback: &callback,
            interval_minutes: 15.0,
            resources: RESOURCES.len(),
            batch_size: 10,
            page_size: 1000,
            backfill_since: None,
        };
        dir.write_instance(&name, &instance(&sim, &shape))?;
    }
    let resources = instances * RESOURCES.len();
    let mut daemon = dir.start(&bench.pollerd).await?;
    let ready = daemon.wait_ready().await?;
    daemon
        .wait_status("every baseline poll committed", WAIT_LIMIT, |s| {
            s.instances
                .iter()
                .flat_map(|i| &i.resources)
                .filter(|r| r.watermark.is_some())
                .count()
                >= resources
        })
        .await?;
    let before = daemon.sample()?;
    let idle = bench.scale.idle;
    let started = Instant::now();
    let mut rss = Vec::new();
    while started.elapsed() < idle {
        tokio::time::sleep(Duration::from_secs(1).min(idle)).await;
        rss.push(daemon.sample()?.rss_bytes);
    }
    let after = daemon.sample()?;
    let idle_seconds = started.elapsed().as_secs_f64();
    daemon.stop().await?;
    rss.sort_unstable();
    let steady = rss[rss.len() / 2] as f64 / MIB;
    let cpu_percent = (after.cpu_seconds - before.cpu_seconds) / idle_seconds * 100.0;
    let ready_ms = ready.as_secs_f64() * 1000.0;
    let label = format!("{instances}x3");
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
            after.peak_rss_bytes as f64 / MIB,
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
        before.cpu_seconds,
    ));
    Ok(out)
}
