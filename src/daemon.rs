//! `pollerd run`: the daemon assembled from its components, and its life cycle — start
//! (store open, instances loaded, READY), reload (files or SIGHUP), graceful stop (SIGTERM).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};

use crate::config::{Environment, SecretSources, Settings};
use crate::delivery::Deliverer;
use crate::element::ProviderClient;
use crate::poller::PollShared;
use crate::store::{SledStore, Store};
use crate::supervisor::Supervisor;

/// Everything the running daemon holds.
pub struct Daemon {
    pub settings: Settings,
    pub store: Arc<dyn Store>,
    pub deliverer: Deliverer,
    pub supervisor: Supervisor,
}

impl Daemon {
    /// Opens the store and loads every instance file.
    pub async fn start(settings: Settings, env: &Environment) -> anyhow::Result<Daemon> {
        std::fs::create_dir_all(&settings.state_dir).with_context(|| {
            format!(
                "cannot create the state directory {}",
                settings.state_dir.display()
            )
        })?;
        let store: Arc<dyn Store> = Arc::new(SledStore::open(
            &settings.state_dir,
            settings.store_cache_bytes,
        )?);
        let deliverer = Deliverer::new(store.clone(), &settings.delivery, None)
            .context("building the webhook client")?;
        let client =
            ProviderClient::new(settings.polling.http_timeout, settings.polling.max_per_host)
                .context("building the provider client")?;
        let wake = deliverer.clone();
        let shared = PollShared {
            client,
            store: store.clone(),
            permits: Arc::new(tokio::sync::Semaphore::new(settings.polling.max_concurrent)),
            on_commit: Some(Arc::new(move |key| wake.wake(key))),
        };
        let sources = SecretSources {
            credentials_dir: env.credentials_directory.clone(),
            unverified_credentials_ok: false,
        };
        let mut supervisor = Supervisor::new(shared, deliverer.clone(), sources);
        let summary = supervisor.reload(&settings.instances_dir, None).await;
        tracing::info!(
            "started: {} instance(s) loaded, {} file error(s); state in {}",
            summary.started.len(),
            summary.errors.len(),
            settings.state_dir.display()
        );
        deliverer.wake_all()?;
        Ok(Daemon {
            settings,
            store,
            deliverer,
            supervisor,
        })
    }

    /// Re-reads the given instance files (all when `None`).
    pub async fn reload_instances(&mut self, changed: Option<&[PathBuf]>) {
        let summary = self
            .supervisor
            .reload(&self.settings.instances_dir, changed)
            .await;
        if !summary.started.is_empty()
            || !summary.restarted.is_empty()
            || !summary.stopped.is_empty()
        {
            tracing::info!(
                "reloaded: started {:?}, restarted {:?}, stopped {:?}, {} unchanged",
                summary.started,
                summary.restarted,
                summary.stopped,
                summary.unchanged
            );
        }
    }

    /// SIGHUP: settings and every instance file. Settings that only apply at start are reported.
    pub async fn reload_all(&mut self, config_path: Option<&Path>, env: &Environment) {
        match Settings::load(config_path, env) {
            Ok(new) if new != self.settings => {
                tracing::warn!(
                    "{}: settings changed; they apply at the next restart (instances are reloaded now)",
                    new.file
                        .as_deref()
                        .unwrap_or(Path::new("pollerd.toml"))
                        .display()
                );
            }
            Ok(_) => {}
            Err(d) => tracing::error!("{d}"),
        }
        self.reload_instances(None).await;
    }

    /// Graceful stop: polling first, then deliveries within the grace period, then the store.
    pub async fn stop(mut self) {
        self.supervisor.stop_all().await;
        self.deliverer.shutdown().await;
        if let Err(e) = self.store.flush() {
            tracing::error!("flushing the store: {e}");
        }
    }
}

/// The `run` command.
pub fn run(config_path: Option<&Path>) -> std::process::ExitCode {
    let env = Environment::from_process();
    let settings = match Settings::load(config_path, &env) {
        Ok(s) => s,
        Err(d) => {
            eprintln!("{d}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&settings.log_level)),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pollerd: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(settings, config_path, env)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("pollerd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(
    settings: Settings,
    config_path: Option<&Path>,
    env: Environment,
) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut daemon = Daemon::start(settings, &env).await?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => daemon.reload_all(config_path, &env).await,
        }
    }
    tracing::info!("stopping");
    daemon.stop().await;
    tracing::info!("stopped");
    Ok(())
}
