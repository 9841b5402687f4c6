use chrono::{DateTime, TimeZone, Utc};
use rust_decimal::Decimal;
use shopfloor_commands::{CommandContext, CommandService, Outcome, Target};
use shopfloor_domain::inventory::{InventoryCommand, ItemType, ReceiveStock};
use shopfloor_domain::machine::{
    ChangeState, MachineCommand, MachineStatus, RecordParts, RegisterMachine,
};
use shopfloor_domain::order::{AssignOrder, BomLine, CreateOrder, OrderCommand, StartOrder};
use shopfloor_domain::values::*;
use shopfloor_eventstore::Source;

pub fn t(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, h, m, 0).unwrap()
}

pub fn ctx() -> CommandContext {
    CommandContext::new("tester", Source::Api)
}

pub async fn run(service: &CommandService, target: Target) -> Outcome {
    service.execute(target, &ctx()).await.unwrap()
}

pub fn register(id: &str) -> Target {
    Target::Machine {
        machine_id: MachineId::new(id).unwrap(),
        command: MachineCommand::RegisterMachine(RegisterMachine {
            machine_id: MachineId::new(id).unwrap(),
            machine_type: MachineType::new("press").unwrap(),
            line: LineId::new("L1").unwrap(),
            ideal_cycle_time_s: CycleTime::new(2.0).unwrap(),
            at: t(6, 0),
        }),
    }
}

pub fn state(id: &str, state: MachineStatus, at: DateTime<Utc>) -> Target {
    Target::Machine {
        machine_id: MachineId::new(id).unwrap(),
        command: MachineCommand::ChangeState(ChangeState {
            state,
            reason: None,
            planned: None,
            at,
        }),
    }
}

pub fn parts(id: &str, good: u64, scrap: u64, order: Option<&str>, at: DateTime<Utc>) -> Target {
    Target::Machine {
        machine_id: MachineId::new(id).unwrap(),
        command: MachineCommand::RecordParts(RecordParts {
            good,
            scrap,
            order_id: order.map(|o| OrderId::new(o).unwrap()),
            at,
        }),
    }
}

pub fn order_target(id: &str, command: OrderCommand) -> Target {
    Target::ProductionOrder {
        order_id: OrderId::new(id).unwrap(),
        command,
    }
}

pub fn create_order(id: &str, product: &str, qty: u64, bom: &[(&str, i64)]) -> Target {
    order_target(
        id,
        OrderCommand::CreateOrder(CreateOrder {
            order_id: OrderId::new(id).unwrap(),
            product_id: ProductId::new(product).unwrap(),
            quantity: OrderQuantity::new(qty).unwrap(),
            bom: bom
                .iter()
                .map(|(item, q)| BomLine {
                    item_id: ItemId::new(item).unwrap(),
                    qty_per_unit: Quantity::new(Decimal::from(*q)).unwrap(),
                    lots: Vec::new(),
                })
                .collect(),
            input_location: None,
            output_location: None,
            at: t(6, 0),
        }),
    )
}

pub fn assign(id: &str, machine: &str) -> Target {
    order_target(
        id,
        OrderCommand::AssignOrder(AssignOrder {
            operator_ids: None,
            machine_id: MachineId::new(machine).unwrap(),
            at: t(6, 1),
        }),
    )
}

pub fn start(id: &str) -> Target {
    order_target(id, OrderCommand::StartOrder(StartOrder { at: t(6, 2) }))
}

pub fn receive(item: &str, location: &str, qty: i64) -> Target {
    Target::InventoryItem {
        item_id: ItemId::new(item).unwrap(),
        command: InventoryCommand::ReceiveStock(ReceiveStock {
            item_id: ItemId::new(item).unwrap(),
            item_type: ItemType::Raw,
            location: Location::new(location).unwrap(),
            qty: Quantity::new(Decimal::from(qty)).unwrap(),
            reason: None,
            at: t(5, 0),
        }),
    }
}
