//! The benchmark workload, shared by `shopfloor bench commands` and the
//! postgres-es peer benchmark (`bench/peer`), so both measure the same thing.

use chrono::{DateTime, Duration, TimeZone, Utc};
use shopfloor_domain::machine::{
    ChangeState, MachineCommand, MachineStatus, RecordParts, RegisterMachine,
};
use shopfloor_domain::values::{CycleTime, LineId, MachineId, MachineType, ValueError};

fn epoch() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

/// Registers a benchmark machine.
pub fn register(machine: &MachineId) -> Result<MachineCommand, ValueError> {
    Ok(MachineCommand::RegisterMachine(RegisterMachine {
        machine_id: machine.clone(),
        machine_type: MachineType::new("press")?,
        line: LineId::new("bench")?,
        ideal_cycle_time_s: CycleTime::new(2.0)?,
        at: epoch(),
    }))
}

/// The `i`-th command of the workload: a state change every fourth command
/// (running and idle in turn), parts produced otherwise (one in ten with scrap).
pub fn command(i: usize) -> MachineCommand {
    let at = epoch() + Duration::seconds(i as i64);
    if i % 4 == 0 {
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
            scrap: u64::from(i % 10 == 0),
            order_id: None,
            at,
        })
    }
}
