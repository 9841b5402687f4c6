//! The group database's sites: one PostgreSQL schema per plant (`site_<site>`), holding
//! that plant's copy of the event log and the standard read models, built by the
//! plant's own migrations. A [`SitePool`] is a pool whose `search_path` is the site's
//! schema, so the standard event store, projections and queries run on it unchanged.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use shopfloor_eventstore::MIGRATOR;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use tokio::sync::RwLock;

/// Prefix of every site schema in the group database.
pub const SCHEMA_PREFIX: &str = "site_";

/// Connections per site pool while serving: a catch-up holds two (its transaction and
/// the log reader), a KPI query two at once, so a few concurrent requests fit. Opened
/// only when needed and closed after [`SITE_IDLE`]: the sites share one PostgreSQL's
/// connection limit.
pub const SERVE_CONNECTIONS: u32 = 8;

/// Connections per site pool for `replay --verify --group`, which rebuilds every read
/// model of a site side by side.
pub const VERIFY_CONNECTIONS: u32 = 12;

/// A site pool's idle connections close after this.
const SITE_IDLE: Duration = Duration::from_secs(60);

/// A plant's site name (its namespace, the first token of its subjects), checked once:
/// 1 to 58 letters, digits, `_` or `-` (a namespace short enough for a schema name).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Site(String);

impl Site {
    pub fn new(name: &str) -> Result<Self, String> {
        let ok = !name.is_empty()
            && name.len() <= 58
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(Self(name.to_owned()))
        } else {
            Err(format!(
                "site {name:?} is not 1 to 58 letters, digits, '_' or '-'"
            ))
        }
    }

    /// The site of a subject (`sitea.events.machine.M-1` → `sitea`).
    pub fn of_subject(subject: &str) -> Result<Self, String> {
        Self::new(subject.split('.').next().unwrap_or_default())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Its schema in the group database.
    pub fn schema(&self) -> String {
        format!("{SCHEMA_PREFIX}{}", self.0)
    }
}

impl std::fmt::Display for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The sites known to the group database, each with its pool.
#[derive(Clone)]
pub struct Sites {
    /// The group database (public schema: the group's tokens).
    main: PgPool,
    options: PgConnectOptions,
    /// Connections per site pool.
    connections: u32,
    pools: Arc<RwLock<BTreeMap<Site, PgPool>>>,
}

impl std::fmt::Debug for Sites {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sites").finish_non_exhaustive()
    }
}

impl Sites {
    /// Opens every site schema already in the database (migrating each to this
    /// version's schema), with pools of `connections` each.
    pub async fn open(
        main: PgPool,
        options: PgConnectOptions,
        connections: u32,
    ) -> anyhow::Result<Self> {
        let sites = Self {
            main,
            options,
            connections,
            pools: Arc::default(),
        };
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT nspname::text FROM pg_namespace WHERE starts_with(nspname, $1) ORDER BY 1",
        )
        .bind(SCHEMA_PREFIX)
        .fetch_all(&sites.main)
        .await
        .context("listing the group's site schemas")?;
        for name in names {
            if let Ok(site) = Site::new(&name[SCHEMA_PREFIX.len()..]) {
                sites.pool(&site).await?;
            }
        }
        Ok(sites)
    }

    /// The group database itself.
    pub fn main(&self) -> &PgPool {
        &self.main
    }

    /// Every site, in name order, with its pool.
    pub async fn all(&self) -> Vec<(Site, PgPool)> {
        self.pools
            .read()
            .await
            .iter()
            .map(|(s, p)| (s.clone(), p.clone()))
            .collect()
    }

    /// The pool of `site`, if it is known.
    pub async fn get(&self, site: &Site) -> Option<PgPool> {
        self.pools.read().await.get(site).cloned()
    }

    /// The pool of `site`, creating and migrating its schema the first time.
    pub async fn pool(&self, site: &Site) -> anyhow::Result<PgPool> {
        if let Some(pool) = self.get(site).await {
            return Ok(pool);
        }
        let mut pools = self.pools.write().await;
        if let Some(pool) = pools.get(site) {
            return Ok(pool.clone());
        }
        let schema = site.schema();
        sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
            .execute(&self.main)
            .await
            .with_context(|| format!("creating the schema of site {site}"))?;
        let pool = PgPoolOptions::new()
            .max_connections(self.connections)
            .acquire_timeout(Duration::from_secs(10))
            .idle_timeout(SITE_IDLE)
            .connect_with(
                self.options
                    .clone()
                    .options([("search_path", schema.as_str())]),
            )
            .await
            .with_context(|| format!("connecting to the schema of site {site}"))?;
        MIGRATOR
            .run(&pool)
            .await
            .with_context(|| format!("migrating the schema of site {site}"))?;
        pools.insert(site.clone(), pool.clone());
        tracing::info!(%site, "site schema ready");
        Ok(pool)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_site_is_the_first_subject_token() {
        assert_eq!(
            Site::of_subject("sitea.events.machine.M-1")
                .unwrap()
                .as_str(),
            "sitea"
        );
        assert_eq!(Site::new("plant-2").unwrap().schema(), "site_plant-2");
        assert!(Site::of_subject("site a.events").is_err());
        assert!(Site::new("").is_err());
        assert!(Site::new("a\"b").is_err());
    }
}
