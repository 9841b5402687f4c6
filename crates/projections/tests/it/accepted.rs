//! Issue 16, item 6: anything the domain accepts fits every read model.
//!
//! A property test: arbitrary commands for machines and production orders, with
//! raw numbers of every size (counts up to `u64::MAX`, order quantities of 2^63,
//! cycle times from subnormal to 1e300), are made into domain values (what the edge
//! does; a value refused there is a 400 and never a command), decided by the
//! aggregates, and the events they produce are appended to the real event store.
//! Every projection then catches up through its public entry point, and a replay
//! rebuilds them all: no event may be parked.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use rust_decimal::Decimal;
use shopfloor_domain::machine::{
    ChangeIdealCycleTime, ChangeState, MachineCommand, MachineStatus, RecordParts, RegisterMachine,
};
use shopfloor_domain::order::{
    AssignOrder, BomLine, CancelOrder, CompleteOrder, CreateOrder, OrderCommand, RecordInspection,
    ReportProduction, StartOrder,
};
use shopfloor_domain::values::*;
use shopfloor_domain::{Decide, Machine, ProductionOrder, MAX_PARTS_PER_REPORT};
use shopfloor_eventstore::repository::encode_event;
use shopfloor_eventstore::{EventMetadata, EventStore, ExpectedVersion, NewEvent, StreamRef};
use shopfloor_projections::projection::apply_from_store;
use shopfloor_projections::Projection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};
use uuid::Uuid;

/// A command as a client could send it: raw numbers, small ids.
#[derive(Debug, Clone)]
enum Raw {
    Register {
        m: u8,
        cycle: f64,
        at: i64,
    },
    ChangeCycle {
        m: u8,
        cycle: f64,
        at: i64,
    },
    State {
        m: u8,
        state: u8,
        at: i64,
    },
    Parts {
        m: u8,
        good: u64,
        scrap: u64,
        at: i64,
    },
    Create {
        o: u8,
        quantity: u64,
        bom: Option<(i64, u32)>,
        at: i64,
    },
    Assign {
        o: u8,
        m: u8,
        at: i64,
    },
    Start {
        o: u8,
        at: i64,
    },
    Report {
        o: u8,
        m: u8,
        good: u64,
        scrap: u64,
        at: i64,
    },
    Inspect {
        o: u8,
        sample: u64,
        defects: u64,
        at: i64,
    },
    Complete {
        o: u8,
        at: i64,
    },
    Cancel {
        o: u8,
        at: i64,
    },
}

fn count() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => 0..1_000_u64,
        2 => prop::sample::select(vec![
            MAX_PARTS_PER_REPORT - 1,
            MAX_PARTS_PER_REPORT,
            MAX_PARTS_PER_REPORT + 1,
            MAX_ORDER_QUANTITY,
            MAX_ORDER_QUANTITY + 1,
            i64::MAX as u64,
            9_223_372_036_854_775_808,
            u64::MAX,
        ]),
        1 => any::<u64>(),
    ]
}

fn cycle() -> impl Strategy<Value = f64> {
    prop_oneof![
        3 => 0.0001..86_400.0_f64,
        2 => prop::sample::select(vec![
            1e16, 9.5e9, 86_400.0, 86_400.5, 1e-4, 9e-5, 5e-324, 1e300, f64::MAX, 0.0, -1.0,
        ]),
        1 => any::<f64>(),
    ]
}

/// Floor time: nanoseconds after 2024-01-01, over about 3 years.
fn at() -> impl Strategy<Value = i64> {
    0..100_000_000_000_000_000_i64
}

fn raw() -> impl Strategy<Value = Raw> {
    let m = 0..3_u8;
    let o = 0..3_u8;
    prop_oneof![
        (m.clone(), cycle(), at()).prop_map(|(m, cycle, at)| Raw::Register { m, cycle, at }),
        (m.clone(), cycle(), at()).prop_map(|(m, cycle, at)| Raw::ChangeCycle { m, cycle, at }),
        (m.clone(), 0..3_u8, at()).prop_map(|(m, state, at)| Raw::State { m, state, at }),
        (m.clone(), count(), count(), at()).prop_map(|(m, good, scrap, at)| Raw::Parts {
            m,
            good,
            scrap,
            at
        }),
        (
            o.clone(),
            count(),
            prop::option::of((any::<i64>(), 0..20_u32)),
            at()
        )
            .prop_map(|(o, quantity, bom, at)| Raw::Create {
                o,
                quantity,
                bom,
                at
            }),
        (o.clone(), m.clone(), at()).prop_map(|(o, m, at)| Raw::Assign { o, m, at }),
        (o.clone(), at()).prop_map(|(o, at)| Raw::Start { o, at }),
        (o.clone(), m, count(), count(), at()).prop_map(|(o, m, good, scrap, at)| Raw::Report {
            o,
            m,
            good,
            scrap,
            at
        }),
        (o.clone(), count(), count(), at()).prop_map(|(o, sample, defects, at)| Raw::Inspect {
            o,
            sample,
            defects,
            at
        }),
        (o.clone(), at()).prop_map(|(o, at)| Raw::Complete { o, at }),
        (o, at()).prop_map(|(o, at)| Raw::Cancel { o, at }),
    ]
}

fn time(nanos: i64) -> DateTime<Utc> {
    let base = DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
        .expect("time")
        .with_timezone(&Utc);
    base + Duration::nanoseconds(nanos)
}

/// What the edge makes of a raw command: `None` where a value is refused (400).
fn machine_command(raw: &Raw, case: u64) -> Option<(String, MachineCommand)> {
    let id = |m: &u8| format!("M{case}-{m}");
    Some(match raw {
        Raw::Register { m, cycle, at } => (
            id(m),
            MachineCommand::RegisterMachine(RegisterMachine {
                machine_id: MachineId::new(id(m)).ok()?,
                machine_type: MachineType::new("press").ok()?,
                line: LineId::new("L1").ok()?,
                ideal_cycle_time_s: CycleTime::new(*cycle).ok()?,
                at: time(*at),
            }),
        ),
        Raw::ChangeCycle { m, cycle, at } => (
            id(m),
            MachineCommand::ChangeIdealCycleTime(ChangeIdealCycleTime {
                ideal_cycle_time_s: CycleTime::new(*cycle).ok()?,
                effective_from: time(*at),
                at: time(*at),
            }),
        ),
        Raw::State { m, state, at } => (
            id(m),
            MachineCommand::ChangeState(ChangeState {
                state: [
                    MachineStatus::Running,
                    MachineStatus::Idle,
                    MachineStatus::Down,
                ][usize::from(*state) % 3],
                reason: None,
                planned: None,
                at: time(*at),
            }),
        ),
        Raw::Parts { m, good, scrap, at } => (
            id(m),
            MachineCommand::RecordParts(RecordParts {
                good: *good,
                scrap: *scrap,
                order_id: None,
                at: time(*at),
            }),
        ),
        _ => return None,
    })
}

fn order_command(raw: &Raw, case: u64) -> Option<(String, OrderCommand)> {
    let id = |o: &u8| format!("O{case}-{o}");
    let machine = |m: &u8| MachineId::new(format!("M{case}-{m}")).ok();
    Some(match raw {
        Raw::Create {
            o,
            quantity,
            bom,
            at,
        } => {
            let bom = match bom {
                Some((mantissa, scale)) => vec![BomLine {
                    item_id: ItemId::new("RAW-1").ok()?,
                    qty_per_unit: Quantity::new(Decimal::new(*mantissa, *scale)).ok()?,
                    lots: Vec::new(),
                }],
                None => vec![],
            };
            (
                id(o),
                OrderCommand::CreateOrder(CreateOrder {
                    order_id: OrderId::new(id(o)).ok()?,
                    product_id: ProductId::new("P").ok()?,
                    quantity: OrderQuantity::new(*quantity).ok()?,
                    bom,
                    input_location: None,
                    output_location: None,
                    at: time(*at),
                }),
            )
        }
        Raw::Assign { o, m, at } => (
            id(o),
            OrderCommand::AssignOrder(AssignOrder {
                operator_ids: None,
                machine_id: machine(m)?,
                at: time(*at),
            }),
        ),
        Raw::Start { o, at } => (
            id(o),
            OrderCommand::StartOrder(StartOrder { at: time(*at) }),
        ),
        Raw::Report {
            o,
            m,
            good,
            scrap,
            at,
        } => (
            id(o),
            OrderCommand::ReportProduction(ReportProduction {
                machine_id: machine(m)?,
                good: *good,
                scrap: *scrap,
                at: time(*at),
            }),
        ),
        Raw::Inspect {
            o,
            sample,
            defects,
            at,
        } => (
            id(o),
            OrderCommand::RecordInspection(RecordInspection {
                inspection_id: InspectionId::new(format!("I{at}")).ok()?,
                sample_size: *sample,
                defects: *defects,
                passed: *defects == 0,
                inspector: Actor::new("qa").ok()?,
                notes: None,
                measurements: Vec::new(),
                at: time(*at),
            }),
        ),
        Raw::Complete { o, at } => (
            id(o),
            OrderCommand::CompleteOrder(CompleteOrder { at: time(*at) }),
        ),
        Raw::Cancel { o, at } => (
            id(o),
            OrderCommand::CancelOrder(CancelOrder {
                reason: None,
                at: time(*at),
            }),
        ),
        _ => return None,
    })
}

async fn append<E: cqrs_es::DomainEvent>(
    store: &EventStore,
    stream_type: &str,
    id: &str,
    events: &[E],
) {
    if events.is_empty() {
        return;
    }
    let new = events
        .iter()
        .map(|e| {
            let (event_type, schema_version, payload) = encode_event(e).expect("encode");
            NewEvent {
                event_id: Uuid::new_v4(),
                event_type,
                schema_version,
                payload,
                metadata: EventMetadata::default(),
            }
        })
        .collect();
    store
        .append(&StreamRef::new(stream_type, id), ExpectedVersion::Any, new)
        .await
        .expect("append");
}

/// Decides every command the edge lets through and appends what was accepted;
/// the number of events appended.
async fn decide_and_append(store: &EventStore, commands: &[Raw], case: u64) -> usize {
    let mut machines: HashMap<String, Machine> = HashMap::new();
    let mut orders: HashMap<String, ProductionOrder> = HashMap::new();
    let mut appended = 0;
    for raw in commands {
        if let Some((id, cmd)) = machine_command(raw, case) {
            if let Ok(events) = machines.entry(id.clone()).or_default().execute(cmd) {
                append(store, "machine", &id, &events).await;
                appended += events.len();
            }
        } else if let Some((id, cmd)) = order_command(raw, case) {
            if let Ok(events) = orders.entry(id.clone()).or_default().execute(cmd) {
                append(store, "production_order", &id, &events).await;
                appended += events.len();
            }
        }
    }
    appended
}

async fn parked(pool: &PgPool) -> Vec<(String, String, String)> {
    sqlx::query_as("SELECT projection, event_type, error FROM projection_parked ORDER BY position")
        .fetch_all(pool)
        .await
        .expect("parked")
}

fn server() -> PgConnectOptions {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/shopfloor".into());
    url.parse::<PgConnectOptions>()
        .expect("DATABASE_URL")
        .database("postgres")
        .disable_statement_logging()
}

#[test]
fn any_command_the_domain_accepts_projects_without_parking() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let name = format!("accepted_{}", Uuid::new_v4().simple());
    let (admin, pool) = rt.block_on(async {
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(server())
            .await
            .expect("PostgreSQL");
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&admin)
            .await
            .expect("create database");
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect_with(server().database(&name))
            .await
            .expect("connect");
        shopfloor_eventstore::MIGRATOR
            .run(&pool)
            .await
            .expect("migrate");
        (admin, pool)
    });
    let store = EventStore::new(pool.clone());
    let cases = std::env::var("ACCEPTED_PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(24);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 100,
        ..Config::default()
    });
    let case = std::sync::atomic::AtomicU64::new(0);
    let appended = std::sync::atomic::AtomicUsize::new(0);
    let result = runner.run(&prop::collection::vec(raw(), 1..60), |commands| {
        let case = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        rt.block_on(async {
            // Each case (and each shrinking step) looks only at what it parks.
            sqlx::query("DELETE FROM projection_parked")
                .execute(&pool)
                .await
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let n = decide_and_append(&store, &commands, case).await;
            appended.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            for p in Projection::ALL {
                apply_from_store(&pool, p)
                    .await
                    .map_err(|e| TestCaseError::fail(format!("{p:?}: {e}")))?;
            }
            let parked = parked(&pool).await;
            if parked.is_empty() {
                Ok(())
            } else {
                Err(TestCaseError::fail(format!("parked: {parked:?}")))
            }
        })
    });
    let replayed = rt.block_on(shopfloor_projections::replay(&pool, None, |_, _| {}));
    // The property means something only if commands got through: orders made,
    // parts counted.
    let (orders, parts): (i64, i64) = rt
        .block_on(
            sqlx::query_as(
                "SELECT (SELECT count(*) FROM rm_orders), (SELECT count(*) FROM rm_parts_facts)",
            )
            .fetch_one(&pool),
        )
        .expect("counts");
    rt.block_on(async {
        pool.close().await;
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .execute(&admin)
            .await;
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    for r in replayed.expect("replay") {
        assert_eq!(r.parked, 0, "{r:?}");
    }
    let appended = appended.into_inner();
    assert!(
        appended > 50 && orders > 0 && parts > 0,
        "too little got through: {appended} events, {orders} orders, {parts} parts facts"
    );
}
