//! Instance files for the simulator, in the Cloud Elements shape operators write.

use pollerd::sim::connectwise::ConnectWiseSim;
use serde_json::{Map, Value, json};

use crate::harness::{DaemonDir, closed_port};

/// The simulator's resources, as hub URLs, with the created-date field each has.
pub const RESOURCES: [(&str, &str, &str); 3] = [
    ("contacts", "/hubs/crm/contacts", "_info.lastUpdated"),
    ("companies", "/hubs/crm/accounts", "_info.dateEntered"),
    ("tickets", "/hubs/crm/incidents", "_info.dateEntered"),
];

/// What varies between the benchmarks' instances.
pub struct InstanceShape<'a> {
    pub name: &'a str,
    pub callback: &'a str,
    /// `event.poller.refresh_interval`, minutes.
    pub interval_minutes: f64,
    /// How many of [`RESOURCES`] to poll (1 = contacts only).
    pub resources: usize,
    pub batch_size: u32,
    pub page_size: u32,
    /// RFC 3339; the first run reads everything since then.
    pub backfill_since: Option<String>,
}

pub fn instance(sim: &ConnectWiseSim, shape: &InstanceShape) -> Value {
    let mut resources = Map::new();
    for (name, url, created) in RESOURCES.iter().take(shape.resources) {
        let mut r = ConnectWiseSim::resource_configuration(url, created);
        r["pageSize"] = shape.page_size.into();
        if let Some(since) = &shape.backfill_since {
            r["backfillSince"] = Value::String(since.clone());
        }
        resources.insert(name.to_string(), r);
    }
    let mut instance = json!({
        "element": {"key": "connectwisecrmrest"},
        "name": shape.name,
        "tags": ["bench"],
        "configuration": {
            "event.notification.enabled": true,
            "event.notification.callback.url": shape.callback,
            "event.notification.signature.key": "bench-signing-key",
            "event.notification.batch.size": shape.batch_size,
            "event.poller.refresh_interval": shape.interval_minutes.to_string(),
            "event.poller.configuration": Value::Object(resources)
        }
    });
    let conf = instance["configuration"]
        .as_object_mut()
        .expect("an object");
    // A tenant (company) of its own per instance, as operators moving off Cloud Elements have:
    // the per-tenant limits then apply per instance, not to the whole bench as one tenant.
    conf.extend(sim.tenant_configuration(shape.name));
    instance
}

/// `count` instances named `<prefix>-NNNNN` of every resource, polling every `interval_minutes`
/// and notifying a closed port (an idle simulator gives them nothing to send).
pub fn write_idle_instances(
    sim: &ConnectWiseSim,
    dir: &DaemonDir,
    prefix: &str,
    count: usize,
    interval_minutes: f64,
) -> anyhow::Result<()> {
    let callback = format!("http://127.0.0.1:{}/hook", closed_port()?);
    for i in 0..count {
        let name = format!("{prefix}-{i:05}");
        let shape = InstanceShape {
            name: &name,
            callback: &callback,
            interval_minutes,
            resources: RESOURCES.len(),
            batch_size: 10,
            page_size: 1000,
            backfill_since: None,
        };
        dir.write_instance(&name, &instance(sim, &shape))?;
    }
    Ok(())
}
