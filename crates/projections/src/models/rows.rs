//! The status-row read models (machines, orders, maintenance tasks): one row per
//! aggregate, kept by folding its events in memory.
//!
//! [`load_fold_upsert`] is the whole of their application, for a chunk of any
//! size (a single event included): the rows the chunk touches are loaded with one
//! statement, every event is folded into its row in position order by the
//! model's [`RowModel::fold`] (its semantics, and the only place they are
//! written), and the rows are upserted back with one statement.

use std::collections::HashMap;

use shopfloor_eventstore::RecordedEvent;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::{PgConnection, Postgres};

use super::{last_updates, poison};
use crate::error::ApplyError;
use crate::live::LiveUpdate;

/// A statement with its parameters bound.
pub(crate) type Bound<'q> = Query<'q, Postgres, PgArguments>;

/// A read model of one row per aggregate.
pub(crate) trait RowModel {
    /// The domain events it folds.
    type Event: Sync;
    /// A row of its table, as loaded by [`RowModel::load_sql`].
    type Row: for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin;

    /// `SELECT` of the rows whose key is in `$1` (a text array).
    fn load_sql() -> String;
    /// The upsert of rows given column by column, bound by [`RowModel::bind`].
    fn upsert_sql() -> String;
    /// Binds the columns of `rows` to [`RowModel::upsert_sql`].
    fn bind<'q>(query: Bound<'q>, rows: &[Self::Row]) -> Bound<'q>;

    /// The key of the row an event changes.
    fn key(e: &Self::Event) -> &str;
    /// The key of a row.
    fn row_key(row: &Self::Row) -> &str;
    /// Folds one event into its row (None: the aggregate has no row yet).
    fn fold(row: &mut Option<Self::Row>, e: &Self::Event) -> Result<(), ApplyError>;
    /// The live update an event causes.
    fn update(event: &RecordedEvent, e: &Self::Event) -> LiveUpdate;
}

/// One column of `rows`, for binding as an array.
pub(crate) fn col<R, T: Clone>(rows: &[R], f: impl Fn(&R) -> &T) -> Vec<T> {
    rows.iter().map(|r| f(r).clone()).collect()
}

/// Applies `items` (in position order) to the rows of model `M`: load, fold,
/// upsert; the live updates, the last one per row.
pub(crate) async fn load_fold_upsert<M: RowModel>(
    conn: &mut PgConnection,
    items: &[(&RecordedEvent, &M::Event)],
) -> Result<Vec<LiveUpdate>, ApplyError> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let mut rows: HashMap<&str, Option<M::Row>> = HashMap::new();
    for (_, e) in items {
        rows.entry(M::key(e)).or_default();
    }
    let keys: Vec<&str> = rows.keys().copied().collect();
    let loaded: Vec<M::Row> = sqlx::query_as(&M::load_sql())
        .bind(&keys)
        .fetch_all(&mut *conn)
        .await?;
    for row in loaded {
        if let Some(slot) = rows.get_mut(M::row_key(&row)) {
            *slot = Some(row);
        }
    }
    for (_, e) in items {
        let row = rows
            .get_mut(M::key(e))
            .ok_or_else(|| poison("row not loaded"))?;
        M::fold(row, e)?;
    }
    let rows: Vec<M::Row> = rows.into_values().flatten().collect();
    if !rows.is_empty() {
        let sql = M::upsert_sql();
        M::bind(sqlx::query(&sql), &rows)
            .execute(&mut *conn)
            .await?;
    }
    Ok(last_updates(
        items,
        |e| Some(M::key(e)),
        |event, e| Some(M::update(event, e)),
    ))
}
