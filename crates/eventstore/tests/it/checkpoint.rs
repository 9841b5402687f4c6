//! The one checkpoint type of the log's readers: loaded, locked and moved the
//! same way in each reader's table.

use shopfloor_eventstore::{Checkpoint, CheckpointError, Reader};
use sqlx::PgPool;

const READERS: [Reader; 3] = [Reader::Projection, Reader::Relay, Reader::ProcessManager];

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn load_advance_and_rewind_in_every_table(pool: PgPool) {
    for reader in READERS {
        let never = Checkpoint::load(&pool, reader, "a").await.unwrap();
        assert_eq!(never.position(), 0, "{reader:?}");

        let mut c = Checkpoint::load(&pool, reader, "a").await.unwrap();
        c.advance(&pool, 7).await.unwrap();
        c.advance(&pool, 7).await.unwrap();
        assert_eq!(
            Checkpoint::load(&pool, reader, "a")
                .await
                .unwrap()
                .position(),
            7
        );
        // Another name, and another reader with the same name, are elsewhere.
        assert_eq!(
            Checkpoint::load(&pool, reader, "b")
                .await
                .unwrap()
                .position(),
            0
        );

        let back = c.advance(&pool, 3).await;
        assert!(
            matches!(back, Err(CheckpointError::Backwards { at: 7, to: 3, .. })),
            "{back:?}"
        );
        assert_eq!(c.position(), 7);
        c.rewind(&pool, 3).await.unwrap();
        assert_eq!(
            Checkpoint::load(&pool, reader, "a")
                .await
                .unwrap()
                .position(),
            3
        );
    }
    // Each reader kept its own row.
    let relay: (i64, i64) =
        sqlx::query_as("SELECT position, js_sequence FROM relay_checkpoints WHERE namespace = 'a'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(relay, (3, 0));
}

/// Moving the checkpoint is part of the transaction: rolled back, it stays.
#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn lock_holds_the_row_and_moves_with_the_transaction(pool: PgPool) {
    let mut tx = pool.begin().await.unwrap();
    let mut c = Checkpoint::lock(&mut *tx, Reader::Projection, "p")
        .await
        .unwrap();
    assert_eq!(c.position(), 0);
    c.advance(&mut *tx, 5).await.unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(
        Checkpoint::load(&pool, Reader::Projection, "p")
            .await
            .unwrap()
            .position(),
        0
    );

    let mut tx = pool.begin().await.unwrap();
    let mut c = Checkpoint::lock(&mut *tx, Reader::Projection, "p")
        .await
        .unwrap();
    c.advance(&mut *tx, 5).await.unwrap();
    // A second reader of the same name waits for the row.
    let other = tokio::spawn({
        let pool = pool.clone();
        async move {
            let mut tx = pool.begin().await.unwrap();
            let c = Checkpoint::lock(&mut *tx, Reader::Projection, "p")
                .await
                .unwrap();
            tx.commit().await.unwrap();
            c.position()
        }
    });
    // It cannot get the row while this transaction holds it.
    let waiting = tokio::time::timeout(std::time::Duration::from_millis(300), async {
        loop {
            let blocked: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO projection_checkpoints%')",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            if blocked {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(
        waiting.is_ok(),
        "the second reader did not wait for the row"
    );
    tx.commit().await.unwrap();
    assert_eq!(other.await.unwrap(), 5);
}

/// A stored position that is not a position of the log is an error, not a zero.
#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_negative_stored_position_is_an_error(pool: PgPool) {
    // The table refuses one (migration 0102)...
    let refused = sqlx::query("INSERT INTO process_checkpoints (name, position) VALUES ('x', -1)")
        .execute(&pool)
        .await;
    assert!(refused.is_err());
    // ...and so does the type, where a table without the check holds one.
    sqlx::query("ALTER TABLE process_checkpoints DROP CONSTRAINT process_checkpoints_position")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO process_checkpoints (name, position) VALUES ('x', -1)")
        .execute(&pool)
        .await
        .unwrap();
    let loaded = Checkpoint::load(&pool, Reader::ProcessManager, "x").await;
    assert!(
        matches!(
            loaded,
            Err(CheckpointError::OutOfRange { position: -1, .. })
        ),
        "{loaded:?}"
    );
    let mut c = Checkpoint::new(Reader::ProcessManager, "y");
    assert!(c.rewind(&pool, -2).await.is_err());
}
