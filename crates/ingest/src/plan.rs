//! The pure half of a batch: decoded messages in, a [`BatchPlan`] out — the
//! machine commands and predictive tasks to send through the one writer, the
//! telemetry samples, the rejections and the staged machine states to store. No
//! I/O here: [`crate::engine`] carries the plan out.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use shopfloor_commands::{BatchItem, CommandContext};
use shopfloor_domain::machine::{
    ChangeState, MachineCommand, RecordParts, RecordPartsWithScrapReason,
};
use shopfloor_domain::maintenance::{ScheduleTask, TaskCommand, TaskKind};
use shopfloor_domain::process::Target;
use shopfloor_domain::values::{MachineId, TaskId, Text};
use shopfloor_eventstore::Source;

use crate::config::{MachineSettings, Mapping};
use crate::filter::{Action, MachineState, Outcome};
use crate::message::{bounded_payload, Decoded, Incoming, Observation, Sample};
use crate::predictive::{Alert, Judgement};
use crate::store::{RejectedRow, TelemetryRow};

/// The actor named in the metadata of the ingest's commands.
pub const ACTOR: &str = "ingest";

/// A command planned by the filter or a detector.
#[derive(Debug, Clone)]
pub struct Planned {
    pub target: Target,
    pub command_id: String,
    /// The message it came from (index in the batch), or `None` for a timer.
    pub message: Option<usize>,
    pub occurred_at: DateTime<Utc>,
}

impl Planned {
    /// The command for the writer, with the ingest's metadata.
    pub fn item(&self, batch: &[Incoming]) -> BatchItem {
        let mut ctx = CommandContext::new(ACTOR, Source::Mqtt);
        ctx.command_id = Some(self.command_id.clone());
        ctx.occurred_at = Some(self.occurred_at);
        if let Some(msg) = self.message.and_then(|m| batch.get(m)) {
            ctx.correlation_id = Some(msg.message_id());
            ctx.extra.insert("mqtt_topic".into(), msg.topic.clone());
        }
        BatchItem::new(self.target.clone(), ctx)
    }

    /// True for a predictive maintenance task (not a machine command).
    pub fn is_task(&self) -> bool {
        matches!(self.target, Target::MaintenanceTask { .. })
    }
}

/// Everything one batch is to do.
#[derive(Debug, Default)]
pub struct BatchPlan {
    /// Machine commands first, in message order, then predictive tasks.
    pub commands: Vec<Planned>,
    pub telemetry: Vec<TelemetryRow>,
    pub rejected: Vec<RejectedRow>,
    /// The machine states after the batch, to store with it.
    pub staged: HashMap<String, MachineState>,
    /// Sparkplug nodes to ask for a rebirth (group, edge).
    pub rebirths: Vec<(String, String)>,
}

/// A rejection row for a message.
pub fn reject_row(message: &Incoming, reason: String, notice: bool) -> RejectedRow {
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

pub fn count_rejection(category: &'static str) {
    metrics::counter!("shopfloor_ingest_rejected_total", "reason" => category).increment(1);
}

fn count_filtered(out: &Outcome) {
    for f in &out.filtered {
        metrics::counter!("shopfloor_ingest_filtered_total", "reason" => *f).increment(1);
    }
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

/// The machine commands of a filter's actions.
fn commands_of(id: &str, actions: Vec<Action>, message: Option<usize>) -> Vec<Planned> {
    let Ok(machine_id) = MachineId::new(id) else {
        return Vec::new();
    };
    actions
        .into_iter()
        .map(|action| {
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
                    order_id,
                    scrap_reason,
                } => {
                    let parts = RecordParts {
                        good,
                        scrap,
                        order_id,
                        at,
                    };
                    let command = match scrap_reason {
                        Some(scrap_reason) => {
                            MachineCommand::RecordPartsWithScrapReason(RecordPartsWithScrapReason {
                                parts,
                                scrap_reason,
                            })
                        }
                        None => MachineCommand::RecordParts(parts),
                    };
                    (command, command_id, at)
                }
            };
            Planned {
                target: Target::Machine {
                    machine_id: machine_id.clone(),
                    command,
                },
                command_id,
                message,
                occurred_at: at,
            }
        })
        .collect()
}

/// The predictive maintenance task an alert asks for.
fn predictive_task(id: &str, sensor: &str, alert: &Alert, message: usize) -> Option<Planned> {
    let task_id = predictive_task_id(id, sensor, alert.at);
    let (Ok(tid), Ok(mid)) = (TaskId::new(&task_id), MachineId::new(id)) else {
        return None;
    };
    let detector = alert
        .evidence
        .details
        .get("detector")
        .and_then(|v| v.as_str())
        .unwrap_or("drift");
    let what = match detector {
        "trend" => "is trending to its limit",
        "threshold" => "crossed its alarm limit",
        _ => "drifted out of its baseline",
    };
    let description = Text::new(format!(
        "Predictive: {sensor} {what} ({:.1} σ from its baseline {:.3})",
        alert.evidence.deviation_sigma, alert.evidence.baseline_mean
    ))
    .ok();
    let at = alert.at;
    Some(Planned {
        target: Target::MaintenanceTask {
            task_id: tid.clone(),
            command: TaskCommand::ScheduleTask(ScheduleTask {
                task_id: tid,
                machine_id: mid,
                kind: TaskKind::Predictive,
                scheduled_date: alert.due,
                description,
                evidence: Some(alert.evidence.clone()),
                policy_id: None,
                at,
            }),
        },
        command_id: task_id,
        message: Some(message),
        occurred_at: at,
    })
}

/// Plans a batch: filters each message's observations on staged copies of the
/// machine states, then (with timers) runs the machines' debounce and no-signal
/// timers.
pub struct Planner<'a> {
    machines: &'a HashMap<String, MachineState>,
    mapping: &'a Mapping,
    known: &'a HashSet<String>,
    now: DateTime<Utc>,
    plan: BatchPlan,
    tasks: Vec<Planned>,
}

impl<'a> Planner<'a> {
    pub fn new(
        machines: &'a HashMap<String, MachineState>,
        mapping: &'a Mapping,
        known: &'a HashSet<String>,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            machines,
            mapping,
            known,
            now,
            plan: BatchPlan::default(),
            tasks: Vec::new(),
        }
    }

    /// The staged state of a machine (a copy of its stored state at first use).
    fn state(&mut self, id: &str) -> &mut MachineState {
        let machines = self.machines;
        self.plan
            .staged
            .entry(id.to_string())
            .or_insert_with(|| machines.get(id).cloned().unwrap_or_default())
    }

    /// Plans one decoded message (at `index` in the batch).
    pub fn message(&mut self, index: usize, message: &Incoming, mut d: Decoded) {
        for reason in d.rejections.drain(..) {
            count_rejection("malformed");
            self.plan.rejected.push(reject_row(message, reason, false));
        }
        for notice in d.notices.drain(..) {
            if message.topic.starts_with(crate::sparkplug::NAMESPACE) {
                metrics::counter!("shopfloor_ingest_sparkplug_seq_gaps_total").increment(1);
            }
            self.plan.rejected.push(reject_row(message, notice, true));
        }
        if let Some(node) = d.rebirth.take() {
            if !self.plan.rebirths.contains(&node) {
                self.plan.rebirths.push(node);
            }
        }
        for obs in d.machines.drain(..) {
            let id = obs.machine_id;
            if !self.known.contains(&id) {
                if obs
                    .observations
                    .iter()
                    .all(|o| matches!(o, Observation::SignalLost { .. }))
                {
                    metrics::counter!("shopfloor_ingest_filtered_total", "reason" => "death_of_unknown_machine").increment(1);
                    continue;
                }
                count_rejection("unknown_machine");
                self.plan.rejected.push(reject_row(
                    message,
                    format!("unknown machine {id}: it is not registered"),
                    false,
                ));
                continue;
            }
            let mut out = Outcome::default();
            for o in obs.observations {
                self.observation(&id, index, message, o, &mut out);
            }
            count_filtered(&out);
            for reason in out.rejections.drain(..) {
                self.plan.rejected.push(reject_row(message, reason, false));
            }
            let commands = commands_of(&id, out.actions, Some(index));
            self.plan.commands.extend(commands);
        }
    }

    /// Filters one observation of machine `id`.
    fn observation(
        &mut self,
        id: &str,
        index: usize,
        message: &Incoming,
        o: Observation,
        out: &mut Outcome,
    ) {
        let mapping = self.mapping;
        let settings = mapping.settings(id);
        let limit = self.now + settings.future_tolerance();
        let message_id = message.message_id();
        let received = message.received_at;
        match o {
            Observation::State { report, historical } => {
                if ahead_of(report.at, limit, out) {
                    return;
                }
                let state = self.state(id);
                state.touch(&message_id, received, report.at, true, out);
                state.observe_state(settings, report, historical, &message_id, received, out);
            }
            Observation::Count { report, historical } => {
                if ahead_of(report.at, limit, out) {
                    return;
                }
                let state = self.state(id);
                state.touch(&message_id, received, report.at, false, out);
                let before = out.rejections.len();
                state.observe_count(settings, &report, historical, &message_id, out);
                for _ in before..out.rejections.len() {
                    count_rejection("impossible_value");
                }
            }
            Observation::Telemetry(samples) => {
                self.telemetry(id, index, message, settings, limit, samples, out);
            }
            Observation::SignalLost { at } => {
                let command_id = format!("{message_id}:signal-lost:{id}");
                self.state(id).lose_signal(at, command_id, out);
            }
        }
    }

    /// Keeps a message's valid samples, learns baselines and plans predictive
    /// tasks for the alerts they raise.
    #[allow(clippy::too_many_arguments)]
    fn telemetry(
        &mut self,
        id: &str,
        index: usize,
        message: &Incoming,
        settings: &MachineSettings,
        limit: DateTime<Utc>,
        samples: Vec<Sample>,
        out: &mut Outcome,
    ) {
        let mut touched = false;
        for s in samples {
            if s.at > limit {
                count_rejection("future_timestamp");
                out.rejections
                    .push(format!("{}: timestamp {} is in the future", s.sensor, s.at));
                continue;
            }
            if let Err(reason) = settings.check_sensor(&s.sensor, s.value) {
                count_rejection("impossible_value");
                out.rejections.push(format!("impossible value: {reason}"));
                continue;
            }
            let state = self.state(id);
            if !touched {
                state.touch(&message.message_id(), message.received_at, s.at, false, out);
                touched = true;
            }
            self.plan.telemetry.push(TelemetryRow {
                machine_id: id.to_string(),
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
            let baseline = self
                .state(id)
                .baselines
                .entry(s.sensor.clone())
                .or_default();
            match baseline.observe(
                &settings.predictive,
                settings.sensors.get(&s.sensor),
                &s.sensor,
                s.value,
                s.at,
            ) {
                Judgement::Late => {
                    metrics::counter!("shopfloor_ingest_filtered_total", "reason" => "late_sample")
                        .increment(1);
                }
                Judgement::Learned => {}
                Judgement::Alert(alert) => {
                    metrics::counter!("shopfloor_ingest_predictive_alerts_total").increment(1);
                    self.tasks
                        .extend(predictive_task(id, &s.sensor, &alert, index));
                }
            }
        }
    }

    /// Runs every machine's debounce and no-signal timers at `now`.
    pub fn timers(&mut self) {
        let mut ids: Vec<String> = self
            .machines
            .keys()
            .chain(self.plan.staged.keys())
            .cloned()
            .collect();
        ids.sort();
        ids.dedup();
        let mapping = self.mapping;
        for id in ids {
            let settings = mapping.settings(&id);
            let due = {
                let s = self.plan.staged.get(&id).or_else(|| self.machines.get(&id));
                s.is_some_and(|s| timer_due(s, settings, self.now))
            };
            if !due {
                continue;
            }
            let mut out = Outcome::default();
            let now = self.now;
            self.state(&id).tick(settings, &id, now, &mut out);
            count_filtered(&out);
            self.plan
                .commands
                .extend(commands_of(&id, out.actions, None));
        }
    }

    /// The plan: machine commands, then predictive tasks.
    pub fn finish(mut self) -> BatchPlan {
        self.plan.commands.append(&mut self.tasks);
        self.plan
    }
}

/// Refuses (noting why) an observation stamped after `limit`.
fn ahead_of(at: DateTime<Utc>, limit: DateTime<Utc>, out: &mut Outcome) -> bool {
    if at <= limit {
        return false;
    }
    count_rejection("future_timestamp");
    out.rejections
        .push(format!("timestamp {at} is in the future"));
    true
}

/// Whether a machine's timers have something to do at `now`.
fn timer_due(state: &MachineState, settings: &MachineSettings, now: DateTime<Utc>) -> bool {
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
