//! Serving the router on a socket with limits that slow or greedy clients cannot get
//! around: [`serve`] with [`ServeLimits`].
//!
//! - **Header read timeout**: a connection must deliver a request's complete head within
//!   `header_read_timeout` of the server starting to read it; this also bounds how long
//!   an idle keep-alive connection is kept. A client that sends its headers byte by byte
//!   (slowloris) is disconnected then.
//! - **Request timeout**: a request must be answered (its response head produced) within
//!   `request_timeout`, reading its body included; otherwise it gets 503 problem+json with
//!   `Retry-After`. Streaming bodies (the live feed) are not cut: the limit ends when the
//!   response starts.
//! - **Connection limit**: at most `max_connections` connections are served at once; one
//!   over the limit gets an immediate 503 with `Retry-After` and is closed, instead of
//!   waiting unseen in the accept queue.
//! - **Graceful shutdown**: when `shutdown` completes, the listener closes, idle
//!   connections close, in-flight requests finish, and after `graceful_timeout` whatever
//!   is left is dropped.
//!
//! Every request carries [`axum::extract::ConnectInfo<SocketAddr>`] with the peer
//! address, which the failed-authentication limit uses.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tracing::{debug, warn};

use crate::error::ApiError;

/// The limits of [`serve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// How long a client may take to send a request's head (and how long an idle
    /// keep-alive connection stays open).
    pub header_read_timeout: Duration,
    /// How long a request may take until its response starts (body upload included).
    pub request_timeout: Duration,
    /// Connections served at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// How long a graceful shutdown waits for in-flight requests.
    pub graceful_timeout: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 4096,
            graceful_timeout: Duration::from_secs(30),
        }
    }
}

/// Serves `router` on `listener` with `limits` until `shutdown` completes, then shuts
/// down gracefully (see the module docs).
pub async fn serve<F>(
    listener: TcpListener,
    router: Router,
    limits: ServeLimits,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let router = router.layer(axum::middleware::from_fn_with_state(
        limits.request_timeout,
        request_timeout,
    ));
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let tracker = TaskTracker::new();
    let stop = CancellationToken::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of file descriptors and the like: wait, do not spin.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            metrics::counter!("shopfloor_http_connections_refused_total").increment(1);
            tracker.spawn(refuse(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service =
            router
                .clone()
                .map_request(move |mut request: Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(peer));
                    request
                });
        let service = TowerToHyperService::new(service);
        let stop = stop.clone();
        tracker.spawn(async move {
            let _permit = permit;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .keep_alive(true);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            let result = tokio::select! {
                result = conn.as_mut() => result,
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    stop.cancel();
    tracker.close();
    if tokio::time::timeout(limits.graceful_timeout, tracker.wait())
        .await
        .is_err()
    {
        warn!(
            left = tracker.len(),
            "graceful shutdown timed out; dropping the connections left"
        );
    }
    Ok(())
}

/// Errors of one accepted connection, not of the listener.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        e.kind(),
        K::ConnectionRefused | K::ConnectionAborted | K::ConnectionReset
    )
}

/// Answers a connection over the limit with 503 and closes it (within 1 s).
async fn refuse(mut stream: TcpStream) {
    let body = serde_json::json!({
        "type": "urn:shopfloor:problem:unavailable",
        "title": "Service unavailable",
        "status": 503,
        "detail": "too many connections; try again",
    })
    .to_string();
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: {}\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n",
        crate::error::PROBLEM_JSON,
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        // Read the request head first (a client may not expect an answer before it
        // has sent its request), but no more than 16 KiB of it.
        let mut seen = Vec::new();
        let mut buf = [0u8; 2048];
        while seen.len() < 16 * 1024 && !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await? {
                0 => break,
                n => seen.extend_from_slice(&buf[..n]),
            }
        }
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
}

/// Middleware: 503 when the response has not started within the limit.
async fn request_timeout(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            metrics::counter!("shopfloor_http_request_timeouts_total").increment(1);
            let mut e =
                ApiError::unavailable(format!("the request was not answered within {limit:?}"), 1);
            e.detail = format!(
                "the request was not completed within {} s; try again",
                limit.as_secs_f64()
            );
            e.into_response()
        }
    }
}
