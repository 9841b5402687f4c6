//! `shopfloor bench alerts`: N machines with R `machine_down` rules each (webhook channels to
//! a receiver in this process), the real evaluator and delivery worker, under a steady load
//! of machine commands through the same writer; then every machine goes down with a stop
//! already past every threshold. Measures, per alert, the time from the commit of the
//! triggering state event to the webhook's receipt, and counts missed and duplicated alerts.
//!
//! It runs in a database of its own (created beside `DATABASE_URL`'s, dropped at the end), so
//! the evaluator starts from an empty log and no running Shopfloor shares its leadership.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use shopfloor_alerts::outbox::{signature, SIGNATURE_HEADER};
use shopfloor_commands::{workload, CommandContext, CommandService, Target};
use shopfloor_domain::alert::{
    AlertKind, AlertRuleCommand, Channel, DefineRule, RuleSpec, Severity,
};
use shopfloor_domain::machine::{ChangeState, MachineCommand, MachineStatus};
use shopfloor_domain::values::{Actor, AlertRuleId, MachineId};
use shopfloor_eventstore::{EventStore, Source};
use sqlx::{Connection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::bench::Summary;

const SECRET: &str = "bench-secret";

/// Receipts: alert id → receipt times (more than one is a duplicate).
type Receipts = Arc<Mutex<HashMap<String, Vec<DateTime<Utc>>>>>;

/// The receipts, also after a receiver task panicked while holding them (the map
/// stays consistent: each insert is one push).
fn lock(r: &Receipts) -> std::sync::MutexGuard<'_, HashMap<String, Vec<DateTime<Utc>>>> {
    r.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn receive(State(r): State<Receipts>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let now = Utc::now();
    let ok = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|s| s == signature(SECRET, &body));
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    if !ok {
        return StatusCode::UNAUTHORIZED;
    }
    if v["stage"] == "raised" {
        if let Some(id) = v["alert_id"].as_str() {
            lock(&r).entry(id.to_string()).or_default().push(now);
        }
    }
    StatusCode::OK
}

/// A fresh database beside the configured one; returns its pool and name.
async fn fresh_database(settings: &crate::settings::Settings) -> anyhow::Result<(PgPool, String)> {
    let name = format!(
        "shopfloor_bench_alerts_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let mut admin = sqlx::PgConnection::connect(settings.database_url.as_str()).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await?;
    let mut url = settings.database_url.clone();
    url.set_path(&format!("/{name}"));
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(32)
        .connect(url.as_str())
        .await?;
    crate::app::migrate(&pool).await?;
    Ok((pool, name))
}

async fn drop_database(settings: &crate::settings::Settings, name: &str) -> anyhow::Result<()> {
    let mut admin = sqlx::PgConnection::connect(settings.database_url.as_str()).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    Ok(())
}

/// `bench alerts`.
pub async fn alerts(
    settings: &crate::settings::Settings,
    machines: usize,
    rules: usize,
    load_rate: f64,
) -> anyhow::Result<Value> {
    let (pool, db) = fresh_database(settings).await?;
    let result = run(pool.clone(), machines, rules, load_rate).await;
    pool.close().await;
    drop_database(settings, &db).await?;
    result
}

async fn run(pool: PgPool, machines: usize, rules: usize, load_rate: f64) -> anyhow::Result<Value> {
    let service = CommandService::new(EventStore::new(pool.clone())).with_group_commit(256);
    let receipts: Receipts = Arc::default();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(receipts.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let ctx = CommandContext::new("bench", Source::System);
    let mut ids = Vec::with_capacity(machines);
    for i in 0..machines {
        let m = MachineId::new(format!("AB-{i}")).context("machine id")?;
        let command = workload::register(&m).context("machine")?;
        service
            .execute(
                Target::Machine {
                    machine_id: m.clone(),
                    command,
                },
                &ctx,
            )
            .await?;
        for r in 0..rules {
            let rule_id = AlertRuleId::new(format!("AB-{i}-R{r}")).context("rule id")?;
            let spec = RuleSpec {
                kind: AlertKind::MachineDown,
                machine_id: Some(m.clone()),
                line: None,
                after_minutes: (r + 1) as f64,
                severity: Severity::Critical,
                channels: vec![Channel::Webhook {
                    url: url.clone(),
                    secret: SECRET.into(),
                }],
                escalation: None,
                target: None,
                item_id: None,
                metric: None,
            };
            let command = AlertRuleCommand::DefineRule(DefineRule {
                rule_id: rule_id.clone(),
                spec,
                by: Actor::new("bench").context("actor")?,
                at: Utc::now(),
            });
            service
                .execute(Target::AlertRule { rule_id, command }, &ctx)
                .await?;
        }
        ids.push(m);
    }
    eprintln!(
        "alerts: {machines} machines, {} rules defined",
        machines * rules
    );

    let cancel = CancellationToken::new();
    let alert_settings = shopfloor_alerts::AlertSettings {
        poll: Duration::from_millis(100),
        ..shopfloor_alerts::AlertSettings::default()
    };
    let roles = tokio::spawn(shopfloor_alerts::run(
        service.clone(),
        alert_settings,
        cancel.clone(),
    ));
    // Let the evaluator read the definitions before the clock starts.
    let head: i64 = sqlx::query_scalar("SELECT COALESCE(max(position), 0) FROM events")
        .fetch_one(&pool)
        .await?;
    wait_for_checkpoint(&pool, head).await?;

    // The background load: machine commands (parts, states) at `load_rate` per second,
    // through the same writer, on every machine (none of them down, so they raise nothing).
    let load = tokio::spawn(background_load(
        service.clone(),
        ids.clone(),
        load_rate,
        cancel.clone(),
    ));

    // The triggers: every machine goes down, at a stop that began 10 minutes ago (past every
    // threshold), spread over ~10 s.
    let started = Instant::now();
    let gap = Duration::from_secs_f64(10.0 / machines.max(1) as f64);
    for (i, m) in ids.iter().enumerate() {
        let command = MachineCommand::ChangeState(ChangeState {
            state: MachineStatus::Down,
            reason: None,
            planned: Some(false),
            at: Utc::now() - chrono::TimeDelta::minutes(10),
        });
        service
            .execute(
                Target::Machine {
                    machine_id: m.clone(),
                    command,
                },
                &ctx,
            )
            .await?;
        tokio::time::sleep_until((started + gap * (i as u32 + 1)).into()).await;
    }
    let expected = machines * rules;
    let deadline = Instant::now() + Duration::from_secs(120);
    while lock(&receipts).len() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Time for duplicates to show, if any.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let secs = started.elapsed().as_secs_f64();
    cancel.cancel();
    let load_ops = load.await??;
    roles.await??;

    let causes: Vec<(String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT a.alert_id, e.recorded_at FROM alerts a JOIN events e \
         ON e.event_id = a.cause_event_id::uuid",
    )
    .fetch_all(&pool)
    .await?;
    // Where the time goes: trigger commit → raise commit → queued → delivered (p50, p99 ms).
    let stages: Vec<(String, Option<f64>, Option<f64>)> = sqlx::query_as(
        "WITH s AS (SELECT extract(epoch FROM a.raised_recorded - e.recorded_at) * 1000 AS raise, \
                 extract(epoch FROM d.created_at - a.raised_recorded) * 1000 AS queue, \
                 extract(epoch FROM d.delivered_at - d.created_at) * 1000 AS deliver \
           FROM alerts a JOIN events e ON e.event_id = a.cause_event_id::uuid \
           JOIN alert_deliveries d ON d.alert_id = a.alert_id AND d.stage = 'raised') \
         SELECT 'raise', percentile_cont(0.5) WITHIN GROUP (ORDER BY raise), \
                percentile_cont(0.99) WITHIN GROUP (ORDER BY raise) FROM s \
         UNION ALL SELECT 'queue', percentile_cont(0.5) WITHIN GROUP (ORDER BY queue), \
                percentile_cont(0.99) WITHIN GROUP (ORDER BY queue) FROM s \
         UNION ALL SELECT 'deliver', percentile_cont(0.5) WITHIN GROUP (ORDER BY deliver), \
                percentile_cont(0.99) WITHIN GROUP (ORDER BY deliver) FROM s",
    )
    .fetch_all(&pool)
    .await?;
    let stages: serde_json::Map<String, Value> = stages
        .into_iter()
        .map(|(k, p50, p99)| (k, json!({ "p50_ms": p50, "p99_ms": p99 })))
        .collect();
    let receipts = lock(&receipts).clone();
    let mut latencies = Vec::with_capacity(expected);
    for (alert, committed) in &causes {
        if let Some(first) = receipts.get(alert).and_then(|t| t.first()) {
            latencies.push((*first - *committed).to_std().unwrap_or_default());
        }
    }
    let duplicated: usize = receipts.values().map(|t| t.len().saturating_sub(1)).sum();
    let summary = Summary {
        ops: latencies.len(),
        secs,
        latencies,
    };
    Ok(summary.json(json!({
        "bench": "alerts",
        "machines": machines,
        "rules_per_machine": rules,
        "expected_alerts": expected,
        "raised_alerts": causes.len(),
        "delivered_alerts": receipts.len(),
        "missed": expected.saturating_sub(receipts.len()),
        "duplicated": duplicated,
        "background_commands": load_ops,
        "stages": stages,
        "background_rate": load_rate,
        "latency": "triggering state event's commit → webhook receipt",
    })))
}

async fn wait_for_checkpoint(pool: &PgPool, head: i64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let at: Option<i64> = sqlx::query_scalar(
            "SELECT position FROM process_checkpoints WHERE name = 'alert-evaluator'",
        )
        .fetch_optional(pool)
        .await?;
        if at.unwrap_or(0) >= head {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "the evaluator did not catch up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn background_load(
    service: CommandService,
    ids: Vec<MachineId>,
    rate: f64,
    cancel: CancellationToken,
) -> anyhow::Result<usize> {
    let ctx = CommandContext::new("bench-load", Source::Mqtt);
    let started = Instant::now();
    let mut sent = 0usize;
    let batch = 50usize;
    while !cancel.is_cancelled() {
        let items: Vec<_> = (0..batch)
            .map(|k| {
                let i = sent + k;
                let m = &ids[i % ids.len()];
                shopfloor_commands::BatchItem::new(
                    Target::Machine {
                        machine_id: m.clone(),
                        command: parts_only(workload::command(i)),
                    },
                    ctx.clone(),
                )
            })
            .collect();
        let _ = service
            .execute_batch(items, shopfloor_commands::Atomicity::EachOnItsOwn)
            .await;
        sent += batch;
        let due = started + Duration::from_secs_f64(sent as f64 / rate.max(1.0));
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep_until(due.into()) => {}
        }
    }
    Ok(sent)
}

/// The workload's command, with state changes turned into parts reports: the load must not
/// bring a machine back up (that would resolve its alerts mid-measurement).
fn parts_only(command: MachineCommand) -> MachineCommand {
    match command {
        MachineCommand::ChangeState(s) => {
            MachineCommand::RecordParts(shopfloor_domain::machine::RecordParts {
                good: 1,
                scrap: 0,
                order_id: None,
                at: s.at,
            })
        }
        other => other,
    }
}
