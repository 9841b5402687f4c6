//! The plant's reason catalogue as the writer hands it to machines (ADR 0053).
//!
//! A machine's state change and stop classification are decided against the
//! catalogue in force: the built-in codes as the plant amended them
//! ([`PlantReasons`], one stream). The writer keeps the catalogue it last read for
//! [`TTL`]: an edit made through this process is seen by the next command (the
//! writer forgets its copy when it commits one), and an edit made through another
//! process within [`TTL`]. Reading it costs one short stream read a second while
//! machines report, not one per command.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shopfloor_domain::reason::ReasonCatalogue;
use shopfloor_domain::reason_codes::PLANT_STREAM;
use shopfloor_domain::StreamType;
use shopfloor_eventstore::{EventStore, StoreError};

use crate::aggregate::AnyAggregate;

/// How long a read of the plant's catalogue is used.
pub const TTL: Duration = Duration::from_secs(1);

/// The catalogue last read, and when.
#[derive(Debug, Default)]
pub(crate) struct ReasonsCache {
    current: Mutex<Option<(Arc<ReasonCatalogue>, Instant)>>,
    /// One command reads the catalogue again while the others go on with the copy
    /// they have (at most one read in flight, not one per concurrent batch).
    reading: AtomicBool,
}

impl ReasonsCache {
    /// The catalogue in force: the one read within [`TTL`]; else read now, by one
    /// caller, while the others use the copy read before (if there is one).
    pub(crate) async fn get(
        &self,
        store: &EventStore,
        snapshot_every: u64,
    ) -> Result<Arc<ReasonCatalogue>, StoreError> {
        let kept = self.lock().clone();
        if let Some((catalogue, read_at)) = &kept {
            let fresh = read_at.elapsed() < TTL;
            if fresh || self.reading.swap(true, Ordering::AcqRel) {
                return Ok(Arc::clone(catalogue));
            }
        }
        // Cleared however the read ends, a dropped future included.
        let _reading = Reading(&self.reading);
        self.read(store, snapshot_every).await
    }

    async fn read(
        &self,
        store: &EventStore,
        snapshot_every: u64,
    ) -> Result<Arc<ReasonCatalogue>, StoreError> {
        let read_at = Instant::now();
        let (aggregate, _) = AnyAggregate::load(
            store,
            snapshot_every,
            StreamType::ReasonCatalogue,
            PLANT_STREAM,
        )
        .await?;
        let catalogue = Arc::new(match aggregate {
            AnyAggregate::PlantReasons(plant) => plant.catalogue(),
            _ => ReasonCatalogue::builtin().clone(),
        });
        *self.lock() = Some((Arc::clone(&catalogue), read_at));
        Ok(catalogue)
    }

    /// Forgets the catalogue read: the next command reads it again.
    pub(crate) fn forget(&self) {
        *self.lock() = None;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Arc<ReasonCatalogue>, Instant)>> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Clears the "one read in flight" flag when dropped.
struct Reading<'a>(&'a AtomicBool);

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}
