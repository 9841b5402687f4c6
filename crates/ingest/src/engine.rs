//! The batch engine: a batch of MQTT messages in, one PostgreSQL transaction out.
//!
//! For each batch (ADR 0007):
//! 1. **Decode** every message (JSON or Sparkplug B) into observations per machine,
//!    or rejections.
//! 2. **Filter** each machine's observations ([`crate::filter`]) on a staged copy of
//!    its [`MachineState`]: refuse future timestamps and impossible values, debounce,
//!    drop duplicates, turn totals into deltas, learn baselines and raise predictive
//!    alerts ([`crate::predictive`]). Unknown (unregistered) machines are refused.
//! 3. **Decide** the resulting machine commands on cached `Machine` aggregates (the
//!    pure domain decision) and encode their events with ids derived from the
//!    message's deterministic id, so a redelivered message appends nothing.
//! 4. **Commit** in one transaction: the events (`EventStore::append_in`, expected
//!    versions checked: if someone else wrote to a machine meanwhile, the aggregate
//!    is reloaded and the decisions redone), the telemetry samples and rollups, the
//!    rejected messages, and the staged machine states.
//! 5. Only then does the caller acknowledge the messages. If the transaction fails,
//!    nothing of the batch is kept (staged state is dropped) and the same batch can
//!    be processed again.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use shopfloor_domain::machine::{ChangeState, MachineCommand, MachineEvent, RecordParts};
use shopfloor_domain::maintenance::{ScheduleTask, TaskCommand, TaskKind};
use shopfloor_domain::values::{MachineId, TaskId, Text};
use shopfloor_domain::{Decide, Machine, MaintenanceTask};
use shopfloor_eventstore::repository::{derived_event_id, meta};
use shopfloor_eventstore::{
    AggregateRepository, AppendRequest, EventStore, ExpectedVersion, Source, StoreError, StreamRef,
};
use sqlx::PgPool;
use tracing::{instrument, warn};
use uuid::Uuid;

use crate::config::Mapping;
use crate::error::IngestError;
use crate::filter::{Action, MachineState, Outcome};
use crate::json;
use crate::message::{bounded_payload, Decoded, Incoming, Observation};
use crate::predictive::Judgement;
use crate::sparkplug::{self, Sessions};
use crate::store::{self, RejectedRow, TelemetryRow};

/// Snapshot a machine every this many events (as the command service does).
const SNAPSHOT_EVERY: u64 = 200;
/// Attempts at a batch whose machines other writers keep changing.
const MAX_CONFLICT_ROUNDS: u32 = 8;

/// Builds the event metadata of a command (command id, message index, floor time).
type MetaFn<'a> = dyn Fn(&str, Option<usize>, DateTime<Utc>) -> HashMap<String, String> + Sync + 'a;

/// A cached machine and its stream version.
type MachineAggregate = (Machine, u64);

fn apply_events(aggregate: &mut MachineAggregate, events: &[MachineEvent]) {
    for e in events {
        aggregate.0.apply(e.clone());
        aggregate.1 += 1;
    }
}

/// A machine command planned by the filter.
#[derive(Debug, Clone)]
struct PlannedCommand {
    machine_id: String,
    command: MachineCommand,
    command_id: String,
    /// The message it came from (index in the batch), or `None` for a timer.
    message: Option<usize>,
    occurred_at: DateTime<Utc>,
}

/// A predictive task planned by a detector.
#[derive(Debug, Clone)]
struct PlannedTask {
    task_id: String,
    command: ScheduleTask,
    message: usize,
}

/// What one batch did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchReport {
    pub messages: usize,
    pub events: usize,
    pub duplicates: usize,
    pub samples: u64,
    pub rejected: usize,
    pub tasks: usize,
    /// Sparkplug nodes to ask for a rebirth (group, edge).
    pub rebirths: Vec<(String, String)>,
}

/// The engine's in-memory state. One per ingest process (it owns its namespace's
/// machine states while it runs).
pub struct Engine {
    pool: PgPool,
    namespace: String,
    mapping: Arc<Mapping>,
    machines: HashMap<String, MachineState>,
    aggregates: HashMap<String, MachineAggregate>,
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

struct Staging<'a> {
    engine_machines: &'a HashMap<String, MachineState>,
    staged: HashMap<String, MachineState>,
}

impl Staging<'_> {
    fn get(&mut self, id: &str) -> &mut MachineState {
        if !self.staged.contains_key(id) {
            let base = self.engine_machines.get(id).cloned().unwrap_or_default();
            self.staged.insert(id.to_string(), base);
        }
        self.staged
            .get_mut(id)
            .unwrap_or_else(|| unreachable!("inserted above"))
    }
}

fn reject_row(message: &Incoming, reason: String, notice: bool) -> RejectedRow {
    RejectedRow {
        message_id: message.message_id(),
        topic: message.topic.clone(),
        reason,
        payload: bounded_payload(&message.payload),
        payload_bytes: i32::try_from(message.payload.len()).unwrap_or(i32::MAX),
        notice,
        received_at: message.received_at,
    }
}

fn count_rejection(category: &'static str) {
    metrics::counter!("shopfloor_ingest_rejected_total", "reason" => category).increment(1);
}

/// A task id for a predictive alert: readable when it fits, hashed when not.
fn predictive_task_id(machine_id: &str, sensor: &str, at: DateTime<Utc>) -> String {
    let readable = format!("pdm-{machine_id}-{sensor}-{}", at.timestamp_millis());
    if readable.chars().count() <= shopfloor_domain::values::MAX_ID_LEN
        && TaskId::new(&readable).is_ok()
    {
        readable
    } else {
        format!(
            "pdm-{}",
            crate::message::message_id(&format!("{machine_id}\u{1f}{sensor}"), readable.as_bytes())
        )
    }
}

impl Engine {
    /// Loads the stored machine states of the namespace. Machines get the full
    /// no-signal timeout again from `now` (the ingest itself was away).
    #[instrument(skip(pool, mapping), err)]
    pub async fn load(
        pool: PgPool,
        namespace: &str,
        mapping: Arc<Mapping>,
        now: DateTime<Utc>,
    ) -> Result<Self, IngestError> {
        let mut machines = HashMap::new();
        for (id, mut state) in store::load_machine_states(&pool, namespace).await? {
            state.last_seen = state.last_seen.map(|t| t.max(now));
            if let Some(p) = state.pending.as_mut() {
                p.arrived = p.arrived.max(now);
            }
            machines.insert(id, state);
        }
        Ok(Self {
            pool,
            namespace: namespace.to_string(),
            mapping,
            machines,
            aggregates: HashMap::new(),
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

    async fn ensure_loaded(&mut self, machine_id: &str) -> Result<bool, IngestError> {
        if self.aggregates.contains_key(machine_id) {
            return Ok(true);
        }
        let repo = AggregateRepository::<Machine>::new(EventStore::new(self.pool.clone()));
        let (machine, version) = repo.load(machine_id).await?;
        if machine.machine().is_none() {
            return Ok(false);
        }
        self.aggregates
            .insert(machine_id.to_string(), (machine, version));
        Ok(true)
    }

    /// Processes a batch (possibly empty) at wall-clock `now`; with `timers`, also
    /// runs every machine's debounce and no-signal timers. Returns an error, having
    /// kept nothing, when the transaction failed: process the same batch again.
    #[instrument(skip_all, fields(messages = batch.len()), err)]
    pub async fn process(
        &mut self,
        batch: &[Incoming],
        now: DateTime<Utc>,
        timers: bool,
    ) -> Result<BatchReport, IngestError> {
        let started = Instant::now();
        let mapping = Arc::clone(&self.mapping);
        let mut sessions = self.sessions.clone();
        let mut rejected: Vec<RejectedRow> = Vec::new();
        let mut report = BatchReport {
            messages: batch.len(),
            ..Default::default()
        };

        // 1. Decode.
        let mut decoded: Vec<Decoded> = Vec::with_capacity(batch.len());
        for message in batch {
            let d = if let Some((topic_id, kind)) =
                json::parse_topic(&self.namespace, &message.topic)
            {
                metrics::counter!("shopfloor_ingest_messages_total", "format" => "json")
                    .increment(1);
                json::decode(
                    &mapping,
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
                    &mapping.sparkplug,
                    &topic,
                    &message.payload,
                    message.received_at,
                )
            } else {
                metrics::counter!("shopfloor_ingest_messages_total", "format" => "unknown")
                    .increment(1);
                Decoded::rejected("unknown topic")
            };
            decoded.push(d);
        }

        // 2. Filter.
        let mut machine_ids: Vec<String> = decoded
            .iter()
            .flat_map(|d| d.machines.iter().map(|m| m.machine_id.clone()))
            .collect();
        machine_ids.sort();
        machine_ids.dedup();
        let mut known = HashSet::new();
        for id in &machine_ids {
            if self.ensure_loaded(id).await? {
                known.insert(id.clone());
            }
        }
        let mut staging = Staging {
            engine_machines: &self.machines,
            staged: HashMap::new(),
        };
        let mut commands: Vec<PlannedCommand> = Vec::new();
        let mut tasks: Vec<PlannedTask> = Vec::new();
        let mut telemetry: Vec<TelemetryRow> = Vec::new();
        let push_actions =
            |commands: &mut Vec<PlannedCommand>, id: &str, actions: Vec<Action>, message| {
                for action in actions {
                    let Ok(machine_id) = MachineId::new(id) else {
                        continue;
                    };
                    let _ = machine_id;
                    let (command, command_id, at) = match action {
                        Action::ChangeState { report, command_id } => (
                            MachineCommand::ChangeState(ChangeState {
                                state: report.state,
                                reason: report.reason.as_deref().and_then(|r| Text::new(r).ok()),
                                planned: report.planned,
                                at: report.at,
                            }),
                            command_id,
                            report.at,
                        ),
                        Action::RecordParts {
                            good,
                            scrap,
                            at,
                            command_id,
                        } => (
                            MachineCommand::RecordParts(RecordParts {
                                good,
                                scrap,
                                order_id: None,
                                at,
                            }),
                            command_id,
                            at,
                        ),
                    };
                    commands.push(PlannedCommand {
                        machine_id: id.to_string(),
                        command,
                        command_id,
                        message,
                        occurred_at: at,
                    });
                }
            };
        for (index, (message, d)) in batch.iter().zip(decoded.iter_mut()).enumerate() {
            for reason in d.rejections.drain(..) {
                count_rejection("malformed");
                rejected.push(reject_row(message, reason, false));
            }
            for notice in d.notices.drain(..) {
                metrics::counter!("shopfloor_ingest_sparkplug_seq_gaps_total").increment(1);
                rejected.push(reject_row(message, notice, true));
            }
            if let Some(node) = d.rebirth.take() {
                if !report.rebirths.contains(&node) {
                    report.rebirths.push(node);
                }
            }
            let message_id = message.message_id();
            for obs in d.machines.drain(..) {
                let id = obs.machine_id;
                if !known.contains(&id) {
                    if obs
                        .observations
                        .iter()
                        .all(|o| matches!(o, Observation::SignalLost { .. }))
                    {
                        metrics::counter!("shopfloor_ingest_filtered_total", "reason" => "death_of_unknown_machine").increment(1);
                        continue;
                    }
                    count_rejection("unknown_machine");
                    rejected.push(reject_row(
                        message,
                        format!("unknown machine {id}: it is not registered"),
                        false,
                    ));
                    continue;
                }
                let settings = mapping.settings(&id);
                let limit = now + settings.future_tolerance();
                let mut out = Outcome::default();
                let state = staging.get(&id);
                for o in obs.observations {
                    match o {
                        Observation::State {
                            report: r,
                            historical,
                        } => {
                            if r.at > limit {
                                count_rejection("future_timestamp");
                                out.rejections
                                    .push(format!("timestamp {} is in the future", r.at));
                                continue;
                            }
                            state.touch(&message_id, message.received_at, r.at, true, &mut out);
                            state.observe_state(
                                settings,
                                r,
                                historical,
                                &message_id,
                                message.received_at,
                                &mut out,
                            );
                        }
                        Observation::Count {
                            report: r,
                            historical,
                        } => {
                            if r.at > limit {
                                count_rejection("future_timestamp");
                                out.rejections
                                    .push(format!("timestamp {} is in the future", r.at));
                                continue;
                            }
                            state.touch(&message_id, message.received_at, r.at, false, &mut out);
                            let before = out.rejections.len();
                            state.observe_count(settings, &r, historical, &message_id, &mut out);
                            for _ in before..out.rejections.len() {
                                count_rejection("impossible_value");
                            }
                        }
                        Observation::Telemetry(samples) => {
                            let mut touched = false;
                            for s in samples {
                                if s.at > limit {
                                    count_rejection("future_timestamp");
                                    out.rejections.push(format!(
                                        "{}: timestamp {} is in the future",
                                        s.sensor, s.at
                                    ));
                                    continue;
                                }
                                if let Err(reason) = settings.check_sensor(&s.sensor, s.value) {
                                    count_rejection("impossible_value");
                                    out.rejections.push(format!("impossible value: {reason}"));
                                    continue;
                                }
                                if !touched {
                                    state.touch(
                                        &message_id,
                                        message.received_at,
                                        s.at,
                                        false,
                                        &mut out,
                                    );
                                    touched = true;
                                }
                                telemetry.push(TelemetryRow {
                                    machine_id: id.clone(),
                                    sensor: s.sensor.clone(),
                                    ts: s.at,
                                    value: s.value,
                                });
                                if s.historical {
                                    metrics::counter!("shopfloor_ingest_filtered_total", "reason" => "historical_sample").increment(1);
                                    continue;
                                }
                                if !settings.predictive.enabled {
                                    continue;
                                }
                                let baseline = state.baselines.entry(s.sensor.clone()).or_default();
                                match baseline.observe(
                                    &settings.predictive,
                                    settings.sensors.get(&s.sensor),
                                    &s.sensor,
                                    s.value,
                                    s.at,
                                ) {
                                    Judgement::Late => {
                                        metrics::counter!("shopfloor_ingest_filtered_total", "reason" => "late_sample").increment(1);
                                    }
                                    Judgement::Learned => {}
                                    Judgement::Alert(alert) => {
                                        metrics::counter!(
                                            "shopfloor_ingest_predictive_alerts_total"
                                        )
                                        .increment(1);
                                        let task_id = predictive_task_id(&id, &s.sensor, alert.at);
                                        let (Ok(tid), Ok(mid)) =
                                            (TaskId::new(&task_id), MachineId::new(&id))
                                        else {
                                            continue;
                                        };
                                        let detector = alert
                                            .evidence
                                            .details
                                            .get("detector")
                                            .and_then(|v| v.as_str())
                                            .unwrap_or("drift")
                                            .to_string();
                                        let description = Text::new(format!(
                                            "Predictive: {} {} ({:.1} σ from its baseline {:.3})",
                                            s.sensor,
                                            match detector.as_str() {
                                                "trend" => "is trending to its limit",
                                                "threshold" => "crossed its alarm limit",
                                                _ => "drifted out of its baseline",
                                            },
                                            alert.evidence.deviation_sigma,
                                            alert.evidence.baseline_mean
                                        ))
                                        .ok();
                                        tasks.push(PlannedTask {
                                            task_id,
                                            command: ScheduleTask {
                                                task_id: tid,
                                                machine_id: mid,
                                                kind: TaskKind::Predictive,
                                                scheduled_date: alert.due,
                                                description,
                                                evidence: Some(alert.evidence),
                                                policy_id: None,
                                                at: alert.at,
                                            },
                                            message: index,
                                        });
                                    }
                                }
                            }
                        }
                        Observation::SignalLost { at } => {
                            state.lose_signal(
                                at,
                                format!("{message_id}:signal-lost:{id}"),
                                &mut out,
                            );
                        }
                    }
                }
                for f in &out.filtered {
                    metrics::counter!("shopfloor_ingest_filtered_total", "reason" => *f)
                        .increment(1);
                }
                for reason in out.rejections.drain(..) {
                    rejected.push(reject_row(message, reason, false));
                }
                push_actions(&mut commands, &id, out.actions, Some(index));
            }
        }
        if timers {
            // Sparkplug nodes whose missing seq never arrived (ADR 0034).
            for node in sessions.due_rebirths(now) {
                if !report.rebirths.contains(&node) {
                    report.rebirths.push(node);
                }
            }
            let ids: Vec<String> = self
                .machines
                .keys()
                .chain(staging.staged.keys())
                .cloned()
                .collect();
            let mut seen = HashSet::new();
            for id in ids {
                if !seen.insert(id.clone()) {
                    continue;
                }
                let settings = mapping.settings(&id);
                let due = {
                    let s = staging.staged.get(&id).or_else(|| self.machines.get(&id));
                    s.is_some_and(|s| timer_due(s, settings, now))
                };
                if !due {
                    continue;
                }
                let mut out = Outcome::default();
                staging.get(&id).tick(settings, &id, now, &mut out);
                for f in &out.filtered {
                    metrics::counter!("shopfloor_ingest_filtered_total", "reason" => *f)
                        .increment(1);
                }
                push_actions(&mut commands, &id, out.actions, None);
            }
        }
        let staged = staging.staged;

        // 3 and 4. Decide and commit.
        let meta_for = |command_id: &str, message: Option<usize>, at: DateTime<Utc>| {
            let mut m = HashMap::new();
            m.insert(meta::ACTOR.to_string(), "ingest".to_string());
            m.insert(meta::SOURCE.to_string(), Source::Mqtt.as_str().to_string());
            m.insert(meta::COMMAND_ID.to_string(), command_id.to_string());
            m.insert(meta::OCCURRED_AT.to_string(), at.to_rfc3339());
            if let Some(i) = message {
                if let Some(msg) = batch.get(i) {
                    m.insert(meta::CORRELATION_ID.to_string(), msg.message_id());
                    m.insert("mqtt_topic".to_string(), msg.topic.clone());
                }
            }
            m
        };
        // Commands done before (a redelivery) are skipped.
        let first_ids: Vec<Uuid> = commands
            .iter()
            .map(|c| derived_event_id(&StreamRef::new("machine", &c.machine_id), &c.command_id, 0))
            .chain(tasks.iter().map(|t| {
                derived_event_id(
                    &StreamRef::new("maintenance_task", &t.task_id),
                    &t.task_id,
                    0,
                )
            }))
            .collect();
        let existing: Vec<Uuid> = if first_ids.is_empty() {
            Vec::new()
        } else {
            // Planned for this very array (not a plan cached while the log was small).
            sqlx::query_scalar("SELECT event_id FROM events WHERE event_id = ANY($1)")
                .bind(&first_ids)
                .persistent(false)
                .fetch_all(&self.pool)
                .await?
        };
        let mut done: HashSet<Uuid> = existing.into_iter().collect();
        let mut skip = vec![false; first_ids.len()];
        for (i, id) in first_ids.iter().enumerate() {
            if !done.insert(*id) {
                skip[i] = true;
                report.duplicates += 1;
            }
        }
        metrics::counter!("shopfloor_ingest_duplicates_total").increment(report.duplicates as u64);

        let mut round = 0;
        loop {
            round += 1;
            let mut touched: HashSet<String> = HashSet::new();
            let result = self
                .commit_round(
                    batch,
                    &commands,
                    &tasks,
                    &skip,
                    &meta_for,
                    &telemetry,
                    &mut rejected,
                    &staged,
                    &mut touched,
                )
                .await;
            match result {
                Ok(Round::Committed {
                    events,
                    tasks: t,
                    duplicates,
                    samples,
                    stale,
                }) => {
                    report.events = events;
                    report.tasks = t;
                    report.duplicates += duplicates;
                    report.samples = samples;
                    for m in stale {
                        self.aggregates.remove(&m);
                    }
                    // Snapshots of long streams.
                    let repo =
                        AggregateRepository::<Machine>::new(EventStore::new(self.pool.clone()));
                    for (id, before) in touched_versions(&touched, &self.aggregates, &commands) {
                        let Some(aggregate) = self.aggregates.get(&id) else {
                            continue;
                        };
                        if aggregate.1 / SNAPSHOT_EVERY > before / SNAPSHOT_EVERY {
                            if let Err(e) = repo.save_snapshot(&id, aggregate.1, &aggregate.0).await
                            {
                                warn!(machine_id = %id, error = %e, "snapshot not saved");
                            }
                        }
                    }
                    break;
                }
                Ok(Round::Conflict(conflicted)) => {
                    for m in &touched {
                        self.aggregates.remove(m);
                    }
                    metrics::counter!("shopfloor_ingest_conflicts_total").increment(1);
                    if round >= MAX_CONFLICT_ROUNDS {
                        return Err(IngestError::Store(StoreError::Conflict {
                            stream: StreamRef::new("machine", conflicted.join(",")),
                            expected: "the loaded version".into(),
                            actual: 0,
                        }));
                    }
                    for m in &touched {
                        self.ensure_loaded(m).await?;
                    }
                }
                Err(e) => {
                    for m in &touched {
                        self.aggregates.remove(m);
                    }
                    return Err(e);
                }
            }
        }

        self.machines.extend(staged);
        self.sessions = sessions;
        report.rejected = rejected.iter().filter(|r| !r.notice).count();
        metrics::counter!("shopfloor_ingest_events_total").increment(report.events as u64);
        metrics::counter!("shopfloor_ingest_telemetry_samples_total").increment(report.samples);
        metrics::counter!("shopfloor_ingest_predictive_tasks_total").increment(report.tasks as u64);
        metrics::histogram!("shopfloor_ingest_batch_seconds")
            .record(started.elapsed().as_secs_f64());
        Ok(report)
    }
}

/// How a commit attempt ended.
enum Round {
    Committed {
        events: usize,
        tasks: usize,
        duplicates: usize,
        samples: u64,
        /// Machines whose cached aggregate may be stale (another writer's events).
        stale: Vec<String>,
    },
    /// Another writer changed these machines: nothing was written.
    Conflict(Vec<String>),
}

/// The version each touched machine had before the batch (for snapshots).
fn touched_versions(
    touched: &HashSet<String>,
    aggregates: &HashMap<String, MachineAggregate>,
    commands: &[PlannedCommand],
) -> Vec<(String, u64)> {
    touched
        .iter()
        .filter_map(|id| {
            let now = aggregates.get(id)?.1;
            let n = commands.iter().filter(|c| &c.machine_id == id).count() as u64;
            Some((id.clone(), now.saturating_sub(n)))
        })
        .collect()
}

impl Engine {
    /// Decides the planned commands on the cached aggregates (mutating them: the
    /// caller drops `touched` ones from the cache unless this commits) and writes
    /// everything in one transaction.
    #[allow(clippy::too_many_arguments)]
    async fn commit_round(
        &mut self,
        batch: &[Incoming],
        commands: &[PlannedCommand],
        tasks: &[PlannedTask],
        skip: &[bool],
        meta_for: &MetaFn<'_>,
        telemetry: &[TelemetryRow],
        rejected: &mut Vec<RejectedRow>,
        staged: &HashMap<String, MachineState>,
        touched: &mut HashSet<String>,
    ) -> Result<Round, IngestError> {
        let mut requests: Vec<AppendRequest> = Vec::new();
        let mut owners: Vec<Option<String>> = Vec::new();
        let mut decide_rejects: Vec<RejectedRow> = Vec::new();
        for (i, c) in commands.iter().enumerate() {
            if skip[i] {
                continue;
            }
            let Some(aggregate) = self.aggregates.get_mut(&c.machine_id) else {
                continue;
            };
            touched.insert(c.machine_id.clone());
            match aggregate.0.decide(c.command.clone()) {
                Ok(events) if events.is_empty() => {}
                Ok(events) => {
                    let stream = StreamRef::new("machine", &c.machine_id);
                    let new_events = AggregateRepository::<Machine>::new_events(
                        &stream,
                        &events,
                        &meta_for(&c.command_id, c.message, c.occurred_at),
                    )?;
                    let expected = match aggregate.1 {
                        0 => ExpectedVersion::NoStream,
                        v => ExpectedVersion::Exact(v),
                    };
                    apply_events(aggregate, &events);
                    requests.push(AppendRequest {
                        stream,
                        expected,
                        events: new_events,
                    });
                    owners.push(Some(c.machine_id.clone()));
                }
                Err(e) => {
                    count_rejection("domain");
                    if let Some(msg) = c.message.and_then(|m| batch.get(m)) {
                        decide_rejects.push(reject_row(msg, e.to_string(), false));
                    } else {
                        warn!(machine_id = %c.machine_id, error = %e, "timer command refused");
                    }
                }
            }
        }
        for (j, t) in tasks.iter().enumerate() {
            if skip[commands.len() + j] {
                continue;
            }
            match MaintenanceTask::default().decide(TaskCommand::ScheduleTask(t.command.clone())) {
                Ok(events) if !events.is_empty() => {
                    let stream = StreamRef::new("maintenance_task", &t.task_id);
                    let new_events = AggregateRepository::<MaintenanceTask>::new_events(
                        &stream,
                        &events,
                        &meta_for(&t.task_id, Some(t.message), t.command.at),
                    )?;
                    requests.push(AppendRequest {
                        stream,
                        expected: ExpectedVersion::NoStream,
                        events: new_events,
                    });
                    owners.push(None);
                }
                Ok(_) => {}
                Err(e) => warn!(task_id = %t.task_id, error = %e, "predictive task refused"),
            }
        }

        let mut tx = self.pool.begin().await?;
        let results = EventStore::append_in(&mut tx, &requests).await?;
        let mut conflicted: Vec<String> = Vec::new();
        let mut stale: Vec<String> = Vec::new();
        let (mut events, mut task_count, mut duplicates) = (0, 0, 0);
        for (result, owner) in results.iter().zip(&owners) {
            match (result, owner) {
                (Ok(r), Some(m)) => {
                    if r.duplicate {
                        stale.push(m.clone());
                        duplicates += 1;
                    } else {
                        events += 1;
                    }
                }
                (Ok(r), None) => {
                    if !r.duplicate {
                        task_count += 1;
                    }
                }
                (Err(StoreError::Conflict { .. }), Some(m)) => {
                    if !conflicted.contains(m) {
                        conflicted.push(m.clone());
                    }
                }
                (Err(StoreError::Conflict { stream, .. }), None) => {
                    warn!(%stream, "a predictive task with this id exists already");
                }
                (Err(e), owner) => {
                    warn!(error = %e, ?owner, "append refused");
                    if let Some(m) = owner {
                        stale.push(m.clone());
                    }
                }
            }
        }
        if !conflicted.is_empty() {
            tx.rollback().await?;
            return Ok(Round::Conflict(conflicted));
        }
        let samples = store::insert_telemetry(&mut tx, telemetry).await?;
        let mut all: Vec<RejectedRow> = rejected.clone();
        all.extend(decide_rejects.iter().cloned());
        store::insert_rejected(&mut tx, &all).await?;
        let states: Vec<(&str, &MachineState)> =
            staged.iter().map(|(k, v)| (k.as_str(), v)).collect();
        store::save_machine_states(&mut tx, &self.namespace, &states).await?;
        tx.commit().await?;
        rejected.extend(decide_rejects);
        Ok(Round::Committed {
            events,
            tasks: task_count,
            duplicates,
            samples,
            stale,
        })
    }
}

/// Whether a machine's timers have something to do at `now`.
fn timer_due(
    state: &MachineState,
    settings: &crate::config::MachineSettings,
    now: DateTime<Utc>,
) -> bool {
    if state
        .pending
        .as_ref()
        .is_some_and(|p| p.arrived + settings.min_dwell() <= now)
    {
        return true;
    }
    settings.no_signal_timeout_s > 0
        && state.signal_lost.is_none()
        && state.last_seen.is_some_and(|seen| {
            seen + chrono::Duration::seconds(
                i64::try_from(settings.no_signal_timeout_s).unwrap_or(i64::MAX / 4),
            ) <= now
        })
}
