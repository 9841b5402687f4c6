//! The batch engine: a batch of MQTT messages in, its commands through the one
//! writer, its own rows in one short transaction out.
//!
//! For each batch (ADR 0007, ADR 0035):
//! 1. **Decode** every message (JSON or Sparkplug B) into observations per machine,
//!    or rejections.
//! 2. **Plan** ([`crate::plan`], pure): filter each machine's observations on a
//!    staged copy of its [`MachineState`] — refuse future timestamps and impossible
//!    values, debounce, turn totals into deltas, learn baselines and raise
//!    predictive alerts — into machine commands with ids derived from the
//!    message, telemetry samples and rejections. Unknown (unregistered) machines
//!    are refused.
//! 3. **Commands** go through [`CommandService::execute_batch`], each on its own:
//!    per-stream turns, cached aggregates, group commit — the same path as every
//!    HTTP command. A redelivered message's commands append nothing (their event
//!    ids exist). A domain refusal sets its message aside.
//! 4. **The ingest's own rows** — telemetry samples and rollups, rejected
//!    messages, the staged machine states — commit in one transaction of their
//!    own, which never takes the event log's head lock: a telemetry-only batch
//!    never waits on the log.
//! 5. Only then does the caller acknowledge the messages. If step 3 or 4 fails,
//!    the staged state is dropped and the same batch is processed again: its
//!    commands are found done, its samples are skipped (they are keyed), so
//!    nothing is lost or applied twice.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use shopfloor_commands::{Atomicity, CommandError, CommandService};
use shopfloor_domain::StreamType;
use sqlx::PgPool;
use tracing::{instrument, warn};

use crate::config::Mapping;
use crate::error::IngestError;
use crate::filter::MachineState;
use crate::json;
use crate::message::{Decoded, Incoming};
use crate::plan::{count_rejection, reject_row, BatchPlan, Planner};
use crate::sparkplug::{self, Sessions};
use crate::store;

/// What one batch did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchReport {
    pub messages: usize,
    /// Machine commands that appended events.
    pub events: usize,
    /// Commands found done before (a redelivered message).
    pub duplicates: usize,
    pub samples: u64,
    pub rejected: usize,
    /// Predictive maintenance tasks scheduled.
    pub tasks: usize,
    /// Sparkplug nodes to ask for a rebirth (group, edge).
    pub rebirths: Vec<(String, String)>,
}

/// The engine's in-memory state. One per ingest process (it owns its namespace's
/// machine states while it runs).
pub struct Engine {
    commands: CommandService,
    pool: PgPool,
    namespace: String,
    mapping: Arc<Mapping>,
    machines: HashMap<String, MachineState>,
    /// Machines known to be registered (a registration is never undone).
    known: HashSet<String>,
    sessions: Sessions,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("namespace", &self.namespace)
            .field("machines", &self.machines.len())
            .finish()
    }
}

impl Engine {
    /// Loads the stored machine states of the namespace. Machines get the full
    /// no-signal timeout again from `now` (the ingest itself was away).
    #[instrument(skip(commands, mapping), err)]
    pub async fn load(
        commands: CommandService,
        namespace: &str,
        mapping: Arc<Mapping>,
        now: DateTime<Utc>,
    ) -> Result<Self, IngestError> {
        let pool = commands.store().pool().clone();
        let mut machines = HashMap::new();
        for (id, mut state) in store::load_machine_states(&pool, namespace).await? {
            state.last_seen = state.last_seen.map(|t| t.max(now));
            if let Some(p) = state.pending.as_mut() {
                p.arrived = p.arrived.max(now);
            }
            machines.insert(id, state);
        }
        Ok(Self {
            commands,
            pool,
            namespace: namespace.to_string(),
            mapping,
            machines,
            known: HashSet::new(),
            sessions: Sessions::default(),
        })
    }

    /// Records a message that cannot be processed (its batch keeps failing) as
    /// rejected, on its own, so that it can be acknowledged.
    pub async fn set_aside(&self, message: &Incoming, error: &str) -> Result<(), IngestError> {
        count_rejection("internal");
        let mut tx = self.pool.begin().await?;
        store::insert_rejected(
            &mut tx,
            &[reject_row(
                message,
                format!("could not be processed: {error}"),
                false,
            )],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The ingest's state of a machine (for tests and diagnostics).
    pub fn machine_state(&self, machine_id: &str) -> Option<&MachineState> {
        self.machines.get(machine_id)
    }

    fn is_sparkplug_group(&self, group: &str) -> bool {
        self.mapping.sparkplug.enabled
            && (group == self.namespace || self.mapping.sparkplug.groups.iter().any(|g| g == group))
    }

    /// Decodes one message (JSON or Sparkplug B).
    fn decode(&self, message: &Incoming, sessions: &mut Sessions) -> Decoded {
        if let Some((topic_id, kind)) = json::parse_topic(&self.namespace, &message.topic) {
            metrics::counter!("shopfloor_ingest_messages_total", "format" => "json").increment(1);
            json::decode(
                &self.mapping,
                topic_id,
                kind,
                &message.payload,
                message.received_at,
            )
        } else if let Some(topic) =
            sparkplug::parse_topic(&message.topic).filter(|t| self.is_sparkplug_group(t.group))
        {
            metrics::counter!("shopfloor_ingest_messages_total", "format" => "sparkplug")
                .increment(1);
            sessions.decode(
                &self.mapping.sparkplug,
                &topic,
                &message.payload,
                message.received_at,
            )
        } else {
            metrics::counter!("shopfloor_ingest_messages_total", "format" => "unknown")
                .increment(1);
            Decoded::rejected("unknown topic")
        }
    }

    /// Adds the registered machines among `decoded`'s to [`Self::known`], asking
    /// the store about those not known yet.
    async fn learn_machines(&mut self, decoded: &[Decoded]) -> Result<(), IngestError> {
        let mut unknown: Vec<&str> = decoded
            .iter()
            .flat_map(|d| d.machines.iter().map(|m| m.machine_id.as_str()))
            .filter(|id| !self.known.contains(*id))
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        unknown.sort_unstable();
        unknown.dedup();
        let found = self
            .commands
            .store()
            .existing_streams(StreamType::Machine.as_str(), &unknown)
            .await?;
        self.known.extend(found);
        Ok(())
    }

    /// Processes a batch (possibly empty) at wall-clock `now`; with `timers`, also
    /// runs every machine's debounce and no-signal timers. Returns an error, having
    /// kept nothing of its own state, when a write failed: process the same batch
    /// again.
    #[instrument(skip_all, fields(messages = batch.len()), err)]
    pub async fn process(
        &mut self,
        batch: &[Incoming],
        now: DateTime<Utc>,
        timers: bool,
    ) -> Result<BatchReport, IngestError> {
        let mut sessions = self.sessions.clone();
        let decoded: Vec<Decoded> = batch
            .iter()
            .map(|m| self.decode(m, &mut sessions))
            .collect();
        self.run_batch(batch, decoded, sessions, now, timers).await
    }

    /// Processes a batch already decoded by another source (OPC UA: `decoded[i]`
    /// is what `batch[i]` says), through the same planner, writer and store as MQTT
    /// messages. `batch[i]` names the message (its id, a topic-like source, the raw
    /// value kept with a rejection). Returns an error, having kept nothing of its
    /// own state, when a write failed: process the same batch again.
    #[instrument(skip_all, fields(messages = batch.len()), err)]
    pub async fn process_decoded(
        &mut self,
        batch: &[Incoming],
        decoded: Vec<Decoded>,
        now: DateTime<Utc>,
        timers: bool,
    ) -> Result<BatchReport, IngestError> {
        let sessions = self.sessions.clone();
        self.run_batch(batch, decoded, sessions, now, timers).await
    }

    /// Plans and carries out a decoded batch; `sessions` (the Sparkplug sessions
    /// after decoding) are kept only when the batch is done.
    async fn run_batch(
        &mut self,
        batch: &[Incoming],
        decoded: Vec<Decoded>,
        mut sessions: Sessions,
        now: DateTime<Utc>,
        timers: bool,
    ) -> Result<BatchReport, IngestError> {
        let started = Instant::now();
        self.learn_machines(&decoded).await?;
        let mut planner = Planner::new(&self.machines, &self.mapping, &self.known, now);
        for (index, (message, d)) in batch.iter().zip(decoded).enumerate() {
            planner.message(index, message, d);
        }
        if timers {
            planner.timers();
        }
        let mut plan = planner.finish();
        let mut report = BatchReport {
            messages: batch.len(),
            rebirths: std::mem::take(&mut plan.rebirths),
            ..Default::default()
        };
        if timers {
            // Sparkplug nodes whose missing seq never arrived (ADR 0034).
            for node in sessions.due_rebirths(now) {
                if !report.rebirths.contains(&node) {
                    report.rebirths.push(node);
                }
            }
        }
        self.send_commands(batch, &mut plan, &mut report).await?;
        report.samples = self.store_rows(&plan).await?;
        report.rejected = plan.rejected.iter().filter(|r| !r.notice).count();
        self.machines.extend(plan.staged);
        self.sessions = sessions;
        metrics::counter!("shopfloor_ingest_events_total").increment(report.events as u64);
        metrics::counter!("shopfloor_ingest_duplicates_total").increment(report.duplicates as u64);
        metrics::counter!("shopfloor_ingest_telemetry_samples_total").increment(report.samples);
        metrics::counter!("shopfloor_ingest_predictive_tasks_total").increment(report.tasks as u64);
        metrics::histogram!("shopfloor_ingest_batch_seconds")
            .record(started.elapsed().as_secs_f64());
        Ok(report)
    }

    /// Sends the plan's commands through the one writer. A refusal sets its
    /// message aside (added to the plan's rejections); a transient failure fails
    /// the batch, to be processed again.
    async fn send_commands(
        &self,
        batch: &[Incoming],
        plan: &mut BatchPlan,
        report: &mut BatchReport,
    ) -> Result<(), IngestError> {
        if plan.commands.is_empty() {
            return Ok(());
        }
        let items = plan.commands.iter().map(|c| c.item(batch)).collect();
        let results = self
            .commands
            .execute_batch(items, Atomicity::EachOnItsOwn)
            .await;
        for (planned, result) in plan.commands.iter().zip(results) {
            match result {
                Ok(o) if o.duplicate => report.duplicates += 1,
                Ok(o) if o.events.is_empty() => {}
                Ok(_) if planned.is_task() => report.tasks += 1,
                Ok(_) => report.events += 1,
                Err(e) if e.is_transient() => return Err(IngestError::Command(e)),
                // A predictive task for an alert already scheduled.
                Err(_) if planned.is_task() => {}
                Err(e) => {
                    let reason = match &e {
                        CommandError::Rejected { .. } => {
                            count_rejection("domain");
                            e.to_string()
                        }
                        _ => {
                            count_rejection("internal");
                            warn!(command_id = %planned.command_id, error = %e, "command not recorded");
                            "could not be recorded (an internal error; see the ingest log)".into()
                        }
                    };
                    match planned.message.and_then(|m| batch.get(m)) {
                        Some(msg) => plan.rejected.push(reject_row(msg, reason, false)),
                        None => {
                            warn!(command_id = %planned.command_id, %reason, "timer command refused")
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Stores the batch's samples, rejections and machine states in one
    /// transaction of their own (never under the event log's head lock).
    /// Returns how many samples were new.
    async fn store_rows(&self, plan: &BatchPlan) -> Result<u64, IngestError> {
        if plan.telemetry.is_empty() && plan.rejected.is_empty() && plan.staged.is_empty() {
            return Ok(0);
        }
        let mut tx = self.pool.begin().await?;
        let samples = store::insert_telemetry(&mut tx, &plan.telemetry).await?;
        store::insert_rejected(&mut tx, &plan.rejected).await?;
        let states: Vec<(&str, &MachineState)> =
            plan.staged.iter().map(|(k, v)| (k.as_str(), v)).collect();
        store::save_machine_states(&mut tx, &self.namespace, &states).await?;
        tx.commit().await?;
        Ok(samples)
    }
}
