//! Server side of the admin socket: binding it safely and answering the routes.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Json, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::listener::Limits;

use super::{
    API_PREFIX, AdminBackend, CountAnswer, DeadLetterSelection, ErrorAnswer, ReconcileCommand,
};

/// Mode of the socket file: the daemon's user and group may talk to it, nobody else (SPEC §2).
const SOCKET_MODE: u32 = 0o660;

/// Why the admin socket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum AdminStartError {
    #[error(
        "another pollerd already answers on the admin socket {path}; stop it first or set another admin_socket"
    )]
    AlreadyRunning { path: PathBuf },
    #[error("{path} exists and is not a socket; refusing to replace it with the admin socket")]
    NotASocket { path: PathBuf },
    #[error("cannot create the admin socket directory {dir}: {cause}")]
    CreateDir { dir: PathBuf, cause: io::Error },
    #[error("cannot check whether another pollerd answers on {path}: {cause}")]
    Probe { path: PathBuf, cause: io::Error },
    #[error("cannot remove the stale admin socket {path}: {cause}")]
    RemoveStale { path: PathBuf, cause: io::Error },
    #[error("cannot bind the admin socket {path}: {cause}")]
    Bind { path: PathBuf, cause: io::Error },
    #[error("cannot set mode 0660 on the admin socket {path}: {cause}")]
    Chmod { path: PathBuf, cause: io::Error },
}

/// The running admin socket. It serves until the token given to [`AdminServer::start`] is
/// cancelled, then removes its socket file.
pub struct AdminServer {
    path: PathBuf,
    task: JoinHandle<()>,
}

impl AdminServer {
    /// Binds the socket (creating its parent directory if missing, removing a stale socket
    /// file, but refusing if another live daemon answers on it), sets mode 0660 and serves
    /// within the daemon's [`Limits`] until `cancel` fires; the socket file is removed on stop.
    pub async fn start(
        path: &Path,
        backend: Arc<dyn AdminBackend>,
        cancel: CancellationToken,
    ) -> anyhow::Result<AdminServer> {
        AdminServer::start_within(path, backend, Limits::DAEMON, cancel).await
    }

    /// [`start`](Self::start) within other limits.
    pub async fn start_within(
        path: &Path,
        backend: Arc<dyn AdminBackend>,
        limits: Limits,
        cancel: CancellationToken,
    ) -> anyhow::Result<AdminServer> {
        let listener = bind(path).await?;
        // Remember which file is ours, so stopping never removes a successor's socket.
        let identity = file_identity(path);
        let router = router(backend);
        let socket_path = path.to_path_buf();
        let task = tokio::spawn(async move {
            crate::listener::serve(listener, router, limits, "admin socket", cancel).await;
            if identity.is_some() && file_identity(&socket_path) == identity {
                if let Err(error) = std::fs::remove_file(&socket_path) {
                    tracing::warn!(%error, path = %socket_path.display(), "cannot remove the admin socket");
                }
            }
        });
        tracing::debug!(path = %path.display(), "admin socket listening");
        Ok(AdminServer {
            path: path.to_path_buf(),
            task,
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Resolves once the server has stopped (after cancellation) and its socket file is gone.
    pub async fn stopped(self) {
        if let Err(error) = self.task.await {
            tracing::error!(%error, path = %self.path.display(), "admin socket task failed");
        }
    }
}

async fn bind(path: &Path) -> Result<UnixListener, AdminStartError> {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|cause| AdminStartError::CreateDir {
            dir: dir.to_path_buf(),
            cause,
        })?;
    }
    remove_if_stale(path).await?;
    // Bound under a temporary name, given its mode, then renamed into place: no client can
    // reach a socket whose mode is not yet right.
    let mut staged_name = path.file_name().unwrap_or_default().to_os_string();
    staged_name.push(format!(".{}.tmp", std::process::id()));
    let staged = path.with_file_name(staged_name);
    let _ = std::fs::remove_file(&staged);
    let listener = UnixListener::bind(&staged).map_err(|cause| AdminStartError::Bind {
        path: path.to_path_buf(),
        cause,
    })?;
    let placed = std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(SOCKET_MODE))
        .map_err(|cause| AdminStartError::Chmod {
            path: path.to_path_buf(),
            cause,
        })
        .and_then(|()| {
            std::fs::rename(&staged, path).map_err(|cause| AdminStartError::Bind {
                path: path.to_path_buf(),
                cause,
            })
        });
    if let Err(error) = placed {
        // Do not leave a socket with the wrong mode (or name) behind.
        let _ = std::fs::remove_file(&staged);
        return Err(error);
    }
    Ok(listener)
}

/// A socket file left by a daemon that died is removed; one a live daemon answers on is not.
async fn remove_if_stale(path: &Path) -> Result<(), AdminStartError> {
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(cause) if cause.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(cause) => {
            return Err(AdminStartError::Probe {
                path: path.to_path_buf(),
                cause,
            });
        }
    };
    if !metadata.file_type().is_socket() {
        return Err(AdminStartError::NotASocket {
            path: path.to_path_buf(),
        });
    }
    match UnixStream::connect(path).await {
        Ok(_) => Err(AdminStartError::AlreadyRunning {
            path: path.to_path_buf(),
        }),
        // Nobody listens: the file is what a killed daemon left behind.
        Err(cause)
            if matches!(
                cause.kind(),
                io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound
            ) =>
        {
            match std::fs::remove_file(path) {
                Ok(()) => {
                    tracing::info!(path = %path.display(), "removed a stale admin socket");
                    Ok(())
                }
                Err(cause) if cause.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(cause) => Err(AdminStartError::RemoveStale {
                    path: path.to_path_buf(),
                    cause,
                }),
            }
        }
        Err(cause) => Err(AdminStartError::Probe {
            path: path.to_path_buf(),
            cause,
        }),
    }
}

/// Device and inode of a file, if it exists.
fn file_identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::symlink_metadata(path)
        .ok()
        .map(|metadata| (metadata.dev(), metadata.ino()))
}

type Backend = Arc<dyn AdminBackend>;

fn router(backend: Backend) -> Router {
    Router::new()
        .route(&format!("{API_PREFIX}/status"), get(status))
        .route(&format!("{API_PREFIX}/dead-letters"), get(dead_letters))
        .route(&format!("{API_PREFIX}/dead-letters/replay"), post(replay))
        .route(
            &format!("{API_PREFIX}/dead-letters/drop"),
            post(drop_letters),
        )
        .route(&format!("{API_PREFIX}/reconcile"), post(reconcile))
        .fallback(unknown_route)
        .with_state(backend)
}

async fn status(State(backend): State<Backend>) -> Response {
    call_backend(move || Ok(backend.status())).await
}

async fn dead_letters(State(backend): State<Backend>) -> Response {
    call_backend(move || backend.dead_letters()).await
}

async fn replay(
    State(backend): State<Backend>,
    selection: Result<Json<DeadLetterSelection>, JsonRejection>,
) -> Response {
    let ids = match selected_ids(selection) {
        Ok(ids) => ids,
        Err(problem) => return refusal(StatusCode::BAD_REQUEST, problem),
    };
    call_backend(move || backend.replay(ids).map(|count| CountAnswer { count })).await
}

async fn drop_letters(
    State(backend): State<Backend>,
    selection: Result<Json<DeadLetterSelection>, JsonRejection>,
) -> Response {
    let ids = match selected_ids(selection) {
        Ok(ids) => ids,
        Err(problem) => return refusal(StatusCode::BAD_REQUEST, problem),
    };
    call_backend(move || {
        backend
            .drop_dead_letters(ids)
            .map(|count| CountAnswer { count })
    })
    .await
}

async fn reconcile(
    State(backend): State<Backend>,
    command: Result<Json<ReconcileCommand>, JsonRejection>,
) -> Response {
    let command = match command {
        Ok(Json(command)) => command,
        Err(rejection) => return refusal(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    call_backend(move || backend.reconcile(command)).await
}

async fn unknown_route(method: Method, uri: Uri) -> Response {
    refusal(
        StatusCode::NOT_FOUND,
        format!("no such admin route: {method} {}", uri.path()),
    )
}

/// The backend's argument, or what is wrong with the request body.
fn selected_ids(
    selection: Result<Json<DeadLetterSelection>, JsonRejection>,
) -> Result<Option<Vec<String>>, String> {
    let Json(selection) = selection.map_err(|rejection| rejection.body_text())?;
    selection.into_ids().map_err(str::to_string)
}

/// Backend calls may block (the store), so they run off the async threads.
async fn call_backend<T, F>(call: F) -> Response
where
    T: Serialize + Send + 'static,
    F: FnOnce() -> Result<T, String> + Send + 'static,
{
    match tokio::task::spawn_blocking(call).await {
        Ok(Ok(answer)) => Json(answer).into_response(),
        Ok(Err(message)) => refusal(StatusCode::INTERNAL_SERVER_ERROR, message),
        Err(join_error) => {
            tracing::error!(error = %join_error, "admin request failed inside the daemon");
            refusal(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the daemon failed while answering; see its log".to_string(),
            )
        }
    }
}

fn refusal(status: StatusCode, error: String) -> Response {
    (status, Json(ErrorAnswer { error })).into_response()
}
