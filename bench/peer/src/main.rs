//! Peer benchmark: `cqrs-es` 0.5 + `postgres-es` 0.5 (its plain event-store mode,
//! the one that is correct; its snapshot modes double-apply events) on the same
//! machine aggregate and workload as `shopfloor bench commands`.
//!
//! Usage: `cargo run --release --manifest-path bench/peer/Cargo.toml -- A N C`
//! (defaults 1000 20000 32). It uses a scratch database `shopfloor_peer_bench` on
//! the server of `DATABASE_URL`, dropped and created anew each run, and prints one
//! JSON line last, like the `shopfloor bench` subcommands.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use cqrs_es::AggregateError;
use shopfloor_commands::workload;
use shopfloor_domain::values::MachineId;
use shopfloor_domain::Machine;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection};

const SCHEMA: &str = "
CREATE TABLE events (
    aggregate_type text NOT NULL, aggregate_id text NOT NULL,
    sequence bigint CHECK (sequence >= 0) NOT NULL,
    event_type text NOT NULL, event_version text NOT NULL,
    payload json NOT NULL, metadata json NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence));
CREATE TABLE snapshots (
    aggregate_type text NOT NULL, aggregate_id text NOT NULL,
    last_sequence bigint CHECK (last_sequence >= 0) NOT NULL,
    current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
    payload json NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence));";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse()).collect::<Result<_, _>>()?;
    let aggregates = args.first().copied().unwrap_or(1000);
    let commands = args.get(1).copied().unwrap_or(20_000);
    let concurrency = args.get(2).copied().unwrap_or(32);
    let server = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/shopfloor".into());
    let base = server.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap_or(server.clone());

    let mut admin = PgConnection::connect(&server).await.context("connecting")?;
    sqlx::query("DROP DATABASE IF EXISTS shopfloor_peer_bench WITH (FORCE)").execute(&mut admin).await?;
    sqlx::query("CREATE DATABASE shopfloor_peer_bench").execute(&mut admin).await?;
    let pool = PgPoolOptions::new()
        .max_connections(32)
        .connect(&format!("{base}/shopfloor_peer_bench"))
        .await?;
    sqlx::raw_sql(SCHEMA).execute(&pool).await?;

    let cqrs = Arc::new(postgres_es::postgres_cqrs::<Machine>(pool, vec![], ()));
    let machines: Vec<MachineId> = (0..aggregates)
        .map(|i| MachineId::new(format!("peer-{i}")))
        .collect::<Result<_, _>>()?;
    eprintln!("registering {aggregates} machines…");
    for m in &machines {
        cqrs.execute(m.as_str(), workload::register(m)?).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    eprintln!("sending {commands} commands with {concurrency} concurrent tasks…");
    let next = Arc::new(AtomicUsize::new(0));
    let conflicts = Arc::new(AtomicUsize::new(0));
    let machines = Arc::new(machines);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (cqrs, next, machines, conflicts) = (cqrs.clone(), next.clone(), machines.clone(), conflicts.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= commands {
                    return Ok::<_, anyhow::Error>(latencies);
                }
                let machine = &machines[i % machines.len()];
                let t0 = Instant::now();
                loop {
                    // cqrs-es does not retry a conflict: the caller decides (we retry).
                    match cqrs.execute(machine.as_str(), workload::command(i)).await {
                        Ok(()) => break,
                        Err(AggregateError::AggregateConflict) => {
                            conflicts.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => return Err(anyhow::anyhow!("{e}")),
                    }
                }
                latencies.push(t0.elapsed());
            }
        }));
    }
    let mut latencies = Vec::with_capacity(commands);
    for t in tasks {
        latencies.extend(t.await??);
    }
    let secs = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| {
        let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies[i.min(latencies.len() - 1)].as_secs_f64() * 1000.0
    };
    println!(
        "{}",
        serde_json::json!({
            "bench": "commands-postgres-es",
            "ops": latencies.len(), "secs": secs, "ops_per_sec": latencies.len() as f64 / secs,
            "p50_ms": pct(0.5), "p90_ms": pct(0.9), "p99_ms": pct(0.99), "max_ms": pct(1.0),
            "aggregates": aggregates, "concurrency": concurrency,
            "conflicts_retried": conflicts.load(Ordering::Relaxed),
        })
    );
    Ok(())
}
