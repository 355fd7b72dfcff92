//! Chaos tests of the real binary (RELIABILITY.md): crash soak, receiver chaos, provider chaos,
//! config chaos, disk full. The promise under test: nothing lost, nothing invented, no crash on
//! bad input.
//!
//! Each test has a short form for plain `cargo test` and a long form selected by
//! `POLLERD_CHAOS=full`:
//!
//! ```text
//! POLLERD_CHAOS=full cargo test --release --test chaos -- --nocapture
//! ```

mod support;

#[path = "chaos/config_chaos.rs"]
mod config_chaos;
#[path = "chaos/crash_soak.rs"]
mod crash_soak;
#[path = "chaos/disk_full.rs"]
mod disk_full;
#[path = "chaos/ledger.rs"]
mod ledger;
#[path = "chaos/provider_chaos.rs"]
mod provider_chaos;
#[path = "chaos/receiver_chaos.rs"]
mod receiver_chaos;

use std::time::Duration;

use chrono::{DateTime, Utc};
use pollerd::sim::connectwise::{ConnectWiseSim, RecordKind};
use serde_json::Value;
use support::DaemonDir;

/// Whether the long forms run (`POLLERD_CHAOS=full`).
pub fn full() -> bool {
    std::env::var("POLLERD_CHAOS").is_ok_and(|v| v == "full")
}

/// `short` in plain `cargo test`, `long` with `POLLERD_CHAOS=full`.
pub fn scale<T>(short: T, long: T) -> T {
    if full() { long } else { short }
}

pub use support::status;

/// Like `support::wait_for`, for conditions that are costly to check (they parse every
/// delivered notification): checked every 250 ms. On time-out, panics with the end of the
/// daemon's log.
pub async fn wait_costly(dd: &DaemonDir, what: &str, limit: Duration, cond: impl FnMut() -> bool) {
    assert!(
        support::holds_within(limit, Duration::from_millis(250), cond).await,
        "timed out after {limit:?} waiting for {what}; the daemon's log ends:\n{}",
        tail(&dd.logs(), 40)
    );
}

/// A date as it appears in records and payloads, compared as an instant (payloads carry
/// milliseconds when there are some, records whole seconds).
pub fn instant(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text:?} is not RFC 3339: {e}"))
        .with_timezone(&Utc)
}

/// The current version of every record: (objectId, lastUpdated).
pub fn current_versions(
    sim: &ConnectWiseSim,
    kind: RecordKind,
    ids: &[u64],
) -> Vec<(String, DateTime<Utc>)> {
    ids.iter()
        .map(|id| {
            let record = sim.record(kind, *id).expect("created records stay");
            let date = record["_info"]["lastUpdated"].as_str().unwrap();
            (id.to_string(), instant(date))
        })
        .collect()
}

/// The seed instance with a second resource (`accounts` → ConnectWise companies).
pub fn with_accounts(mut instance: Value) -> Value {
    let conf = &mut instance["configuration"]["event.poller.configuration"];
    let mut accounts = conf["contacts"].clone();
    accounts["url"] =
        "/hubs/crm/accounts?where=lastUpdated>'${gmtDate:yyyy-MM-dd'T'HH:mm:ss'Z'}'".into();
    conf["accounts"] = accounts;
    instance
}

/// No log line tells of a panic or of a store that would not open.
pub fn assert_no_panic(dd: &DaemonDir) {
    let logs = dd.logs();
    for bad in ["panicked", "cannot open the store"] {
        assert!(
            !logs.contains(bad),
            "the daemon logged {bad:?}:\n{}",
            tail(&logs, 60)
        );
    }
}

/// The last `lines` lines of a log, for failure messages.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
