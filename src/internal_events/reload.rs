//! The end of a reload of the instance files (at start, on a file change, on SIGHUP).

use crate::metrics::{Metrics, ReloadOutcome};

/// Where this line has always been logged from: `RUST_LOG` directives name it.
const DAEMON: &str = "pollerd::daemon";

/// A reload was applied: which instances started, restarted or stopped. It failed when a file
/// or the directory could not be used (each error was logged as it was found); the last good
/// version of each file keeps running.
pub struct ReloadFinished<'a> {
    pub started: &'a [String],
    pub restarted: &'a [String],
    pub stopped: &'a [String],
    pub unchanged: usize,
    pub errors: usize,
}

impl ReloadFinished<'_> {
    pub fn outcome(&self) -> ReloadOutcome {
        if self.errors == 0 {
            ReloadOutcome::Ok
        } else {
            ReloadOutcome::Error
        }
    }

    pub fn emit(self, metrics: &Metrics) {
        let s = &self;
        if !s.started.is_empty() || !s.restarted.is_empty() || !s.stopped.is_empty() {
            tracing::info!(
                target: DAEMON,
                "instances: started {:?}, restarted {:?}, stopped {:?}, {} unchanged",
                s.started,
                s.restarted,
                s.stopped,
                s.unchanged
            );
        }
        metrics.reload(self.outcome());
    }
}
