//! `pollerd poll INSTANCE`: one dry run from `--since`, printing the notifications it would send,
//! one JSON per line. It opens no store and sends nothing, so it is safe beside the daemon.

use std::path::Path;
use std::process::ExitCode;

use chrono::{DateTime, Utc};

use crate::config::{self, Environment, SecretSources, Settings};
use crate::element::{Element, ProviderClient};
use crate::poller::{MemorySink, scan};

pub fn run(
    config_path: Option<&Path>,
    instance: &str,
    resource: Option<&str>,
    since: Option<&str>,
) -> ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .with_writer(std::io::stderr)
        .try_init();
    match poll(config_path, instance, resource, since) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pollerd poll: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn poll(
    config_path: Option<&Path>,
    name: &str,
    only: Option<&str>,
    since: Option<&str>,
) -> anyhow::Result<()> {
    let env = Environment::from_process();
    let settings = Settings::load(config_path, &env).map_err(|d| anyhow::anyhow!("{d}"))?;
    let since: DateTime<Utc> = match since {
        Some(s) => DateTime::parse_from_rfc3339(s)
            .map_err(|e| {
                anyhow::anyhow!(
                    "--since {s:?} is not an RFC 3339 time like 2026-01-02T03:04:05Z: {e}"
                )
            })?
            .to_utc(),
        None => Utc::now() - chrono::Duration::hours(1),
    };
    let files = config::list_instance_files(&settings.instances_dir)
        .map_err(|e| anyhow::anyhow!("{}: {e}", settings.instances_dir.display()))?;
    let sources = SecretSources {
        credentials_dir: env.credentials_directory.clone(),
        unverified_credentials_ok: false,
    };
    let set = config::load_instances(&files, &sources);
    let Some(spec) = set.specs().find(|s| s.name == name) else {
        for d in set.diagnostics().filter(|d| d.is_error()) {
            eprintln!("{d}");
        }
        let names: Vec<&str> = set.specs().map(|s| s.name.as_str()).collect();
        anyhow::bail!(
            "no valid instance named {name:?} in {}; valid instances: {}",
            settings.instances_dir.display(),
            names.join(", ")
        );
    };
    let resources: Vec<_> = spec
        .resources
        .iter()
        .filter(|r| only.is_none_or(|o| o == r.name))
        .collect();
    if resources.is_empty() {
        let names: Vec<&str> = spec.resources.iter().map(|r| r.name.as_str()).collect();
        anyhow::bail!(
            "instance {name} has no resource {:?}; its resources: {}",
            only.unwrap_or(""),
            names.join(", ")
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut client = ProviderClient::from_settings(&settings.polling)?;
        if let Some(ca) = &spec.tls_ca {
            client = client.trusting(ca)?;
        }
        let element = Element::new(&spec.element);
        for resource in resources {
            let mut sink = MemorySink::default();
            let report = scan(&client, &mut sink, spec, &element, resource, since).await?;
            for n in &sink.notifications {
                println!("{}", String::from_utf8_lossy(&n.body));
            }
            eprintln!(
                "{}/{}: {} page(s), {} record(s), {} event(s) in {} notification(s), {} skipped",
                spec.name,
                resource.name,
                report.pages,
                report.records,
                report.events,
                report.notifications,
                report.skipped
            );
        }
        Ok(())
    })
}
