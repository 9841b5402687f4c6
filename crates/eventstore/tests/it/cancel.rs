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

/// A `COPY … FROM STDIN` whose `finish()` is dropped while the server is still
/// answering (a projector aborted at the end of a batch) must not leave the
/// connection one `ReadyForQuery` behind: the next borrower's `BEGIN` would read the
/// stale answer and fail (`BeginFailed`), and its queries would read other
/// statements' answers (ADR 0047, the patched sqlx-postgres).
#[sqlx::test]
async fn a_copy_dropped_while_finishing_leaves_the_connection_in_step(pool: PgPool) {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(pool.connect_options().as_ref().clone())
        .await
        .unwrap();
    // The COPY's statement trigger makes the server answer 200 ms after CopyDone.
    sqlx::raw_sql(
        "CREATE TABLE c (x int); \
         CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS \
           $$ BEGIN PERFORM pg_sleep(0.2); RETURN NULL; END $$; \
         CREATE TRIGGER slow AFTER INSERT ON c FOR EACH STATEMENT EXECUTE FUNCTION slow();",
    )
    .execute(&pool)
    .await
    .unwrap();
    for round in 0..3i64 {
        let mut tx = pool.begin().await.unwrap();
        let mut copy = tx.copy_in_raw("COPY c (x) FROM STDIN").await.unwrap();
        copy.send(&b"1\n2\n"[..]).await.unwrap();
        let mut finish = Box::pin(copy.finish());
        let pending = poll_fn(|cx| Poll::Ready(finish.as_mut().poll(cx).is_pending())).await;
        assert!(pending, "the COPY was answered within one poll");
        drop(finish);
        drop(tx);

        let mut tx = pool
            .begin()
            .await
            .unwrap_or_else(|e| panic!("round {round}: a transaction does not begin: {e:?}"));
        let n: i64 = sqlx::query_scalar("SELECT $1::bigint")
            .bind(round)
            .fetch_one(&mut *tx)
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e:?}"));
        assert_eq!(n, round, "an answer to another statement");
        tx.commit().await.unwrap();
        assert!(!statements_share_a_transaction(&pool).await);
    }
}
