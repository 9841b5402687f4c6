//! The evaluator: tails the committed log from its checkpoint (one leader at a time, like the
//! process manager), keeps the facts the rules need, raises and resolves alerts through the
//! one writer, and fills the delivery outbox from the alert events it reads back.
//!
//! # Exactly once, in effect
//! - Alert ids derive from the rule and the triggering event ([`plan::alert_id`]), and every
//!   command carries a deterministic command id: evaluating an event again after a crash
//!   (before the checkpoint moved) appends nothing new.
//! - Deliveries are inserted when the evaluator reads `AlertRaised`/`…Acknowledged`/
//!   `…Escalated`/`…Resolved` from the log, keyed by (event id, channel): read again, they
//!   insert nothing; a crash before the insert reads the event again.
//! - "Longer than" rules are checked on a timer against floor time (`now` ≥ the start of the
//!   stop + the threshold), and at once for the machines of each batch, so a late event whose
//!   stop is already past the threshold raises without waiting for the tick.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;
use shopfloor_commands::{Atomicity, BatchItem, CommandContext, CommandError, CommandService};
use shopfloor_domain::alert::{
    AlertCommand, AlertEvent, AlertKind, AlertRuleEvent, EscalateAlert, RaiseAlert, ResolveAlert,
    RuleSpec, Severity,
};
use shopfloor_domain::process::Target;
use shopfloor_domain::values::{Actor, AlertId, AlertRuleId, MachineId, Text};
use shopfloor_domain::StreamType;
use shopfloor_eventstore::repository::decode_event;
use shopfloor_eventstore::{Checkpoint, EventFilter, Leadership, Reader, RecordedEvent, Source};
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use uuid::Uuid;

use crate::conditions;
use crate::machines;
use crate::outbox::{AlertEventRef, Queued};
use crate::plan::{self, Changed, MachineFact};
use crate::{AlertSettings, AlertsError};

/// The actor of the evaluator's commands.
pub const ACTOR: &str = "alert-evaluator";
const CHECKPOINT: &str = "alert-evaluator";
const LEADER_KEY: &str = "shopfloor-alert-evaluator";

/// A command to send, with its deterministic id.
type Issued = (String, Target);
/// A timed rule due on a machine: rule, kind, severity, machine, cause, since, after_minutes.
type DueRow = (String, String, String, String, Uuid, DateTime<Utc>, f64);

/// The events the evaluator reads; the rest of the log (parts reports, telemetry, orders…)
/// is skipped in the database. Every event of rules and alerts, and the machine,
/// maintenance, inventory and SPC events that `machines::fact_of` and [`Evaluator::handle`]
/// look at.
fn evaluated() -> EventFilter {
    EventFilter::new(
        &[StreamType::AlertRule.as_str(), StreamType::Alert.as_str()],
        &[
            "MachineRegistered",
            "MachineStateChanged",
            "MachineStopClassified",
            "MaintenanceTaskScheduled",
            "MaintenanceTaskCompleted",
            "MaintenanceTaskCancelled",
            "InventoryConsumed",
            "SpcSignalRaised",
        ],
    )
}

/// Evaluates alert rules on the log.
#[derive(Debug, Clone)]
pub struct Evaluator {
    service: CommandService,
    settings: AlertSettings,
    /// Wakes the delivery worker of this process when deliveries were queued.
    wake: Arc<Notify>,
    /// `AlertRaised` events this evaluator committed, whose row and deliveries it wrote at
    /// once: reading them back costs nothing. Empty after a restart (then the full path runs).
    own: Arc<std::sync::Mutex<std::collections::HashSet<Uuid>>>,
}

impl Evaluator {
    pub fn new(service: CommandService, settings: AlertSettings, wake: Arc<Notify>) -> Self {
        Self {
            service,
            settings,
            wake,
            own: Arc::default(),
        }
    }

    fn pool(&self) -> &PgPool {
        self.service.store().pool()
    }

    /// Runs until `cancel` fires; one instance leads, the others stand by.
    pub async fn run(&self, cancel: CancellationToken) {
        loop {
            let Some(lock) =
                Leadership::acquire(self.pool(), LEADER_KEY, self.settings.retry, &cancel).await
            else {
                return;
            };
            info!("alert evaluator active");
            let result = self.run_once(&cancel).await;
            lock.release().await;
            match result {
                Ok(()) => return,
                Err(e) => {
                    warn!(error = %e, "alert evaluator interrupted; resuming from its checkpoint");
                    metrics::counter!("shopfloor_alert_evaluator_failures_total").increment(1);
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(self.settings.retry) => {}
                    }
                }
            }
        }
    }

    async fn run_once(&self, cancel: &CancellationToken) -> Result<(), AlertsError> {
        let mut checkpoint =
            Checkpoint::load(self.pool(), Reader::ProcessManager, CHECKPOINT).await?;
        let sub_cancel = cancel.child_token();
        let _stop = sub_cancel.clone().drop_guard();
        let mut subscription = self
            .service
            .store()
            .subscribe_all(checkpoint.position(), sub_cancel)
            .filter(evaluated())
            .page_size(500);
        let mut tick = tokio::time::interval(self.settings.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut conditions = tokio::time::interval(self.settings.conditions);
        conditions.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                batch = subscription.next_batch(500) => {
                    let Some(batch) = batch else { return Ok(()) };
                    let batch = batch?;
                    self.handle_batch(&batch).await?;
                    if let Some(last) = batch.last() {
                        checkpoint.advance(self.pool(), last.position).await?;
                        metrics::gauge!("shopfloor_alert_evaluator_position").set(last.position as f64);
                    }
                }
                _ = tick.tick() => self.tick(Utc::now()).await?,
                _ = conditions.tick() => self.check_conditions(Utc::now()).await?,
            }
        }
    }

    /// Handles a batch of events: the machine facts of the whole batch first (set-based),
    /// then the other events in log order, then the timed rules of the machines it touched,
    /// then the commands that follow.
    pub async fn handle_batch(&self, batch: &[RecordedEvent]) -> Result<(), AlertsError> {
        let started = std::time::Instant::now();
        let (mut issued, touched) = self.handle_machines(batch).await?;
        let mut queued = false;
        for event in batch {
            let (mut more, q) = self.handle(event).await?;
            issued.append(&mut more);
            queued |= q;
        }
        if queued {
            self.wake.notify_waiters();
            self.wake.notify_one();
        }
        let handled = started.elapsed();
        if !touched.is_empty() {
            issued.extend(self.due_raises(Utc::now(), Some(&touched)).await?);
        }
        let due = started.elapsed();
        let n = issued.len();
        self.send(issued, None).await?;
        tracing::debug!(
            events = batch.len(),
            commands = n,
            handle_ms = handled.as_millis() as u64,
            due_ms = (due - handled).as_millis() as u64,
            send_ms = (started.elapsed() - due).as_millis() as u64,
            "alert batch"
        );
        Ok(())
    }

    /// The batch's machine events: the stored rows of their machines, folded in memory,
    /// written back, and the open timed alerts of the changed machines that no longer hold
    /// resolved. Returns those resolutions and the machines touched.
    async fn handle_machines(
        &self,
        batch: &[RecordedEvent],
    ) -> Result<(Vec<Issued>, Vec<String>), AlertsError> {
        let facts: Vec<(&str, Uuid, MachineFact)> = batch
            .iter()
            .filter_map(|e| machines::fact_of(e).map(|f| (e.stream_id.as_str(), e.event_id, f)))
            .collect();
        if facts.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let ids: BTreeSet<&str> = facts.iter().map(|(m, ..)| *m).collect();
        let ids: Vec<&str> = ids.into_iter().collect();
        let stored = machines::load(self.pool(), &ids).await?;
        let fold = plan::fold_machines(&stored, facts);
        machines::save(self.pool(), &fold).await?;
        let changed: Vec<&str> = fold.changed.keys().map(String::as_str).collect();
        let open = machines::open_timed(self.pool(), &changed).await?;
        let issued = reconcile(&fold.changed, open)?;
        Ok((issued, fold.touched.into_iter().collect()))
    }

    /// The timer: timed rules of every machine, and escalations.
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<(), AlertsError> {
        let mut issued = self.due_raises(now, None).await?;
        issued.extend(self.due_escalations(now).await?);
        self.send(issued, None).await
    }

    /// The condition timer: every enabled condition rule checked against the read models;
    /// an alert raised for each condition that holds without one, and the alerts of those
    /// that stopped holding resolved.
    pub async fn check_conditions(&self, now: DateTime<Utc>) -> Result<(), AlertsError> {
        let rules = conditions::rules(self.pool()).await?;
        let mut holding = Vec::new();
        let mut checked = BTreeSet::new();
        for rule in &rules {
            match conditions::holding(self.pool(), rule, now).await {
                Ok(h) => {
                    holding.extend(h);
                    checked.insert(rule.rule_id.clone());
                }
                Err(e @ AlertsError::Database(_)) => return Err(e),
                Err(e) => {
                    warn!(rule = %rule.rule_id, error = %e, "a condition rule was not checked")
                }
            }
        }
        let unresolved = conditions::unresolved(self.pool()).await?;
        let (to_raise, to_resolve) = plan::plan_conditions(&checked, holding, &unresolved);
        let ids: Vec<String> = to_raise
            .iter()
            .map(|h| plan::alert_id(&h.rule_id, &h.cause))
            .collect();
        let existing = conditions::existing(self.pool(), &ids).await?;
        let mut issued = Vec::new();
        for (h, id) in to_raise.iter().zip(&ids) {
            if existing.contains(id) {
                continue;
            }
            issued.push(raise(RaiseInput {
                rule_id: &h.rule_id,
                kind: h.kind,
                severity: &h.severity,
                machine_id: h.machine_id.as_deref(),
                subject: h.subject.clone(),
                cause: &h.cause,
                since: h.since,
                raised_at: now,
            })?);
        }
        let reason = Text::new("the condition cleared").map_err(AlertsError::value)?;
        for id in to_resolve {
            issued.push(resolve(&id, "condition-cleared", reason.clone())?);
        }
        self.send(issued, None).await
    }

    async fn send(&self, issued: Vec<Issued>, cause: Option<&str>) -> Result<(), AlertsError> {
        if issued.is_empty() {
            return Ok(());
        }
        let raises: Vec<Option<RaiseAlert>> = issued
            .iter()
            .map(|(_, t)| match t {
                Target::Alert {
                    command: AlertCommand::RaiseAlert(r),
                    ..
                } => Some(r.clone()),
                _ => None,
            })
            .collect();
        let items = issued
            .into_iter()
            .map(|(command_id, target)| {
                let mut ctx = CommandContext::new(ACTOR, Source::Process);
                ctx.command_id = Some(command_id);
                ctx.causation_id = cause.map(str::to_string);
                BatchItem::new(target, ctx)
            })
            .collect();
        let results = self
            .service
            .execute_batch(items, Atomicity::EachOnItsOwn)
            .await;
        let mut raised = Vec::new();
        for (result, raise) in results.into_iter().zip(raises) {
            match result {
                Ok(outcome) => {
                    if let (Some(r), Some(e)) = (raise, outcome.events.first()) {
                        raised.push((r, e.event_id));
                    }
                }
                Err(e @ (CommandError::Rejected { .. } | CommandError::VersionMismatch { .. })) => {
                    warn!(error = %e, "an alert command was refused");
                }
                Err(e) => return Err(e.into()),
            }
        }
        // Known raised at once: the timer does not raise them again while their AlertRaised
        // is on its way back through the log, and their deliveries are queued now (reading
        // the event back finds them in `own`). One insert of the rows, one of the deliveries.
        let mut seen = std::collections::HashSet::new();
        raised.retain(|(r, _)| seen.insert(r.alert_id.clone()));
        let now = Utc::now();
        let alerts: Vec<&RaiseAlert> = raised.iter().map(|(r, _)| r).collect();
        insert_alerts(self.pool(), &alerts, now).await?;
        let queued: Vec<Queued<'_>> = raised
            .iter()
            .map(|(r, event_id)| Queued {
                event: AlertEventRef {
                    event_id: *event_id,
                    at: r.raised_at,
                    recorded_at: now,
                },
                alert_id: r.alert_id.as_str(),
                stage: "raised",
            })
            .collect();
        crate::outbox::enqueue_many(self.pool(), &queued).await?;
        if !raised.is_empty() {
            self.wake.notify_one();
            let mut own = self.own.lock().unwrap_or_else(|e| e.into_inner());
            own.extend(raised.iter().map(|(_, id)| *id));
        }
        Ok(())
    }

    /// One event other than a machine's: `(commands, deliveries queued)`.
    async fn handle(&self, event: &RecordedEvent) -> Result<(Vec<Issued>, bool), AlertsError> {
        let p = &event.payload;
        let s = |k: &str| p.get(k).and_then(Value::as_str).map(str::to_string);
        Ok(
            match (event.stream_type.as_str(), event.event_type.as_str()) {
                ("maintenance_task", "MaintenanceTaskScheduled")
                    if s("kind").as_deref() == Some("predictive") =>
                {
                    let issued = self
                        .instant(
                            event,
                            AlertKind::PredictiveAlert,
                            s("machine_id"),
                            s("task_id"),
                        )
                        .await?;
                    (issued, false)
                }
                ("maintenance_task", "MaintenanceTaskCompleted" | "MaintenanceTaskCancelled") => {
                    let issued = self.resolve_subject(event, &event.stream_id).await?;
                    (issued, false)
                }
                ("inventory_item", "InventoryConsumed") => {
                    let short = s("shortage")
                        .and_then(|q| q.parse::<rust_decimal::Decimal>().ok())
                        .is_some_and(|q| q > rust_decimal::Decimal::ZERO);
                    let issued = if short {
                        self.instant(event, AlertKind::InventoryShortage, None, s("item_id"))
                            .await?
                    } else {
                        vec![]
                    };
                    (issued, false)
                }
                ("spc_characteristic", "SpcSignalRaised") => {
                    let issued = self
                        .instant(
                            event,
                            AlertKind::SpcSignal,
                            s("machine_id"),
                            s("characteristic_id"),
                        )
                        .await?;
                    (issued, false)
                }
                ("alert_rule", _) => {
                    self.index_rule(event).await?;
                    (vec![], false)
                }
                ("alert", _) => {
                    let (issued, queued) = self.on_alert_event(event).await?;
                    (issued, queued)
                }
                _ => (vec![], false),
            },
        )
    }

    /// Rules of an event-triggered kind in scope: one alert each, caused by this event.
    async fn instant(
        &self,
        event: &RecordedEvent,
        kind: AlertKind,
        machine_id: Option<String>,
        subject: Option<String>,
    ) -> Result<Vec<Issued>, AlertsError> {
        let rules: Vec<(String, String)> = sqlx::query_as(
            "SELECT r.rule_id, r.severity FROM alert_rules r \
             LEFT JOIN alert_machines m ON m.machine_id = $2 \
             WHERE r.enabled AND r.kind = $1 \
             AND (r.machine_id IS NULL OR r.machine_id = $2) AND (r.line IS NULL OR r.line = m.line)",
        )
        .bind(kind.as_str())
        .bind(&machine_id)
        .fetch_all(self.pool())
        .await?;
        let at = event.metadata.occurred_at.unwrap_or(event.recorded_at);
        rules
            .into_iter()
            .map(|(rule_id, severity)| {
                raise(RaiseInput {
                    rule_id: &rule_id,
                    kind,
                    severity: &severity,
                    machine_id: machine_id.as_deref(),
                    subject: subject.clone(),
                    cause: &event.event_id.to_string(),
                    since: at,
                    raised_at: at,
                })
            })
            .collect()
    }

    async fn resolve_subject(
        &self,
        event: &RecordedEvent,
        subject: &str,
    ) -> Result<Vec<Issued>, AlertsError> {
        let open: Vec<String> = sqlx::query_scalar(
            "SELECT alert_id FROM alerts WHERE subject = $1 AND kind = 'predictive_alert' \
             AND state <> 'resolved'",
        )
        .bind(subject)
        .fetch_all(self.pool())
        .await?;
        let reason = Text::new("the maintenance task was closed").map_err(AlertsError::value)?;
        open.iter()
            .map(|id| resolve(id, &event.event_id.to_string(), reason.clone()))
            .collect()
    }

    async fn index_rule(&self, event: &RecordedEvent) -> Result<(), AlertsError> {
        match decode_event::<AlertRuleEvent>(event)? {
            AlertRuleEvent::AlertRuleDefined {
                rule_id,
                spec,
                by,
                at,
            }
            | AlertRuleEvent::AlertRuleRedefined {
                rule_id,
                spec,
                by,
                at,
            } => {
                self.store_rule(&rule_id, &spec, &by, at, event.position)
                    .await
            }
            AlertRuleEvent::AlertRuleDisabled { rule_id, .. } => {
                sqlx::query("UPDATE alert_rules SET enabled = false WHERE rule_id = $1")
                    .bind(rule_id.as_str())
                    .execute(self.pool())
                    .await?;
                Ok(())
            }
        }
    }

    /// A rule's (re)definition, unless a later one is already stored (read again after a
    /// restart, an older event changes nothing).
    async fn store_rule(
        &self,
        rule_id: &AlertRuleId,
        spec: &RuleSpec,
        by: &Actor,
        at: DateTime<Utc>,
        position: i64,
    ) -> Result<(), AlertsError> {
        let channels = serde_json::to_value(&spec.channels)?;
        let escalation = spec
            .escalation
            .as_ref()
            .map(serde_json::to_value)
            .transpose()?;
        sqlx::query(
            "INSERT INTO alert_rules (rule_id, kind, machine_id, line, after_minutes, severity, \
             channels, escalation, enabled, defined_by, defined_at, position, target, item_id, \
             metric) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, true, $9, $10, $11, $12, $13, $14) \
             ON CONFLICT (rule_id) DO UPDATE SET kind = excluded.kind, \
             machine_id = excluded.machine_id, line = excluded.line, \
             after_minutes = excluded.after_minutes, severity = excluded.severity, \
             channels = excluded.channels, escalation = excluded.escalation, \
             defined_by = excluded.defined_by, defined_at = excluded.defined_at, \
             position = excluded.position, target = excluded.target, \
             item_id = excluded.item_id, metric = excluded.metric \
             WHERE alert_rules.position < excluded.position",
        )
        .bind(rule_id.as_str())
        .bind(spec.kind.as_str())
        .bind(spec.machine_id.as_ref().map(MachineId::as_str))
        .bind(spec.line.as_ref().map(|l| l.as_str()))
        .bind(spec.after_minutes)
        .bind(spec.severity.as_str())
        .bind(channels)
        .bind(escalation)
        .bind(by.as_str())
        .bind(at)
        .bind(position)
        .bind(spec.target)
        .bind(spec.item_id.as_ref().map(|i| i.as_str()))
        .bind(spec.metric.map(|m| m.as_str()))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// An alert event: the read model, the deliveries it queues, and (for a raise whose
    /// condition cleared while it was being committed) the resolution.
    async fn on_alert_event(
        &self,
        event: &RecordedEvent,
    ) -> Result<(Vec<Issued>, bool), AlertsError> {
        let mut issued = Vec::new();
        let stage = match decode_event::<AlertEvent>(event)? {
            AlertEvent::AlertRaised { alert } => {
                let mine = self
                    .own
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&event.event_id);
                if mine {
                    return Ok((issued, false));
                }
                // Raised by this evaluator's own command: the row and its deliveries were
                // written when it committed, and any later event that cleared the condition
                // has resolved it since. Only a raise it did not see commit (a crash, a
                // leader change) needs the check and the deliveries here.
                if insert_alerts(self.pool(), &[&alert], event.recorded_at).await? == 0 {
                    let queued: bool = sqlx::query_scalar(
                        "SELECT EXISTS (SELECT 1 FROM alert_deliveries WHERE event_id = $1)",
                    )
                    .bind(event.event_id)
                    .fetch_one(self.pool())
                    .await?;
                    if queued {
                        return Ok((issued, false));
                    }
                }
                if let (true, Some(machine)) = (alert.kind.is_timed(), &alert.machine_id) {
                    let row = machines::one(self.pool(), machine.as_str()).await?;
                    if !plan::holds(alert.kind, &alert.cause_event_id, &row) {
                        let reason =
                            Text::new("the condition cleared").map_err(AlertsError::value)?;
                        issued.push(resolve(
                            alert.alert_id.as_str(),
                            &event.event_id.to_string(),
                            reason,
                        )?);
                    }
                }
                "raised"
            }
            AlertEvent::AlertAcknowledged { alert_id, by, at } => {
                sqlx::query(
                    "UPDATE alerts SET state = 'acknowledged', acknowledged_by = $2, acknowledged_at = $3 \
                     WHERE alert_id = $1 AND state = 'open'",
                )
                .bind(alert_id.as_str())
                .bind(by.as_str())
                .bind(at)
                .execute(self.pool())
                .await?;
                "acknowledged"
            }
            AlertEvent::AlertEscalated {
                alert_id, level, ..
            } => {
                sqlx::query(
                    "UPDATE alerts SET escalations = GREATEST(escalations, $2) WHERE alert_id = $1",
                )
                .bind(alert_id.as_str())
                .bind(level as i32)
                .execute(self.pool())
                .await?;
                "escalated"
            }
            AlertEvent::AlertResolved {
                alert_id,
                by,
                reason,
                at,
            } => {
                sqlx::query(
                    "UPDATE alerts SET state = 'resolved', resolved_at = $2, resolved_by = $3, \
                     resolved_reason = $4 WHERE alert_id = $1",
                )
                .bind(alert_id.as_str())
                .bind(at)
                .bind(by.as_ref().map(|a| a.as_str()))
                .bind(reason.as_str())
                .execute(self.pool())
                .await?;
                "resolved"
            }
        };
        let queued =
            crate::outbox::enqueue(self.pool(), &event.into(), &event.stream_id, stage).await?;
        Ok((issued, queued > 0))
    }

    /// Timed rules whose threshold has passed, for the given machines or all.
    async fn due_raises(
        &self,
        now: DateTime<Utc>,
        machines: Option<&[String]>,
    ) -> Result<Vec<Issued>, AlertsError> {
        let rows: Vec<DueRow> = sqlx::query_as(
            "SELECT r.rule_id, r.kind, r.severity, m.machine_id, m.state_event_id, m.state_at, \
             r.after_minutes FROM alert_machines m JOIN alert_rules r ON r.enabled \
             AND (r.machine_id IS NULL OR r.machine_id = m.machine_id) \
             AND (r.line IS NULL OR r.line = m.line) \
             WHERE m.state_event_id IS NOT NULL AND m.state IN ('down', 'idle') \
             AND ((r.kind = 'machine_down' AND m.state = 'down' AND NOT m.planned) \
               OR (r.kind = 'unclassified_stop' AND NOT m.classified)) \
             AND m.state_at + make_interval(secs => r.after_minutes * 60) <= $1 \
             AND ($2::text[] IS NULL OR m.machine_id = ANY($2)) \
             AND NOT EXISTS (SELECT 1 FROM alerts a WHERE a.rule_id = r.rule_id \
                             AND a.cause_event_id = m.state_event_id::text)",
        )
        .bind(now)
        .bind(machines)
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .filter_map(|(rule, kind, severity, machine, cause, since, after)| {
                let kind = plan::kind_of(&kind)?;
                Some(raise(RaiseInput {
                    rule_id: &rule,
                    kind,
                    severity: &severity,
                    machine_id: Some(&machine),
                    subject: None,
                    cause: &cause.to_string(),
                    since,
                    raised_at: plan::threshold(since, after),
                }))
            })
            .collect()
    }

    /// Open alerts no one acknowledged within their rule's escalation delay.
    async fn due_escalations(&self, now: DateTime<Utc>) -> Result<Vec<Issued>, AlertsError> {
        let rows: Vec<(String, i32)> = sqlx::query_as(
            "SELECT a.alert_id, a.escalations FROM alerts a JOIN alert_rules r USING (rule_id) \
             WHERE a.state = 'open' AND a.escalations = 0 AND r.escalation IS NOT NULL \
             AND a.raised_recorded + make_interval(secs => (r.escalation->>'after_minutes')::float8 * 60) <= $1",
        )
        .bind(now)
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(|(alert_id, level)| {
                let level = level as u32 + 1;
                Ok((
                    format!("alert/{alert_id}/escalate/{level}"),
                    Target::Alert {
                        alert_id: AlertId::new(&alert_id).map_err(AlertsError::value)?,
                        command: AlertCommand::EscalateAlert(EscalateAlert { level, at: now }),
                    },
                ))
            })
            .collect()
    }
}

/// The timed alerts of changed machines whose condition no longer holds, resolved because of
/// the event that last changed the machine.
fn reconcile(
    changed: &BTreeMap<String, Changed>,
    open: Vec<machines::OpenTimed>,
) -> Result<Vec<Issued>, AlertsError> {
    let reason = Text::new("the condition cleared").map_err(AlertsError::value)?;
    let mut issued = Vec::new();
    for (alert_id, kind, cause, machine) in open {
        let Some(c) = changed.get(&machine) else {
            continue;
        };
        if plan::kind_of(&kind).is_some_and(|k| plan::holds(k, &cause, &c.row)) {
            continue;
        }
        issued.push(resolve(&alert_id, &c.because.to_string(), reason.clone())?);
    }
    Ok(issued)
}

/// The alerts rows of raises (just committed, or read back from the log, which sets the
/// commit time), in one statement. Returns how many were new.
async fn insert_alerts(
    pool: &PgPool,
    alerts: &[&RaiseAlert],
    recorded: DateTime<Utc>,
) -> Result<usize, AlertsError> {
    if alerts.is_empty() {
        return Ok(0);
    }
    let (mut id, mut rule, mut kind, mut severity) = (vec![], vec![], vec![], vec![]);
    let (mut machine, mut subject, mut cause, mut since, mut raised_at) =
        (vec![], vec![], vec![], vec![], vec![]);
    for a in alerts {
        id.push(a.alert_id.as_str());
        rule.push(a.rule_id.as_str());
        kind.push(a.kind.as_str());
        severity.push(a.severity.as_str());
        machine.push(a.machine_id.as_ref().map(MachineId::as_str));
        subject.push(a.subject.as_deref());
        cause.push(a.cause_event_id.as_str());
        since.push(a.since);
        raised_at.push(a.raised_at);
    }
    let fresh: Vec<(String, bool)> = sqlx::query_as(
        "INSERT INTO alerts (alert_id, rule_id, kind, severity, machine_id, subject, \
         cause_event_id, state, since, raised_at, raised_recorded) \
         SELECT a, r, k, s, m, sub, c, 'open', si, ra, $10 FROM unnest($1::text[], \
         $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
         $8::timestamptz[], $9::timestamptz[]) AS u(a, r, k, s, m, sub, c, si, ra) \
         ON CONFLICT (alert_id) DO UPDATE SET raised_recorded = \
         LEAST(alerts.raised_recorded, excluded.raised_recorded) \
         RETURNING kind, (xmax = 0) AS fresh",
    )
    .bind(&id)
    .bind(&rule)
    .bind(&kind)
    .bind(&severity)
    .bind(&machine)
    .bind(&subject)
    .bind(&cause)
    .bind(&since)
    .bind(&raised_at)
    .bind(recorded)
    .fetch_all(pool)
    .await?;
    let mut new = 0;
    for (kind, _) in fresh.iter().filter(|(_, f)| *f) {
        metrics::counter!("shopfloor_alerts_raised_total", "kind" => kind.clone()).increment(1);
        new += 1;
    }
    Ok(new)
}

struct RaiseInput<'a> {
    rule_id: &'a str,
    kind: AlertKind,
    severity: &'a str,
    machine_id: Option<&'a str>,
    subject: Option<String>,
    cause: &'a str,
    since: DateTime<Utc>,
    raised_at: DateTime<Utc>,
}

fn raise(input: RaiseInput<'_>) -> Result<Issued, AlertsError> {
    let alert_id = plan::alert_id(input.rule_id, input.cause);
    let severity: Severity =
        serde_json::from_value(Value::String(input.severity.to_string())).unwrap_or_default();
    let command = RaiseAlert {
        alert_id: AlertId::new(&alert_id).map_err(AlertsError::value)?,
        rule_id: AlertRuleId::new(input.rule_id).map_err(AlertsError::value)?,
        kind: input.kind,
        severity,
        machine_id: input
            .machine_id
            .map(MachineId::new)
            .transpose()
            .map_err(AlertsError::value)?,
        subject: input.subject,
        cause_event_id: input.cause.to_string(),
        since: input.since,
        raised_at: input.raised_at,
    };
    Ok((
        format!("alert/{alert_id}/raise"),
        Target::Alert {
            alert_id: command.alert_id.clone(),
            command: AlertCommand::RaiseAlert(command),
        },
    ))
}

fn resolve(alert_id: &str, because: &str, reason: Text) -> Result<Issued, AlertsError> {
    Ok((
        format!("alert/{alert_id}/resolve/{because}"),
        Target::Alert {
            alert_id: AlertId::new(alert_id).map_err(AlertsError::value)?,
            command: AlertCommand::ResolveAlert(ResolveAlert {
                by: None,
                reason,
                at: Utc::now(),
            }),
        },
    ))
}
