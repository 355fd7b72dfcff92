//! Client side of the admin socket: one HTTP/1.1 request per call, as the CLI needs.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::BodyExt as _;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;

use super::{
    API_PREFIX, CountAnswer, DeadLetterSelection, DeadLetterView, ErrorAnswer, ReconcileCommand,
    ReconcileView, StatusReport,
};

/// How long the CLI waits for the daemon; a daemon that is up answers in milliseconds.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// A reconcile reads every record of its resources: give it as long as a large backlog takes.
const RECONCILE_TIMEOUT: Duration = Duration::from_secs(3600);

/// Why a request to the daemon failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminClientError {
    #[error("cannot reach pollerd at {}: is it running? ({cause})", path.display())]
    Unreachable { path: PathBuf, cause: io::Error },
    #[error("pollerd at {} did not answer within {} s", path.display(), timeout.as_secs())]
    Timeout { path: PathBuf, timeout: Duration },
    #[error("lost the connection to pollerd at {}: {cause}", path.display())]
    Connection { path: PathBuf, cause: hyper::Error },
    #[error("pollerd could not {action}: {message}")]
    Refused {
        action: &'static str,
        status: u16,
        message: String,
    },
    #[error("pollerd at {} gave an unreadable answer to {action}: {detail}", path.display())]
    UnreadableAnswer {
        path: PathBuf,
        action: &'static str,
        detail: String,
    },
}

/// The daemon's status.
pub async fn get_status(socket: &Path) -> anyhow::Result<StatusReport> {
    let report = exchange(socket, Method::GET, "status", "report its status", None).await?;
    Ok(report)
}

/// Every dead letter, without bodies.
pub async fn list_dead_letters(socket: &Path) -> anyhow::Result<Vec<DeadLetterView>> {
    let list = exchange(
        socket,
        Method::GET,
        "dead-letters",
        "list dead letters",
        None,
    )
    .await?;
    Ok(list)
}

/// Replays the dead letters with these ids (`None`: all); returns how many were replayed.
pub async fn replay_dead_letters(socket: &Path, ids: Option<Vec<String>>) -> anyhow::Result<usize> {
    let body = DeadLetterSelection::from_ids(ids);
    let answer: CountAnswer = exchange(
        socket,
        Method::POST,
        "dead-letters/replay",
        "replay dead letters",
        Some(&body),
    )
    .await?;
    Ok(answer.count)
}

/// Drops the dead letters with these ids (`None`: all); returns how many were dropped.
pub async fn drop_dead_letters(socket: &Path, ids: Option<Vec<String>>) -> anyhow::Result<usize> {
    let body = DeadLetterSelection::from_ids(ids);
    let answer: CountAnswer = exchange(
        socket,
        Method::POST,
        "dead-letters/drop",
        "drop dead letters",
        Some(&body),
    )
    .await?;
    Ok(answer.count)
}

/// Runs one reconcile through the daemon and waits for what it did.
pub async fn reconcile(
    socket: &Path,
    command: &ReconcileCommand,
) -> anyhow::Result<Vec<ReconcileView>> {
    let answer = exchange_within(
        RECONCILE_TIMEOUT,
        socket,
        Method::POST,
        "reconcile",
        "reconcile",
        Some(command),
    )
    .await?;
    Ok(answer)
}

/// One request with a deadline; `action` completes "pollerd could not …" in errors.
async fn exchange<T: DeserializeOwned>(
    socket: &Path,
    method: Method,
    route: &str,
    action: &'static str,
    body: Option<&DeadLetterSelection>,
) -> Result<T, AdminClientError> {
    exchange_within(ANSWER_TIMEOUT, socket, method, route, action, body).await
}

async fn exchange_within<T: DeserializeOwned>(
    timeout: Duration,
    socket: &Path,
    method: Method,
    route: &str,
    action: &'static str,
    body: Option<&impl serde::Serialize>,
) -> Result<T, AdminClientError> {
    let body = body.map_or_else(String::new, |body| {
        serde_json::to_string(body).expect("a request body always serializes")
    });
    let uri = format!("{API_PREFIX}/{route}");
    match tokio::time::timeout(timeout, send(socket, method, &uri, action, body)).await {
        Ok(answer) => answer,
        Err(_) => Err(AdminClientError::Timeout {
            path: socket.to_path_buf(),
            timeout,
        }),
    }
}

async fn send<T: DeserializeOwned>(
    socket: &Path,
    method: Method,
    uri: &str,
    action: &'static str,
    body: String,
) -> Result<T, AdminClientError> {
    let connection_error = |cause| AdminClientError::Connection {
        path: socket.to_path_buf(),
        cause,
    };
    let stream =
        UnixStream::connect(socket)
            .await
            .map_err(|cause| AdminClientError::Unreachable {
                path: socket.to_path_buf(),
                cause,
            })?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(connection_error)?;
    // The connection ends by itself once `sender` is dropped.
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "admin socket connection ended with an error");
        }
    });
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header(HOST, "localhost")
        .header(CONTENT_TYPE, "application/json")
        .body(body)
        .expect("method, fixed path and fixed headers form a valid request");
    let response = sender
        .send_request(request)
        .await
        .map_err(connection_error)?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(connection_error)?
        .to_bytes();
    if !status.is_success() {
        return Err(AdminClientError::Refused {
            action,
            status: status.as_u16(),
            message: refusal_message(status, &bytes),
        });
    }
    serde_json::from_slice(&bytes).map_err(|error| AdminClientError::UnreadableAnswer {
        path: socket.to_path_buf(),
        action,
        detail: error.to_string(),
    })
}

/// The server's `{"error": …}` text, or what little the status line says.
fn refusal_message(status: StatusCode, body: &[u8]) -> String {
    if let Ok(ErrorAnswer { error }) = serde_json::from_slice(body) {
        return error;
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let reason = status.canonical_reason().unwrap_or("unexpected status");
    if text.is_empty() {
        format!("HTTP {} {reason}", status.as_u16())
    } else {
        format!("HTTP {} {reason}: {text}", status.as_u16())
    }
}
