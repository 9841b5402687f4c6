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
//! - **Unread bodies are drained**: an answer given before the request's body was read
//!   (413 for a body over the limit, 401, 404, ...) waits until the rest of the body has
//!   arrived, up to [`DRAIN_LIMIT`] bytes and [`DRAIN_TIMEOUT`], and is then sent on a
//!   connection that stays usable. Without this, hyper closes a connection whose
//!   request body was not read, the kernel answers the bytes still arriving with a reset,
//!   and a client that sends its whole body before reading (most blocking clients) gets
//!   a broken pipe instead of the answer. A body beyond the bounds, and any server error,
//!   is answered with `Connection: close` without waiting.
//! - **Graceful shutdown**: when `shutdown` completes, the listener closes, idle
//!   connections close, in-flight requests finish, and after `graceful_timeout` whatever
//!   is left is dropped.
//!
//! Every request carries [`axum::extract::ConnectInfo<SocketAddr>`] with the peer
//! address, which the failed-authentication limit uses.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue};
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
    let router = router
        .layer(axum::middleware::from_fn_with_state(
            limits.request_timeout,
            request_timeout,
        ))
        .layer(axum::middleware::from_fn(drain_unread_body));
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

/// The most of an unread request body that is read (and dropped) so that the client can
/// read the answer; a longer body gets the answer with `Connection: close`.
pub const DRAIN_LIMIT: u64 = 8 * 1024 * 1024;

/// How long the rest of an unread request body is waited for.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A request body that the middleware and the handler share: the handler reads it
/// through this, and what it leaves stays with the middleware when it is dropped.
struct SharedBody {
    body: Arc<Mutex<Option<Body>>>,
    /// Set once anything polled the body (hyper then has sent `100 Continue`).
    polled: Arc<AtomicBool>,
}

impl http_body::Body for SharedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        self.polled.store(true, Ordering::Relaxed);
        let mut body = self.body.lock().unwrap_or_else(PoisonError::into_inner);
        match body.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        let body = self.body.lock().unwrap_or_else(PoisonError::into_inner);
        body.as_ref().is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let body = self.body.lock().unwrap_or_else(PoisonError::into_inner);
        body.as_ref()
            .map(http_body::Body::size_hint)
            .unwrap_or_default()
    }
}

/// What to do with the part of a request body left unread when the answer is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leftover {
    /// Nothing left (or nothing was sent): answer.
    None,
    /// Read the rest, then answer on a connection that stays usable.
    Drain,
    /// Answer with `Connection: close` without reading the rest.
    Close,
}

/// The plan for a leftover body (pure): `declared` is its Content-Length, if any;
/// `expect_continue` whether the client waits for `100 Continue` and `polled` whether
/// the body was touched (if neither, the client has not sent it and never will).
fn leftover(
    at_end: bool,
    server_error: bool,
    declared: Option<u64>,
    expect_continue: bool,
    polled: bool,
) -> Leftover {
    if at_end || (expect_continue && !polled) {
        Leftover::None
    } else if server_error || declared.is_some_and(|n| n > DRAIN_LIMIT) {
        Leftover::Close
    } else {
        Leftover::Drain
    }
}

/// Middleware (outermost): see "Unread bodies are drained" in the module docs.
async fn drain_unread_body(request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    if http_body::Body::is_end_stream(&body) {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let expect_continue = parts
        .headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let shared = Arc::new(Mutex::new(Some(body)));
    let polled = Arc::new(AtomicBool::new(false));
    let inner = Body::new(SharedBody {
        body: shared.clone(),
        polled: polled.clone(),
    });
    let mut response = next.run(Request::from_parts(parts, inner)).await;
    let rest = shared.lock().unwrap_or_else(PoisonError::into_inner).take();
    let Some(rest) = rest else {
        return response;
    };
    let plan = leftover(
        http_body::Body::is_end_stream(&rest),
        response.status().is_server_error(),
        declared,
        expect_continue,
        polled.load(Ordering::Relaxed),
    );
    let drained = match plan {
        Leftover::None => return response,
        Leftover::Close => false,
        Leftover::Drain => drain(rest).await,
    };
    if !drained {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Reads `body` to its end, within [`DRAIN_LIMIT`] and [`DRAIN_TIMEOUT`]; true when the
/// end was reached.
async fn drain(body: Body) -> bool {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut read: u64 = 0;
    let reading = async {
        while let Some(chunk) = stream.next().await {
            let Ok(chunk) = chunk else { return false };
            read = read.saturating_add(chunk.len() as u64);
            if read > DRAIN_LIMIT {
                return false;
            }
        }
        true
    };
    let done = tokio::time::timeout(DRAIN_TIMEOUT, reading)
        .await
        .unwrap_or(false);
    if done {
        metrics::counter!("shopfloor_http_bodies_drained_total").increment(1);
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leftover_body_is_drained_within_the_bounds_only() {
        // Read to the end by the handler: nothing to do.
        assert_eq!(leftover(true, false, Some(10), false, true), Leftover::None);
        // A 413 before reading a 2.3 MiB body: drained.
        let big = Some(2_400_000);
        assert_eq!(leftover(false, false, big, false, false), Leftover::Drain);
        // Chunked (no length): drained, within the byte bound.
        assert_eq!(leftover(false, false, None, false, true), Leftover::Drain);
        // Beyond the bound, or a server error: closed without waiting.
        let huge = Some(DRAIN_LIMIT + 1);
        assert_eq!(leftover(false, false, huge, false, false), Leftover::Close);
        assert_eq!(leftover(false, true, big, false, true), Leftover::Close);
        // A client waiting for 100 Continue that was never asked for the body: it will
        // not send it.
        assert_eq!(leftover(false, false, big, true, false), Leftover::None);
        assert_eq!(leftover(false, false, big, true, true), Leftover::Drain);
    }
}
