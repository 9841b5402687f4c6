//! Shared application state.

use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use shopfloor_eventstore::EventStore;
use sqlx::PgPool;
use tokio::sync::watch;

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: EventStore,
    pub pool: PgPool,
    pub readiness: Readiness,
    /// Renders the process's Prometheus metrics.
    pub metrics: Option<PrometheusHandle>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

impl AppState {
    pub fn new(store: EventStore, readiness: Readiness, metrics: Option<PrometheusHandle>) -> Self {
        Self {
            pool: store.pool().clone(),
            store,
            readiness,
            metrics,
        }
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
}

impl Readiness {
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout.unwrap_or(Duration::from_secs(2))
    }
}

/// Readiness probes shared with roles other than the API.
pub type SharedReadiness = Arc<Readiness>;
