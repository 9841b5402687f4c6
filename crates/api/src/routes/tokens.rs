//! Bearer tokens (admin only): issue, list (never the secrets), revoke.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{perm, Auth, Role, TokenInfo};
use crate::error::{ApiError, ProblemDocument};
use crate::extract::{ApiJson, ApiPath, Ctx};
use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/auth/tokens", post(issue).get(list))
        .route("/api/v1/auth/tokens/{name}", delete(revoke))
}

/// `POST /api/v1/auth/tokens`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct IssueBody {
    /// A unique name: the actor of everything done with the token.
    pub name: String,
    /// `operator`, `supervisor`, `auditor` or `admin`.
    pub role: String,
}

/// A new token: shown once, never stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedToken {
    pub token: String,
    pub role: Role,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// Issues a token, usable at once.
#[utoipa::path(post, path = "/api/v1/auth/tokens", tag = "auth",
    request_body = IssueBody,
    responses((status = 201, body = IssuedToken), (status = 400, body = ProblemDocument),
        (status = 409, description = "the name is taken", body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn issue(
    State(state): State<AppState>,
    _: Auth<perm::Tokens>,
    ctx: Ctx,
    ApiJson(body): ApiJson<IssueBody>,
) -> Result<(StatusCode, Json<IssuedToken>), ApiError> {
    let name = body.name.trim();
    let name_ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | ':'));
    if !name_ok {
        return Err(ApiError::invalid_field(
            "name",
            "must be 1 to 128 characters of letters, digits and - _ . @ :",
        ));
    }
    let role = Role::parse(body.role.trim()).ok_or_else(|| {
        ApiError::invalid_field("role", "must be operator, supervisor, auditor or admin")
    })?;
    let token = state.tokens.issue(name, role, &ctx.principal.name).await?;
    tracing::info!(name, %role, by = %ctx.principal.name, "token issued");
    Ok((
        StatusCode::CREATED,
        Json(IssuedToken {
            token,
            role,
            name: name.to_string(),
            created_at: Utc::now(),
        }),
    ))
}

/// Every token (active first); never the secrets.
#[utoipa::path(get, path = "/api/v1/auth/tokens", tag = "auth",
    responses((status = 200, body = [TokenInfo])),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    _: Auth<perm::Tokens>,
) -> Result<Json<Vec<TokenInfo>>, ApiError> {
    Ok(Json(state.tokens.list().await?))
}

/// Revokes a token at once.
#[utoipa::path(delete, path = "/api/v1/auth/tokens/{name}", tag = "auth",
    params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn revoke(
    State(state): State<AppState>,
    _: Auth<perm::Tokens>,
    ctx: Ctx,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    state.tokens.revoke(&name).await?;
    tracing::info!(name, by = %ctx.principal.name, "token revoked");
    Ok(StatusCode::NO_CONTENT)
}
