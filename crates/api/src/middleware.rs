//! Middleware of the whole app: request ids, problem finishing and error logging, metrics,
//! and the fallbacks for unknown routes and methods.
//!
//! Order (outermost first): [`request_ids`] → [`finish`] → body limit → routes, with
//! [`metrics`] as a route layer (it needs the matched route).

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::{error, Instrument};

use crate::error::{ApiError, Problem, PROBLEM_JSON};
use crate::extract::{header_id, RequestIds, X_CORRELATION_ID, X_REQUEST_ID};

/// Takes `X-Request-Id` (or makes one) and `X-Correlation-Id` (or the request id), puts
/// both in the request's extensions, and returns them on the response.
pub async fn request_ids(mut request: Request, next: Next) -> Response {
    let headers = request.headers();
    let request_id =
        header_id(headers, &X_REQUEST_ID).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let correlation_id =
        header_id(headers, &X_CORRELATION_ID).unwrap_or_else(|| request_id.clone());
    let ids = RequestIds {
        request_id: request_id.clone(),
        correlation_id: correlation_id.clone(),
    };
    request.extensions_mut().insert(ids);
    let span = tracing::info_span!(
        "http",
        method = %request.method(),
        path = %request.uri().path(),
        request_id = %request_id,
    );
    let mut response = next.run(request).instrument(span).await;
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert(X_REQUEST_ID, v);
    }
    if let Ok(v) = HeaderValue::from_str(&correlation_id) {
        headers.insert(X_CORRELATION_ID, v);
    }
    response
}

/// Completes every error answer as problem+json with the request id, and logs it once:
/// server errors at error level with their internal cause, others at debug level.
pub async fn finish(request: Request, next: Next) -> Response {
    let request_id = request
        .extensions()
        .get::<RequestIds>()
        .map(|ids| ids.request_id.clone());
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let problem = match response.extensions().get::<Problem>() {
        Some(Problem(p)) => (**p).clone(),
        None if is_problem(&response) => return response,
        None => from_status(status, &method, &path),
    };
    if status.is_server_error() {
        error!(
            status = status.as_u16(),
            %method,
            path,
            request_id = request_id.as_deref().unwrap_or("-"),
            error = problem.internal.as_deref().unwrap_or(&problem.detail),
            "request failed"
        );
    } else {
        tracing::debug!(status = status.as_u16(), %method, path, detail = %problem.detail, "request refused");
    }
    let mut out = problem.to_response(request_id.as_deref());
    // Keep the headers a lower layer set (Allow on 405, Retry-After, ...).
    for (name, value) in response.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

fn is_problem(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(PROBLEM_JSON))
}

/// A problem for an error answer made by a layer that knows nothing of problems.
fn from_status(status: StatusCode, method: &Method, path: &str) -> ApiError {
    match status {
        StatusCode::NOT_FOUND => ApiError::not_found(format!("no route for {method} {path}")),
        StatusCode::METHOD_NOT_ALLOWED => ApiError::new(
            status,
            "method-not-allowed",
            format!("{method} is not allowed on {path}"),
        )
        .with_title("Method not allowed"),
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::payload_too_large(crate::BODY_LIMIT),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::unsupported_media_type(),
        s if s.is_server_error() => {
            let mut e = ApiError::new(s, "internal", "internal error")
                .with_title(s.canonical_reason().unwrap_or("Server error"));
            e.internal = Some(format!("{s} from a lower layer"));
            e
        }
        s => ApiError::new(s, "error", s.canonical_reason().unwrap_or("error"))
            .with_title(s.canonical_reason().unwrap_or("Error")),
    }
}

/// Counts requests by method, route and status, and times them (route layer).
pub async fn metrics(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = request.method().to_string();
    let start = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(
        "shopfloor_http_requests_total",
        "method" => method.clone(),
        "route" => route.clone(),
        "status" => status
    )
    .increment(1);
    metrics::histogram!(
        "shopfloor_http_request_duration_seconds",
        "method" => method,
        "route" => route
    )
    .record(start.elapsed().as_secs_f64());
    response
}

/// 404 for a route that does not exist.
pub async fn not_found(method: Method, uri: Uri) -> Response {
    metrics::counter!("shopfloor_http_requests_total", "method" => method.to_string(), "route" => "unmatched", "status" => "404").increment(1);
    ApiError::not_found(format!("no route for {method} {}", uri.path())).into_response()
}

/// 405 for a known route with another method.
pub async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
    .with_title("Method not allowed")
    .into_response()
}
