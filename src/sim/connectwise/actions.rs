//! One-shot actions a test runs "between pages": before the simulator answers a given list
//! request, e.g. to create or delete a record while a client is part way through a scan.

use std::sync::{Arc, Weak};

use tokio::sync::oneshot;

use super::{ConnectWiseSim, ListRequest, RecordKind, SimState};

/// What a test asked to run, and on which request.
pub(super) struct PendingAction {
    which: ListRequest,
    /// Matching list requests seen so far.
    seen: usize,
    action: Box<dyn FnOnce(&ConnectWiseSim) + Send>,
    ran: oneshot::Sender<()>,
}

impl PendingAction {
    pub fn new(
        which: ListRequest,
        action: Box<dyn FnOnce(&ConnectWiseSim) + Send>,
        ran: oneshot::Sender<()>,
    ) -> Self {
        PendingAction {
            which,
            seen: 0,
            action,
            ran,
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
/// answered (so their changes show in its answer). Called with no lock held, so actions may use
/// every method of the handle they get.
pub(super) fn run_due(state: &Arc<SimState>, kind: RecordKind, query: &str) {
    let due: Vec<PendingAction> = {
        let mut pending = state.actions.lock().expect("actions lock");
        if pending.is_empty() {
            return;
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
    if due.is_empty() {
        return;
    }
    // A handle for the actions; none when every handle is gone and the server is stopping.
    let Some(server) = state.server.get().and_then(Weak::upgrade) else {
        return;
    };
    let sim = ConnectWiseSim {
        state: Arc::clone(state),
        server,
    };
    for pending in due {
        (pending.action)(&sim);
        // The test may have stopped waiting; that is its business.
        let _ = pending.ran.send(());
    }
}
