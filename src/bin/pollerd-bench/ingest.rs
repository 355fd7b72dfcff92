//! Ingest: changed contacts across many instances (one simulated tenant each), read with
//! `backfillSince` so the daemon's first run of every resource scans them all; records/s from
//! the first request at any simulator to every notification committed in the store.
//!
//! The receiver is down (connection refused, retry schedule of one hour) so nothing leaves the
//! outbox: its depth, read over the admin socket, says when every page is committed.

use std::time::Duration;

use chrono::{DateTime, Utc};
use pollerd::sim::connectwise::{ConnectWiseSim, RecordKind, SimConfig};

use crate::Bench;
use crate::harness::{DaemonDir, WAIT_LIMIT, closed_port};
use crate::instances::{InstanceShape, instance};
use crate::postgres::StoreChoice;
use crate::report::{Metric, metric, targeted};

pub const BATCH_SIZE: u32 = 10;

/// `n` simulators with `per_sim` contacts each, dated half an hour ago.
pub async fn start_sims(n: usize, per_sim: usize) -> anyhow::Result<Vec<ConnectWiseSim>> {
    let dated = Utc::now() - chrono::Duration::minutes(30);
    let mut sims = Vec::with_capacity(n);
    for _ in 0..n {
        let sim = ConnectWiseSim::start(SimConfig::default()).await?;
        let creating = sim.clone();
        tokio::task::spawn_blocking(move || {
            creating.create_many(RecordKind::Contact, per_sim, Some(dated))
        })
        .await?;
        sims.push(sim);
    }
    Ok(sims)
}

/// One instance per simulator, contacts only, reading everything of the last hour on its first run.
pub fn write_backfill_instances(
    dir: &DaemonDir,
    sims: &[ConnectWiseSim],
    prefix: &str,
    callback: &str,
    page_size: u32,
) -> anyhow::Result<()> {
    let since = (Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    for (i, sim) in sims.iter().enumerate() {
        let name = format!("{prefix}-{i:03}");
        let shape = InstanceShape {
            name: &name,
            callback,
            interval_minutes: 15.0,
            resources: 1,
            batch_size: BATCH_SIZE,
            page_size,
            backfill_since: Some(since.clone()),
        };
        dir.write_instance(&name, &instance(sim, &shape))?;
    }
    Ok(())
}

/// Notifications one resource's scan of `records` makes in pages of `page`, `batch` per notification.
pub fn notifications_for(records: usize, page: usize, batch: usize) -> usize {
    (records / page) * page.div_ceil(batch) + (records % page).div_ceil(batch)
}

/// The earliest request any of the simulators answered.
pub fn first_request(sims: &[ConnectWiseSim]) -> Option<DateTime<Utc>> {
    sims.iter()
        .filter_map(|s| s.requests().first().map(|r| r.at))
        .min()
}

pub async fn run(bench: &Bench) -> anyhow::Result<Vec<Metric>> {
    let scale = bench.scale;
    let shape = IngestShape {
        records: scale.ingest_records,
        instances: scale.ingest_instances,
        page_size: scale.ingest_page_size,
    };
    measure(bench, &shape).await
}

/// One ingest measurement: `records` spread over `instances`, read in pages of `page_size`.
pub struct IngestShape {
    pub records: usize,
    pub instances: usize,
    pub page_size: u32,
}

pub async fn measure(bench: &Bench, shape: &IngestShape) -> anyhow::Result<Vec<Metric>> {
    let per_sim = shape.records / shape.instances;
    let records = per_sim * shape.instances;
    let sims = start_sims(shape.instances, per_sim).await?;
    let record_bytes =
        serde_json::to_vec(&sims[0].record(RecordKind::Contact, 1).expect("record 1"))?.len();
    let store = StoreChoice::fresh(bench.postgres.as_ref()).await?;
    let dir = DaemonDir::new(&format!(
        "[delivery]\nschedule = [\"1h\"]\n{}",
        store.settings()
    ))?;
    let callback = format!("http://127.0.0.1:{}/hook", closed_port()?);
    write_backfill_instances(&dir, &sims, "ingest", &callback, shape.page_size)?;
    let expected =
        shape.instances * notifications_for(per_sim, shape.page_size as usize, BATCH_SIZE as usize);

    let mut daemon = dir.start(&bench.pollerd).await?;
    daemon.wait_ready().await?;
    let cpu_before = daemon.sample()?.cpu_seconds;
    daemon
        .wait_status("every notification committed", WAIT_LIMIT, |s| {
            s.outbox_depth >= expected as u64
        })
        .await?;
    let done = Utc::now();
    let sample = daemon.sample()?;
    let first = first_request(&sims).expect("the daemon asked the simulators");
    // Every run also ends (watermark set); its report counts the events, a check on the figure.
    daemon
        .wait_status("every run finished", Duration::from_secs(60), |s| {
            let events: u64 = s
                .instances
                .iter()
                .flat_map(|i| &i.resources)
                .map(|r| r.events_emitted)
                .sum();
            events >= records as u64
        })
        .await?;
    daemon.stop().await?;
    let seconds = (done - first).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6;
    Ok(vec![
        targeted(
            "records_per_s",
            "records/s",
            records as f64 / seconds,
            store.ingest_target(),
        ),
        metric("duration", "s", seconds),
        metric("records", "records", records as f64),
        metric("record_size", "bytes", record_bytes as f64),
        metric("daemon_cpu", "s", sample.cpu_seconds - cpu_before),
        metric(
            "daemon_peak_rss",
            "MiB",
            sample.peak_rss_bytes as f64 / 1048576.0,
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_per_scan() {
        assert_eq!(notifications_for(10_000, 1000, 10), 1000);
        assert_eq!(notifications_for(500, 100, 10), 50);
        assert_eq!(notifications_for(1005, 1000, 10), 101);
        assert_eq!(notifications_for(95, 50, 10), 10);
    }
}
