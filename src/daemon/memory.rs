//! Hands the memory glibc's malloc holds free back to the system, every minute (every 10 s in
//! the first).
//!
//! glibc keeps up to 8 arenas per core, one for each thread that allocated while the others
//! were busy (tokio's workers and blocking threads, sled's I/O threads), and returns an arena's
//! free pages only from the top of its heap. A poll's buffers, freed below live blocks, stayed
//! resident: 10,000 × 3 resources held ~610 MiB for ~236 MB of live heap. `malloc_trim(0)`
//! gives back every whole free page of every arena (`madvise`), which brought that daemon to
//! ~340 MiB, and it regrew by ~6 MiB a minute, so once the start is over a trim a minute is
//! enough (a trim walks every free chunk of every arena; BENCHMARKS.md, "2026-12-07, night:
//! the allocator").
//! mimalloc, tried before, held as little steady but four times glibc's peak during ingest.

use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How often free memory is handed back.
const TRIM_EVERY: Duration = Duration::from_secs(60);
/// In the first minute every poll loop starts and runs its first poll, and the arenas fill
/// fastest: trimming more often then keeps the start's peak down (10,000 × 3: ~540 MiB with
/// 10-s trims, ~630 MiB with the first trim at a minute).
const TRIM_EVERY_AT_START: Duration = Duration::from_secs(10);
const START: Duration = Duration::from_secs(60);

/// Trims on a blocking thread (a trim walks every arena, taking each one's lock in turn) every
/// [`TRIM_EVERY_AT_START`] during the first [`START`], then every [`TRIM_EVERY`], until `cancel`.
pub fn spawn_trimmer(cancel: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        let started = Instant::now();
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(pause(started.elapsed())) => {
                    // A trim that fails to run only leaves memory held: nothing to report.
                    let _ = tokio::task::spawn_blocking(trim).await;
                }
            }
        }
    })
}

/// The wait before the next trim, `since_start` after the daemon started.
fn pause(since_start: Duration) -> Duration {
    if since_start < START {
        TRIM_EVERY_AT_START
    } else {
        TRIM_EVERY
    }
}

/// One trim; logs what it gave back at debug level.
fn trim() {
    let started = Instant::now();
    let released = release_free_memory();
    tracing::debug!(
        released,
        took_us = started.elapsed().as_micros() as u64,
        "free heap memory handed back to the system"
    );
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_memory() -> bool {
    // SAFETY: malloc_trim takes no pointers and only works on the allocator's own state, under
    // its locks; any thread may call it at any time.
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_memory() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_often_in_the_first_minute_then_once_a_minute() {
        assert_eq!(pause(Duration::ZERO), Duration::from_secs(10));
        assert_eq!(pause(Duration::from_secs(59)), Duration::from_secs(10));
        assert_eq!(pause(Duration::from_secs(60)), Duration::from_secs(60));
        assert_eq!(pause(Duration::from_secs(3600)), Duration::from_secs(60));
    }
}
