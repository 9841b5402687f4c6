//! Alert changes as they commit, for the live feed (ADR 0048).
//!
//! Triggers on the `alerts` table (`migrations/0510_alerts_notify.sql`) send
//! `pg_notify('shopfloor_alerts', alert_id)` in the transaction that writes the row, so a
//! notification arrives only once the change is committed, whichever process wrote it. An
//! [`AlertFeed`] `LISTEN`s on that channel and reads each notified alert as it is now: a
//! change is never announced before it can be read, and the last announcement of an alert
//! is read after its last change.
//!
//! Notifications sent while no connection listens are lost. So each time the feed starts
//! listening (the first time, and again after a lost connection or a failed read) it
//! yields [`AlertChange::Reload`]: whoever shows alerts reads them all again.

use std::time::Duration;

use futures::FutureExt;
use sqlx::postgres::{PgListener, PgNotification};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::view::{self, AlertView};

/// The notification channel of alert changes (payload: the alert id).
pub const NOTIFY_CHANNEL: &str = "shopfloor_alerts";
/// At most this many alerts are read together.
const BATCH: usize = 256;
/// The first and the longest wait before listening again after a failure.
const RETRY_MIN: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(15);

/// What the feed yields.
#[derive(Debug, Clone, PartialEq)]
pub enum AlertChange {
    /// These alerts changed; each as it is now (committed).
    Changed(Vec<AlertView>),
    /// Changes may have been missed (the feed (re)started listening): read every alert again.
    Reload,
}

/// The changes of the alerts table, from now on.
pub struct AlertFeed {
    pool: PgPool,
    listener: Option<PgListener>,
    retry: Duration,
    cancel: CancellationToken,
}

impl std::fmt::Debug for AlertFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertFeed")
            .field("listening", &self.listener.is_some())
            .finish()
    }
}

impl AlertFeed {
    /// A feed on `pool`'s database; it ends (`next` gives `None`) when `cancel` fires.
    pub fn new(pool: PgPool, cancel: CancellationToken) -> Self {
        Self {
            pool,
            listener: None,
            retry: RETRY_MIN,
            cancel,
        }
    }

    /// The next change; `None` once cancelled. Never fails: a lost connection is listened
    /// to again (with a growing back-off) and answered with [`AlertChange::Reload`].
    pub async fn next(&mut self) -> Option<AlertChange> {
        loop {
            if self.cancel.is_cancelled() {
                return None;
            }
            let Some(listener) = self.listener.as_mut() else {
                match self.listen().await {
                    Ok(listener) => {
                        self.listener = Some(listener);
                        self.retry = RETRY_MIN;
                        debug!("listening for alert changes");
                        return Some(AlertChange::Reload);
                    }
                    Err(e) => {
                        warn!(error = %e, "cannot listen for alert changes; trying again");
                        self.back_off().await;
                        continue;
                    }
                }
            };
            let received = tokio::select! {
                () = self.cancel.cancelled() => return None,
                n = listener.try_recv() => n,
            };
            let ids = match received {
                Ok(Some(first)) => gather(listener, first),
                // The connection dropped: notifications may have been lost meanwhile.
                Ok(None) => Err(None),
                Err(e) => Err(Some(e)),
            };
            let ids = match ids {
                Ok(ids) => ids,
                Err(e) => {
                    self.lost(e.map(|e| e.to_string())).await;
                    continue;
                }
            };
            match view::load(&self.pool, &ids).await {
                Ok(views) if views.is_empty() => continue,
                Ok(views) => return Some(AlertChange::Changed(views)),
                // The changes are unread: listen again, then have everyone reload.
                Err(e) => self.lost(Some(e.to_string())).await,
            }
        }
    }

    async fn listen(&self) -> Result<PgListener, sqlx::Error> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(NOTIFY_CHANNEL).await?;
        Ok(listener)
    }

    async fn lost(&mut self, error: Option<String>) {
        match error {
            Some(error) => warn!(%error, "alert change listener failed; listening again"),
            None => warn!("alert change listener lost its connection; listening again"),
        }
        self.listener = None;
        self.back_off().await;
    }

    async fn back_off(&mut self) {
        tokio::select! {
            () = self.cancel.cancelled() => {}
            () = tokio::time::sleep(self.retry) => {}
        }
        self.retry = (self.retry * 2).min(RETRY_MAX);
    }
}

/// The ids of `first` and of the notifications already at hand (up to [`BATCH`]), without
/// repeats. `Err` when the connection failed meanwhile (the batch is then lost too).
fn gather(
    listener: &mut PgListener,
    first: PgNotification,
) -> Result<Vec<String>, Option<sqlx::Error>> {
    let mut ids = vec![first.payload().to_string()];
    while ids.len() < BATCH {
        // `try_recv` is cancel safe: a notification half read stays in the buffer.
        match listener.try_recv().now_or_never() {
            Some(Ok(Some(n))) => ids.push(n.payload().to_string()),
            Some(Ok(None)) => return Err(None),
            Some(Err(e)) => return Err(Some(e)),
            None => break,
        }
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}
