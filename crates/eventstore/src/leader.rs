//! Leader election for loops that must run once per deployment (the relay of a
//! namespace, the process manager): a PostgreSQL session advisory lock, held on a
//! dedicated connection for as long as the loop leads (ADR 0043).
//!
//! # Fencing
//! A session lock is lost only with its session. The holder therefore does its
//! checkpoint writes **on the lock's own connection**, in a transaction that first
//! checks (`pg_locks`, this backend) that the lock is still granted to it
//! ([`Leadership::fenced`]): a holder whose session died (PostgreSQL restarted, the
//! connection was cut) cannot move a checkpoint, and notices on its next batch.
//! Between batches, [`Leadership::check`] asks the same question within
//! [`CHECK_TIMEOUT`], so an idle leader that lost PostgreSQL steps down within about
//! a second. Each process shows what it leads in a [`LeaderFlag`]: the gauge
//! `shopfloor_leader{lock=...}` and `/readyz`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres, Transaction};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How long a lock check may take before the holder counts as having lost it.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(1);
/// How often an idle leader re-checks its lock.
pub const CHECK_EVERY: Duration = Duration::from_millis(500);

/// Is the advisory lock `hashtext($1)` granted to this very session?
const HELD: &str = "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' \
    AND pid = pg_backend_pid() AND granted AND objsubid = 1 \
    AND ((classid::bigint << 32) | objid::bigint) = hashtext($1)::bigint)";

/// Why a leader must step down.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("the leader lock {0} is no longer held by this session")]
    Lost(String),
    #[error("the leader lock {0} could not be checked within {CHECK_TIMEOUT:?}")]
    Timeout(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// Whether this process leads one kind of loop (shared with `/readyz`).
#[derive(Debug, Clone)]
pub struct LeaderFlag {
    name: &'static str,
    held: Arc<AtomicBool>,
}

impl LeaderFlag {
    /// A flag named `name` (`relay`, `process_manager`), not held.
    pub fn new(name: &'static str) -> Self {
        let flag = Self {
            name,
            held: Arc::default(),
        };
        flag.set(false);
        flag
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn is_held(&self) -> bool {
        self.held.load(Ordering::SeqCst)
    }

    fn set(&self, held: bool) {
        self.held.store(held, Ordering::SeqCst);
        metrics::gauge!("shopfloor_leader", "lock" => self.name).set(if held { 1.0 } else { 0.0 });
    }
}

/// The lock while held; release it with [`Leadership::release`]. Dropping it
/// lowers its [`LeaderFlag`].
pub struct Leadership {
    conn: PoolConnection<Postgres>,
    key: String,
    _flag: FlagGuard,
}

/// Lowers the flag when the leadership ends, however it ends.
struct FlagGuard(Option<LeaderFlag>);

impl Drop for FlagGuard {
    fn drop(&mut self) {
        if let Some(flag) = &self.0 {
            flag.set(false);
        }
    }
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership")
            .field("key", &self.key)
            .finish()
    }
}

impl Leadership {
    /// Waits until this process holds the lock named `key` (None once cancelled),
    /// trying again every `retry`.
    pub async fn acquire(
        pool: &PgPool,
        key: &str,
        retry: Duration,
        cancel: &CancellationToken,
    ) -> Option<Self> {
        Self::acquire_flagged(pool, key, retry, cancel, None).await
    }

    /// [`Leadership::acquire`], raising `flag` while held.
    pub async fn acquire_flagged(
        pool: &PgPool,
        key: &str,
        retry: Duration,
        cancel: &CancellationToken,
        flag: Option<LeaderFlag>,
    ) -> Option<Self> {
        let mut standing_by = false;
        loop {
            let attempt = async {
                let mut conn = pool.acquire().await?;
                let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
                    .bind(key)
                    .fetch_one(&mut *conn)
                    .await?;
                Ok::<_, sqlx::Error>(got.then_some(conn))
            };
            // Not cut short by a timeout: a connection dropped between the server
            // granting the lock and us reading the answer would go back to the pool
            // holding it. The pool's acquire timeout bounds the wait.
            match attempt.await {
                Ok(Some(conn)) => {
                    if let Some(flag) = &flag {
                        flag.set(true);
                    }
                    return Some(Self {
                        conn,
                        key: key.to_string(),
                        _flag: FlagGuard(flag),
                    });
                }
                Ok(None) if !standing_by => {
                    info!(%key, "another instance leads; standing by");
                    standing_by = true;
                }
                Ok(None) => {}
                Err(e) => warn!(%key, error = %e, "cannot reach PostgreSQL to elect a leader"),
            }
            tokio::select! {
                _ = cancel.cancelled() => return None,
                _ = tokio::time::sleep(retry.max(Duration::from_millis(100))) => {}
            }
        }
    }

    /// Checks, within [`CHECK_TIMEOUT`], that this session still holds the lock.
    pub async fn check(&mut self) -> Result<(), LeaderError> {
        let held = tokio::time::timeout(
            CHECK_TIMEOUT,
            sqlx::query_scalar::<_, bool>(HELD)
                .bind(&self.key)
                .fetch_one(&mut *self.conn),
        )
        .await
        .map_err(|_| LeaderError::Timeout(self.key.clone()))??;
        if held {
            Ok(())
        } else {
            Err(LeaderError::Lost(self.key.clone()))
        }
    }

    /// A transaction on the lock's own session, begun only after checking that the
    /// lock is still held: writes in it (a checkpoint) commit only while this
    /// session leads, and fail once it died.
    pub async fn fenced(&mut self) -> Result<Transaction<'_, Postgres>, LeaderError> {
        let key = self.key.clone();
        let mut tx = tokio::time::timeout(CHECK_TIMEOUT, sqlx::Connection::begin(&mut *self.conn))
            .await
            .map_err(|_| LeaderError::Timeout(key.clone()))??;
        let held = tokio::time::timeout(
            CHECK_TIMEOUT,
            sqlx::query_scalar::<_, bool>(HELD)
                .bind(&key)
                .fetch_one(&mut *tx),
        )
        .await
        .map_err(|_| LeaderError::Timeout(key.clone()))??;
        if held {
            Ok(tx)
        } else {
            Err(LeaderError::Lost(key))
        }
    }

    /// Gives the lock up (a dead session has lost it already; its connection is dropped).
    pub async fn release(mut self) {
        let unlocked = tokio::time::timeout(
            CHECK_TIMEOUT,
            sqlx::query("SELECT pg_advisory_unlock(hashtext($1))")
                .bind(&self.key)
                .execute(&mut *self.conn),
        )
        .await;
        if !matches!(unlocked, Ok(Ok(_))) {
            // Its session must not go back to the pool still holding the lock.
            self.conn.detach();
        }
    }
}
