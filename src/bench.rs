//! `shopfloor bench …`: throughput and latency of the real paths, measured on
//! the real services. Progress goes to stderr; the last stdout line is one JSON
//! object with at least `ops`, `secs`, `ops_per_sec`, `p50_ms` and `p99_ms`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use shopfloor_commands::{workload, CommandContext, CommandService, Target};
use shopfloor_domain::values::MachineId;
use shopfloor_eventstore::{EventStore, Source};

/// Latency figures of a run.
pub struct Summary {
    pub ops: usize,
    pub secs: f64,
    pub latencies: Vec<Duration>,
}

impl Summary {
    fn percentile(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[i.min(self.latencies.len() - 1)].as_secs_f64() * 1000.0
    }

    pub fn json(mut self, extra: serde_json::Value) -> serde_json::Value {
        self.latencies.sort_unstable();
        let mut v = json!({
            "ops": self.ops,
            "secs": self.secs,
            "ops_per_sec": self.ops as f64 / self.secs,
            "p50_ms": self.percentile(0.50),
            "p90_ms": self.percentile(0.90),
            "p99_ms": self.percentile(0.99),
            "max_ms": self.percentile(1.0),
        });
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        v
    }
}

/// `bench commands`: C concurrent tasks send N machine commands round-robin over
/// A machines through the real command path (decide, append, durable).
pub async fn commands(
    store: EventStore,
    aggregates: usize,
    commands: usize,
    concurrency: usize,
    group_commit: bool,
) -> anyhow::Result<serde_json::Value> {
    let mut service = CommandService::new(store);
    if group_commit {
        service = service.with_group_commit(256);
    }
    let run_id = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let machines: Vec<MachineId> = (0..aggregates)
        .map(|i| MachineId::new(format!("bench-{run_id}-{i}")))
        .collect::<Result<_, _>>()
        .context("machine ids")?;
    eprintln!("registering {aggregates} machines…");
    let ctx = CommandContext::new("bench", Source::System);
    for m in &machines {
        let register = Target::Machine {
            machine_id: m.clone(),
            command: workload::register(m).context("machine")?,
        };
        service
            .execute(register, &ctx)
            .await
            .context("registering a machine")?;
    }
    eprintln!("sending {commands} commands with {concurrency} concurrent tasks…");
    let next = Arc::new(AtomicUsize::new(0));
    let machines = Arc::new(machines);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (service, next, machines, ctx) =
            (service.clone(), next.clone(), machines.clone(), ctx.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= commands {
                    return Ok::<_, anyhow::Error>(latencies);
                }
                let target = Target::Machine {
                    machine_id: machines[i % machines.len()].clone(),
                    command: workload::command(i),
                };
                let t0 = Instant::now();
                service
                    .execute(target, &ctx)
                    .await
                    .context("a command failed")?;
                latencies.push(t0.elapsed());
                if i % 5000 == 0 && i > 0 {
                    eprintln!("  {i} commands");
                }
            }
        }));
    }
    let mut latencies = Vec::with_capacity(commands);
    for t in tasks {
        latencies.extend(t.await.context("a bench task panicked")??);
    }
    let secs = started.elapsed().as_secs_f64();
    Ok(Summary {
        ops: latencies.len(),
        secs,
        latencies,
    }
    .json(json!({
        "bench": "commands",
        "aggregates": aggregates,
        "concurrency": concurrency,
        "group_commit": group_commit,
    })))
}
