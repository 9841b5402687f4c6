//! Bearer tokens, roles and what each role may do.
//!
//! # Tokens
//! A token is 32 random bytes in hex behind the prefix `sft_`. Only its SHA-256 is stored
//! (`api_tokens`), so a leaked table gives no usable token; a token is usable as soon as
//! its row is committed. A verified token is cached for a short time
//! ([`DEFAULT_CACHE_TTL`], at most [`MAX_CACHE_TTL`]; ADR 0033), so a request costs no
//! database lookup; revocation takes effect at once on the process that revoked it and
//! within the cache time on every other one, and an open live feed of a revoked token
//! ends within a second ([`Tokens::revoked`]). `SHOPFLOOR_ADMIN_TOKEN`,
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
//! | `MachineEvents`, `Inventory`, `Production` (reports, inspections, start/hold/resume/complete an order, clock on/off), `AcknowledgeAlerts` | ✓ | ✓ | | ✓ |
//! | `Orders` (create, assign, cancel), `Maintenance`, `Machines`, `People`, `Reports` (generate, schedule), `AlertRules`, `Settings` (reason codes, shifts, lot rules), `QualityHolds` (hold, release, scrap lots) | | ✓ | | ✓ |
//! | `Tokens` | | | | ✓ |

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::marker::PhantomData;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

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
use tokio::sync::watch;
use tracing::instrument;

use crate::error::ApiError;
use crate::ratelimit::TokenLimit;
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
                P::Read | P::MachineEvents | P::Inventory | P::Production | P::AcknowledgeAlerts
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
    /// Registering, updating and deactivating operators (ADR 0036).
    People,
    /// Issuing, listing and revoking tokens.
    Tokens,
    /// Generating reports and scheduling them.
    Reports,
    /// Defining and disabling alert rules; resolving alerts by hand.
    AlertRules,
    /// Acknowledging alerts (the andon's button).
    AcknowledgeAlerts,
    /// Editing the plant's reason codes and shift calendar (ADR 0053).
    Settings,
    /// Putting lots on quality hold, releasing and scrapping them (ADR 0057).
    QualityHolds,
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
            Permission::People => "manage operators",
            Permission::Tokens => "manage tokens",
            Permission::Reports => "generate reports",
            Permission::AlertRules => "manage alert rules",
            Permission::AcknowledgeAlerts => "acknowledge alerts",
            Permission::Settings => "edit reason codes and shifts",
            Permission::QualityHolds => "hold, release and scrap lots",
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
        People,
        Tokens,
        Reports,
        AlertRules,
        AcknowledgeAlerts,
        Settings,
        QualityHolds
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

/// The SHA-256 of the token a request presented, put in its extensions by
/// [`authenticate`]: a long-lived answer (the live feed) re-checks it with
/// [`Tokens::revoked`] to end when the token is revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenDigest(TokenHash);

/// SHA-256 of a token.
type TokenHash = [u8; 32];

/// Middleware: resolves the bearer token into a [`Principal`] request extension (with the
/// token's own [`TokenLimit`] and its [`TokenDigest`]); 401 when the token is missing,
/// malformed, unknown or revoked.
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let digest = match bearer(request.headers()) {
        Ok(token) => hash(token),
        Err(e) => return e.into_response(),
    };
    match state.tokens.resolve_digest(&digest, None).await {
        Ok(Some(found)) => {
            let extensions = request.extensions_mut();
            extensions.insert(found.principal);
            if let Some(limit) = found.limit {
                extensions.insert(limit);
            }
            extensions.insert(TokenDigest(digest));
            next.run(request).await
        }
        Ok(None) => {
            ApiError::unauthorized("the bearer token is not known or was revoked").into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
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
    Ok(token)
}

fn hash(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

/// A token as listed (never with its secret).
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct TokenInfo {
    pub name: String,
    pub role: String,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub revoked_at: Option<DateTime<Utc>>,
    /// The token's own sustained limit (requests per second); none: the default
    /// (`SHOPFLOOR_RATE_PER_TOKEN`).
    pub rate_per_s: Option<i32>,
    /// The token's own burst; none: the default (`SHOPFLOOR_RATE_BURST_PER_TOKEN`).
    pub rate_burst: Option<i32>,
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

/// What a valid token stands for: its principal and its own rate limit, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub principal: Principal,
    pub limit: Option<TokenLimit>,
}

/// How long a verified token is trusted without asking the database again, by default.
/// Revocation takes effect on every API process within this time (at once on the process
/// that revoked it).
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_millis(500);

/// The longest cache time allowed: revocation must take effect within a second.
pub const MAX_CACHE_TTL: Duration = Duration::from_secs(1);

/// How often an open live feed re-checks its token, and the oldest verification such a
/// check accepts: a revoked token's feed ends within about 750 ms on any process.
const STREAM_CHECK_EVERY: Duration = Duration::from_millis(250);
const STREAM_MAX_AGE: Duration = Duration::from_millis(500);

/// Beyond this many cached tokens, expired entries are dropped.
const CACHE_PRUNE_ABOVE: usize = 10_000;

/// Verified tokens of this process, by digest, with when they were verified. Only valid
/// tokens are cached (an unknown one always asks the database), so the map is bounded by
/// the token table.
#[derive(Debug)]
struct Cache {
    ttl: Duration,
    map: RwLock<HashMap<TokenHash, (Resolved, Instant)>>,
    /// Bumped on every revocation by this process: its live feeds re-check at once.
    revocations: watch::Sender<u64>,
    /// Tokens being verified again in the background (at most one lookup each).
    refreshing: Mutex<HashSet<TokenHash>>,
}

impl Cache {
    fn new(ttl: Duration) -> Self {
        Self {
            ttl: ttl.min(MAX_CACHE_TTL),
            map: RwLock::default(),
            revocations: watch::Sender::new(0),
            refreshing: Mutex::default(),
        }
    }

    /// A cached verification younger than `max_age`, with its age.
    fn get(&self, digest: &TokenHash, max_age: Duration) -> Option<(Resolved, Duration)> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        let (resolved, at) = map.get(digest)?;
        let age = at.elapsed();
        (age < max_age).then(|| (resolved.clone(), age))
    }

    /// True when the caller should refresh `digest` (nobody else is doing it).
    fn start_refresh(&self, digest: &TokenHash) -> bool {
        self.refreshing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(*digest)
    }

    fn end_refresh(&self, digest: &TokenHash) {
        self.refreshing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(digest);
    }

    fn remove(&self, digest: &TokenHash) {
        self.map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(digest);
    }

    /// How many revocations this process has made: a lookup that started before one may
    /// not put its (possibly stale) answer in the cache.
    fn generation(&self) -> u64 {
        *self.revocations.borrow()
    }

    fn put(&self, digest: TokenHash, resolved: Resolved, at: Instant, generation: u64) {
        if self.ttl.is_zero() {
            return;
        }
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        if self.generation() != generation {
            return;
        }
        if map.len() > CACHE_PRUNE_ABOVE {
            let ttl = self.ttl;
            map.retain(|_, (_, t)| t.elapsed() < ttl);
        }
        map.insert(digest, (resolved, at));
    }

    /// Drops a revoked name's entries. The generation moves under the map's lock, so a
    /// lookup that began before the revocation cannot put its answer back afterwards.
    fn forget(&self, name: &str) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        self.revocations.send_modify(|n| *n = n.wrapping_add(1));
        map.retain(|_, (r, _)| r.principal.name != name);
    }
}

/// The token table plus the bootstrap admin token, with a short cache of verified tokens
/// (ADR 0033). Cheap to clone; clones share the cache.
#[derive(Clone)]
pub struct Tokens {
    pool: PgPool,
    /// SHA-256 of `SHOPFLOOR_ADMIN_TOKEN`, when set.
    admin_hash: Option<TokenHash>,
    cache: Arc<Cache>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("bootstrap_admin", &self.admin_hash.is_some())
            .field("cache_ttl", &self.cache.ttl)
            .finish_non_exhaustive()
    }
}

impl Tokens {
    /// Tokens with the default cache time ([`DEFAULT_CACHE_TTL`]).
    pub fn new(pool: PgPool, admin_token: Option<&str>) -> Self {
        Self {
            pool,
            admin_hash: admin_token.filter(|t| !t.is_empty()).map(hash),
            cache: Arc::new(Cache::new(DEFAULT_CACHE_TTL)),
        }
    }

    /// The same tokens with another cache time, at most [`MAX_CACHE_TTL`]; zero turns
    /// the cache off (every request asks the database). Starts with an empty cache.
    pub fn with_cache_ttl(self, ttl: Duration) -> Self {
        Self {
            cache: Arc::new(Cache::new(ttl)),
            ..self
        }
    }

    /// How long a verified token is trusted without asking the database again.
    pub fn cache_ttl(&self) -> Duration {
        self.cache.ttl
    }

    /// The principal of a presented token, if it is known and not revoked.
    pub async fn resolve(&self, token: &str) -> Result<Option<Principal>, sqlx::Error> {
        Ok(self
            .resolve_digest(&hash(token), None)
            .await?
            .map(|r| r.principal))
    }

    /// What a token digest stands for, if it is known and not revoked: from the cache
    /// when verified less than `max_age` (default: the cache time) ago, else from the
    /// database.
    async fn resolve_digest(
        &self,
        digest: &TokenHash,
        max_age: Option<Duration>,
    ) -> Result<Option<Resolved>, sqlx::Error> {
        if self.admin_hash.as_ref() == Some(digest) {
            return Ok(Some(Resolved {
                principal: Principal {
                    name: BOOTSTRAP_ADMIN.to_string(),
                    role: Role::Admin,
                },
                limit: None,
            }));
        }
        let max_age = max_age.unwrap_or(self.cache.ttl).min(self.cache.ttl);
        if let Some((hit, age)) = self.cache.get(digest, max_age) {
            // Past half its life, one request verifies the token again in the background,
            // so that a busy token never expires under load (no burst of lookups then).
            if age > self.cache.ttl / 2 && self.cache.start_refresh(digest) {
                let tokens = self.clone();
                let digest = *digest;
                tokio::spawn(async move { tokens.refresh(digest).await });
            }
            return Ok(Some(hit));
        }
        let (asked, generation) = (Instant::now(), self.cache.generation());
        let found = self.lookup(digest).await?;
        if let Some(resolved) = &found {
            self.cache.put(*digest, resolved.clone(), asked, generation);
        }
        Ok(found)
    }

    /// Verifies a cached token again: refreshed when still valid, dropped when not (a
    /// database error leaves the entry to expire).
    async fn refresh(&self, digest: TokenHash) {
        let (asked, generation) = (Instant::now(), self.cache.generation());
        match self.lookup(&digest).await {
            Ok(Some(resolved)) => self.cache.put(digest, resolved, asked, generation),
            Ok(None) => self.cache.remove(&digest),
            Err(e) => tracing::debug!(error = %e, "token refresh failed; the entry expires"),
        }
        self.cache.end_refresh(&digest);
    }

    #[instrument(skip_all)]
    async fn lookup(&self, digest: &TokenHash) -> Result<Option<Resolved>, sqlx::Error> {
        let row: Option<(String, String, Option<i32>, Option<i32>)> = sqlx::query_as(
            "SELECT name, role, rate_per_s, rate_burst FROM api_tokens \
             WHERE token_hash = $1 AND revoked_at IS NULL",
        )
        .bind(digest.as_slice())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.and_then(|(name, role, per_s, burst)| {
            let role = Role::parse(&role)?;
            Some(Resolved {
                principal: Principal { name, role },
                limit: token_limit(per_s, burst),
            })
        }))
    }

    /// Resolves when the token of `digest` is no longer valid (revoked, or its name issued
    /// again): at once for a revocation by this process, within about 750 ms for one by
    /// another process. A database error counts as still valid (checked again next time),
    /// so a database hiccup does not cut every dashboard off.
    pub async fn revoked(&self, digest: TokenDigest) {
        let mut revocations = self.cache.revocations.subscribe();
        revocations.mark_unchanged();
        let mut tick = tokio::time::interval(STREAM_CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                // Never closed: `self` holds the sender.
                _ = revocations.changed() => {}
            }
            if let Ok(None) = self.resolve_digest(&digest.0, Some(STREAM_MAX_AGE)).await {
                return;
            }
        }
    }

    /// Issues a new token with the default rate limit; returns the secret, which is never
    /// stored.
    pub async fn issue(&self, name: &str, role: Role, by: &str) -> Result<String, TokenError> {
        self.issue_with_limit(name, role, by, None).await
    }

    /// Issues a new token, with its own rate limit when `limit` is given; returns the
    /// secret, which is never stored.
    #[instrument(skip_all, fields(name = name, role = %role))]
    pub async fn issue_with_limit(
        &self,
        name: &str,
        role: Role,
        by: &str,
        limit: Option<TokenLimit>,
    ) -> Result<String, TokenError> {
        if name == BOOTSTRAP_ADMIN {
            return Err(TokenError::NameTaken(name.to_string()));
        }
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let token = format!("sft_{}", hex::encode(bytes));
        let as_i32 = |n: NonZeroU32| i32::try_from(n.get()).unwrap_or(i32::MAX);
        let inserted = sqlx::query(
            "INSERT INTO api_tokens (name, role, token_hash, created_by, rate_per_s, rate_burst) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (name) DO UPDATE SET role = excluded.role, \
                 token_hash = excluded.token_hash, created_by = excluded.created_by, \
                 rate_per_s = excluded.rate_per_s, rate_burst = excluded.rate_burst, \
                 created_at = now(), revoked_at = NULL \
             WHERE api_tokens.revoked_at IS NOT NULL",
        )
        .bind(name)
        .bind(role.as_str())
        .bind(hash(&token).as_slice())
        .bind(by)
        .bind(limit.map(|l| as_i32(l.per_s)))
        .bind(limit.map(|l| as_i32(l.burst)))
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
            "SELECT name, role, created_at, created_by, revoked_at, rate_per_s, rate_burst \
             FROM api_tokens ORDER BY revoked_at IS NOT NULL, name",
        )
        .fetch_all(&self.pool)
        .await
    }

    /// Revokes a token: at once on this process (its cache entry goes and its live feeds
    /// end), within the cache time on every other.
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
        self.cache.forget(name);
        Ok(())
    }
}

/// A stored limit; `None` unless the rate is set (a burst alone means nothing).
fn token_limit(per_s: Option<i32>, burst: Option<i32>) -> Option<TokenLimit> {
    let per_s = NonZeroU32::new(u32::try_from(per_s?).ok()?)?;
    let burst = burst
        .and_then(|b| u32::try_from(b).ok())
        .and_then(NonZeroU32::new)
        .unwrap_or(per_s);
    Some(TokenLimit { per_s, burst })
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
