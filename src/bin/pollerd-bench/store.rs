//! Store: events polled from the simulators (batch 10) and delivered to the fast receiver until
//! every one is acknowledged; then a graceful stop (the store is flushed) and the size of the
//! state directory.

use std::time::Instant;

use crate::Bench;
use crate::harness::{DaemonDir, WAIT_LIMIT, dir_size};
use crate::ingest::{start_sims, write_backfill_instances};
use crate::receiver::FastReceiver;
use crate::report::{Metric, Target, metric, targeted};

const MIB: f64 = 1048576.0;

pub async fn run(bench: &Bench) -> anyhow::Result<Vec<Metric>> {
    let scale = bench.scale;
    let per_sim = scale.store_events / scale.store_instances;
    let events = (per_sim * scale.store_instances) as u64;
    let sims = start_sims(scale.store_instances, per_sim).await?;
    let receiver = FastReceiver::start().await?;
    let dir = DaemonDir::new("")?;
    write_backfill_instances(&dir, &sims, "store", &receiver.url(), 1000)?;
    let mut daemon = dir.start(&bench.pollerd).await?;
    daemon.wait_ready().await?;
    let started = Instant::now();
    daemon
        .wait_status("every event delivered and acknowledged", WAIT_LIMIT, |s| {
            s.outbox_depth == 0 && receiver.events() >= events
        })
        .await?;
    let seconds = started.elapsed().as_secs_f64();
    let peak = daemon.sample()?.peak_rss_bytes as f64 / MIB;
    daemon.stop().await?;
    let (apparent, allocated) = dir_size(&dir.state())?;
    Ok(vec![
        targeted(
            "state_dir_size",
            "MiB",
            apparent as f64 / MIB,
            Target::AtMost(200.0),
        ),
        metric("state_dir_disk_usage", "MiB", allocated as f64 / MIB),
        metric("events", "events", events as f64),
        metric(
            "poll_to_ack_events_per_s",
            "events/s",
            events as f64 / seconds,
        ),
        metric("daemon_peak_rss", "MiB", peak),
    ])
}
