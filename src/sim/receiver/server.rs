//! The receiver's network side: accept loop, one task per HTTP/1.1 connection.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hyper::body::{Body as _, Incoming};
use hyper::header::{HeaderValue, RETRY_AFTER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use super::{Behaviour, ReceivedRequest, Shared};

/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_RETRY_PAUSE: Duration = Duration::from_millis(20);

pub(super) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    let connection_stop = stop.clone();
    loop {
        tokio::select! {
            // Also ends when the last handle is dropped without `shutdown` (sender gone).
            () = stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, shared.clone(), connection_stop.clone()));
                }
                Err(error) => {
                    tracing::warn!(%error, "test webhook receiver: accept failed");
                    tokio::time::sleep(ACCEPT_RETRY_PAUSE).await;
                }
            },
        }
        // Reap finished connections so a long benchmark does not accumulate them.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    connections.shutdown().await;
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    // Small answers on keep-alive connections: do not let Nagle hold them back.
    let _ = stream.set_nodelay(true);
    let cut_connection = Arc::new(Notify::new());
    let service = {
        let cut_connection = cut_connection.clone();
        service_fn(move |request| answer(request, shared.clone(), cut_connection.clone()))
    };
    let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    // Dropping the connection future closes the socket without writing anything: that is how
    // both `CloseConnection` and shutdown cut it, hanging requests included.
    tokio::select! {
        _ = connection => {}
        _ = cut_connection.notified() => {}
        () = stopped(&mut stop) => {}
    }
}

async fn answer(
    request: Request<Incoming>,
    shared: Arc<Shared>,
    cut_connection: Arc<Notify>,
) -> Result<Response<String>, Infallible> {
    let (parts, mut body) = request.into_parts();
    let mut bytes = Vec::new();
    let complete = loop {
        match std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            None => break true,
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    bytes.extend_from_slice(&data);
                }
            }
            Some(Err(_)) => break false,
        }
    };
    let received = ReceivedRequest {
        at: SystemTime::now(),
        method: parts.method.as_str().to_string(),
        path: parts.uri.path_and_query().map_or_else(
            || parts.uri.path().to_string(),
            |target| target.as_str().to_string(),
        ),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_string(), value)
            })
            .collect(),
        body: bytes,
        status: None,
    };
    if !complete {
        // The client went away mid-body; hyper will not deliver an answer anyway.
        shared.record_unanswered(received);
        return Ok(plain_response(StatusCode::BAD_REQUEST));
    }

    let (serial, behaviour) = shared.record(received);
    let (status, retry_after) = match behaviour {
        Behaviour::Ok => (200, None),
        Behaviour::Status(status) => (status, None),
        Behaviour::StatusWithRetryAfter(status, retry_after) => (status, Some(retry_after)),
        Behaviour::Delay(delay, status) => {
            tokio::time::sleep(delay).await;
            (status, None)
        }
        Behaviour::Hang => std::future::pending().await,
        Behaviour::CloseConnection => {
            cut_connection.notify_one();
            std::future::pending().await
        }
        Behaviour::Chaos { .. } => {
            unreachable!("State::next_behaviour rolls Chaos into a concrete behaviour")
        }
    };
    // Statuses and header values were validated when the behaviour was configured.
    let mut response = plain_response(
        StatusCode::from_u16(status).expect("status validated by Behaviour::validate"),
    );
    if let Some(retry_after) = retry_after {
        let value =
            HeaderValue::from_str(&retry_after).expect("header validated by Behaviour::validate");
        response.headers_mut().insert(RETRY_AFTER, value);
    }
    shared.set_status(serial, status);
    Ok(response)
}

/// Resolves once stop is requested or every handle is gone.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not Send; drop it here rather than across an await.
    let _ = stop.wait_for(|stopped| *stopped).await;
}

fn plain_response(status: StatusCode) -> Response<String> {
    let mut response = Response::new(String::new());
    *response.status_mut() = status;
    response
}
