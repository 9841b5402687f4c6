//! Leader locks are fenced by their session (ADR 0043): once the session that holds
//! the lock is gone, its holder's check and fenced writes fail, and another instance
//! takes the lock.

use std::time::Duration;

use shopfloor_eventstore::{Checkpoint, LeaderFlag, Leadership, Reader};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

const KEY: &str = "test-leader";

/// The backend holding an advisory lock in this database (a fresh one per test).
async fn holder_pid(pool: &PgPool) -> Option<i32> {
    sqlx::query_scalar(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_optional(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_leader_whose_session_died_is_fenced_and_replaced(pool: PgPool) {
    let cancel = CancellationToken::new();
    let flag = LeaderFlag::new("test");
    let mut first = Leadership::acquire_flagged(
        &pool,
        KEY,
        Duration::from_millis(100),
        &cancel,
        Some(flag.clone()),
    )
    .await
    .unwrap();
    assert!(flag.is_held());
    first.check().await.unwrap();
    // A fenced write while leading commits.
    let mut checkpoint = Checkpoint::new(Reader::ProcessManager, "fence-test");
    let mut tx = first.fenced().await.unwrap();
    checkpoint.advance(&mut *tx, 5).await.unwrap();
    tx.commit().await.unwrap();

    // A second instance cannot take the lock meanwhile.
    let second = tokio::time::timeout(
        Duration::from_millis(500),
        Leadership::acquire(&pool, KEY, Duration::from_millis(100), &cancel),
    )
    .await;
    assert!(second.is_err(), "two leaders at once");

    // The leader's session dies (as in a PostgreSQL restart or a cut connection).
    let pid = holder_pid(&pool).await.expect("the lock is held");
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(killed);
    assert!(
        first.check().await.is_err(),
        "the check passed on a dead session"
    );
    assert!(
        first.fenced().await.is_err(),
        "a fenced write began on a dead session"
    );

    // Another instance leads now, and the deposed one cannot move the checkpoint.
    let mut second = tokio::time::timeout(
        Duration::from_secs(5),
        Leadership::acquire(&pool, KEY, Duration::from_millis(100), &cancel),
    )
    .await
    .expect("the lock was not freed")
    .unwrap();
    second.check().await.unwrap();
    first.release().await;
    assert!(!flag.is_held());
    let stored = Checkpoint::load(&pool, Reader::ProcessManager, "fence-test")
        .await
        .unwrap();
    assert_eq!(stored.position(), 5);
    second.release().await;
}
