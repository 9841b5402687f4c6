//! Leader election for loops that must run once per deployment (the relay of a
//! namespace, the process manager): a PostgreSQL session advisory lock, held on a
//! dedicated connection for as long as the loop leads.

use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The lock while held; release it with [`Leadership::release`].
pub struct Leadership {
    conn: PoolConnection<Postgres>,
    key: String,
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
            match attempt.await {
                Ok(Some(conn)) => {
                    return Some(Self {
                        conn,
                        key: key.to_string(),
                    })
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

    /// Checks that the session holding the lock is still alive.
    pub async fn check(&mut self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1")
            .execute(&mut *self.conn)
            .await
            .map(|_| ())
    }

    /// Gives the lock up (a dead session has lost it already; its connection is dropped).
    pub async fn release(mut self) {
        let unlocked = sqlx::query("SELECT pg_advisory_unlock(hashtext($1))")
            .bind(&self.key)
            .execute(&mut *self.conn)
            .await;
        if unlocked.is_err() {
            self.conn.detach();
        }
    }
}
