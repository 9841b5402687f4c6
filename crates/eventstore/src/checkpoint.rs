//! Checkpoints: how far a reader of the log has got (ADR 0030).
//!
//! Every loop that reads the global log and must not handle an event twice keeps
//! a [`Checkpoint`]: the position of the last event it has handled. The relay
//! (events published to JetStream), the projectors (events applied to a read
//! model) and the process manager (follow-up commands sent) all use this one
//! type, so they load, lock and move their position the same way.
//!
//! # Rows
//! Each kind of reader ([`Reader`]) keeps its rows in its own table, as before
//! this type existed (`projection_checkpoints`, `relay_checkpoints`,
//! `process_checkpoints`): replay and verify copy the projections' table into a
//! scratch schema on its own, and the relay keeps the JetStream sequence of its
//! last acknowledged publish beside its position. The tables have the same
//! shape (key, `position`, `updated_at`; migration 0102 evened them out), so the
//! statements are the same for all three, with the table and key column taken
//! from [`Reader`].
//!
//! # Transactions
//! The functions take any executor: a pool (autocommit: the relay and the process
//! manager, which lead alone), or a transaction, where [`Checkpoint::lock`]
//! holds the row until commit so that concurrent readers of one name serialise
//! and the position moves in the same transaction as the work it stands for
//! (the projectors).
//!
//! A position read from the database is checked: a negative one is an error,
//! never silently a zero.

use sqlx::PgExecutor;

/// The kinds of readers that keep checkpoints, each in its own table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reader {
    /// A projection (read model), named by its projection name.
    Projection,
    /// The relay of a namespace, named by the namespace.
    Relay,
    /// A process manager, named by its name.
    ProcessManager,
}

impl Reader {
    fn table(self) -> &'static str {
        match self {
            Reader::Projection => "projection_checkpoints",
            Reader::Relay => "relay_checkpoints",
            Reader::ProcessManager => "process_checkpoints",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Reader::Projection => "projection",
            Reader::Relay => "namespace",
            Reader::ProcessManager => "name",
        }
    }
}

/// What can go wrong with a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The stored position is not a position of the log.
    #[error("checkpoint {name} holds {position}, which is not a position of the log")]
    OutOfRange { name: String, position: i64 },
    /// Advancing would move the checkpoint backwards (use `rewind`).
    #[error("checkpoint {name} is at {at}; it cannot advance to {to}")]
    Backwards { name: String, at: i64, to: i64 },
}

/// A reader's position in the global log: every event at or below it has been
/// handled. 0 means nothing has been (positions start at 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    reader: Reader,
    name: String,
    position: i64,
}

impl Checkpoint {
    /// The checkpoint `name` of `reader` at 0 (not read from the database).
    pub fn new(reader: Reader, name: impl Into<String>) -> Self {
        Self {
            reader,
            name: name.into(),
            position: 0,
        }
    }

    pub fn reader(&self) -> Reader {
        self.reader
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The position of the last event handled.
    pub fn position(&self) -> i64 {
        self.position
    }

    /// Reads the checkpoint (at 0 when it was never saved).
    pub async fn load<'e>(
        executor: impl PgExecutor<'e>,
        reader: Reader,
        name: impl Into<String>,
    ) -> Result<Self, CheckpointError> {
        let mut checkpoint = Self::new(reader, name);
        let stored: Option<i64> = sqlx::query_scalar(&format!(
            "SELECT position FROM {} WHERE {} = $1",
            reader.table(),
            reader.key()
        ))
        .bind(&checkpoint.name)
        .fetch_optional(executor)
        .await?;
        if let Some(position) = stored {
            checkpoint.position = checkpoint.checked(position)?;
        }
        Ok(checkpoint)
    }

    /// Reads the checkpoint and locks its row until the transaction on
    /// `executor` ends, creating it at 0 when it was never saved.
    pub async fn lock<'e>(
        executor: impl PgExecutor<'e>,
        reader: Reader,
        name: impl Into<String>,
    ) -> Result<Self, CheckpointError> {
        let mut checkpoint = Self::new(reader, name);
        let (table, key) = (reader.table(), reader.key());
        let stored: i64 = sqlx::query_scalar(&format!(
            "INSERT INTO {table} ({key}, position) VALUES ($1, 0) \
             ON CONFLICT ({key}) DO UPDATE SET position = {table}.position \
             RETURNING position"
        ))
        .bind(&checkpoint.name)
        .fetch_one(executor)
        .await?;
        checkpoint.position = checkpoint.checked(stored)?;
        Ok(checkpoint)
    }

    /// Moves the checkpoint forwards to `position` (staying put is allowed) and
    /// saves it; moving it backwards is an error (see [`Checkpoint::rewind`]).
    pub async fn advance<'e>(
        &mut self,
        executor: impl PgExecutor<'e>,
        position: i64,
    ) -> Result<(), CheckpointError> {
        if position < self.position {
            return Err(CheckpointError::Backwards {
                name: self.name.clone(),
                at: self.position,
                to: position,
            });
        }
        self.save(executor, position).await
    }

    /// Sets the checkpoint to `position`, forwards or backwards, and saves it:
    /// a reader that must handle events again (the relay after NATS lost its
    /// tail), or one that starts after a restored log.
    pub async fn rewind<'e>(
        &mut self,
        executor: impl PgExecutor<'e>,
        position: i64,
    ) -> Result<(), CheckpointError> {
        self.save(executor, position).await
    }

    async fn save<'e>(
        &mut self,
        executor: impl PgExecutor<'e>,
        position: i64,
    ) -> Result<(), CheckpointError> {
        let position = self.checked(position)?;
        let (table, key) = (self.reader.table(), self.reader.key());
        sqlx::query(&format!(
            "INSERT INTO {table} ({key}, position) VALUES ($1, $2) \
             ON CONFLICT ({key}) DO UPDATE SET position = excluded.position, updated_at = now()"
        ))
        .bind(&self.name)
        .bind(position)
        .execute(executor)
        .await?;
        self.position = position;
        Ok(())
    }

    fn checked(&self, position: i64) -> Result<i64, CheckpointError> {
        if position < 0 {
            return Err(CheckpointError::OutOfRange {
                name: self.name.clone(),
                position,
            });
        }
        Ok(position)
    }
}
