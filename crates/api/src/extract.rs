//! Extractors: JSON bodies, queries and paths whose rejections are problem+json, and the
//! command context of a request (actor, request and correlation ids, Idempotency-Key,
//! If-Match).

use axum::extract::{FromRequest, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, Method};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use shopfloor_commands::CommandContext;
use shopfloor_eventstore::Source;

use crate::auth::Principal;
use crate::error::ApiError;

/// A JSON body; a bad one (syntax, types, missing fields) is a 400 problem, one not sent
/// as JSON a 415, one over the size limit a 413.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// A query string; a bad one is a 400 problem.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// Path parameters; a bad one is a 400 problem.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const X_CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// The request's ids, set by [`crate::middleware::request_ids`].
#[derive(Debug, Clone)]
pub struct RequestIds {
    pub request_id: String,
    /// `X-Correlation-Id` when given, else the request id.
    pub correlation_id: String,
}

/// An id from a client header, if it is reasonable: 1 to 128 visible ASCII characters.
pub fn header_id(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let v = headers.get(name)?.to_str().ok()?.trim();
    let ok = !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| v.to_string())
}

/// The Idempotency-Key header, validated (1 to 255 visible ASCII characters).
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let v = v
        .to_str()
        .map_err(|_| ApiError::bad_request("Idempotency-Key must be visible ASCII"))?
        .trim();
    let v = v.trim_matches('"');
    if v.is_empty() || v.len() > 255 || !v.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::bad_request(
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        ));
    }
    Ok(Some(v.to_string()))
}

/// The If-Match header as a stream version: `3`, `"3"` or `W/"3"`. `*` means no check.
pub fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(v) = headers.get(axum::http::header::IF_MATCH) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::bad_request("If-Match must be the expected stream version, e.g. \"3\"")
            .with_title("Invalid If-Match")
    };
    let v = v.to_str().map_err(|_| bad())?.trim();
    if v == "*" {
        return Ok(None);
    }
    let v = v.strip_prefix("W/").unwrap_or(v).trim_matches('"');
    v.parse::<u64>().map(Some).map_err(|_| bad())
}

/// Everything a handler needs to issue commands on behalf of the caller.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub principal: Principal,
    pub ids: RequestIds,
    pub idempotency_key: Option<String>,
    pub expected_version: Option<u64>,
    method: Method,
    path: String,
}

impl Ctx {
    /// The command context: actor, source, ids and, with an Idempotency-Key, a command id
    /// derived from the principal, method, path and key (so a retry appends nothing).
    pub fn command(&self, occurred_at: Option<DateTime<Utc>>) -> CommandContext {
        CommandContext {
            actor: self.principal.name.clone(),
            source: Source::Api,
            correlation_id: Some(self.ids.correlation_id.clone()),
            causation_id: None,
            request_id: Some(self.ids.request_id.clone()),
            command_id: self.command_id(),
            occurred_at,
            expected_version: self.expected_version,
            extra: Default::default(),
        }
    }

    /// The command id of this request, when it carries an Idempotency-Key.
    pub fn command_id(&self) -> Option<String> {
        self.idempotency_key.as_ref().map(|key| {
            let mut h = Sha256::new();
            for part in [
                self.principal.name.as_str(),
                self.method.as_str(),
                self.path.as_str(),
                key,
            ] {
                h.update(part.as_bytes());
                h.update([0x1f]);
            }
            format!("http:{}", hex::encode(h.finalize()))
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let principal = parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| ApiError::unauthorized("a bearer token is required"))?;
        let ids = parts
            .extensions
            .get::<RequestIds>()
            .cloned()
            .unwrap_or_else(|| {
                let id = uuid::Uuid::new_v4().to_string();
                RequestIds {
                    request_id: id.clone(),
                    correlation_id: id,
                }
            });
        Ok(Ctx {
            principal,
            ids,
            idempotency_key: idempotency_key(&parts.headers)?,
            expected_version: if_match(&parts.headers)?,
            method: parts.method.clone(),
            path: parts.uri.path().to_string(),
        })
    }
}

/// A JSON body that may be left out (commands like `start` whose body is `{}`): an empty
/// body is `T::default()`; anything else must be valid JSON for `T` (400 otherwise).
#[derive(Debug)]
pub struct OptionalJson<T>(pub T);

impl<T, S> FromRequest<S> for OptionalJson<T>
where
    T: serde::de::DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::payload_too_large(crate::BODY_LIMIT)
                } else {
                    ApiError::bad_request(e.body_text())
                }
            })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        serde_json::from_slice(&bytes)
            .map(OptionalJson)
            .map_err(|e| ApiError::bad_request(e.to_string()).with_title("Malformed request body"))
    }
}
