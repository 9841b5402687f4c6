//! Bearer tokens (admin only): issue (optionally with the token's own rate limit), list
//! (never the secrets), revoke; and `GET /api/v1/auth/me` (any token): who the caller is
//! and what its role may do, so that a client (the floor app) shows only the controls the
//! server will accept.

use std::num::NonZeroU32;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{perm, Auth, Permission, Role, TokenInfo};
use crate::error::{ApiError, ProblemDocument};
use crate::extract::{ApiJson, ApiPath, Ctx};
use crate::ratelimit::TokenLimit;
use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/auth/tokens", post(issue).get(list))
        .route("/api/v1/auth/tokens/{name}", delete(revoke))
        .route("/api/v1/auth/me", get(me))
}

/// Every permission by the name `/api/v1/auth/me` gives it.
const PERMISSIONS: [(&str, Permission); 15] = [
    ("read", Permission::Read),
    ("audit", Permission::Audit),
    ("machine_events", Permission::MachineEvents),
    ("inventory", Permission::Inventory),
    ("production", Permission::Production),
    ("orders", Permission::Orders),
    ("maintenance", Permission::Maintenance),
    ("machines", Permission::Machines),
    ("tokens", Permission::Tokens),
    ("people", Permission::People),
    ("reports", Permission::Reports),
    ("alert_rules", Permission::AlertRules),
    ("acknowledge_alerts", Permission::AcknowledgeAlerts),
    ("settings", Permission::Settings),
    ("quality_holds", Permission::QualityHolds),
];

/// The caller: its token's name, its role and what that role may do.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    pub name: String,
    pub role: Role,
    /// The permissions of the role: `read`, `audit`, `machine_events`, `inventory`,
    /// `production`, `orders`, `maintenance`, `machines`, `tokens`, `people`, `reports`,
    /// `alert_rules`, `acknowledge_alerts`, `settings`.
    pub permissions: Vec<String>,
}

/// The permission names a role has, in a fixed order.
fn permissions_of(role: Role) -> Vec<String> {
    PERMISSIONS
        .iter()
        .filter(|(_, p)| role.allows(*p))
        .map(|(name, _)| (*name).to_string())
        .collect()
}

/// Who the token belongs to and what its role may do (the server still checks every
/// request; this only lets a client hide what would be refused).
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth",
    responses((status = 200, body = Me), (status = 401, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn me(_: Auth<perm::Read>, ctx: Ctx) -> Json<Me> {
    let role = ctx.principal.role;
    Json(Me {
        name: ctx.principal.name,
        role,
        permissions: permissions_of(role),
    })
}

/// `POST /api/v1/auth/tokens`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct IssueBody {
    /// A unique name: the actor of everything done with the token.
    pub name: String,
    /// `operator`, `supervisor`, `auditor` or `admin`.
    pub role: String,
    /// The token's own rate limit; without it the token gets the default
    /// (`SHOPFLOOR_RATE_PER_TOKEN`, `SHOPFLOOR_RATE_BURST_PER_TOKEN`).
    #[serde(default)]
    pub rate_limit: Option<RateLimitBody>,
}

/// A token's own rate limit.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, ToSchema)]
pub struct RateLimitBody {
    /// Sustained requests per second, 1 to 1,000,000.
    pub per_s: u32,
    /// Requests at once after being idle, 1 to 1,000,000; default: `per_s` (one
    /// second's worth).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

/// The largest rate or burst a token may carry.
const MAX_TOKEN_RATE: u32 = 1_000_000;

impl RateLimitBody {
    fn limit(self) -> Result<TokenLimit, ApiError> {
        let check = |field: &'static str, n: u32| {
            NonZeroU32::new(n)
                .filter(|n| n.get() <= MAX_TOKEN_RATE)
                .ok_or_else(|| ApiError::invalid_field(field, "must be 1 to 1000000"))
        };
        let per_s = check("rate_limit.per_s", self.per_s)?;
        let burst = match self.burst {
            Some(b) => check("rate_limit.burst", b)?,
            None => per_s,
        };
        Ok(TokenLimit { per_s, burst })
    }
}

/// A new token: shown once, never stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedToken {
    pub token: String,
    pub role: Role,
    pub name: String,
    pub created_at: DateTime<Utc>,
    /// The token's own rate limit, when it was given one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitBody>,
}

/// Issues a token, usable at once, optionally with its own rate limit.
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
    let limit = body.rate_limit.map(RateLimitBody::limit).transpose()?;
    let token = state
        .tokens
        .issue_with_limit(name, role, &ctx.principal.name, limit)
        .await?;
    tracing::info!(name, %role, by = %ctx.principal.name, ?limit, "token issued");
    Ok((
        StatusCode::CREATED,
        Json(IssuedToken {
            token,
            role,
            name: name.to_string(),
            created_at: Utc::now(),
            rate_limit: limit.map(|l| RateLimitBody {
                per_s: l.per_s.get(),
                burst: Some(l.burst.get()),
            }),
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

/// Revokes a token: at once on this process, within the token cache time (at most 1 s)
/// on every other; its open live feeds end within a second.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_gets_the_permissions_it_has() {
        assert_eq!(permissions_of(Role::Admin).len(), PERMISSIONS.len());
        assert_eq!(permissions_of(Role::Auditor), ["read", "audit"]);
        assert_eq!(
            permissions_of(Role::Operator),
            [
                "read",
                "machine_events",
                "inventory",
                "production",
                "acknowledge_alerts"
            ]
        );
        let supervisor = permissions_of(Role::Supervisor);
        assert!(!supervisor.contains(&"tokens".to_string()));
        assert!(supervisor.contains(&"settings".to_string()));
        assert!(supervisor.contains(&"quality_holds".to_string()));
    }

    /// Every permission has its name in `PERMISSIONS`: a new variant fails to compile here
    /// until it is listed (the floor app gates its controls by these names).
    #[test]
    fn every_permission_is_named() {
        use Permission as P;
        let all = |p: Permission| match p {
            P::Read
            | P::Audit
            | P::MachineEvents
            | P::Inventory
            | P::Production
            | P::Orders
            | P::Maintenance
            | P::Machines
            | P::People
            | P::Tokens
            | P::Reports
            | P::AlertRules
            | P::AcknowledgeAlerts
            | P::Settings
            | P::QualityHolds => PERMISSIONS.iter().any(|(_, q)| *q == p),
        };
        for (_, p) in PERMISSIONS {
            assert!(all(p));
        }
        assert!(all(P::QualityHolds));
    }
}
