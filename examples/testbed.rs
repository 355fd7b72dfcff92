//! A test bed for driving an installed pollerd from outside (packaging/test-systemd.sh): the
//! library's ConnectWise simulator and webhook receiver on 127.0.0.1, plus a small control API.
//!
//! ```text
//! cargo run --release --example testbed -- DIR
//! ```
//!
//! writes into DIR:
//! - `testbed.env`: `SIM_BASE_URL`, `RECEIVER_URL` and `CONTROL_URL`, as shell assignments
//!   (written last, so its presence means everything is listening);
//! - `instance.json`: a ConnectWise contacts instance polling the simulator every 3 s and
//!   delivering to `RECEIVER_URL` (path `/hook`), signed;
//! - `instance-reloaded.json`: the same instance delivering to path `/hook-after-reload`;
//! - `instance-credentials.json`: the same instance delivering to path `/hook-credentials`, its
//!   keys read from systemd credentials `cw-public` and `cw-private`, whose values are in
//!   `credentials/`;
//! - `notifications.jsonl`: one line per answered webhook request, as it is answered:
//!   `{"path", "status", "event_id", "object_ids", "body"}`.
//!
//! Control API (`CONTROL_URL`):
//! - `POST /contacts`: creates a contact dated now; answers `{"id": N}`;
//! - `POST /receiver/fail-next/{status}`: the next webhook request is answered with `status`;
//! - `GET /sim/requests`: `{"contacts": N}`, how many contacts requests the simulator answered.
//!
//! Runs until SIGTERM or Ctrl-C.

use std::collections::HashSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use axum::Json;
use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use pollerd::sim::connectwise::{ConnectWiseSim, RecordKind, SimConfig};
use pollerd::sim::receiver::{Behaviour, ReceivedRequest, Receiver};
use serde_json::{Value, json};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Clone)]
struct Testbed {
    sim: ConnectWiseSim,
    receiver: Receiver,
}

fn main() -> anyhow::Result<()> {
    let dir = std::env::args_os().nth(1).map(PathBuf::from).context(
        "usage: testbed DIR (where to write testbed.env, the instances and notifications.jsonl)",
    )?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(serve(&dir))
}

async fn serve(dir: &Path) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let sim = ConnectWiseSim::start(SimConfig::default()).await?;
    let receiver = Receiver::start().await?;
    let testbed = Testbed {
        sim: sim.clone(),
        receiver: receiver.clone(),
    };
    let control = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let control_url = format!("http://{}", control.local_addr()?);
    let app = Router::new()
        .route("/contacts", post(create_contact))
        .route("/receiver/fail-next/{status}", post(fail_next))
        .route("/sim/requests", get(sim_requests))
        .with_state(testbed);
    let control_task = tokio::spawn(async move { axum::serve(control, app).await });

    let base = receiver.url();
    let after_reload = base.replace("/hook", "/hook-after-reload");
    write_json(&dir.join("instance.json"), &instance(&sim, &base))?;
    write_json(
        &dir.join("instance-reloaded.json"),
        &instance(&sim, &after_reload),
    )?;
    let mut with_credentials = instance(&sim, &base.replace("/hook", "/hook-credentials"));
    with_credentials["configuration"]["public.key"] = json!("${credential:cw-public}");
    with_credentials["configuration"]["private.key"] = json!("${credential:cw-private}");
    write_json(&dir.join("instance-credentials.json"), &with_credentials)?;
    std::fs::create_dir_all(dir.join("credentials"))?;
    std::fs::write(dir.join("credentials/cw-public"), &sim.config().public_key)?;
    std::fs::write(
        dir.join("credentials/cw-private"),
        &sim.config().private_key,
    )?;
    let log_path = dir.join("notifications.jsonl");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let recorder = tokio::spawn(record_notifications(receiver.clone(), log));

    let env = format!(
        "SIM_BASE_URL={}\nRECEIVER_URL={base}\nCONTROL_URL={control_url}\n",
        sim.base_url()
    );
    // Written last and renamed into place: once it exists, everything above is ready.
    let env_path = dir.join("testbed.env");
    std::fs::write(dir.join(".testbed.env.tmp"), &env)?;
    std::fs::rename(dir.join(".testbed.env.tmp"), &env_path)?;
    print!("{env}");

    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
        r = control_task => r?.context("control API")?,
        r = recorder => r?.context("recording notifications")?,
    }
    Ok(())
}

fn write_json(path: &Path, value: &Value) -> anyhow::Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(value)? + "\n")
        .with_context(|| format!("writing {}", path.display()))
}

/// A ConnectWise contacts instance against the simulator, polled every 3 seconds.
fn instance(sim: &ConnectWiseSim, callback: &str) -> Value {
    let mut instance = json!({
        "element": {"key": "connectwisecrmrest"},
        "name": "e2e",
        "tags": ["e2e"],
        "configuration": {
            "event.notification.enabled": true,
            "event.notification.callback.url": callback,
            "event.notification.signature.key": "e2e-signing-key",
            "event.poller.refresh_interval": "0.05",
            "event.poller.configuration": {
                "contacts": {
                    "url": "/hubs/crm/contacts?where=lastUpdated>'${gmtDate:yyyy-MM-dd'T'HH:mm:ss'Z'}'",
                    "idField": "id",
                    "datesConfiguration": {
                        "updatedDateField": "_info.lastUpdated",
                        "updatedDateFormat": "yyyy-MM-dd'T'HH:mm:ss'Z'",
                        "updatedDateTimezone": "GMT"
                    }
                }
            }
        }
    });
    let conf = instance["configuration"]
        .as_object_mut()
        .expect("an object");
    conf.extend(sim.instance_configuration());
    instance
}

async fn create_contact(State(t): State<Testbed>) -> Json<Value> {
    Json(json!({"id": t.sim.create(RecordKind::Contact, None)}))
}

async fn fail_next(
    State(t): State<Testbed>,
    UrlPath(status): UrlPath<u16>,
) -> Result<StatusCode, (StatusCode, String)> {
    if !(200..=599).contains(&status) {
        return Err((
            StatusCode::BAD_REQUEST,
            format!("status {status} is not a final HTTP status (200..=599)"),
        ));
    }
    t.receiver.respond_next(Behaviour::Status(status), 1);
    Ok(StatusCode::NO_CONTENT)
}

async fn sim_requests(State(t): State<Testbed>) -> Json<Value> {
    let contacts = t
        .sim
        .requests()
        .iter()
        .filter(|r| r.path.ends_with(RecordKind::Contact.path()))
        .count();
    Json(json!({"contacts": contacts}))
}

/// Appends each webhook request to `log` once it has been answered, woken by the receiver.
async fn record_notifications(receiver: Receiver, mut log: std::fs::File) -> anyhow::Result<()> {
    let mut written: HashSet<usize> = HashSet::new();
    loop {
        let pending = |requests: &[ReceivedRequest]| {
            requests
                .iter()
                .enumerate()
                .any(|(i, r)| r.status.is_some() && !written.contains(&i))
        };
        // Timing out only means nothing new arrived in that hour; keep waiting.
        if receiver
            .wait_until(Duration::from_secs(3600), pending)
            .await
            .is_err()
        {
            continue;
        }
        for (i, request) in receiver.requests().iter().enumerate() {
            if request.status.is_none() || !written.insert(i) {
                continue;
            }
            writeln!(log, "{}", describe(request))?;
            log.flush()?;
        }
    }
}

/// One line of `notifications.jsonl`.
fn describe(request: &ReceivedRequest) -> Value {
    let body = request.try_json().unwrap_or(Value::Null);
    let object_ids: Vec<Value> = body["message"]["events"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["objectId"].clone())
        .collect();
    json!({
        "path": request.path,
        "status": request.status,
        "event_id": request.header("webhook-id"),
        "object_ids": object_ids,
        "body": body,
    })
}
