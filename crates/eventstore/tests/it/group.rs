//! The group-commit writer: one-statement batches, and the fall-back
//! transaction whenever a batch's assumptions do not hold.

use std::collections::HashMap;

use serde_json::json;
use shopfloor_eventstore::chain;
use shopfloor_eventstore::{
    AppendRequest, Direction, EventStore, ExpectedVersion, GroupCommitter, StoreError, StreamRef,
};
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::event;

fn request(stream: &StreamRef, expected: ExpectedVersion, n: usize) -> AppendRequest {
    AppendRequest {
        stream: stream.clone(),
        expected,
        events: (0..n).map(|i| event("E", json!({ "i": i }))).collect(),
    }
}

/// Every position once, in order, and the chain intact.
async fn assert_log_sound(pool: &PgPool, expected_events: i64) {
    let (count, min, max): (i64, Option<i64>, Option<i64>) =
        sqlx::query_as("SELECT count(*), min(position), max(position) FROM events")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(count, expected_events);
    if count > 0 {
        assert_eq!((min, max), (Some(1), Some(count)), "positions have a gap");
    }
    let head: i64 = sqlx::query_scalar("SELECT position FROM event_log_head")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(head, count);
    let report = chain::verify(pool).await.unwrap();
    assert!(report.broken.is_none(), "{report:?}");
    assert_eq!(report.unchained, 0);
    // Versions of every stream run 1..=n.
    let broken: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT stream_type, stream_id, count(*) AS n, max(version) AS v \
         FROM events GROUP BY 1, 2) s WHERE n <> v",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(broken, 0, "a stream has a version gap");
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn many_tasks_through_one_writer(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    let group = GroupCommitter::start(store.clone(), 16);
    let mut tasks = Vec::new();
    for t in 0..24 {
        let group = group.clone();
        tasks.push(tokio::spawn(async move {
            // Each task owns a few streams and appends to them in turn, knowing
            // their versions from its own results.
            let streams: Vec<StreamRef> = (0..3)
                .map(|s| StreamRef::new("machine", format!("t{t}-s{s}")))
                .collect();
            let mut versions = vec![0u64; streams.len()];
            let mut positions = Vec::new();
            for round in 0..30 {
                let s = round % streams.len();
                let expected = match versions[s] {
                    0 => ExpectedVersion::NoStream,
                    v => ExpectedVersion::Exact(v),
                };
                let n = 1 + round % 2;
                let r = group
                    .append(request(&streams[s], expected, n))
                    .await
                    .unwrap();
                assert!(!r.duplicate);
                assert_eq!(r.stream_version, versions[s] + n as u64);
                assert_eq!(r.last_position - r.first_position + 1, n as i64);
                versions[s] = r.stream_version;
                positions.extend(r.first_position..=r.last_position);
            }
            positions
        }));
    }
    let mut positions = Vec::new();
    for t in tasks {
        positions.extend(t.await.unwrap());
    }
    positions.sort_unstable();
    let total = positions.len() as i64;
    assert_eq!(positions, (1..=total).collect::<Vec<_>>());
    assert_log_sound(&pool, total).await;
    let stats = group.stats();
    assert_eq!(stats.requests, 24 * 30);
    // The first batch has no tip yet; after it, nothing forces a fall-back.
    assert_eq!(stats.fallbacks, 1, "{stats:?}");
    assert!(stats.batches < stats.requests, "no batching: {stats:?}");
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn another_writer_in_between_is_noticed_and_results_stay_exact(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    let group = GroupCommitter::start(store.clone(), 16);
    let a = StreamRef::new("machine", "A");
    let b = StreamRef::new("machine", "B");
    group
        .append(request(&a, ExpectedVersion::NoStream, 1))
        .await
        .unwrap();
    group
        .append(request(&b, ExpectedVersion::NoStream, 1))
        .await
        .unwrap();

    // Another process appends to B: the writer's tip is now stale.
    store
        .append(&b, ExpectedVersion::Exact(1), vec![event("F", json!({}))])
        .await
        .unwrap();

    // A goes on (the stale tip is noticed and the batch redone); B's writer,
    // believing B at 1, gets a conflict with the real version.
    let r = group
        .append(request(&a, ExpectedVersion::Exact(1), 2))
        .await
        .unwrap();
    assert_eq!(
        (r.stream_version, r.first_position, r.last_position),
        (3, 4, 5)
    );
    let err = group
        .append(request(&b, ExpectedVersion::Exact(1), 1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { actual: 2, .. }),
        "{err:?}"
    );
    // And the writer keeps going on the one-statement path afterwards.
    let before = group.stats();
    let r = group
        .append(request(&b, ExpectedVersion::Exact(2), 1))
        .await
        .unwrap();
    assert_eq!((r.stream_version, r.first_position), (3, 6));
    assert_eq!(group.stats().since(&before).fallbacks, 0);
    assert_log_sound(&pool, 6).await;
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_bad_request_in_a_batch_fails_alone(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    let group = GroupCommitter::start(store.clone(), 64);
    let streams: Vec<StreamRef> = (0..8)
        .map(|i| StreamRef::new("machine", format!("m{i}")))
        .collect();
    for s in &streams {
        group
            .append(request(s, ExpectedVersion::NoStream, 1))
            .await
            .unwrap();
    }
    let retried = event("R", json!({}));
    group
        .append(AppendRequest {
            stream: streams[0].clone(),
            expected: ExpectedVersion::Exact(1),
            events: vec![retried.clone()],
        })
        .await
        .unwrap();

    // Sent together, so they share batches: good ones, a stream claimed to be
    // further than it is (5 for a stream at 1), one behind (NoStream for an
    // existing stream), and a retry of an event already appended.
    let mut sends = Vec::new();
    for (i, s) in streams.iter().enumerate().skip(1) {
        let expected = match i {
            3 => ExpectedVersion::Exact(5),
            5 => ExpectedVersion::NoStream,
            _ => ExpectedVersion::Exact(1),
        };
        let group = group.clone();
        let req = request(s, expected, 1);
        sends.push(tokio::spawn(async move { (i, group.append(req).await) }));
    }
    let group2 = group.clone();
    let retry = AppendRequest {
        stream: streams[0].clone(),
        expected: ExpectedVersion::Exact(1),
        events: vec![retried.clone()],
    };
    sends.push(tokio::spawn(async move { (0, group2.append(retry).await) }));
    let mut outcomes = HashMap::new();
    for s in sends {
        let (i, r) = s.await.unwrap();
        outcomes.insert(i, r);
    }
    for (i, r) in &outcomes {
        match i {
            3 => assert!(
                matches!(r, Err(StoreError::Conflict { actual: 1, .. })),
                "{r:?}"
            ),
            5 => assert!(
                matches!(r, Err(StoreError::Conflict { actual: 1, .. })),
                "{r:?}"
            ),
            0 => {
                let r = r.as_ref().unwrap();
                assert!(r.duplicate);
                assert_eq!(r.stream_version, 2);
            }
            _ => assert_eq!(r.as_ref().unwrap().stream_version, 2, "{i}: {r:?}"),
        }
    }
    // 8 registrations + the first retried event + 5 good ones.
    assert_log_sound(&pool, 14).await;
    let stream3 = store
        .read_stream(&streams[3], Direction::Forward, 1, 10)
        .await
        .unwrap();
    assert_eq!(stream3.len(), 1);
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_prepared_batch_on_a_stale_head_writes_nothing(pool: PgPool) {
    // Two writers, each with its own pipeline, on the same streams: every stale
    // tip is caught by the head check, and the log stays sound.
    let store = EventStore::new(pool.clone());
    let one = GroupCommitter::start(store.clone(), 8);
    let two = GroupCommitter::start(store.clone(), 8);
    let mut tasks = Vec::new();
    for t in 0..8 {
        let group = if t % 2 == 0 { one.clone() } else { two.clone() };
        tasks.push(tokio::spawn(async move {
            let s = StreamRef::new("machine", format!("shared-{}", t % 4));
            let mut appended = 0;
            for _ in 0..25 {
                // Reload-free optimistic loop: read the version, try, retry on conflict.
                loop {
                    let id = Uuid::new_v4();
                    let version = match group
                        .append(AppendRequest {
                            stream: s.clone(),
                            expected: ExpectedVersion::Any,
                            events: vec![event("Probe", json!({ "id": id }))],
                        })
                        .await
                    {
                        Ok(r) => r.stream_version,
                        Err(e) => panic!("{e}"),
                    };
                    appended += 1;
                    match group
                        .append(request(&s, ExpectedVersion::Exact(version), 1))
                        .await
                    {
                        Ok(_) => {
                            appended += 1;
                            break;
                        }
                        Err(StoreError::Conflict { .. }) => continue,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            appended
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    assert_log_sound(&pool, total).await;
}

/// An all-or-nothing unit: a conflict on one of its streams keeps every request
/// of the unit out, while other units of the same batch land; a request of the
/// unit that was appended before keeps its original result.
#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_unit_is_appended_whole_or_not_at_all(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    let (a, b, c) = (
        StreamRef::new("t", "a"),
        StreamRef::new("t", "b"),
        StreamRef::new("t", "c"),
    );
    store
        .append(&b, ExpectedVersion::NoStream, vec![event("E", json!({}))])
        .await
        .unwrap();
    let earlier = request(&c, ExpectedVersion::NoStream, 1);
    store.append_all(vec![earlier.clone()]).await.unwrap();

    for group in [None, Some(GroupCommitter::start(store.clone(), 64))] {
        let units = vec![
            // b is at 1, not 0: the unit is refused, a and c with it.
            vec![
                request(&a, ExpectedVersion::NoStream, 2),
                earlier.clone(),
                request(&b, ExpectedVersion::NoStream, 1),
            ],
            vec![request(&StreamRef::new("t", "d"), ExpectedVersion::Any, 1)],
        ];
        let results = match &group {
            Some(g) => g.append_units(units).await,
            None => store.append_units(units).await.unwrap(),
        };
        assert!(
            matches!(&results[0], Err(StoreError::Aborted { failed }) if *failed == b),
            "{results:?}"
        );
        assert!(matches!(&results[1], Ok(r) if r.duplicate), "{results:?}");
        assert!(
            matches!(
                &results[2],
                Err(StoreError::Conflict {
                    actual: 1,
                    expected: ExpectedVersion::NoStream,
                    ..
                })
            ),
            "{results:?}"
        );
        assert!(matches!(&results[3], Ok(r) if !r.duplicate), "{results:?}");
        assert_eq!(store.stream_version(&a).await.unwrap(), 0);
    }
    // The unit that fits lands whole.
    let done = store
        .append_all(vec![
            request(&a, ExpectedVersion::NoStream, 2),
            request(&b, ExpectedVersion::Exact(1), 1),
        ])
        .await
        .unwrap();
    assert_eq!((done[0].stream_version, done[1].stream_version), (2, 2));
    assert_log_sound(&pool, 1 + 1 + 2 + 2 + 1).await;
}

/// A batch that PostgreSQL refuses for one request's value (here a trigger that
/// refuses one stream with SQLSTATE 22023) is retried unit by unit: the others are
/// written, and only the request that caused it is told, as a bad value (400 at
/// the API), not as "unavailable" (which would make every caller retry in vain).
#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_refused_value_fails_only_its_own_request(pool: PgPool) {
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN IF NEW.stream_id = 'poison' THEN \
           RAISE EXCEPTION 'poisoned value' USING ERRCODE = '22023'; END IF; RETURN NEW; END $$; \
         CREATE TRIGGER refuse_poison BEFORE INSERT ON events \
           FOR EACH ROW EXECUTE FUNCTION refuse_poison();",
    )
    .execute(&pool)
    .await
    .unwrap();
    let store = EventStore::new(pool.clone());
    let group = GroupCommitter::start(store, 64);
    // Hold the log head, so that the first append waits in the database while the
    // others queue up behind it and then go as one batch.
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("SELECT position FROM event_log_head WHERE id FOR UPDATE")
        .execute(&mut *holder)
        .await
        .unwrap();
    let first = tokio::spawn({
        let group = group.clone();
        async move {
            let s = StreamRef::new("machine", "first");
            group
                .append(request(&s, ExpectedVersion::NoStream, 1))
                .await
        }
    });
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
             AND datname = current_database()",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first append never waited"
        );
        tokio::task::yield_now().await;
    }
    let names = ["a", "b", "poison", "c", "d"];
    let tasks: Vec<_> = names
        .iter()
        .map(|name| {
            let group = group.clone();
            let s = StreamRef::new("machine", *name);
            tokio::spawn(async move {
                group
                    .append(request(&s, ExpectedVersion::NoStream, 2))
                    .await
            })
        })
        .collect();
    while group.queued() < names.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the appends never queued"
        );
        tokio::task::yield_now().await;
    }
    let before = group.stats();
    holder.rollback().await.unwrap();
    first.await.unwrap().unwrap();
    for (name, task) in names.iter().zip(tasks) {
        let result = task.await.unwrap();
        if *name == "poison" {
            assert!(
                matches!(result, Err(StoreError::BadValue(_))),
                "{name}: {result:?}"
            );
        } else {
            assert!(result.is_ok(), "{name}: {result:?}");
        }
    }
    // The five went as one batch, then one by one after the refusal.
    let after = group.stats().since(&before);
    assert_eq!((after.batches, after.requests), (1, 5), "{after:?}");
    assert!(after.fallbacks > names.len() as u64, "{after:?}");
    assert_log_sound(&pool, 1 + 2 * 4).await;
}
