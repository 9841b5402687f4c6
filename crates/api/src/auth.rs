//! Bearer tokens, roles and what each role may do.
//!
//! # Tokens
//! A token is 32 random bytes in hex behind the prefix `sft_`. Only its SHA-256 is stored
//! (`api_tokens`), so a leaked table gives no usable token; a token is usable as soon as
//! its row is committed, and unusable as soon as it is revoked. `SHOPFLOOR_ADMIN_TOKEN`,
//! when set, is accepted as the `admin` principal [`BOOTSTRAP_ADMIN`]; it is compared by
//! hash, and its name cannot be issued. Tokens are never logged.
//!
//! # Roles
//! [`authenticate`] (middleware on every `/api/v1` route that needs a token) resolves the
//! token into a [`Principal`] (401 when missing or unknown). Each handler then names the
//! [`Permission`] it needs through the [`Auth`] extractor, which answers 403 when the role
//! lacks it. The matrix is [`Role::allows`]:
//!
//! | permission | operator | supervisor | auditor | admin |
//! | --- | --- | --- | --- | --- |
//! | `Read` (lists, entities, KPIs) | ✓ | ✓ | ✓ | ✓ |
//! | `Audit` (global log, streams, state as of) | | | ✓ | ✓ |
//! | `MachineEvents`, `Inventory`, `Production` | ✓ | ✓ | | ✓ |
//! | `Orders`, `Maintenance`, `Machines` | | ✓ | | ✓ |
//! | `Tokens` | | | | ✓ |

use std::fmt;
use std::marker::PhantomData;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use tracing::instrument;

use crate::error::ApiError;
use crate::AppState;

/// The principal name of `SHOPFLOOR_ADMIN_TOKEN`; no issued token may take it.
pub const BOOTSTRAP_ADMIN: &str = "bootstrap-admin";

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Operator,
    Supervisor,
    Auditor,
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Operator, Role::Supervisor, Role::Auditor, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Supervisor => "supervisor",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The role matrix (see the module docs).
    pub fn allows(self, permission: Permission) -> bool {
        use Permission as P;
        match self {
            Role::Admin => true,
            Role::Auditor => matches!(permission, P::Read | P::Audit),
            Role::Supervisor => !matches!(permission, P::Audit | P::Tokens),
            Role::Operator => matches!(
                permission,
                P::Read | P::MachineEvents | P::Inventory | P::Production
            ),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A right a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Lists, single entities, KPIs, reason codes.
    Read,
    /// The global log, stream histories and states as of a version or time.
    Audit,
    /// Machine state and parts events.
    MachineEvents,
    /// Inventory updates.
    Inventory,
    /// Production reports on orders (inspections).
    Production,
    /// Creating orders and moving them through their statuses.
    Orders,
    /// Maintenance tasks.
    Maintenance,
    /// Registering machines.
    Machines,
    /// Issuing, listing and revoking tokens.
    Tokens,
}

impl Permission {
    fn describe(self) -> &'static str {
        match self {
            Permission::Read => "read data",
            Permission::Audit => "read the audit log",
            Permission::MachineEvents => "send machine events",
            Permission::Inventory => "update inventory",
            Permission::Production => "report production",
            Permission::Orders => "manage production orders",
            Permission::Maintenance => "manage maintenance",
            Permission::Machines => "register machines",
            Permission::Tokens => "manage tokens",
        }
    }
}

/// Who is calling: the token's name and role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
}

/// Marker types naming a [`Permission`] at the type level, for [`Auth`].
pub mod perm {
    use super::Permission;

    /// A type that names one permission.
    pub trait Need: Send + Sync + 'static {
        const PERMISSION: Permission;
    }

    macro_rules! need {
        ($($name:ident),*) => {$(
            #[derive(Debug)]
            pub struct $name;
            impl Need for $name {
                const PERMISSION: Permission = Permission::$name;
            }
        )*};
    }
    need!(
        Read,
        Audit,
        MachineEvents,
        Inventory,
        Production,
        Orders,
        Maintenance,
        Machines,
        Tokens
    );
}

/// Extracts the [`Principal`] set by [`authenticate`] and checks that its role has the
/// permission `P` (403 otherwise).
#[derive(Debug)]
pub struct Auth<P>(pub Principal, PhantomData<P>);

impl<P: perm::Need, S: Send + Sync> FromRequestParts<S> for Auth<P> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let principal = parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| ApiError::unauthorized("a bearer token is required"))?;
        if principal.role.allows(P::PERMISSION) {
            Ok(Auth(principal, PhantomData))
        } else {
            Err(ApiError::forbidden(format!(
                "the role {} may not {}",
                principal.role,
                P::PERMISSION.describe()
            )))
        }
    }
}

/// Middleware: resolves the bearer token into a [`Principal`] request extension; 401 when
/// the token is missing, malformed or unknown.
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let token = match bearer(request.headers()) {
        Ok(token) => token,
        Err(e) => return e.into_response(),
    };
    match state.tokens.resolve(&token).await {
        Ok(Some(principal)) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Ok(None) => {
            ApiError::unauthorized("the bearer token is not known or was revoked").into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

fn bearer(headers: &HeaderMap) -> Result<String, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("a bearer token is required"))?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("the Authorization header is not valid text"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| ApiError::unauthorized("expected Authorization: Bearer <token>"))?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(ApiError::unauthorized(
            "expected Authorization: Bearer <token>",
        ));
    }
    Ok(token.to_string())
}

fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// A token as listed (never with its secret).
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct TokenInfo {
    pub name: String,
    pub role: String,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Why a token could not be issued or revoked.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("a token named {0} already exists")]
    NameTaken(String),
    #[error("no active token is named {0}")]
    NotFound(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The token table plus the bootstrap admin token. Cheap to clone.
#[derive(Clone)]
pub struct Tokens {
    pool: PgPool,
    /// SHA-256 of `SHOPFLOOR_ADMIN_TOKEN`, when set.
    admin_hash: Option<Vec<u8>>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("bootstrap_admin", &self.admin_hash.is_some())
            .finish_non_exhaustive()
    }
}

impl Tokens {
    pub fn new(pool: PgPool, admin_token: Option<&str>) -> Self {
        Self {
            pool,
            admin_hash: admin_token.filter(|t| !t.is_empty()).map(hash),
        }
    }

    /// The principal of a presented token, if it is known and not revoked.
    #[instrument(skip_all)]
    pub async fn resolve(&self, token: &str) -> Result<Option<Principal>, sqlx::Error> {
        let digest = hash(token);
        if self.admin_hash.as_deref() == Some(digest.as_slice()) {
            return Ok(Some(Principal {
                name: BOOTSTRAP_ADMIN.to_string(),
                role: Role::Admin,
            }));
        }
        let row: Option<(String, String)> = sqlx::query_as(
            "SELECT name, role FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL",
        )
        .bind(&digest)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.and_then(|(name, role)| Role::parse(&role).map(|role| Principal { name, role })))
    }

    /// Issues a new token; returns the secret, which is never stored.
    #[instrument(skip_all, fields(name = name, role = %role))]
    pub async fn issue(&self, name: &str, role: Role, by: &str) -> Result<String, TokenError> {
        if name == BOOTSTRAP_ADMIN {
            return Err(TokenError::NameTaken(name.to_string()));
        }
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let token = format!("sft_{}", hex::encode(bytes));
        let inserted = sqlx::query(
            "INSERT INTO api_tokens (name, role, token_hash, created_by) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO UPDATE SET role = excluded.role, \
                 token_hash = excluded.token_hash, created_by = excluded.created_by, \
                 created_at = now(), revoked_at = NULL \
             WHERE api_tokens.revoked_at IS NOT NULL",
        )
        .bind(name)
        .bind(role.as_str())
        .bind(hash(&token))
        .bind(by)
        .execute(&self.pool)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(TokenError::NameTaken(name.to_string()));
        }
        Ok(token)
    }

    /// Every token, active ones first, by name.
    #[instrument(skip_all)]
    pub async fn list(&self) -> Result<Vec<TokenInfo>, sqlx::Error> {
        sqlx::query_as(
            "SELECT name, role, created_at, created_by, revoked_at FROM api_tokens \
             ORDER BY revoked_at IS NOT NULL, name",
        )
        .fetch_all(&self.pool)
        .await
    }

    /// Revokes a token at once.
    #[instrument(skip_all, fields(name = name))]
    pub async fn revoke(&self, name: &str) -> Result<(), TokenError> {
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL",
        )
        .bind(name)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(TokenError::NotFound(name.to_string()));
        }
        Ok(())
    }
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        match e {
            e @ TokenError::NameTaken(_) => ApiError::conflict(e.to_string()),
            e @ TokenError::NotFound(_) => ApiError::not_found(e.to_string()),
            TokenError::Database(e) => e.into(),
        }
    }
}
