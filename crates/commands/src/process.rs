//! The process-manager driver: follow-up commands for events in the log.
//!
//! It tails the event store (the source of truth; no NATS needed) from its own
//! checkpoint and, for each event, looks up the facts the pure functions of
//! [`shopfloor_domain::process`] need, then sends the commands they return:
//! - parts produced for an order → the order's production report, finished goods
//!   in, BOM components out (the CONTRACT's backflush rule);
//! - a maintenance task completed → the machine's maintenance record (and the
//!   policy's reset); cancelled → the policy's;
//! - machine usage (state or parts) → `CheckDue` on the machine's policies, and a
//!   periodic tick does the same for calendar-based policies;
//! - a policy due → the preventive task;
//! - an inspection recorded → a sample for each SPC characteristic it feeds (its
//!   measurements, or every inspection of a product; ADR 0056), from an index of
//!   the characteristics kept as their definitions are read.
//!
//! # Idempotency
//! Every command carries the deterministic id the domain gives it (causing event
//! id + suffix), so handling an event twice — after a crash before the checkpoint
//! moved — appends nothing new. A command the target refuses is recorded in
//! `process_rejections` (once) and does not stop the driver; a transient failure
//! (database down) stops the pass, which restarts from the checkpoint.

use std::time::Duration;

use chrono::Utc;
use shopfloor_domain::lot::{self, OutputLots};
use shopfloor_domain::machine::{MachineEvent, MachineUsage};
use shopfloor_domain::maintenance::TaskEvent;
use shopfloor_domain::order::{Order, OrderEvent};
use shopfloor_domain::policy::{CheckDue, PolicyCommand, PolicyEvent};
use shopfloor_domain::process::{self as flows, IssuedCommand, OrderFacts, Target};
use shopfloor_domain::spc::{self, CharacteristicFacts, ChartKind, SampleSource, SpcEvent};
use shopfloor_domain::values::{CharacteristicId, ItemId, MachineId, PolicyId};
use shopfloor_domain::{InventoryItem, Machine, ProductionOrder};
use shopfloor_eventstore::repository::decode_event;
use shopfloor_eventstore::{
    leader, Checkpoint, CheckpointError, LeaderError, LeaderFlag, Leadership, Reader,
    RecordedEvent, Source, StoreError,
};
use tokio_util::sync::CancellationToken;
use tracing::{info, instrument, warn};

use crate::{CommandContext, CommandError, CommandService};

/// The actor named in the metadata of the commands it sends.
pub const ACTOR: &str = "process-manager";
const CHECKPOINT: &str = "process-manager";
const LEADER_KEY: &str = "shopfloor-process-manager";

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Leader(#[from] LeaderError),
}

/// Sets the process manager to start after `position` (after a restore: the
/// restored events' follow-up commands are in the log already).
pub async fn mark_restored(pool: &sqlx::PgPool, position: i64) -> Result<(), ProcessError> {
    let mut checkpoint = Checkpoint::new(Reader::ProcessManager, CHECKPOINT);
    checkpoint.rewind(pool, position).await?;
    Ok(())
}

/// Drives the process managers.
#[derive(Debug, Clone)]
pub struct ProcessManager {
    service: CommandService,
    /// Most events read per pass before the checkpoint moves.
    batch: usize,
    /// Back-off after a failure.
    retry: Duration,
    /// How often calendar-based policies are checked.
    tick: Duration,
    /// Raised while this instance leads (the gauge `shopfloor_leader` and `/readyz`).
    flag: LeaderFlag,
}

impl ProcessManager {
    pub fn new(service: CommandService) -> Self {
        Self {
            service,
            batch: 500,
            retry: Duration::from_secs(1),
            tick: Duration::from_secs(60),
            flag: LeaderFlag::new("process_manager"),
        }
    }

    /// Shows this instance's leadership in `flag` (shared with `/readyz`).
    pub fn with_flag(mut self, flag: LeaderFlag) -> Self {
        self.flag = flag;
        self
    }

    pub fn with_tick(mut self, tick: Duration) -> Self {
        self.tick = tick;
        self
    }

    pub fn with_retry(mut self, retry: Duration) -> Self {
        self.retry = retry;
        self
    }

    fn pool(&self) -> &sqlx::PgPool {
        self.service.store().pool()
    }

    /// Runs until `cancel` fires, restarting from the checkpoint after a failure.
    /// Only one instance leads at a time (an advisory lock); others stand by.
    pub async fn run(&self, cancel: CancellationToken) {
        loop {
            let flag = Some(self.flag.clone());
            let Some(mut lock) =
                Leadership::acquire_flagged(self.pool(), LEADER_KEY, self.retry, &cancel, flag)
                    .await
            else {
                return;
            };
            info!("process manager active");
            let result = self.run_once(&mut lock, &cancel).await;
            lock.release().await;
            match result {
                Ok(()) => return,
                Err(e) => {
                    warn!(error = %e, "process manager interrupted; resuming from its checkpoint");
                    metrics::counter!("shopfloor_process_failures_total").increment(1);
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(self.retry) => {}
                    }
                }
            }
        }
    }

    /// The position of the last event handled.
    pub async fn checkpoint(&self) -> Result<i64, ProcessError> {
        let checkpoint = Checkpoint::load(self.pool(), Reader::ProcessManager, CHECKPOINT).await?;
        Ok(checkpoint.position())
    }

    /// Leads until cancelled (Ok) or a failure (Err): the lock is re-checked every
    /// [`leader::CHECK_EVERY`] and the checkpoint moves only in a transaction fenced
    /// by it, so an instance that lost its session stops within about a second.
    async fn run_once(
        &self,
        lock: &mut Leadership,
        cancel: &CancellationToken,
    ) -> Result<(), ProcessError> {
        let mut checkpoint =
            Checkpoint::load(self.pool(), Reader::ProcessManager, CHECKPOINT).await?;
        let sub_cancel = cancel.child_token();
        let _stop = sub_cancel.clone().drop_guard();
        let mut subscription = self
            .service
            .store()
            .subscribe_all(checkpoint.position(), sub_cancel)
            .page_size(self.batch);
        let mut tick = tokio::time::interval(self.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut fence = tokio::time::interval(leader::CHECK_EVERY);
        fence.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                batch = subscription.next_batch(self.batch) => {
                    let Some(batch) = batch else { return Ok(()) };
                    let batch = batch?;
                    lock.check().await?;
                    for event in &batch {
                        self.handle(event).await?;
                    }
                    if let Some(last) = batch.last() {
                        let mut tx = lock.fenced().await?;
                        checkpoint.advance(&mut *tx, last.position).await?;
                        tx.commit().await?;
                        metrics::gauge!("shopfloor_process_position").set(last.position as f64);
                    }
                }
                _ = fence.tick() => lock.check().await?,
                _ = tick.tick() => self.check_calendar_policies().await?,
            }
        }
    }

    /// Handles one event: the commands that follow from it.
    #[instrument(skip_all, fields(position = event.position, event_type = %event.event_type), err(level = "warn", Display))]
    pub async fn handle(&self, event: &RecordedEvent) -> Result<(), ProcessError> {
        let id = event.event_id.to_string();
        let commands = match event.stream_type.as_str() {
            "machine" => {
                let Some(e) = self.decode::<MachineEvent>(event).await? else {
                    return Ok(());
                };
                let mut commands = Vec::new();
                if let Some(order_id) = flows::order_of_parts(&e) {
                    let (order, _) = self
                        .service
                        .load::<ProductionOrder>(order_id.as_str())
                        .await?;
                    match order.order() {
                        Some(o) => {
                            let output = self.output_lots(o).await?;
                            commands.extend(flows::on_parts_produced_into(
                                &id,
                                &e,
                                &OrderFacts::from(o),
                                &output,
                            ))
                        }
                        None => {
                            self.reject(event, &format!("{id}/order"), &format!("production_order/{order_id}"),
                                &format!("parts were reported for order {order_id}, which does not exist")).await?;
                        }
                    }
                }
                if let MachineEvent::MachineStateChanged { machine_id, .. }
                | MachineEvent::MachinePartsProduced { machine_id, .. } = &e
                {
                    let policies = self.policies_of(machine_id).await?;
                    if !policies.is_empty() {
                        let usage = self.usage(machine_id).await?;
                        commands.extend(flows::on_machine_usage(
                            &id,
                            &e,
                            &policies,
                            usage,
                            Utc::now(),
                        ));
                    }
                }
                commands
            }
            "production_order" if event.event_type == "OrderInspectionRecorded" => {
                let Some(e) = self.decode::<OrderEvent>(event).await? else {
                    return Ok(());
                };
                let OrderEvent::OrderInspectionRecorded { order_id, .. } = &e else {
                    return Ok(());
                };
                let (order, _) = self
                    .service
                    .load::<ProductionOrder>(order_id.as_str())
                    .await?;
                match order.order() {
                    Some(order) => {
                        let mut commands = self.spc_samples(&id, &e, order).await?;
                        commands.extend(self.inspection_holds(&e, order).await?);
                        commands
                    }
                    None => Vec::new(),
                }
            }
            "spc_characteristic" if event.event_type == "SpcCharacteristicDefined" => {
                if let Some(e) = self.decode::<SpcEvent>(event).await? {
                    self.index_characteristic(&e).await?;
                }
                Vec::new()
            }
            "maintenance_task" => {
                let Some(e) = self.decode::<TaskEvent>(event).await? else {
                    return Ok(());
                };
                match &e {
                    TaskEvent::MaintenanceTaskCompleted { machine_id, .. }
                    | TaskEvent::MaintenanceTaskCancelled { machine_id, .. } => {
                        let usage = self.usage(machine_id).await?;
                        flows::on_task_finished(&id, &e, usage)
                    }
                    _ => Vec::new(),
                }
            }
            "maintenance_policy" => {
                let Some(e) = self.decode::<PolicyEvent>(event).await? else {
                    return Ok(());
                };
                match &e {
                    PolicyEvent::PolicyDefined {
                        policy_id,
                        machine_id,
                        ..
                    } => {
                        self.index_policy(policy_id, machine_id, true).await?;
                        Vec::new()
                    }
                    PolicyEvent::PolicyDisabled {
                        policy_id,
                        machine_id,
                        ..
                    } => {
                        self.index_policy(policy_id, machine_id, false).await?;
                        Vec::new()
                    }
                    _ => flows::on_policy_due(&id, &e),
                }
            }
            _ => Vec::new(),
        };
        for command in commands {
            self.send(event, command).await?;
        }
        Ok(())
    }

    /// Decodes an event; one that does not decode is recorded and skipped.
    async fn decode<E: cqrs_es::DomainEvent>(
        &self,
        event: &RecordedEvent,
    ) -> Result<Option<E>, ProcessError> {
        match decode_event::<E>(event) {
            Ok(e) => Ok(Some(e)),
            Err(e) => {
                let key = format!("{}/decode", event.event_id);
                self.reject(event, &key, &event.stream().to_string(), &e.to_string())
                    .await?;
                Ok(None)
            }
        }
    }

    async fn send(&self, event: &RecordedEvent, issued: IssuedCommand) -> Result<(), ProcessError> {
        let target = format!(
            "{}/{}",
            issued.target.stream_type(),
            issued.target.stream_id()
        );
        let ctx = CommandContext {
            actor: ACTOR.to_string(),
            source: Source::Process,
            correlation_id: event
                .metadata
                .correlation_id
                .clone()
                .or_else(|| Some(event.event_id.to_string())),
            causation_id: Some(event.event_id.to_string()),
            request_id: None,
            command_id: Some(issued.command_id.clone()),
            occurred_at: event.metadata.occurred_at,
            expected_version: None,
            extra: Default::default(),
        };
        match self.service.execute(issued.target, &ctx).await {
            Ok(_) => Ok(()),
            Err(e @ (CommandError::Rejected { .. } | CommandError::VersionMismatch { .. })) => {
                self.reject(event, &issued.command_id, &target, &e.to_string())
                    .await
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn reject(
        &self,
        event: &RecordedEvent,
        command_id: &str,
        target: &str,
        reason: &str,
    ) -> Result<(), ProcessError> {
        warn!(%target, %reason, "a follow-up command was refused");
        metrics::counter!("shopfloor_process_rejections_total").increment(1);
        sqlx::query(
            "INSERT INTO process_rejections (command_id, position, event_id, event_type, target, reason) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (command_id) DO NOTHING",
        )
        .bind(command_id)
        .bind(event.position)
        .bind(event.event_id)
        .bind(&event.event_type)
        .bind(target)
        .bind(reason)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The output-lot rule of an order's product (ADR 0057): none unless its item has one.
    async fn output_lots(&self, order: &Order) -> Result<OutputLots, ProcessError> {
        let item = ItemId::from(order.product_id.clone());
        let (stock, _) = self.service.load::<InventoryItem>(item.as_str()).await?;
        Ok(stock
            .item()
            .and_then(|i| i.lot_rule)
            .map(|r| r.output)
            .unwrap_or_default())
    }

    /// The automatic holds an inspection triggers on its order's lots (ADR 0057): under
    /// the product item's rule, decided by the pure `lot::plan_inspection_hold`.
    async fn inspection_holds(
        &self,
        event: &OrderEvent,
        order: &Order,
    ) -> Result<Vec<IssuedCommand>, ProcessError> {
        let OrderEvent::OrderInspectionRecorded {
            order_id,
            inspection_id,
            sample_size,
            defects,
            passed,
            at,
            ..
        } = event
        else {
            return Ok(Vec::new());
        };
        let item = ItemId::from(order.product_id.clone());
        let (stock, _) = self.service.load::<InventoryItem>(item.as_str()).await?;
        let Some(item) = stock.item() else {
            return Ok(Vec::new());
        };
        Ok(lot::plan_inspection_hold(
            item,
            order_id,
            (inspection_id.as_str(), *sample_size, *defects, *passed),
            *at,
        ))
    }

    async fn index_policy(
        &self,
        policy: &PolicyId,
        machine: &MachineId,
        enabled: bool,
    ) -> Result<(), ProcessError> {
        sqlx::query(
            "INSERT INTO process_machine_policies (policy_id, machine_id, enabled) VALUES ($1, $2, $3) \
             ON CONFLICT (policy_id) DO UPDATE SET machine_id = excluded.machine_id, enabled = excluded.enabled",
        )
        .bind(policy.as_str())
        .bind(machine.as_str())
        .bind(enabled)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Keeps the index of characteristics the inspection flow reads.
    async fn index_characteristic(&self, event: &SpcEvent) -> Result<(), ProcessError> {
        let SpcEvent::SpcCharacteristicDefined {
            characteristic_id,
            chart,
            source,
            ..
        } = event
        else {
            return Ok(());
        };
        let product = match source {
            SampleSource::Inspections { product_id } => product_id.as_ref().map(|p| p.as_str()),
            _ => None,
        };
        sqlx::query(
            "INSERT INTO process_spc_characteristics \
             (characteristic_id, chart, source, source_kind, product_id) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (characteristic_id) DO UPDATE SET \
             chart = excluded.chart, source = excluded.source, \
             source_kind = excluded.source_kind, product_id = excluded.product_id",
        )
        .bind(characteristic_id.as_str())
        .bind(chart.as_str())
        .bind(sqlx::types::Json(source))
        .bind(source.as_str())
        .bind(product)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The SPC samples an inspection feeds (ADR 0056): the characteristics its measurements
    /// name, and those fed by every inspection (of its order's product).
    async fn spc_samples(
        &self,
        id: &str,
        event: &OrderEvent,
        order: &Order,
    ) -> Result<Vec<IssuedCommand>, ProcessError> {
        let named: Vec<String> = spc::measured_characteristics(event)
            .into_iter()
            .map(|c| c.to_string())
            .collect();
        let rows: Vec<(String, String, sqlx::types::Json<SampleSource>)> = sqlx::query_as(
            "SELECT characteristic_id, chart, source FROM process_spc_characteristics \
             WHERE characteristic_id = ANY($1) OR source_kind = 'inspections' \
             ORDER BY characteristic_id",
        )
        .bind(&named)
        .fetch_all(self.pool())
        .await?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let facts: Vec<CharacteristicFacts> = rows
            .into_iter()
            .filter_map(|(id, chart, source)| {
                Some(CharacteristicFacts {
                    characteristic_id: CharacteristicId::new(id).ok()?,
                    chart: ChartKind::ALL.into_iter().find(|c| c.as_str() == chart)?,
                    source: source.0,
                })
            })
            .collect();
        Ok(spc::on_inspection_recorded(
            id,
            event,
            &order.product_id,
            &facts,
        ))
    }

    async fn policies_of(&self, machine: &MachineId) -> Result<Vec<PolicyId>, ProcessError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT policy_id FROM process_machine_policies WHERE machine_id = $1 AND enabled \
             ORDER BY policy_id",
        )
        .bind(machine.as_str())
        .fetch_all(self.pool())
        .await?;
        Ok(ids
            .into_iter()
            .filter_map(|id| PolicyId::new(id).ok())
            .collect())
    }

    async fn usage(&self, machine: &MachineId) -> Result<MachineUsage, ProcessError> {
        let (m, _) = self.service.load::<Machine>(machine.as_str()).await?;
        Ok(m.machine()
            .map(|r| r.usage_as_of(Utc::now()))
            .unwrap_or(MachineUsage {
                run_seconds: 0,
                cycles: 0,
            }))
    }

    /// Checks every enabled policy against the clock (calendar-based triggers).
    pub async fn check_calendar_policies(&self) -> Result<(), ProcessError> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT policy_id, machine_id FROM process_machine_policies WHERE enabled ORDER BY policy_id",
        )
        .fetch_all(self.pool())
        .await?;
        let now = Utc::now();
        for (policy, machine) in rows {
            let (Ok(policy_id), Ok(machine_id)) =
                (PolicyId::new(&policy), MachineId::new(&machine))
            else {
                continue;
            };
            let usage = self.usage(&machine_id).await?;
            let ctx = CommandContext::new(ACTOR, Source::Process);
            let target = Target::MaintenancePolicy {
                policy_id,
                command: PolicyCommand::CheckDue(CheckDue { now, usage }),
            };
            match self.service.execute(target, &ctx).await {
                Ok(_) | Err(CommandError::Rejected { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}
