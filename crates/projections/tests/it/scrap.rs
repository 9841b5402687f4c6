//! Scrap by reason (ADR 0050): sums by floor time, per reason, over a scope and window.

use shopfloor_projections::query::*;
use sqlx::PgPool;

use crate::floor::*;

fn query(machine: Option<&str>, line: Option<&str>, from: &str, to: &str) -> ScrapQuery {
    ScrapQuery {
        machine_id: machine.map(str::to_owned),
        line: line.map(str::to_owned),
        from: at(from),
        to: at(to),
        as_of: None,
        scope: Default::default(),
    }
}

fn of<'a>(r: &'a ScrapReport, reason: Option<&str>) -> Option<&'a ScrapByReason> {
    r.by_reason
        .iter()
        .find(|b| b.scrap_reason.as_deref() == reason)
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn scrap_by_reason_sums_exactly_by_floor_time(pool: PgPool) {
    let f = Floor::new(&pool);
    f.register("M1", "L1", 30.0).await;
    f.register("M2", "L1", 30.0).await;
    f.register("M3", "L2", 30.0).await;
    f.scrap("M1", 10, 2, Some("scrap.dimensional"), at("08:10"))
        .await;
    f.scrap("M1", 5, 3, Some("scrap.surface"), at("08:20"))
        .await;
    f.scrap("M1", 1, 1, None, at("08:30")).await;
    f.scrap("M1", 7, 0, None, at("08:40")).await;
    // Outside the window [08:00, 09:00).
    f.scrap("M1", 0, 50, Some("scrap.dimensional"), at("07:59"))
        .await;
    f.scrap("M1", 9, 9, Some("scrap.dimensional"), at("09:00"))
        .await;
    // Arrives late (after 09:00 was recorded): counts at its floor time, in the window.
    f.scrap("M1", 0, 4, Some("scrap.dimensional"), at("08:55"))
        .await;
    f.scrap("M2", 4, 6, Some("scrap.dimensional"), at("08:50"))
        .await;
    f.scrap("M3", 0, 8, Some("scrap.material"), at("08:50"))
        .await;
    project_all(&pool).await;

    let r = scrap_by_reason(&pool, &query(Some("M1"), None, "08:00", "09:00"))
        .await
        .unwrap();
    assert_eq!((r.good_count, r.scrap_count), (23, 10));
    let dim = of(&r, Some("scrap.dimensional")).unwrap();
    assert_eq!((dim.scrap, dim.reports), (6, 2));
    assert_eq!(dim.name, "Out of tolerance");
    assert_eq!(of(&r, Some("scrap.surface")).unwrap().scrap, 3);
    let none = of(&r, None).unwrap();
    assert_eq!(
        (none.scrap, none.reports, none.name.as_str()),
        (1, 1, "Not given")
    );
    assert_eq!(r.by_reason.len(), 3, "{r:?}");
    assert_eq!(
        r.by_reason[0].scrap_reason.as_deref(),
        Some("scrap.dimensional")
    );
    assert_eq!(
        r.by_reason.iter().map(|b| b.scrap).sum::<i64>(),
        r.scrap_count
    );
    assert!((r.by_reason[0].share.unwrap() - 0.6).abs() < 1e-9);

    // A line sums its machines; the whole plant too.
    let line = scrap_by_reason(&pool, &query(None, Some("L1"), "08:00", "09:00"))
        .await
        .unwrap();
    assert_eq!(line.scrap_count, 16);
    let dim = of(&line, Some("scrap.dimensional")).unwrap();
    assert_eq!((dim.scrap, dim.reports), (12, 3));
    assert!(of(&line, Some("scrap.material")).is_none());
    let plant = scrap_by_reason(&pool, &query(None, None, "08:00", "09:01"))
        .await
        .unwrap();
    assert_eq!(plant.scrap_count, 10 + 9 + 6 + 8);
    assert_eq!(
        of(&plant, Some("scrap.dimensional")).unwrap().scrap,
        6 + 9 + 6
    );
    assert_eq!(of(&plant, Some("scrap.material")).unwrap().scrap, 8);

    // An unknown machine is a 404, an empty window a bad query.
    assert!(matches!(
        scrap_by_reason(&pool, &query(Some("NOPE"), None, "08:00", "09:00")).await,
        Err(shopfloor_projections::QueryError::NotFound { .. })
    ));
    assert!(matches!(
        scrap_by_reason(&pool, &query(Some("M1"), None, "09:00", "09:00")).await,
        Err(shopfloor_projections::QueryError::Invalid(_))
    ));
}
