//! The daemon's answers on the admin socket: status from the supervisor's registry and the
//! store, dead letters from the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Utc};

use crate::admin::{
    AdminBackend, DeadLetterView, InstanceStatus, ReloadStatus, ResourceStatusView, StatusReport,
    TaskPanicView,
};
use crate::delivery::Deliverer;
use crate::poller::PollShared;
use crate::store::{ResourceKey, Store};
use crate::supervisor::InstanceView;

/// What the admin socket reads; the daemon's main loop keeps it current.
pub struct DaemonAdmin {
    pub started_at: DateTime<Utc>,
    pub registry: Arc<RwLock<Vec<InstanceView>>>,
    pub last_reload: Arc<Mutex<Option<ReloadStatus>>>,
    pub store: Arc<dyn Store>,
    pub shared: PollShared,
    pub deliverer: Deliverer,
}

impl DaemonAdmin {
    fn task_panics(&self, key: &ResourceKey) -> Vec<TaskPanicView> {
        self.deliverer
            .task_panics()
            .of(key)
            .into_iter()
            .map(|p| TaskPanicView {
                task: p.kind.name().to_string(),
                panics: p.count,
                last_at: p.last_at,
                last_message: p.last_message,
            })
            .collect()
    }

    fn dead_by_key(&self) -> HashMap<ResourceKey, u64> {
        let mut counts = HashMap::new();
        for d in self.store.dead_letters().unwrap_or_default() {
            *counts.entry(d.key).or_insert(0) += 1;
        }
        counts
    }

    /// Checks every id first so an unknown one changes nothing.
    fn select(&self, ids: Option<Vec<String>>) -> Result<Vec<(String, ResourceKey)>, String> {
        let all = self.store.dead_letters().map_err(|e| e.to_string())?;
        match ids {
            None => Ok(all.into_iter().map(|d| (d.id, d.key)).collect()),
            Some(ids) => {
                let unknown: Vec<&String> = ids
                    .iter()
                    .filter(|id| !all.iter().any(|d| &d.id == *id))
                    .collect();
                if !unknown.is_empty() {
                    let list: Vec<&str> = unknown.iter().map(|s| s.as_str()).collect();
                    return Err(format!("no dead letter with id {}", list.join(", ")));
                }
                Ok(all
                    .into_iter()
                    .filter(|d| ids.contains(&d.id))
                    .map(|d| (d.id, d.key))
                    .collect())
            }
        }
    }
}

impl AdminBackend for DaemonAdmin {
    fn status(&self) -> StatusReport {
        let dead = self.dead_by_key();
        let active = self.shared.active_pollers.lock().expect("pollers").clone();
        let registry = self.registry.read().expect("registry").clone();
        let instances = registry
            .iter()
            .map(|view| {
                let resources = view
                    .resources
                    .iter()
                    .map(|(name, status)| {
                        let key = ResourceKey::new(&view.spec.name, name);
                        let s = status.lock().expect("status").clone();
                        ResourceStatusView {
                            name: name.clone(),
                            watermark: self.store.watermark(&key).ok().flatten(),
                            last_poll: s.last_poll,
                            next_poll: s.next_poll,
                            last_error: s.last_error,
                            events_emitted: s.events_emitted,
                            outbox_depth: self.store.outbox_depth(&key).unwrap_or(0),
                            dead_letters: dead.get(&key).copied().unwrap_or(0),
                            pollers: active.get(&key).copied().unwrap_or(0),
                            task_panics: self.task_panics(&key),
                        }
                    })
                    .collect();
                InstanceStatus {
                    name: view.spec.name.clone(),
                    file: view.spec.file.display().to_string(),
                    element: view.spec.element.key().to_string(),
                    enabled: view.spec.notifications.is_some(),
                    resources,
                    error: view.error.clone(),
                }
            })
            .collect();
        let stats = self.store.stats().unwrap_or_default();
        StatusReport {
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            started_at: self.started_at,
            instances,
            outbox_depth: stats.outbox_depth,
            dead_letters: stats.dead_letters,
            last_reload: self.last_reload.lock().expect("reload").clone(),
        }
    }

    fn dead_letters(&self) -> Result<Vec<DeadLetterView>, String> {
        let all = self.store.dead_letters().map_err(|e| e.to_string())?;
        Ok(all
            .into_iter()
            .map(|d| DeadLetterView {
                id: d.id,
                instance: d.key.instance,
                resource: d.key.resource,
                event_id: d.event_id,
                attempts: d.attempts,
                last_status: d.last_status,
                last_error: d.last_error,
                created_at: d.created_at,
                dead_at: d.dead_at,
            })
            .collect())
    }

    fn replay(&self, ids: Option<Vec<String>>) -> Result<usize, String> {
        let selected = self.select(ids)?;
        for (id, key) in &selected {
            self.store
                .replay_dead_letter(id)
                .map_err(|e| e.to_string())?;
            tracing::info!(instance = %key.instance, resource = %key.resource, "dead letter {id} replayed");
            self.deliverer.wake(key);
        }
        Ok(selected.len())
    }

    fn drop_dead_letters(&self, ids: Option<Vec<String>>) -> Result<usize, String> {
        let selected = self.select(ids)?;
        for (id, key) in &selected {
            self.store.drop_dead_letter(id).map_err(|e| e.to_string())?;
            tracing::info!(instance = %key.instance, resource = %key.resource, "dead letter {id} dropped");
        }
        Ok(selected.len())
    }
}
