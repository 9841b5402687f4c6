//! Shared application state.

use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use secrecy::{ExposeSecret, SecretString};
use shopfloor_commands::CommandService;
use shopfloor_eventstore::EventStore;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio::sync::watch;

use crate::auth::Tokens;

/// Connections of [`AppState::idempotency_pool`]: a claim and its answer are two short
/// statements per keyed request.
const IDEMPOTENCY_CONNECTIONS: u32 = 8;

/// What every handler can reach: one `Arc`, so the many clones a request makes
/// (each extractor and middleware takes the state) cost one reference count, not
/// one per pool, channel, token and string. Reads go through `Deref`; setting a
/// field before the state is shared (`state.live = ...`) goes through `DerefMut`,
/// which copies the fields first if the state is already shared.
#[derive(Clone)]
pub struct AppState(Arc<AppShared>);

impl std::ops::Deref for AppState {
    type Target = AppShared;

    fn deref(&self) -> &AppShared {
        &self.0
    }
}

impl std::ops::DerefMut for AppState {
    fn deref_mut(&mut self) -> &mut AppShared {
        Arc::make_mut(&mut self.0)
    }
}

/// The fields of [`AppState`].
#[derive(Clone)]
pub struct AppShared {
    pub store: EventStore,
    pub pool: PgPool,
    /// The same database for idempotency claims and stored answers, with
    /// `synchronous_commit` off: they need no fsync of their own, because the command they
    /// guard commits (and flushes the WAL, claim included) synchronously, and a lost answer
    /// only means a retry runs again, appending nothing twice (ADR 0033). Lazy: it
    /// connects when first used.
    pub idempotency_pool: PgPool,
    /// Executes commands (load, decide, append) with idempotency and retries.
    pub commands: CommandService,
    /// Bearer tokens (table plus the bootstrap admin token).
    pub tokens: Tokens,
    /// The instance's namespace (`SHOPFLOOR_NAMESPACE`), shown in the OpenAPI document.
    pub namespace: String,
    pub readiness: Readiness,
    /// Renders the process's Prometheus metrics.
    pub metrics: Option<PrometheusHandle>,
    /// Read-model changes for `/api/v1/live`, when a projector runs in this process.
    pub live: Option<shopfloor_projections::live::LiveHub>,
    /// Fires at shutdown: long-lived responses (the live feed) end with it, so a
    /// graceful stop does not wait for dashboards to hang up.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Reports (issue 19); `None` answers 503 on the report routes.
    pub reports: Option<shopfloor_reports::Reports>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// The state of the API: the process's one writer (and through it the event store and
    /// its pool), readiness probes, the metrics handle, the bootstrap admin token
    /// (`SHOPFLOOR_ADMIN_TOKEN`, accepted as the `admin` role as long as it is set) and the
    /// namespace.
    pub fn new(
        commands: CommandService,
        readiness: Readiness,
        metrics: Option<PrometheusHandle>,
        admin_token: Option<SecretString>,
        namespace: impl Into<String>,
    ) -> Self {
        let store = commands.store().clone();
        let pool = store.pool().clone();
        let idempotency_pool = PgPoolOptions::new()
            .max_connections(IDEMPOTENCY_CONNECTIONS)
            .connect_lazy_with(
                (*pool.connect_options())
                    .clone()
                    .options([("synchronous_commit", "off")]),
            );
        Self(Arc::new(AppShared {
            idempotency_pool,
            commands,
            tokens: Tokens::new(
                pool.clone(),
                admin_token.as_ref().map(|t| t.expose_secret()),
            ),
            namespace: namespace.into(),
            pool,
            store,
            readiness,
            metrics,
            live: None,
            shutdown: tokio_util::sync::CancellationToken::new(),
            reports: None,
        }))
    }
}

/// The dependencies `/readyz` checks.
#[derive(Clone, Default)]
pub struct Readiness {
    /// NATS, when this process uses it.
    pub nats: Option<async_nats::Client>,
    /// Whether the MQTT subscription stands, when ingest runs in this process.
    pub mqtt: Option<watch::Receiver<bool>>,
    /// How long a dependency may take to answer before it counts as down.
    pub timeout: Option<Duration>,
    /// The leader locks this process competes for (relay, process manager), shown
    /// in `/readyz` as `leading` (ADR 0043).
    pub leaders: Vec<shopfloor_eventstore::LeaderFlag>,
}

impl Readiness {
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout.unwrap_or(Duration::from_secs(2))
    }
}

/// Readiness probes shared with roles other than the API.
pub type SharedReadiness = Arc<Readiness>;
