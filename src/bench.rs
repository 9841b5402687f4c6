//! `shopfloor bench …`: throughput and latency of the real paths, measured on
//! the real services. Progress goes to stderr; the last stdout line is one JSON
//! object with at least `ops`, `secs`, `ops_per_sec`, `p50_ms` and `p99_ms`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{TimeZone, Utc};
use serde_json::json;
use shopfloor_commands::{CommandContext, CommandService, Target};
use shopfloor_domain::machine::{
    ChangeState, MachineCommand, MachineStatus, RecordParts, RegisterMachine,
};
use shopfloor_domain::values::{CycleTime, LineId, MachineId, MachineType};
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

/// The machine command of the `i`-th operation of the workload: a state change
/// every fourth command, parts produced otherwise (as a busy line reports).
pub fn workload_command(machine: &MachineId, i: usize) -> Target {
    let at = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
        + chrono::Duration::seconds(i as i64);
    let command = if i % 4 == 0 {
        let state = if (i / 4) % 2 == 0 {
            MachineStatus::Running
        } else {
            MachineStatus::Idle
        };
        MachineCommand::ChangeState(ChangeState {
            state,
            reason: None,
            planned: None,
            at,
        })
    } else {
        MachineCommand::RecordParts(RecordParts {
            good: 1,
            scrap: (i % 10 == 0) as u64,
            order_id: None,
            at,
        })
    };
    Target::Machine {
        machine_id: machine.clone(),
        command,
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
            command: MachineCommand::RegisterMachine(RegisterMachine {
                machine_id: m.clone(),
                machine_type: MachineType::new("press").context("type")?,
                line: LineId::new("bench").context("line")?,
                ideal_cycle_time_s: CycleTime::new(2.0).context("cycle time")?,
                at: Utc::now(),
            }),
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
                let target = workload_command(&machines[i % machines.len()], i);
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
