//! The equipment hierarchy read model (ADR 0062): the tree with its implicit default
//! site and area, KPI roll-ups at site, area, cell and node level against hand-computed
//! sums of their machines, moves that take effect from their time, and `as_of`.

use chrono::{DateTime, Utc};
use shopfloor_domain::hierarchy::{HierarchyEvent, Level};
use shopfloor_domain::values::{Actor, LineId, MachineId, NodeId, Text};
use shopfloor_projections::query::hierarchy::{hierarchy_tree, TreeNode};
use shopfloor_projections::query::*;
use shopfloor_projections::QueryError;
use sqlx::PgPool;

use crate::floor::*;

const STREAM: &str = "equipment_hierarchy";

fn created(id: &str, level: Level, parent: Option<&str>) -> HierarchyEvent {
    HierarchyEvent::HierarchyNodeCreated {
        node_id: NodeId::new(id).unwrap(),
        level,
        name: Text::new(format!("{id} name")).unwrap(),
        parent: parent.map(|p| NodeId::new(p).unwrap()),
        by: Actor::new("sup").unwrap(),
        at: t("2023-12-01T00:00:00Z"),
    }
}

/// S1 → A1 → L1 → C1 (M1 placed in C1); S1 → A2 → L2 (M2); L3 (M3) has no node.
/// Window 08:00–10:00, ideal cycle time 30 s:
/// - M1: running 08:00, down 09:00; 60 good at 08:30 → run 60 min, ideal 1800 s;
/// - M2: running 08:00, down 08:30, running 09:30; 20 good + 5 scrap at 08:15 → run
///   60 min, ideal 750 s;
/// - M3: down 08:00, running 09:00; 10 good at 09:30 → run 60 min, ideal 300 s.
async fn plant(f: &Floor) {
    for (m, line) in [("M1", "L1"), ("M2", "L2"), ("M3", "L3")] {
        f.register(m, line, 30.0).await;
    }
    f.state("M1", "running", None, None, at("08:00")).await;
    f.state(
        "M1",
        "down",
        Some("breakdown.mechanical"),
        None,
        at("09:00"),
    )
    .await;
    f.parts("M1", 60, 0, 30.0, at("08:30")).await;
    f.state("M2", "running", None, None, at("08:00")).await;
    f.state(
        "M2",
        "down",
        Some("breakdown.mechanical"),
        None,
        at("08:30"),
    )
    .await;
    f.state("M2", "running", None, None, at("09:30")).await;
    f.parts("M2", 20, 5, 30.0, at("08:15")).await;
    f.state(
        "M3",
        "down",
        Some("breakdown.mechanical"),
        None,
        at("08:00"),
    )
    .await;
    f.state("M3", "running", None, None, at("09:00")).await;
    f.parts("M3", 10, 0, 30.0, at("09:30")).await;
    for e in [
        created("S1", Level::Site, None),
        created("A1", Level::Area, Some("S1")),
        created("A2", Level::Area, Some("S1")),
        created("L1", Level::Line, Some("A1")),
        created("L2", Level::Line, Some("A2")),
        created("C1", Level::WorkCell, Some("L1")),
    ] {
        f.append(STREAM, "plant", e).await;
    }
    f.append(
        STREAM,
        "plant",
        HierarchyEvent::HierarchyMachinePlaced {
            machine_id: MachineId::new("M1").unwrap(),
            line: LineId::new("L1").unwrap(),
            cell: Some(NodeId::new("C1").unwrap()),
            effective_from: t("2023-12-02T00:00:00Z"),
            by: Actor::new("sup").unwrap(),
            at: t("2023-12-02T00:00:00Z"),
        },
    )
    .await;
}

fn scoped(scope: Scope, to: &str, as_of: Option<DateTime<Utc>>) -> KpiQuery {
    KpiQuery {
        rollup: true,
        as_of,
        scope,
        ..KpiQuery {
            machine_id: None,
            line: None,
            ..KpiQuery::machine("x", at("08:00"), at(to))
        }
    }
}

fn site(s: &str) -> Scope {
    Scope {
        site: Some(s.into()),
        ..Scope::default()
    }
}

fn area(a: &str) -> Scope {
    Scope {
        area: Some(a.into()),
        ..Scope::default()
    }
}

async fn rollup(pool: &PgPool, q: &KpiQuery) -> KpiRow {
    let rows = kpi_metrics(pool, q).await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    rows.into_iter().next().unwrap()
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9)
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_site_rolls_up_the_sum_of_its_machines(pool: PgPool) {
    let f = Floor::new(&pool);
    plant(&f).await;
    project_all(&pool).await;

    // Site S1 = M1 + M2: planned 240 min, run 120 min, 80 good, 5 scrap, ideal 2550 s.
    let s1 = rollup(&pool, &scoped(site("S1"), "10:00", None)).await;
    assert_eq!(s1.machine_count, 2);
    assert_eq!(s1.planned_production_time_s, 240.0 * 60.0);
    assert_eq!(s1.run_time_s, 120.0 * 60.0);
    assert_eq!(s1.downtime_minutes, 120.0);
    assert_eq!((s1.good_count, s1.scrap_count, s1.total_count), (80, 5, 85));
    assert!(close(s1.availability, 0.5));
    assert!(close(s1.performance, 2550.0 / 7200.0));
    assert!(close(s1.quality, 80.0 / 85.0));
    assert!(close(s1.oee, 0.5 * (2550.0 / 7200.0) * (80.0 / 85.0)));

    // Area A1 = M1 alone; the cell C1 and the node A1 say the same.
    let a1 = rollup(&pool, &scoped(area("A1"), "10:00", None)).await;
    assert_eq!(
        (a1.machine_count, a1.good_count, a1.run_time_s),
        (1, 60, 3600.0)
    );
    assert!(close(a1.performance, 1800.0 / 3600.0));
    let cell = Scope {
        cell: Some("C1".into()),
        ..Scope::default()
    };
    assert_eq!(rollup(&pool, &scoped(cell, "10:00", None)).await, a1);
    let node = Scope {
        node: Some("A1".into()),
        ..Scope::default()
    };
    assert_eq!(rollup(&pool, &scoped(node, "10:00", None)).await, a1);

    // L3 has no node: it is under the default site.
    let d = rollup(&pool, &scoped(site("default"), "10:00", None)).await;
    assert_eq!(
        (d.machine_count, d.good_count, d.ideal_time_s),
        (1, 10, 300.0)
    );

    // The per-machine rows of the site are exactly M1 and M2.
    let rows = kpi_metrics(
        &pool,
        &KpiQuery {
            rollup: false,
            ..scoped(site("S1"), "10:00", None)
        },
    )
    .await
    .unwrap();
    let ids: Vec<&str> = rows.iter().map(|r| r.machine_id.as_str()).collect();
    assert_eq!(ids, ["M1", "M2"]);

    // A node that does not exist is a 404, not an empty plant.
    let err = kpi_metrics(&pool, &scoped(site("nowhere"), "10:00", None))
        .await
        .unwrap_err();
    assert!(
        matches!(err, QueryError::NotFound { kind: "node", .. }),
        "{err:?}"
    );

    // Downtime at area level covers the same machines.
    let downtime = downtime_report(
        &pool,
        &DowntimeQuery {
            machine_id: None,
            line: None,
            from: at("08:00"),
            to: at("10:00"),
            as_of: None,
            micro_stop_threshold_s: None,
            scope: area("A2"),
        },
    )
    .await
    .unwrap();
    let ids: Vec<&str> = downtime.iter().map(|r| r.machine_id.as_str()).collect();
    assert_eq!(ids, ["M2"]);

    // The /metrics gauges carry the site and area of each machine.
    let gauges = machine_gauges(&pool, Utc::now()).await.unwrap();
    let labels: Vec<(&str, &str, &str)> = gauges
        .iter()
        .map(|g| (g.machine_id.as_str(), g.site.as_str(), g.area.as_str()))
        .collect();
    assert_eq!(
        labels,
        [
            ("M1", "S1", "A1"),
            ("M2", "S1", "A2"),
            ("M3", "default", "default")
        ]
    );
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_move_takes_effect_from_its_time_and_as_of_sees_the_tree_as_known(pool: PgPool) {
    let f = Floor::new(&pool);
    plant(&f).await;
    let before_move = Utc::now();
    // L2 moves from A2 to A1, effective 09:00.
    f.append(
        STREAM,
        "plant",
        HierarchyEvent::HierarchyNodeMoved {
            node_id: NodeId::new("L2").unwrap(),
            level: Level::Line,
            from_parent: Some(NodeId::new("A2").unwrap()),
            parent: Some(NodeId::new("A1").unwrap()),
            effective_from: at("09:00"),
            by: Actor::new("sup").unwrap(),
            at: at("12:00"),
        },
    )
    .await;
    project_all(&pool).await;

    // A window ending before the move: A1 is M1 alone. Ending after it: M1 and M2.
    let early = rollup(&pool, &scoped(area("A1"), "09:00", None)).await;
    assert_eq!(early.machine_count, 1);
    let late = rollup(&pool, &scoped(area("A1"), "10:00", None)).await;
    assert_eq!(late.machine_count, 2);
    assert_eq!(late.good_count, 80);
    // As known before the move was recorded, A1 held M1 alone at 10:00 too.
    let known = rollup(&pool, &scoped(area("A1"), "10:00", Some(before_move))).await;
    assert_eq!(known.machine_count, 1);
    assert_eq!(known.good_count, 60);

    // The tree now: S1 → A1 → {L1 → C1 [M1], L2 [M2]}, A2 empty; default → default → L3.
    let view = hierarchy_tree(&pool).await.unwrap();
    let ids =
        |nodes: &[TreeNode]| -> Vec<String> { nodes.iter().map(|n| n.node_id.clone()).collect() };
    assert_eq!(ids(&view.roots), ["S1", "default"]);
    let s1 = &view.roots[0];
    assert_eq!(ids(&s1.children), ["A1", "A2"]);
    assert_eq!(ids(&s1.children[0].children), ["L1", "L2"]);
    assert_eq!(s1.children[0].children[0].children[0].machines, ["M1"]);
    assert_eq!(s1.children[0].children[1].machines, ["M2"]);
    let default_site = &view.roots[1];
    assert!(default_site.implicit);
    let l3 = &default_site.children[0].children[0];
    assert_eq!((l3.node_id.as_str(), l3.implicit), ("L3", true));
    assert_eq!(l3.machines, ["M3"]);
    let m2 = view.machines.iter().find(|m| m.machine_id == "M2").unwrap();
    assert_eq!((m2.path.site.as_str(), m2.path.area.as_str()), ("S1", "A1"));
}

/// A holiday of a site (ADR 0060 amended) cuts the shifts of the lines under it and no
/// other line's; a plant-wide one cuts every line's; an unknown site is refused.
#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_site_holiday_cuts_the_shifts_of_its_lines_only(pool: PgPool) {
    use chrono::NaiveTime;
    use shopfloor_projections::query::calendar::{add_non_working, calendar_records};
    use shopfloor_projections::query::shift_plan::NonWorking;
    let f = Floor::new(&pool);
    plant(&f).await;
    project_all(&pool).await;
    let hm = |h: u32| NaiveTime::from_hms_opt(h, 0, 0).unwrap();
    for line in ["L1", "L2", "L3"] {
        let shift = ShiftDefinition {
            line: line.into(),
            shift_name: "early".into(),
            start_time: hm(8),
            end_time: hm(10),
            days: (1..=7).collect(),
        };
        replace_shifts(&pool, line, &[shift]).await.unwrap();
    }
    let day = at("00:00").date_naive();
    let holiday = |name: &str, from: u32, to: u32, site: Option<&str>| NonWorking {
        name: name.into(),
        from: day.and_time(hm(from)),
        to: day.and_time(hm(to)),
        site: site.map(Into::into),
    };
    let planned = |scope: Scope| {
        let pool = pool.clone();
        async move {
            rollup(&pool, &scoped(scope, "10:00", None))
                .await
                .planned_production_time_s
        }
    };
    // Before any holiday: two hours a machine.
    assert_eq!(planned(site("S1")).await, 2.0 * 7200.0);
    add_non_working(&pool, &holiday("S1 stock-take", 8, 9, Some("S1")), "sup")
        .await
        .unwrap();
    assert_eq!(planned(site("S1")).await, 2.0 * 3600.0);
    assert_eq!(planned(site("default")).await, 7200.0);
    // A plant-wide one (09:00–10:00) cuts every line, the site's lines too.
    add_non_working(&pool, &holiday("power cut", 9, 10, None), "sup")
        .await
        .unwrap();
    assert_eq!(planned(site("S1")).await, 0.0);
    assert_eq!(planned(site("default")).await, 3600.0);
    let err = add_non_working(&pool, &holiday("x", 8, 9, Some("S9")), "sup")
        .await
        .unwrap_err();
    assert!(
        matches!(err, QueryError::NotFound { kind: "site", .. }),
        "{err:?}"
    );
    // The records name the site of a site's holiday only.
    let (_, _, periods) = calendar_records(&pool).await.unwrap();
    let sites: Vec<Option<&str>> = periods.iter().map(|p| p.site.as_deref()).collect();
    assert_eq!(sites, [Some("S1"), None]);
}
