//! Instance files for the simulator, in the Cloud Elements shape operators write.

use pollerd::sim::connectwise::ConnectWiseSim;
use serde_json::{Map, Value, json};

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
    conf.extend(sim.instance_configuration());
    instance
}
