//! `bench opcua`: OPC UA data changes through to durable telemetry (issue 21).
//!
//! An in-process OPC UA server (`shopfloor_opcua::sim`, async-opcua's server)
//! changes each of N Double nodes every period; the real OPC UA ingest
//! (`run_opcua`: client, mapper, the ingest's engine and telemetry store) is
//! subscribed to all of them at that sampling and publishing interval. Every change
//! the server makes has its own source timestamp, so each is one telemetry row:
//! lost = changes made − rows stored.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use shopfloor_commands::CommandService;
use shopfloor_eventstore::EventStore;
use shopfloor_ingest::Mapping;
use shopfloor_opcua::sim::SimServer;
use shopfloor_opcua::{run_opcua, Progress};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::bench::{register_machines, run_id};

/// What one run is asked to do.
#[derive(Debug, Clone, Copy)]
pub struct OpcuaBench {
    /// Monitored items (server nodes).
    pub nodes: usize,
    /// Machines the nodes are spread over (sensors `s{i}`).
    pub machines: usize,
    /// How often the server changes every node, and the sampling and publishing
    /// interval.
    pub period_ms: u64,
    /// How long the server changes them.
    pub secs: f64,
}

/// Telemetry rows of the bench's machines.
async fn stored(pool: &sqlx::PgPool, like: &str) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM telemetry WHERE machine_id LIKE $1")
            .bind(like)
            .fetch_one(pool)
            .await?,
    )
}

/// Waits until `f` holds for the ingest's progress, or fails after `limit`.
async fn progress_until(
    rx: &mut watch::Receiver<Progress>,
    limit: Duration,
    what: &str,
    f: impl Fn(&Progress) -> bool,
) -> anyhow::Result<()> {
    let waited = tokio::time::timeout(limit, rx.wait_for(|p| f(p)))
        .await
        .map(|r| r.is_ok());
    match waited {
        Ok(true) => Ok(()),
        Ok(false) => anyhow::bail!("the OPC UA ingest stopped while waiting for {what}"),
        Err(_) => anyhow::bail!("timed out waiting for {what}: {:?}", *rx.borrow()),
    }
}

/// `bench opcua`: see the module documentation.
pub async fn opcua(
    settings: &crate::settings::Settings,
    pool: sqlx::PgPool,
    run: OpcuaBench,
) -> anyhow::Result<serde_json::Value> {
    let id = run_id();
    let ns = format!("{}-bench{id}", settings.namespace);
    let service = CommandService::new(EventStore::new(pool.clone())).with_group_commit(256);
    let prefix = format!("ob{id}");
    let machines: Vec<String> = register_machines(&service, &prefix, run.machines.max(1))
        .await?
        .iter()
        .map(|m| m.as_str().to_string())
        .collect();
    let like = format!("{prefix}-%");
    let pki = tempfile::tempdir().context("a PKI directory")?;
    let server = SimServer::start(run.nodes, &pki.path().join("server"))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let config = server.config(&machines, run.period_ms, &pki.path().join("client"));
    let mapping = Mapping::from_json(
        r#"{"defaults": {"no_signal_timeout_s": 0, "predictive": {"enabled": false}}}"#,
    )?;
    let cancel = CancellationToken::new();
    let (progress_tx, mut progress) = watch::channel(Progress::default());
    let ingest = tokio::spawn({
        let (cancel, ns) = (cancel.clone(), ns.clone());
        async move {
            run_opcua(
                service,
                &ns,
                Arc::new(mapping),
                Arc::new(config),
                progress_tx,
                cancel,
            )
            .await
        }
    });

    // The initial values: one notification per item once the subscription stands.
    let subscribed = Instant::now();
    let n = run.nodes as u64;
    progress_until(
        &mut progress,
        Duration::from_secs(120),
        "the initial values",
        |p| p.events >= n && p.samples >= n,
    )
    .await?;
    eprintln!(
        "opcua: {} initial values durable {:.1} s after start",
        run.nodes,
        subscribed.elapsed().as_secs_f64()
    );
    let before = stored(&pool, &like).await?;
    let (events_before, samples_before) = {
        let p = progress.borrow();
        (p.events, p.samples)
    };
    let changes_before = server.changes();

    // The load: every node changed every period, for `secs`.
    let stop = CancellationToken::new();
    let started = Instant::now();
    let churn = server.churn(Duration::from_millis(run.period_ms), stop.clone());
    tokio::time::sleep(Duration::from_secs_f64(run.secs)).await;
    stop.cancel();
    let _ = churn.await;
    let churn_secs = started.elapsed().as_secs_f64();
    let changes = server.changes() - changes_before;
    let received_in_window = progress.borrow().events - events_before;
    let durable_in_window = progress.borrow().samples - samples_before;
    eprintln!(
        "opcua: {changes} changes made in {churn_secs:.1} s; {received_in_window} received, \
         {durable_in_window} durable meanwhile; draining…"
    );

    // Drain: until every change is durable, or nothing has moved for 15 s.
    let target = samples_before + changes;
    let mut last = progress.borrow().samples;
    let mut last_move = Instant::now();
    while last < target && last_move.elapsed() < Duration::from_secs(15) {
        let _ = tokio::time::timeout(Duration::from_millis(500), progress.changed()).await;
        let now = progress.borrow().samples;
        if now > last {
            last = now;
            last_move = Instant::now();
        }
    }
    let all_durable_secs = last_move.duration_since(started).as_secs_f64();
    let final_progress = progress.borrow().clone();
    cancel.cancel();
    ingest.await??;
    server.stop().await;
    let durable = stored(&pool, &like).await? - before;
    let lost = changes as i64 - durable;
    eprintln!(
        "opcua: {durable} of {changes} durable {all_durable_secs:.1} s after the load began; lost {lost}"
    );
    // No per-sample latency is measured: p50/p99 are null; `drain_secs` is how far
    // behind the load the durable samples were when it stopped.
    Ok(json!({
        "bench": "opcua",
        "ops": durable,
        "secs": all_durable_secs,
        "ops_per_sec": durable as f64 / all_durable_secs,
        "p50_ms": null,
        "p99_ms": null,
        "monitored_items": run.nodes,
        "machines": run.machines,
        "period_ms": run.period_ms,
        "load_secs": churn_secs,
        "changes_made": changes,
        "changes_offered_per_sec": changes as f64 / churn_secs,
        "data_changes_per_sec": received_in_window as f64 / churn_secs,
        "durable_samples_per_sec_during_load": durable_in_window as f64 / churn_secs,
        "durable_samples_per_sec": durable as f64 / all_durable_secs,
        "drain_secs": all_durable_secs - churn_secs,
        "batches": final_progress.batches,
        "publish_gaps": final_progress.gaps,
        "lost": lost,
    }))
}
