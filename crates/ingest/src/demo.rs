//! The demo director: the people of the simulated plant (issue 14). Beside the simulator, it
//! registers a few operators and, through the one writer, runs orders on every machine:
//! creates one, assigns it to the machine and an operator, starts it and clocks the operator
//! on; when the machine has made the quantity, clocks the operator off and completes it. Stops
//! the simulator reported without a reason are classified a little later, as a supervisor
//! going through the list would.
//!
//! Each round is planned by the pure [`plan_round`] from the shared [`DemoFloor`], then
//! executed command by command; a refused command is logged and the demo goes on.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use shopfloor_commands::{CommandContext, CommandError, CommandService, RejectionKind};
use shopfloor_domain::machine::{ClassifyStop, MachineCommand};
use shopfloor_domain::operator::{ClockOff, ClockOn, OperatorCommand, RegisterOperator};
use shopfloor_domain::order::{AssignOrder, CompleteOrder, CreateOrder, OrderCommand, StartOrder};
use shopfloor_domain::process::Target;
use shopfloor_domain::values::{
    Actor, LineId, MachineId, OperatorId, OrderId, OrderQuantity, ProductId, ReasonCode, Skill,
    Text, ValueError,
};
use shopfloor_eventstore::Source;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::simulator::{DemoFloor, DemoOrder, SimulatedMachine, StopToClassify};

/// Names of the demo's operators.
const NAMES: [&str; 6] = [
    "Ada Moreau",
    "Ben Okafor",
    "Chen Li",
    "Dana Kovac",
    "Emil Sørensen",
    "Farah Haddad",
];

/// What the director does in one round.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Machine `i` has no order: give it one.
    Start { machine: usize },
    /// Machine `i` made its order's quantity: close it.
    Finish { machine: usize, order: DemoOrder },
    /// Give a stop its reason.
    Classify(StopToClassify),
}

/// The steps of a round (pure): start an order where a machine has none, finish the ones
/// made, classify the stops older than `classify_after`.
pub fn plan_round(
    orders: &[Option<DemoOrder>],
    stops: &[StopToClassify],
    now: DateTime<Utc>,
    classify_after: chrono::Duration,
) -> Vec<Step> {
    let mut steps = Vec::new();
    for (machine, order) in orders.iter().enumerate() {
        match order {
            None => steps.push(Step::Start { machine }),
            Some(o) if o.made >= o.quantity => steps.push(Step::Finish {
                machine,
                order: o.clone(),
            }),
            Some(_) => {}
        }
    }
    steps.extend(
        stops
            .iter()
            .filter(|s| s.stop_at + classify_after <= now)
            .cloned()
            .map(Step::Classify),
    );
    steps
}

/// The operator who works machine `i` (one operator tends two machines).
pub fn operator_of(i: usize) -> String {
    format!("OP-{:02}", i / 2 + 1)
}

/// How the director paces the demo.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// How often it looks at the floor.
    pub every: Duration,
    /// How long after a stop began it is classified.
    pub classify_after: Duration,
    /// How long an order takes at full speed, in seconds.
    pub order_s: f64,
}

impl Default for Pace {
    /// A round every 5 s, stops classified 45 s after they began, orders of about 4 minutes.
    fn default() -> Self {
        Self {
            every: Duration::from_secs(5),
            classify_after: Duration::from_secs(45),
            order_s: 240.0,
        }
    }
}

/// The units an order of machine `m` asks for: `order_s` of work at full speed.
pub fn quantity_for(m: &SimulatedMachine, order_s: f64) -> u64 {
    ((order_s / m.ideal_cycle_time_s).round() as u64).max(1)
}

/// Runs the director until `cancel`: registers the operators, then plays a round every
/// `pace.every`.
pub async fn direct(
    service: CommandService,
    machines: Vec<SimulatedMachine>,
    floor: Arc<DemoFloor>,
    pace: Pace,
    cancel: CancellationToken,
) {
    let Pace {
        every,
        classify_after,
        order_s,
    } = pace;
    let ctx = CommandContext::new("demo-director", Source::System);
    register_operators(&service, &ctx, &machines).await;
    let classify_after = chrono::Duration::from_std(classify_after).unwrap_or_default();
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = interval.tick() => {}
        }
        let now = Utc::now();
        let steps = {
            let orders = floor.orders.lock().unwrap_or_else(|p| p.into_inner());
            let stops = floor.stops.lock().unwrap_or_else(|p| p.into_inner());
            plan_round(&orders, &stops, now, classify_after)
        };
        for step in steps {
            if let Err(e) = execute(&service, &ctx, &machines, &floor, step, now, order_s).await {
                warn!(error = %e, "demo director: a command was refused");
            }
        }
    }
}

/// Registers the demo's operators (those already registered are left as they are).
async fn register_operators(
    service: &CommandService,
    ctx: &CommandContext,
    machines: &[SimulatedMachine],
) {
    let n = machines.len().div_ceil(2);
    for k in 0..n {
        let id = operator_of(k * 2);
        let lines: Vec<String> = machines
            .iter()
            .enumerate()
            .filter(|(i, _)| operator_of(*i) == id)
            .map(|(_, m)| m.line.clone())
            .collect();
        let register = || -> Result<Target, ValueError> {
            let operator_id = OperatorId::new(&id)?;
            Ok(Target::Operator {
                operator_id: operator_id.clone(),
                command: OperatorCommand::RegisterOperator(RegisterOperator {
                    operator_id,
                    name: Text::new(NAMES[k % NAMES.len()])?,
                    badge_id: None,
                    skills: vec![Skill::new("machining")?],
                    lines: lines.iter().map(LineId::new).collect::<Result<_, _>>()?,
                    at: Utc::now(),
                }),
            })
        };
        let Ok(target) = register() else { continue };
        match service.execute(target, ctx).await {
            Ok(_) => info!(operator = %id, "registered a demo operator"),
            Err(CommandError::Rejected {
                kind: RejectionKind::Conflict,
                ..
            }) => {}
            Err(e) => warn!(operator = %id, error = %e, "demo operator not registered"),
        }
    }
}

/// A command error, or a value that would not make one.
#[derive(Debug, thiserror::Error)]
enum DirectorError {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error(transparent)]
    Value(#[from] ValueError),
}

fn order_target(order_id: &OrderId, command: OrderCommand) -> Target {
    Target::ProductionOrder {
        order_id: order_id.clone(),
        command,
    }
}

/// Executes one step through the one writer.
async fn execute(
    service: &CommandService,
    ctx: &CommandContext,
    machines: &[SimulatedMachine],
    floor: &DemoFloor,
    step: Step,
    now: DateTime<Utc>,
    order_s: f64,
) -> Result<(), DirectorError> {
    match step {
        Step::Start { machine } => {
            let m = &machines[machine];
            let order_id = OrderId::new(format!("{}-{}", m.machine_id, now.format("%H%M%S")))?;
            let machine_id = MachineId::new(&m.machine_id)?;
            let operator_id = OperatorId::new(operator_of(machine))?;
            let quantity = quantity_for(m, order_s);
            let commands = [
                OrderCommand::CreateOrder(CreateOrder {
                    order_id: order_id.clone(),
                    product_id: ProductId::new(format!("{}-part", m.machine_type))?,
                    quantity: OrderQuantity::new(quantity)?,
                    bom: Vec::new(),
                    input_location: None,
                    output_location: None,
                    at: now,
                }),
                OrderCommand::AssignOrder(AssignOrder {
                    machine_id: machine_id.clone(),
                    operator_ids: Some(vec![operator_id.clone()]),
                    at: now,
                }),
                OrderCommand::StartOrder(StartOrder { at: now }),
            ];
            for command in commands {
                service
                    .execute(order_target(&order_id, command), ctx)
                    .await?;
            }
            let clock_on = OperatorCommand::ClockOn(ClockOn {
                order_id: order_id.clone(),
                machine_id: Some(machine_id),
                at: now,
            });
            service
                .execute(
                    Target::Operator {
                        operator_id,
                        command: clock_on,
                    },
                    ctx,
                )
                .await?;
            let mut orders = floor.orders.lock().unwrap_or_else(|p| p.into_inner());
            orders[machine] = Some(DemoOrder {
                order_id: order_id.to_string(),
                quantity,
                made: 0,
            });
        }
        Step::Finish { machine, order } => {
            {
                let mut orders = floor.orders.lock().unwrap_or_else(|p| p.into_inner());
                orders[machine] = None;
            }
            let order_id = OrderId::new(&order.order_id)?;
            let clock_off = OperatorCommand::ClockOff(ClockOff {
                order_id: order_id.clone(),
                at: now,
            });
            service
                .execute(
                    Target::Operator {
                        operator_id: OperatorId::new(operator_of(machine))?,
                        command: clock_off,
                    },
                    ctx,
                )
                .await?;
            let complete = OrderCommand::CompleteOrder(CompleteOrder { at: now });
            service
                .execute(order_target(&order_id, complete), ctx)
                .await?;
        }
        Step::Classify(stop) => {
            {
                let mut stops = floor.stops.lock().unwrap_or_else(|p| p.into_inner());
                stops.retain(|s| s != &stop);
            }
            let command = MachineCommand::ClassifyStop(ClassifyStop {
                stop_at: stop.stop_at,
                reason_code: ReasonCode::new(stop.reason_code)?,
                by: Actor::new("supervisor-demo")?,
                at: now,
            });
            service
                .execute(
                    Target::Machine {
                        machine_id: MachineId::new(&stop.machine_id)?,
                        command,
                    },
                    ctx,
                )
                .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(made: u64) -> Option<DemoOrder> {
        Some(DemoOrder {
            order_id: "O".into(),
            quantity: 10,
            made,
        })
    }

    #[test]
    fn a_round_starts_finishes_and_classifies_what_is_due() {
        let now = Utc::now();
        let stop = |secs: i64| StopToClassify {
            machine_id: "m".into(),
            stop_at: now - chrono::Duration::seconds(secs),
            reason_code: "small_stop.jam",
        };
        let steps = plan_round(
            &[None, order(3), order(10)],
            &[stop(5), stop(60)],
            now,
            chrono::Duration::seconds(30),
        );
        assert_eq!(
            steps,
            vec![
                Step::Start { machine: 0 },
                Step::Finish {
                    machine: 2,
                    order: order(10).unwrap()
                },
                Step::Classify(stop(60)),
            ]
        );
    }

    #[test]
    fn parts_never_outrun_the_ideal_cycle_time() {
        let mut progress = 0.0;
        let made: u64 = (0..1000)
            .map(|_| crate::simulator::parts_in(&mut progress, 1.0, 3.0, 0.9))
            .sum();
        // 1000 s at 90 % of a 3 s cycle: 300 parts at most (float rounding may keep one back).
        assert!((299..=300).contains(&made), "{made}");
        let mut progress = 0.0;
        let fast: u64 = (0..1000)
            .map(|_| crate::simulator::parts_in(&mut progress, 0.1, 1.0, 0.8))
            .sum();
        assert!((79..=80).contains(&fast), "{fast}");
    }
}
