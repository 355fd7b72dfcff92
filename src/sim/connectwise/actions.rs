//! One-shot actions a test runs "between pages": before the simulator answers a given list
//! request, e.g. to create or delete a record while a client is part way through a scan, or to
//! fail just that page.

use std::sync::{Arc, Weak};

use tokio::sync::oneshot;

use super::{ConnectWiseSim, Fault, ListRequest, RecordKind, SimState};

/// What a test asked to run, and on which request.
pub(super) struct PendingAction {
    which: ListRequest,
    /// Matching list requests seen so far.
    seen: usize,
    then: Then,
}

/// What to do on the request.
pub(super) enum Then {
    /// Run this, then say so.
    Run {
        action: Box<dyn FnOnce(&ConnectWiseSim) + Send>,
        ran: oneshot::Sender<()>,
    },
    /// Answer the request with this fault.
    Fault(Fault),
}

impl PendingAction {
    pub fn new(which: ListRequest, then: Then) -> Self {
        PendingAction {
            which,
            seen: 0,
            then,
        }
    }

    /// Counts a list request of `kind` whose decoded query is `query`; true when this is the one.
    fn counts_to_due(&mut self, kind: RecordKind, query: &str) -> bool {
        let matches = self.which.kind == kind
            && self
                .which
                .query_contains
                .as_deref()
                .is_none_or(|text| query.contains(text));
        if matches {
            self.seen += 1;
        }
        matches && self.seen >= self.which.nth
    }
}

/// Runs, in the order they were added, the actions due on this list request, before it is
/// answered (so their changes show in its answer), and returns the faults due on it. Called with
/// no lock held, so actions may use every method of the handle they get.
pub(super) fn run_due(state: &Arc<SimState>, kind: RecordKind, query: &str) -> Vec<Fault> {
    let due: Vec<PendingAction> = {
        let mut pending = state.actions.lock().expect("actions lock");
        if pending.is_empty() {
            return Vec::new();
        }
        let mut due = Vec::new();
        let mut index = 0;
        while index < pending.len() {
            if pending[index].counts_to_due(kind, query) {
                due.push(pending.remove(index));
            } else {
                index += 1;
            }
        }
        due
    };
    let mut faults = Vec::new();
    // A handle for the actions, made when one is due; none when every handle is gone and the
    // server is stopping.
    let mut sim = None;
    for pending in due {
        match pending.then {
            Then::Fault(fault) => faults.push(fault),
            Then::Run { action, ran } => {
                if sim.is_none() {
                    sim = state
                        .server
                        .get()
                        .and_then(Weak::upgrade)
                        .map(|server| ConnectWiseSim {
                            state: Arc::clone(state),
                            server,
                        });
                }
                if let Some(sim) = &sim {
                    action(sim);
                    // The test may have stopped waiting; that is its business.
                    let _ = ran.send(());
                }
            }
        }
    }
    faults
}
