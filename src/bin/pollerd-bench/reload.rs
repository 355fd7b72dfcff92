//! Reload: an instance file rewritten (write + rename, as editors save) while the daemon runs;
//! the time from the rename to the simulator's first request carrying the new version's marker,
//! a `pageSize` no earlier version used.

use std::time::{Duration, Instant};

use anyhow::bail;
use chrono::Utc;
use pollerd::sim::connectwise::{ConnectWiseSim, SimConfig};

use crate::Bench;
use crate::harness::{DaemonDir, closed_port};
use crate::instances::{InstanceShape, instance};
use crate::report::{Metric, Target, metric, quantile, targeted};

/// A reload slower than this counts as failed: the daemon missed the edit.
const EDIT_LIMIT: Duration = Duration::from_secs(30);

pub async fn run(bench: &Bench) -> anyhow::Result<Vec<Metric>> {
    let sim = ConnectWiseSim::start(SimConfig::default()).await?;
    let dir = DaemonDir::new("")?;
    let callback = format!("http://127.0.0.1:{}/hook", closed_port()?);
    let write = |page_size: u32| {
        let shape = InstanceShape {
            name: "reload",
            callback: &callback,
            interval_minutes: 15.0,
            resources: 1,
            batch_size: 10,
            page_size,
            backfill_since: None,
        };
        dir.write_instance("reload", &instance(&sim, &shape))
    };
    write(1000)?;
    let mut daemon = dir.start(&bench.pollerd).await?;
    daemon.wait_ready().await?;
    wait_request(&sim, 1000).await?;
    let mut latencies_us = Vec::new();
    for edit in 0..bench.scale.reload_edits {
        let page_size = 999 - edit as u32;
        write(page_size)?;
        let written = Utc::now();
        let at = wait_request(&sim, page_size).await?;
        latencies_us.push((at - written).num_microseconds().unwrap_or(i64::MAX));
    }
    daemon.stop().await?;
    let max = *latencies_us.iter().max().expect("at least one edit") as f64 / 1000.0;
    Ok(vec![
        targeted(
            "median",
            "ms",
            quantile(&mut latencies_us, 0.5) / 1000.0,
            Target::AtMost(600.0),
        ),
        targeted("max", "ms", max, Target::AtMost(1000.0)),
        metric("edits", "edits", latencies_us.len() as f64),
    ])
}

/// When the simulator answered the first request with this page size.
async fn wait_request(
    sim: &ConnectWiseSim,
    page_size: u32,
) -> anyhow::Result<chrono::DateTime<Utc>> {
    let deadline = Instant::now() + EDIT_LIMIT;
    loop {
        if let Some(r) = sim
            .requests()
            .iter()
            .find(|r| r.page_size == Some(page_size as u64))
        {
            return Ok(r.at);
        }
        if Instant::now() > deadline {
            bail!("no request with pageSize={page_size} within {EDIT_LIMIT:?} of the edit");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
