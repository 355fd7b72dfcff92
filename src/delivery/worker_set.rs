//! The delivery workers: at most one per resource queue, and the permits of
//! `[delivery] max_in_flight` they share.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use crate::store::ResourceKey;

pub(super) struct WorkerSet {
    handles: Mutex<HashMap<ResourceKey, JoinHandle<()>>>,
    permits: Arc<Semaphore>,
}

impl WorkerSet {
    pub fn new(max_in_flight: usize) -> WorkerSet {
        WorkerSet {
            handles: Mutex::default(),
            permits: Arc::new(Semaphore::new(max_in_flight.max(1))),
        }
    }

    /// Starts `key`'s worker with `spawn`, unless one is running.
    pub fn ensure(&self, key: &ResourceKey, spawn: impl FnOnce() -> JoinHandle<()>) {
        let mut handles = self.handles.lock().unwrap_or_else(PoisonError::into_inner);
        if handles.get(key).is_some_and(|h| !h.is_finished()) {
            return;
        }
        handles.insert(key.clone(), spawn());
    }

    /// `key`'s worker leaves the set, if `still_idle` says so while the set is held: a worker
    /// starting meanwhile waits for the answer.
    pub fn leave_if(&self, key: &ResourceKey, still_idle: impl FnOnce() -> bool) -> bool {
        let mut handles = self.lock();
        let idle = still_idle();
        if idle {
            handles.remove(key);
        }
        idle
    }

    pub fn leave(&self, key: &ResourceKey) {
        self.lock().remove(key);
    }

    /// The handles of `instance`'s workers, which leave the set.
    pub fn take_instance(&self, instance: &str) -> Vec<JoinHandle<()>> {
        let mut handles = self.lock();
        let keys: Vec<ResourceKey> = handles
            .keys()
            .filter(|key| key.instance == instance)
            .cloned()
            .collect();
        keys.iter().filter_map(|key| handles.remove(key)).collect()
    }

    /// Every worker's handle; the set is left empty.
    pub fn drain(&self) -> Vec<JoinHandle<()>> {
        self.lock().drain().map(|(_, h)| h).collect()
    }

    /// Number of workers running (what the tests of this file watch).
    #[cfg(test)]
    pub fn running(&self) -> usize {
        self.lock().values().filter(|h| !h.is_finished()).count()
    }

    /// A permit for one request in flight.
    /// A permit if one is free now.
    pub fn try_permit(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
    }

    pub async fn permit(&self) -> OwnedSemaphorePermit {
        self.permits
            .clone()
            .acquire_owned()
            .await
            .expect("never closed")
    }

    /// After a worker's panic: the handles are plain data, still whole.
    pub fn clear_poison(&self) {
        self.handles.clear_poison();
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<ResourceKey, JoinHandle<()>>> {
        self.handles.lock().expect("workers")
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[tokio::test]
    async fn a_queue_gets_a_second_worker_only_once_the_first_has_finished() {
        let workers = WorkerSet::new(1);
        let key = ResourceKey::new("crm", "contacts");
        let (finish, finished) = tokio::sync::oneshot::channel::<()>();
        let mut started = 0;
        workers.ensure(&key, || {
            started += 1;
            tokio::spawn(async move {
                let _ = finished.await;
            })
        });
        workers.ensure(&key, || {
            started += 1;
            tokio::spawn(async {})
        });
        assert_eq!((started, workers.running()), (1, 1));

        finish.send(()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while workers.running() > 0 {
            assert!(Instant::now() < deadline, "the worker never finished");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        workers.ensure(&key, || {
            started += 1;
            tokio::spawn(async {})
        });
        assert_eq!(started, 2);
    }

    #[tokio::test]
    async fn a_worker_leaves_only_when_its_queue_is_still_idle() {
        let workers = WorkerSet::new(1);
        let key = ResourceKey::new("crm", "contacts");
        workers.ensure(&key, || tokio::spawn(std::future::pending()));
        assert!(!workers.leave_if(&key, || false));
        assert_eq!(workers.running(), 1);
        assert!(workers.leave_if(&key, || true));
        assert!(workers.drain().is_empty());
    }
}
