//! The leases this node holds, as its lease manager last claimed them: what every write of an
//! instance's state to a shared store is checked against, in the write's own transaction.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

/// This node's id and the epoch of each lease it holds, by instance name.
#[derive(Debug)]
pub struct Fence {
    node_id: String,
    epochs: RwLock<HashMap<String, i64>>,
    /// Told the instance of each write refused, so its node stops it at once.
    refusals: Option<tokio::sync::mpsc::UnboundedSender<String>>,
}

impl Fence {
    pub fn new(node_id: impl Into<String>) -> Arc<Fence> {
        Arc::new(Fence {
            node_id: node_id.into(),
            epochs: RwLock::default(),
            refusals: None,
        })
    }

    /// A fence that reports each refused write's instance on the channel returned.
    pub fn reporting(
        node_id: impl Into<String>,
    ) -> (Arc<Fence>, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        let fence = Fence {
            node_id: node_id.into(),
            epochs: RwLock::default(),
            refusals: Some(sender),
        };
        (Arc::new(fence), receiver)
    }

    /// A write of `instance` was refused: its lease is not held at the epoch claimed.
    pub fn refused(&self, instance: &str) {
        if let Some(refusals) = &self.refusals {
            // Nobody listens once the node is stopping; then there is nothing to stop.
            let _ = refusals.send(instance.to_string());
        }
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The epoch this node claimed `instance` at, while it holds it.
    pub fn epoch(&self, instance: &str) -> Option<i64> {
        self.read().get(instance).copied()
    }

    /// This node now holds `instance` at `epoch`.
    pub fn hold(&self, instance: &str, epoch: i64) {
        self.write().insert(instance.to_string(), epoch);
    }

    /// Writes of `instance` are refused from now on; false when it was not held.
    pub fn give_up(&self, instance: &str) -> bool {
        self.write().remove(instance).is_some()
    }

    /// Gives every lease up; the instances that were held, ordered.
    pub fn give_up_all(&self) -> Vec<String> {
        let mut names: Vec<String> = self.write().drain().map(|(name, _)| name).collect();
        names.sort();
        names
    }

    /// Every lease held, ordered by instance.
    pub fn held(&self) -> Vec<(String, i64)> {
        let mut held: Vec<(String, i64)> = self
            .read()
            .iter()
            .map(|(name, epoch)| (name.clone(), *epoch))
            .collect();
        held.sort();
        held
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, i64>> {
        // A map of plain values stays whole whatever panicked while holding it.
        self.epochs.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, i64>> {
        self.epochs.write().unwrap_or_else(PoisonError::into_inner)
    }
}
