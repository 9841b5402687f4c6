//! [`ApiError`]: every error answer of the API, as `application/problem+json` (RFC 9457).
//!
//! A handler returns `Result<_, ApiError>`; the error renders as a problem document with
//! `type`, `title`, `status` and `detail`. The [`crate::middleware::finish`] middleware then
//! adds the request id (`instance`, `request_id`), logs a server error once (with its
//! internal cause, which never reaches the client), and turns any other error answer (an
//! unknown route, a wrong method, a body over the limit from a lower layer) into the same
//! format.
//!
//! Mapping of the command side: a domain refusal maps by its kind (not found → 404,
//! conflict → 409, invalid → 400); a stale `If-Match` → 409; contention → 503 with
//! `Retry-After`; a store failure → 503 with `Retry-After` when transient (a lost
//! connection, a pool timeout, PostgreSQL shutting down or starting up), else 500.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{json, Value};
use shopfloor_commands::{CommandError, RejectionKind};
use shopfloor_domain::values::ValueError;
use shopfloor_eventstore::{Failure, StoreError};

/// The media type of problem documents.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error answer. Cheap to build; the internal cause of a 5xx is kept for the log only.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// A short slug naming the kind of problem (`not-found`, `conflict`, ...).
    pub kind: &'static str,
    pub title: String,
    /// Shown to the client; for a 5xx it is replaced by a generic text.
    pub detail: String,
    /// Seconds after which a retry may succeed (503).
    pub retry_after: Option<u64>,
    /// Extra members of the problem document (e.g. `errors`, `current_version`).
    pub extensions: Option<Box<Value>>,
    /// What really went wrong, for the log (server errors).
    pub internal: Option<String>,
}

/// The problem carried in a response's extensions, so that the finishing middleware can
/// complete it (request id) and log it.
#[derive(Debug, Clone)]
pub struct Problem(pub Arc<ApiError>);

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            detail: detail.into(),
            retry_after: None,
            extensions: None,
            internal: None,
        }
    }

    pub fn with_title(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
    }

    pub fn with_extensions(mut self, extensions: Value) -> Self {
        self.extensions = Some(Box::new(extensions));
        self
    }

    /// 400: the request is malformed or a field is wrong.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", detail).with_title("Bad request")
    }

    /// 400 naming the field at fault.
    pub fn invalid_field(field: &str, error: impl std::fmt::Display) -> Self {
        Self::bad_request(format!("{field}: {error}"))
            .with_title("Invalid field")
            .with_extensions(json!({ "field": field }))
    }

    /// 422: the body is well formed and its target exists, but it names something that does
    /// not (an unknown or deactivated operator): the field at fault is named.
    pub fn unprocessable(field: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable", detail)
            .with_title("Unprocessable entity")
            .with_extensions(json!({ "field": field }))
    }

    /// 401: no token, or one that is not known.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail).with_title("Unauthorized")
    }

    /// 403: a known token without the right.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail).with_title("Forbidden")
    }

    /// 404: unknown id or route.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", detail).with_title("Not found")
    }

    /// 409: the request does not fit the current state.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", detail).with_title("Conflict")
    }

    /// 413: the body is over the limit.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            format!("the request body is larger than {limit} bytes"),
        )
        .with_title("Payload too large")
    }

    /// 415: a body that is not sent as JSON.
    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "the body must be JSON, sent with Content-Type: application/json",
        )
        .with_title("Unsupported media type")
    }

    /// 422: an Idempotency-Key reused for another request.
    pub fn idempotency_mismatch() -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency-key-reused",
            "this Idempotency-Key was already used for a different request",
        )
        .with_title("Idempotency-Key reused")
    }

    /// 503: try again later.
    pub fn unavailable(internal: impl Into<String>, retry_after: u64) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the service is busy or a dependency is unreachable; try again",
        )
        .with_title("Service unavailable");
        e.retry_after = Some(retry_after);
        e.internal = Some(internal.into());
        e
    }

    /// 504: the database was cut off while the write was being committed and did not
    /// come back in time to tell whether it was. The write may be stored: retrying
    /// with the same Idempotency-Key is safe (and answers with the original outcome);
    /// retrying without one may record it twice.
    pub fn unknown_outcome(internal: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "unknown-outcome",
            "the database was cut off while this write was being committed; it may or may not \
             be recorded. Retry with the same Idempotency-Key to learn the outcome without \
             recording it twice",
        )
        .with_title("Outcome unknown");
        e.retry_after = Some(2);
        e.internal = Some(internal.into());
        e
    }

    /// 500: the cause goes to the log, never to the client.
    pub fn internal(internal: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
        .with_title("Internal server error");
        e.internal = Some(internal.into());
        e
    }

    /// The problem document, with the request id when known. A server error never shows
    /// its cause.
    pub fn body(&self, request_id: Option<&str>) -> Value {
        let detail = if self.status.is_server_error() {
            match (self.status, request_id) {
                (StatusCode::SERVICE_UNAVAILABLE, Some(id)) => {
                    format!("{}; request id {id}", self.detail)
                }
                (_, Some(id)) => format!("internal error; request id {id}"),
                _ if self.status == StatusCode::SERVICE_UNAVAILABLE => self.detail.clone(),
                _ => "internal error".to_string(),
            }
        } else {
            self.detail.clone()
        };
        let mut body = json!({
            "type": format!("urn:shopfloor:problem:{}", self.kind),
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": detail,
        });
        if let Some(map) = body.as_object_mut() {
            if let Some(id) = request_id {
                map.insert(
                    "instance".into(),
                    Value::String(format!("urn:request:{id}")),
                );
                map.insert("request_id".into(), Value::String(id.to_string()));
            }
            if let Some(Value::Object(ext)) = self.extensions.as_deref() {
                for (k, v) in ext {
                    map.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
        }
        body
    }

    /// The full response, with the request id when known.
    pub fn to_response(&self, request_id: Option<&str>) -> Response {
        let body = serde_json::to_vec(&self.body(request_id)).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.title,
            self.detail
        )?;
        if let Some(internal) = &self.internal {
            write!(f, " ({internal})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.to_response(None);
        response.extensions_mut().insert(Problem(Arc::new(self)));
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => ApiError::unsupported_media_type(),
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::payload_too_large(crate::BODY_LIMIT)
            }
            other => {
                let text = other.body_text();
                let detail = text
                    .strip_prefix("Failed to deserialize the JSON body into the target type: ")
                    .or_else(|| text.strip_prefix("Failed to parse the request body as JSON: "))
                    .unwrap_or(&text)
                    .to_string();
                ApiError::bad_request(detail).with_title("Malformed request body")
            }
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        let text = rejection.body_text();
        let detail = text
            .strip_prefix("Failed to deserialize query string: ")
            .unwrap_or(&text)
            .to_string();
        ApiError::bad_request(detail).with_title("Invalid query string")
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::bad_request(rejection.body_text()).with_title("Invalid path parameter")
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::Rejected { kind, message } => match kind {
                RejectionKind::NotFound => ApiError::not_found(message),
                RejectionKind::Conflict => ApiError::conflict(message),
                RejectionKind::Invalid => {
                    ApiError::bad_request(message).with_title("Command refused")
                }
            },
            CommandError::VersionMismatch {
                stream_type,
                expected,
                actual,
            } => ApiError::new(
                StatusCode::CONFLICT,
                "version-mismatch",
                format!("the {stream_type} is at version {actual}, not {expected} (If-Match)"),
            )
            .with_title("Stale version")
            .with_extensions(json!({ "current_version": actual, "expected_version": expected })),
            e @ CommandError::Contention { .. } => ApiError::unavailable(e.to_string(), 1),
            e @ CommandError::Aborted { .. } => ApiError::conflict(e.to_string()),
            CommandError::Store(e) => e.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if let StoreError::UnknownOutcome(_) = e {
            return ApiError::unknown_outcome(e.to_string());
        }
        match e.failure() {
            Failure::BadValue => ApiError::bad_request(
                "a value in the request cannot be stored or searched (a NUL character, a number out of range, ...)",
            )
            .with_title("Invalid value"),
            Failure::Transient => ApiError::unavailable(e.to_string(), 2),
            Failure::Fault => ApiError::internal(e.to_string()),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::from(e).into()
    }
}

/// The ingest's store (telemetry, rejected messages): a bad query value is the client's
/// fault (400), the database as for the event store (a value PostgreSQL refuses: 400;
/// unreachable: 503).
impl From<shopfloor_ingest::IngestError> for ApiError {
    fn from(e: shopfloor_ingest::IngestError) -> Self {
        use shopfloor_ingest::IngestError as E;
        match e {
            E::Config(m) => ApiError::bad_request(m).with_title("Invalid query"),
            E::Database(e) => e.into(),
            E::Store(e) => e.into(),
            E::Command(e) => e.into(),
            e @ (E::MappingFile { .. } | E::Mqtt(_)) => ApiError::internal(e.to_string()),
        }
    }
}

/// A domain value that did not validate, named by its field.
pub trait FieldContext<T> {
    /// Turns a [`ValueError`] into a 400 naming `field`.
    fn field(self, field: &str) -> Result<T, ApiError>;
}

impl<T> FieldContext<T> for Result<T, ValueError> {
    fn field(self, field: &str) -> Result<T, ApiError> {
        self.map_err(|e| ApiError::invalid_field(field, e))
    }
}

/// The problem document schema, for the OpenAPI document.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProblemDocument {
    /// A URN naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// `urn:request:{request id}`.
    pub instance: Option<String>,
    pub request_id: Option<String>,
}
