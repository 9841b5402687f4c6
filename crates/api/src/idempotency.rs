//! Idempotency-Key on POST and PATCH: a replayed request gets the first answer, verbatim,
//! and runs nothing.
//!
//! The first request with a key claims `(principal, key)` in `api_idempotency_keys`
//! together with a hash of its method, path and (canonical JSON) body, runs, and stores its
//! answer (status, content type, body). A later request with the same key:
//! - same request, answer stored → the stored answer, with `Idempotent-Replayed: true`;
//! - another method, path or body → 422 problem;
//! - the first is still running → 409 problem (retry later); a claim older than
//!   [`STALE_CLAIM_SECS`] (its request died) is taken over.
//!
//! Stored: 2xx and 4xx answers, except 401, 403, 408 and 429 (which say nothing about the
//! request itself). A 5xx is not stored and frees the key, so the retry runs again; the
//! command side is idempotent on its own (event ids derive from the key, see
//! [`crate::extract::Ctx::command_id`]), so such a retry appends nothing twice.
//!
//! Claims and answers are written through [`crate::AppState::idempotency_pool`], with
//! `synchronous_commit` off (ADR 0033): two fsyncs per keyed request were most of its
//! overhead. The claim still reaches disk before the command's events do (the WAL is
//! flushed in order when the command commits); an answer lost in a database crash only
//! means that a retry runs the command again, which appends nothing new.

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use tracing::{instrument, warn};

use crate::auth::Principal;
use crate::error::{ApiError, Problem};
use crate::extract::{idempotency_key, RequestIds};
use crate::{AppState, BODY_LIMIT};

/// A claim older than this (seconds) without an answer belongs to a request that died.
pub const STALE_CLAIM_SECS: i64 = 60;

/// Header set on a replayed answer.
pub const REPLAYED: &str = "idempotent-replayed";

/// Middleware on the routes that need a token (after authentication).
pub async fn idempotency(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if !matches!(*request.method(), Method::POST | Method::PATCH) {
        return next.run(request).await;
    }
    let key = match idempotency_key(request.headers()) {
        Ok(Some(key)) => key,
        Ok(None) => return next.run(request).await,
        Err(e) => return e.into_response(),
    };
    let Some(principal) = request.extensions().get::<Principal>().cloned() else {
        return next.run(request).await;
    };
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, BODY_LIMIT).await else {
        return ApiError::payload_too_large(BODY_LIMIT).into_response();
    };
    let method = parts.method.to_string();
    let path = parts.uri.path().to_string();
    let fingerprint = fingerprint(&method, &path, &bytes);
    let keys = Keys {
        pool: state.idempotency_pool.clone(),
        principal: principal.name.clone(),
        key,
    };
    match keys.claim(&method, &path, &fingerprint).await {
        Ok(Claim::Owned) => {}
        Ok(Claim::Replay(response)) => return response,
        Err(e) => return e.into_response(),
    }
    let request_id = parts
        .extensions
        .get::<RequestIds>()
        .map(|ids| ids.request_id.clone());
    let mut response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    // Store the problem as the client sees it (with the request id), so that a replay is
    // the first answer verbatim.
    if let Some(Problem(problem)) = response.extensions().get::<Problem>().cloned() {
        let extensions = std::mem::take(response.extensions_mut());
        response = problem.to_response(request_id.as_deref());
        *response.extensions_mut() = extensions;
    }
    let status = response.status();
    let (mut parts, body) = response.into_parts();
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        keys.release().await;
        return ApiError::internal("the answer could not be buffered").into_response();
    };
    if storable(status) {
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if let Err(e) = keys.complete(status, content_type.as_deref(), &body).await {
            // The answer stands; only its replay is lost (a retry re-runs, idempotently).
            warn!(error = %e, "idempotent answer not stored");
        }
    } else {
        keys.release().await;
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

fn storable(status: StatusCode) -> bool {
    status.is_success()
        || (status.is_client_error()
            && !matches!(
                status,
                StatusCode::UNAUTHORIZED
                    | StatusCode::FORBIDDEN
                    | StatusCode::REQUEST_TIMEOUT
                    | StatusCode::TOO_MANY_REQUESTS
            ))
}

/// SHA-256 over method, path and body; a JSON body is canonicalised (keys sorted, no
/// whitespace) so that formatting does not matter.
fn fingerprint(method: &str, path: &str, body: &Bytes) -> Vec<u8> {
    let canonical = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| serde_json::to_vec(&v).ok());
    let mut h = Sha256::new();
    h.update(method.as_bytes());
    h.update([0x1f]);
    h.update(path.as_bytes());
    h.update([0x1f]);
    h.update(canonical.as_deref().unwrap_or(body));
    h.finalize().to_vec()
}

enum Claim {
    Owned,
    Replay(Response),
}

struct Keys {
    pool: PgPool,
    principal: String,
    key: String,
}

#[derive(sqlx::FromRow)]
struct Stored {
    request_hash: Vec<u8>,
    status: Option<i16>,
    content_type: Option<String>,
    body: Option<Vec<u8>>,
    created_at: DateTime<Utc>,
}

impl Keys {
    #[instrument(skip_all)]
    async fn claim(&self, method: &str, path: &str, hash: &[u8]) -> Result<Claim, ApiError> {
        let inserted = sqlx::query(
            "INSERT INTO api_idempotency_keys (principal, key, method, path, request_hash) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (principal, key) DO NOTHING",
        )
        .bind(&self.principal)
        .bind(&self.key)
        .bind(method)
        .bind(path)
        .bind(hash)
        .execute(&self.pool)
        .await?;
        if inserted.rows_affected() == 1 {
            return Ok(Claim::Owned);
        }
        let stored: Option<Stored> = sqlx::query_as(
            "SELECT request_hash, status, content_type, body, created_at \
             FROM api_idempotency_keys WHERE principal = $1 AND key = $2",
        )
        .bind(&self.principal)
        .bind(&self.key)
        .fetch_optional(&self.pool)
        .await?;
        let Some(stored) = stored else {
            // Released between our insert and select: try once more from scratch.
            return Err(in_progress());
        };
        if stored.request_hash != hash {
            return Err(ApiError::idempotency_mismatch());
        }
        if let (Some(status), Some(body)) = (stored.status, stored.body) {
            let status = u16::try_from(status)
                .ok()
                .and_then(|s| StatusCode::from_u16(s).ok())
                .unwrap_or(StatusCode::OK);
            let mut response = (status, body).into_response();
            if let Some(ct) = stored
                .content_type
                .and_then(|c| HeaderValue::from_str(&c).ok())
            {
                response.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            response
                .headers_mut()
                .insert(REPLAYED, HeaderValue::from_static("true"));
            metrics::counter!("shopfloor_http_idempotent_replays_total").increment(1);
            return Ok(Claim::Replay(response));
        }
        let age = Utc::now() - stored.created_at;
        if age.num_seconds() < STALE_CLAIM_SECS {
            return Err(in_progress());
        }
        let taken = sqlx::query(
            "UPDATE api_idempotency_keys SET created_at = now() \
             WHERE principal = $1 AND key = $2 AND status IS NULL AND created_at = $3",
        )
        .bind(&self.principal)
        .bind(&self.key)
        .bind(stored.created_at)
        .execute(&self.pool)
        .await?;
        if taken.rows_affected() == 1 {
            Ok(Claim::Owned)
        } else {
            Err(in_progress())
        }
    }

    #[instrument(skip_all)]
    async fn complete(
        &self,
        status: StatusCode,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE api_idempotency_keys SET status = $3, content_type = $4, body = $5, \
             completed_at = now() WHERE principal = $1 AND key = $2",
        )
        .bind(&self.principal)
        .bind(&self.key)
        .bind(i16::try_from(status.as_u16()).unwrap_or(500))
        .bind(content_type)
        .bind(body)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Frees the key after an answer that is not stored.
    async fn release(&self) {
        let done = sqlx::query(
            "DELETE FROM api_idempotency_keys WHERE principal = $1 AND key = $2 AND status IS NULL",
        )
        .bind(&self.principal)
        .bind(&self.key)
        .execute(&self.pool)
        .await;
        if let Err(e) = done {
            warn!(error = %e, "idempotency claim not released; it expires on its own");
        }
    }
}

fn in_progress() -> ApiError {
    ApiError::conflict("a request with this Idempotency-Key is still being processed; retry later")
        .with_title("Request in progress")
}
