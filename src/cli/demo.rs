//! `pollerd demo`: the real daemon on a temporary state directory, against the built-in
//! ConnectWise simulator and a local receiver, both on loopback, with records changing every few
//! seconds. Each notification is printed as it arrives, until Ctrl-C.

use std::process::ExitCode;
use std::time::Duration;

use serde_json::{Value, json};

use crate::config::{Environment, Settings};
use crate::sim::connectwise::{ConnectWiseSim, RecordKind, SimConfig};
use crate::sim::receiver::Receiver;

/// Prints a line; a closed stdout (`pollerd demo | head`) must not panic the demo.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

pub fn run() -> ExitCode {
    if let Err(e) = crate::logging::init(crate::config::LogFormat::Text, "warn") {
        eprintln!("pollerd demo: {e:#}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pollerd demo: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(demo()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pollerd demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn demo() -> anyhow::Result<()> {
    let dir = tempfile::Builder::new().prefix("pollerd-demo-").tempdir()?;
    let sim = ConnectWiseSim::start(SimConfig::default()).await?;
    let receiver = Receiver::start().await?;
    std::fs::create_dir(dir.path().join("instances.d"))?;
    let settings_path = dir.path().join("pollerd.toml");
    std::fs::write(
        &settings_path,
        "instances_dir = \"instances.d\"\nstate_dir = \"state\"\nadmin_socket = \"admin.sock\"\n\
         [delivery]\nschedule = [\"1s\", \"2s\", \"4s\"]\n",
    )?;
    let instance_file = dir.path().join("instances.d/demo.json");
    std::fs::write(
        &instance_file,
        serde_json::to_string_pretty(&demo_instance(&sim, &receiver.url()))?,
    )?;
    // It holds the simulator's keys: readable by its owner only, as a real one should be.
    std::fs::set_permissions(
        &instance_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )?;
    let settings = Settings::load(Some(&settings_path), &Environment::default())
        .map_err(|d| anyhow::anyhow!("{d}"))?;

    say!("pollerd demo");
    say!("  simulated ConnectWise API  {}", sim.base_url());
    say!("  webhook receiver           {}", receiver.url());
    say!(
        "  instance file              {}",
        dir.path().join("instances.d/demo.json").display()
    );
    say!(
        "Records change every few seconds; each notification is printed as it arrives. Ctrl-C stops.\n"
    );

    let changes = tokio::spawn(change_records(sim.clone()));
    let printer = tokio::spawn(print_notifications(receiver.clone()));
    let result = crate::daemon::serve(settings, Some(&settings_path), Environment::default()).await;
    changes.abort();
    printer.abort();
    say!(
        "\nstopped; {} notification(s) received",
        receiver.accepted().len()
    );
    result
}

/// Tickets (created) and companies (created, updated, and now and then deleted: reconciled every
/// 10 seconds), polled every 3 seconds, signed. Both record their creation in
/// `_info.dateEntered`, so CREATED and UPDATED are told apart and `pollerd check` has nothing to
/// warn about (ConnectWise contacts have no creation date).
fn demo_instance(sim: &ConnectWiseSim, callback: &str) -> Value {
    let mut instance = json!({
        "element": {"key": "connectwisecrmrest"},
        "name": "demo",
        "tags": ["demo"],
        "configuration": {
            "event.notification.enabled": true,
            "event.notification.callback.url": callback,
            "event.notification.signature.key": "demo-signing-key",
            "event.poller.refresh_interval": "0.05",
            "event.poller.configuration": {
                "tickets": ConnectWiseSim::resource_configuration("/hubs/crm/incidents", "_info.dateEntered"),
                "companies": ConnectWiseSim::resource_configuration("/hubs/crm/accounts", "_info.dateEntered")
            }
        }
    });
    instance["configuration"]["event.poller.configuration"]["companies"]["deletedCheckInterval"] =
        "10s".into();
    let conf = instance["configuration"]
        .as_object_mut()
        .expect("an object");
    conf.extend(sim.instance_configuration());
    instance
}

async fn change_records(sim: ConnectWiseSim) {
    let mut companies: Vec<u64> = Vec::new();
    // Let the first (baseline) polls of both resources set their watermarks first.
    while sim.request_count() < 2 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for round in 0u64.. {
        match round % 4 {
            0 => {
                sim.create(RecordKind::Ticket, None);
            }
            1 => companies.push(sim.create(RecordKind::Company, None)),
            2 => {
                if let Some(id) = companies.get((round as usize / 4) % companies.len().max(1)) {
                    sim.update(RecordKind::Company, *id, None);
                }
            }
            // The oldest company goes, once there are a few: the next reconcile reports it.
            _ if companies.len() > 2 => {
                sim.delete(RecordKind::Company, companies.remove(0));
            }
            _ => companies.push(sim.create(RecordKind::Company, None)),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn print_notifications(receiver: Receiver) {
    use std::io::Write;
    let mut shown = 0;
    loop {
        let all = receiver.requests();
        {
            let mut out = std::io::stdout().lock();
            for r in all.iter().skip(shown) {
                let Ok(body) = r.try_json() else { continue };
                for line in describe(&body) {
                    // A closed pipe (`pollerd demo | head`) ends the printing, not the demo.
                    if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
                        return;
                    }
                }
            }
        }
        shown = all.len();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One readable line per event of a notification.
pub fn describe(body: &Value) -> Vec<String> {
    let m = &body["message"];
    let object_type = m["raw"]["objectType"].as_str().unwrap_or("?");
    let records = m["raw"][object_type]
        .as_array()
        .cloned()
        .unwrap_or_default();
    m["events"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, e)| {
            let name = match e["eventType"].as_str() {
                Some("DELETED") => "(deleted)".to_string(),
                _ => records.get(i).map(record_name).unwrap_or_default(),
            };
            format!(
                "{}  {:<7}  {:<9} #{:<5} {:<28} event {}",
                e["pollDate"].as_str().unwrap_or(""),
                e["eventType"].as_str().unwrap_or(""),
                object_type,
                e["objectId"].as_str().unwrap_or(""),
                name,
                body["id"].as_str().unwrap_or("")
            )
        })
        .collect()
}

fn record_name(r: &Value) -> String {
    if let Some(name) = r["name"].as_str().or(r["summary"].as_str()) {
        return name.to_string();
    }
    let first = r["firstName"].as_str().unwrap_or("");
    let last = r["lastName"].as_str().unwrap_or("");
    format!("{first} {last}").trim().to_string()
}
