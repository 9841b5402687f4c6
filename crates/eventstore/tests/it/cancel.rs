//! A future dropped while `BEGIN` is on the wire (a client that hangs up, an
//! aborted task, a timeout) must not hand the next borrower of its connection a
//! transaction that nothing will end (ADR 0047, the patched sqlx-postgres).

use std::future::{poll_fn, Future};
use std::task::Poll;

use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgPool};

/// Whether two statements on the pool's one connection ran in one transaction:
/// outside a transaction each statement gets its own transaction id.
async fn statements_share_a_transaction(pool: &PgPool) -> bool {
    let mut conn = pool.acquire().await.unwrap();
    let first: i64 = sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    let second: i64 = sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    first == second
}

#[sqlx::test]
async fn a_begin_dropped_on_the_wire_leaves_no_transaction_behind(pool: PgPool) {
    // One connection, so every borrower gets the one the dropped BEGIN used.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(pool.connect_options().as_ref().clone())
        .await
        .unwrap();
    assert!(!statements_share_a_transaction(&pool).await);

    for _ in 0..5 {
        let mut conn = pool.acquire().await.unwrap();
        // The server answers after 200 ms, so one poll sends the BEGIN and then waits
        // (however loaded the machine).
        let mut begin = Box::pin(conn.begin_with("BEGIN; SELECT pg_sleep(0.2)"));
        let pending = poll_fn(|cx| Poll::Ready(begin.as_mut().poll(cx).is_pending())).await;
        assert!(pending, "the BEGIN was answered within one poll");
        drop(begin);
        drop(conn);

        assert!(
            !statements_share_a_transaction(&pool).await,
            "the next borrower ran inside the dropped BEGIN's transaction"
        );
        // And a transaction of its own still begins, commits and ends.
        let mut tx = pool.begin().await.unwrap();
        sqlx::query("SELECT 1").execute(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
        assert!(!statements_share_a_transaction(&pool).await);
    }
}
