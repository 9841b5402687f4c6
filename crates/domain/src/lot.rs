//! Lots: identified quantities of an item, traced from receipt through production (ADR 0057).
//!
//! Lots live inside their item's stream (`inventory_item`, [`crate::inventory`]): the item's
//! level at a location is its untracked stock plus the stock of its lots there, so every
//! decision that touches both (a backflush that must skip held lots, a count that shrinks a
//! location) is made on one aggregate. An item without lots behaves exactly as before lots
//! existed.
//!
//! # Layout
//! - [`Lot`], [`LotStatus`], [`LotRef`], [`LotTake`]: the state and the facts events carry.
//! - [`LotRule`]: per item, how production names its output lots ([`OutputLots`]: none, per
//!   order, per shift) and in which order backflush takes its lots ([`PickOrder`]: FIFO by
//!   creation, FEFO by expiry).
//! - The commands ([`ReceiveLot`], [`ProduceLot`], [`ConsumeLots`], [`SplitLot`],
//!   [`MergeLots`], [`MoveLot`], [`HoldLot`], [`ReleaseLot`], [`ScrapLot`], [`SetLotRule`]) and
//!   their pure decisions (`decide_*`, called by the item aggregate).
//! - [`output_lot`]: the output lot a production report fills under a rule (process flow 1).
//! - [`plan_forward_hold`]: the per-lot hold commands of a hold over a forward trace, with
//!   deterministic command ids (the plan step of the one-command forward hold).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Timelike, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::inventory::{Allocation, InventoryCommand, InventoryError, InventoryEvent, Item};
use crate::inventory::{ConsumeStock, ItemType, ProduceStock};
use crate::process::{IssuedCommand, Target};
use crate::values::{ItemId, Location, LotId, MachineId, OrderId, Quantity, Text};

/// Whether a lot may be consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LotStatus {
    Available,
    /// On quality hold (quarantine): never consumed by backflush, never merged.
    Held,
    /// Scrapped by a decision: its stock left the levels.
    Scrapped,
}

/// A lot named across items.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LotRef {
    pub item_id: ItemId,
    pub lot_id: LotId,
}

/// Stock taken from a lot (or from the item's untracked stock, `lot_id: None`) at a location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LotTake {
    pub lot_id: Option<LotId>,
    pub location: Location,
    pub qty: Decimal,
    /// What is left there afterwards (of the lot, or of the untracked stock).
    pub new_qty: Decimal,
}

/// In which order backflush takes an item's lots at a location.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PickOrder {
    /// First in, first out: by the order the lots were created in the item.
    #[default]
    Fifo,
    /// First expired, first out: earliest expiry first, lots without expiry last, then FIFO.
    Fefo,
}

/// How production of an item names its output lots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum OutputLots {
    /// No output lots: production adds untracked stock (as before lots).
    #[default]
    None,
    /// One lot per order: the lot id is the order id.
    PerOrder,
    /// One lot per order and shift: shifts of `hours` hours from `start_hour` (UTC) each day;
    /// the lot id is `{order}-{YYYYMMDD}-S{n}` (the day the shift starts, n from 1).
    PerShift { hours: u32, start_hour: u32 },
}

/// When an item's production lots go on hold without a person deciding: an inspection of
/// the producing order that fails (the inspector's verdict), or whose defect rate is above
/// a limit, holds every available lot of that order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AutoHold {
    /// A failed inspection holds the order's lots.
    #[serde(default)]
    pub failed_inspection: bool,
    /// An inspection with more defective parts per million of its sample than this holds
    /// the order's lots.
    #[serde(default)]
    pub above_defects_ppm: Option<u32>,
}

impl AutoHold {
    /// Why an inspection of `defects` in `sample_size` (`passed` or not) triggers the rule.
    pub fn triggered_by(&self, sample_size: u64, defects: u64, passed: bool) -> Option<String> {
        let ppm = if sample_size == 0 {
            0
        } else {
            u128::from(defects) * 1_000_000 / u128::from(sample_size)
        };
        if self.failed_inspection && !passed {
            return Some(format!(
                "failed inspection: {defects} defects in a sample of {sample_size}"
            ));
        }
        match self.above_defects_ppm {
            Some(limit) if ppm > u128::from(limit) => Some(format!(
                "inspection above the limit: {defects} defects in a sample of {sample_size} \
                 ({ppm} ppm > {limit} ppm)"
            )),
            _ => None,
        }
    }
}

/// An item's lot rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LotRule {
    #[serde(default)]
    pub output: OutputLots,
    #[serde(default)]
    pub pick: PickOrder,
    /// Automatic holds of the item's production lots (none unless set).
    #[serde(default, skip_serializing_if = "AutoHold::is_off")]
    pub hold: AutoHold,
}

impl AutoHold {
    fn is_off(&self) -> bool {
        *self == AutoHold::default()
    }
}

impl LotRule {
    fn check(&self) -> Result<(), InventoryError> {
        if self.hold.above_defects_ppm.is_some_and(|p| p >= 1_000_000) {
            return Err(InventoryError::InvalidLotRule {
                detail: "above_defects_ppm is below 1,000,000 (a whole sample defective)".into(),
            });
        }
        match self.output {
            OutputLots::PerShift { hours, start_hour }
                if !(1..=24).contains(&hours) || start_hour >= 24 =>
            {
                Err(InventoryError::InvalidLotRule {
                    detail: "a shift lasts 1 to 24 hours and starts at an hour from 0 to 23".into(),
                })
            }
            _ => Ok(()),
        }
    }
}

/// A lot of an item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lot {
    pub lot_id: LotId,
    pub supplier_lot: Option<Text>,
    pub expiry: Option<DateTime<Utc>>,
    /// Creation order within the item (FIFO).
    pub seq: u64,
    pub created_at: DateTime<Utc>,
    /// The order that produced it, for a production lot.
    pub order_id: Option<OrderId>,
    /// Stock per location; an emptied location stays listed at zero.
    pub stock: BTreeMap<Location, Decimal>,
    pub status: LotStatus,
    pub hold_reason: Option<Text>,
}

impl Lot {
    /// Its stock at `location`.
    pub fn at(&self, location: &Location) -> Decimal {
        self.stock.get(location).copied().unwrap_or_default()
    }

    /// Its stock over all locations.
    pub fn total(&self) -> Decimal {
        self.stock
            .values()
            .fold(Decimal::ZERO, |s, q| s.saturating_add(*q))
    }
}

/// The output lot that production of an order at floor time `at` fills under `rule`.
pub fn output_lot(rule: &OutputLots, order_id: &OrderId, at: DateTime<Utc>) -> Option<LotId> {
    match *rule {
        OutputLots::None => None,
        OutputLots::PerOrder => LotId::new(order_id.as_str()).ok(),
        OutputLots::PerShift { hours, start_hour } => {
            let hours = hours.clamp(1, 24);
            let shifted = at - Duration::hours(i64::from(start_hour.min(23)));
            let n = shifted.hour() / hours + 1;
            let day = shifted.format("%Y%m%d");
            LotId::new(format!("{order_id}-{day}-S{n}")).ok()
        }
    }
}

/// The hold commands of a hold `hold_id` over `lots` (a lot and its forward trace), one per
/// lot, each with the command id `{hold_id}/{item}/{lot}`: a retried plan issues the same ids,
/// so the one writer appends nothing twice.
pub fn plan_forward_hold(
    hold_id: &Text,
    reason: &Text,
    lots: &[LotRef],
    at: DateTime<Utc>,
) -> Vec<IssuedCommand> {
    let mut seen = std::collections::BTreeSet::new();
    lots.iter()
        .filter(|lot| seen.insert((*lot).clone()))
        .map(|lot| IssuedCommand {
            command_id: format!("{hold_id}/{}/{}", lot.item_id, lot.lot_id),
            target: Target::InventoryItem {
                item_id: lot.item_id.clone(),
                command: InventoryCommand::HoldLot(HoldLot {
                    item_id: lot.item_id.clone(),
                    lot_id: lot.lot_id.clone(),
                    reason: reason.clone(),
                    hold_id: Some(hold_id.clone()),
                    at,
                }),
            },
        })
        .collect()
}

/// The holds an inspection of `order_id` triggers under `item`'s automatic-hold rule: one
/// per available lot of the item that the order produced and that still has stock, under
/// the hold id `{order}/inspection/{inspection}` (deterministic, so a redelivered
/// inspection holds nothing twice). Empty when the rule is off or not triggered.
pub fn plan_inspection_hold(
    item: &Item,
    order_id: &OrderId,
    inspection: (&str, u64, u64, bool),
    at: DateTime<Utc>,
) -> Vec<IssuedCommand> {
    let (inspection_id, sample_size, defects, passed) = inspection;
    let Some(rule) = item.lot_rule else {
        return Vec::new();
    };
    let Some(why) = rule.hold.triggered_by(sample_size, defects, passed) else {
        return Vec::new();
    };
    let lots: Vec<LotRef> = item
        .lots
        .values()
        .filter(|l| l.order_id.as_ref() == Some(order_id))
        .filter(|l| l.status == LotStatus::Available && l.total() > Decimal::ZERO)
        .map(|l| LotRef {
            item_id: item.item_id.clone(),
            lot_id: l.lot_id.clone(),
        })
        .collect();
    let (Ok(hold_id), Ok(reason)) = (
        Text::new(format!("{order_id}/inspection/{inspection_id}")),
        Text::new(format!(
            "{why} (order {order_id}, inspection {inspection_id})"
        )),
    ) else {
        return Vec::new();
    };
    plan_forward_hold(&hold_id, &reason, &lots, at)
}

/// Receives a lot of raw material (or any item) at a location.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceiveLot {
    pub item_id: ItemId,
    pub item_type: ItemType,
    pub lot_id: LotId,
    pub supplier_lot: Option<Text>,
    pub location: Location,
    pub qty: Quantity,
    pub expiry: Option<DateTime<Utc>>,
    pub reason: Option<Text>,
    pub at: DateTime<Utc>,
}

/// Backflush: the good units of an order, into an output lot. Never refused for lack of
/// anything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProduceLot {
    pub produce: ProduceStock,
    pub lot_id: LotId,
    pub machine_id: Option<MachineId>,
}

/// Backflush: consumption that feeds an output lot (genealogy). Never refused for lack of
/// stock; held lots are skipped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsumeLots {
    pub consume: ConsumeStock,
    pub into: Option<LotRef>,
    /// Lots to take first, in this order, while available (the lots named on the order).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefer: Vec<LotId>,
}

/// Splits part of a lot at a location into a new lot (same item, same attributes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitLot {
    pub item_id: ItemId,
    pub lot_id: LotId,
    pub new_lot_id: LotId,
    pub location: Location,
    pub qty: Quantity,
    pub reason: Option<Text>,
    pub at: DateTime<Utc>,
}

/// Merges all the stock of `sources` at a location into `into` (new or existing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergeLots {
    pub item_id: ItemId,
    pub sources: Vec<LotId>,
    pub into: LotId,
    pub location: Location,
    pub reason: Option<Text>,
    pub at: DateTime<Utc>,
}

/// Moves stock of a lot between locations (`qty: None`: all of it at `from`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MoveLot {
    pub item_id: ItemId,
    pub lot_id: LotId,
    pub from: Location,
    pub to: Location,
    pub qty: Option<Quantity>,
    pub reason: Option<Text>,
    pub at: DateTime<Utc>,
}

/// Puts a lot on quality hold. Holding a held lot decides nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HoldLot {
    pub item_id: ItemId,
    pub lot_id: LotId,
    pub reason: Text,
    /// The hold this belongs to (a forward hold holds many lots under one id).
    pub hold_id: Option<Text>,
    pub at: DateTime<Utc>,
}

/// Releases a held lot (a quality decision).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseLot {
    pub item_id: ItemId,
    pub lot_id: LotId,
    pub reason: Text,
    pub at: DateTime<Utc>,
}

/// Scraps a lot (a quality decision): its stock leaves the levels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScrapLot {
    pub item_id: ItemId,
    pub lot_id: LotId,
    pub reason: Text,
    pub at: DateTime<Utc>,
}

/// Sets an item's lot rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetLotRule {
    pub item_id: ItemId,
    pub item_type: ItemType,
    pub rule: LotRule,
    pub at: DateTime<Utc>,
}

fn not_found(item_id: &ItemId, lot_id: &LotId) -> InventoryError {
    InventoryError::LotNotFound {
        item_id: item_id.clone(),
        lot_id: lot_id.clone(),
    }
}

/// The item and its lot `lot_id`, or [`InventoryError::LotNotFound`].
fn lot_of<'a>(
    item: Option<&'a Item>,
    item_id: &ItemId,
    lot_id: &LotId,
) -> Result<(&'a Item, &'a Lot), InventoryError> {
    item.and_then(|i| i.lots.get(lot_id).map(|l| (i, l)))
        .ok_or_else(|| not_found(item_id, lot_id))
}

fn short(lot: &Lot, location: &Location, requested: Decimal) -> InventoryError {
    InventoryError::InsufficientLotStock {
        lot_id: lot.lot_id.clone(),
        location: location.clone(),
        available: lot.at(location),
        requested,
    }
}

fn overflow(item_id: &ItemId, location: &Location) -> InventoryError {
    InventoryError::LevelOverflow {
        item_id: item_id.clone(),
        location: location.clone(),
    }
}

pub(crate) fn decide_receive(
    item: Option<&Item>,
    cmd: ReceiveLot,
) -> Result<Vec<InventoryEvent>, InventoryError> {
    if item.is_some_and(|i| i.lots.contains_key(&cmd.lot_id)) {
        return Err(InventoryError::LotExists { lot_id: cmd.lot_id });
    }
    let level = item.map_or(Decimal::ZERO, |i| i.level(cmd.location.as_str()));
    let new_level = level
        .checked_add(cmd.qty.value())
        .ok_or_else(|| overflow(&cmd.item_id, &cmd.location))?;
    Ok(vec![
        InventoryEvent::InventoryReceived {
            item_id: cmd.item_id.clone(),
            item_type: cmd.item_type,
            location: cmd.location.clone(),
            qty: cmd.qty,
            new_level,
            reason: cmd.reason,
            at: cmd.at,
        },
        InventoryEvent::InventoryLotReceived {
            item_id: cmd.item_id,
            item_type: cmd.item_type,
            lot_id: cmd.lot_id,
            supplier_lot: cmd.supplier_lot,
            location: cmd.location,
            qty: cmd.qty,
            expiry: cmd.expiry,
            at: cmd.at,
        },
    ])
}

/// The events of a production into `lot`: the level's, then the lot's.
pub(crate) fn decide_produce(
    item: Option<&Item>,
    item_type: ItemType,
    cmd: ProduceLot,
    produced: InventoryEvent,
) -> Vec<InventoryEvent> {
    let p = cmd.produce;
    let new_qty = item
        .and_then(|i| i.lots.get(&cmd.lot_id))
        .map_or(Decimal::ZERO, |l| l.at(&p.location))
        .saturating_add(p.qty.value());
    vec![
        produced,
        InventoryEvent::InventoryLotProduced {
            item_id: p.item_id,
            item_type,
            lot_id: cmd.lot_id,
            order_id: p.order_id,
            machine_id: cmd.machine_id,
            location: p.location,
            qty: p.qty,
            new_qty,
            at: p.at,
        },
    ]
}

pub(crate) fn decide_split(
    item: Option<&Item>,
    cmd: SplitLot,
) -> Result<Vec<InventoryEvent>, InventoryError> {
    let (item, lot) = lot_of(item, &cmd.item_id, &cmd.lot_id)?;
    if lot.status == LotStatus::Scrapped {
        return Err(InventoryError::LotScrapped { lot_id: cmd.lot_id });
    }
    if item.lots.contains_key(&cmd.new_lot_id) {
        return Err(InventoryError::LotExists {
            lot_id: cmd.new_lot_id,
        });
    }
    let have = lot.at(&cmd.location);
    if have < cmd.qty.value() {
        return Err(short(lot, &cmd.location, cmd.qty.value()));
    }
    Ok(vec![InventoryEvent::InventoryLotSplit {
        item_id: cmd.item_id,
        item_type: item.item_type,
        lot_id: cmd.lot_id,
        new_lot_id: cmd.new_lot_id,
        location: cmd.location,
        qty: cmd.qty,
        from_new_qty: have - cmd.qty.value(),
        reason: cmd.reason,
        at: cmd.at,
    }])
}

pub(crate) fn decide_merge(
    item: Option<&Item>,
    cmd: MergeLots,
) -> Result<Vec<InventoryEvent>, InventoryError> {
    let mut unique = std::collections::BTreeSet::new();
    if cmd.sources.is_empty()
        || cmd.sources.contains(&cmd.into)
        || !cmd.sources.iter().all(|s| unique.insert(s))
    {
        return Err(InventoryError::InvalidMerge);
    }
    let Some(item) = item else {
        return Err(not_found(&cmd.item_id, &cmd.sources[0]));
    };
    let target = item.lots.get(&cmd.into);
    let mut sources = Vec::new();
    let mut total = target.map_or(Decimal::ZERO, |t| t.at(&cmd.location));
    let mut expiry: Option<DateTime<Utc>> = target.and_then(|t| t.expiry);
    let mut supplier: Option<Option<Text>> = target.map(|t| t.supplier_lot.clone());
    for id in cmd.sources.iter().chain(target.map(|t| &t.lot_id)) {
        let (_, lot) = lot_of(Some(item), &cmd.item_id, id)?;
        if lot.status != LotStatus::Available {
            return Err(InventoryError::LotNotAvailable {
                lot_id: id.clone(),
                status: lot.status,
            });
        }
    }
    for id in &cmd.sources {
        let (_, lot) = lot_of(Some(item), &cmd.item_id, id)?;
        let qty = lot.at(&cmd.location);
        total = total
            .checked_add(qty)
            .ok_or_else(|| overflow(&cmd.item_id, &cmd.location))?;
        expiry = match (expiry, lot.expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        supplier = match supplier {
            None => Some(lot.supplier_lot.clone()),
            Some(s) if s == lot.supplier_lot => Some(s),
            Some(_) => Some(None),
        };
        sources.push(LotTake {
            lot_id: Some(id.clone()),
            location: cmd.location.clone(),
            qty,
            new_qty: Decimal::ZERO,
        });
    }
    Ok(vec![InventoryEvent::InventoryLotsMerged {
        item_id: cmd.item_id,
        item_type: item.item_type,
        sources,
        into: cmd.into,
        location: cmd.location,
        into_new_qty: total,
        expiry,
        supplier_lot: supplier.flatten(),
        reason: cmd.reason,
        at: cmd.at,
    }])
}

pub(crate) fn decide_move(
    item: Option<&Item>,
    cmd: MoveLot,
) -> Result<Vec<InventoryEvent>, InventoryError> {
    let (item, lot) = lot_of(item, &cmd.item_id, &cmd.lot_id)?;
    if cmd.from == cmd.to {
        return Err(InventoryError::SameLocation);
    }
    if lot.status == LotStatus::Scrapped {
        return Err(InventoryError::LotScrapped { lot_id: cmd.lot_id });
    }
    let have = lot.at(&cmd.from);
    let qty = cmd.qty.map_or(have, Quantity::value);
    if qty <= Decimal::ZERO || have < qty {
        return Err(short(lot, &cmd.from, qty));
    }
    let to_new_level = item
        .level(cmd.to.as_str())
        .checked_add(qty)
        .ok_or_else(|| overflow(&cmd.item_id, &cmd.to))?;
    Ok(vec![InventoryEvent::InventoryLotMoved {
        item_id: cmd.item_id,
        item_type: item.item_type,
        lot_id: cmd.lot_id,
        qty,
        from_new_qty: have - qty,
        to_new_qty: lot.at(&cmd.to) + qty,
        from_new_level: item.level(cmd.from.as_str()) - qty,
        to_new_level,
        from: cmd.from,
        to: cmd.to,
        reason: cmd.reason,
        at: cmd.at,
    }])
}

pub(crate) fn decide_hold(
    item: Option<&Item>,
    cmd: HoldLot,
) -> Result<Vec<InventoryEvent>, InventoryError> {
    let (item, lot) = lot_of(item, &cmd.item_id, &cmd.lot_id)?;
    match lot.status {
        LotStatus::Scrapped => Err(InventoryError::LotScrapped { lot_id: cmd.lot_id }),
        LotStatus::Held => Ok(Vec::new()),
        LotStatus::Available => Ok(vec![InventoryEvent::InventoryLotHeld {
            item_id: cmd.item_id,
            item_type: item.item_type,
            lot_id: cmd.lot_id,
            hold_id: cmd.hold_id,
            reason: cmd.reason,
            at: cmd.at,
        }]),
    }
}

pub(crate) fn decide_release(
    item: Option<&Item>,
    cmd: ReleaseLot,
) -> Result<Vec<InventoryEvent>, InventoryError> {
    let (item, lot) = lot_of(item, &cmd.item_id, &cmd.lot_id)?;
    if lot.status != LotStatus::Held {
        return Err(InventoryError::LotNotHeld { lot_id: cmd.lot_id });
    }
    Ok(vec![InventoryEvent::InventoryLotReleased {
        item_id: cmd.item_id,
        item_type: item.item_type,
        lot_id: cmd.lot_id,
        reason: cmd.reason,
        at: cmd.at,
    }])
}

pub(crate) fn decide_scrap(
    item: Option<&Item>,
    cmd: ScrapLot,
) -> Result<Vec<InventoryEvent>, InventoryError> {
    let (item, lot) = lot_of(item, &cmd.item_id, &cmd.lot_id)?;
    if lot.status == LotStatus::Scrapped {
        return Err(InventoryError::LotScrapped { lot_id: cmd.lot_id });
    }
    let allocations = lot
        .stock
        .iter()
        .filter(|(_, q)| **q > Decimal::ZERO)
        .map(|(location, q)| Allocation {
            location: location.clone(),
            qty: *q,
            new_level: (item.level(location.as_str()) - *q).max(Decimal::ZERO),
        })
        .collect();
    Ok(vec![InventoryEvent::InventoryLotScrapped {
        item_id: cmd.item_id,
        item_type: item.item_type,
        lot_id: cmd.lot_id,
        allocations,
        reason: cmd.reason,
        at: cmd.at,
    }])
}

pub(crate) fn decide_rule(cmd: SetLotRule) -> Result<Vec<InventoryEvent>, InventoryError> {
    cmd.rule.check()?;
    Ok(vec![InventoryEvent::InventoryLotRuleSet {
        item_id: cmd.item_id,
        item_type: cmd.item_type,
        rule: cmd.rule,
        at: cmd.at,
    }])
}

impl Item {
    /// Stock at `location` held in lots of any status.
    pub fn in_lots(&self, location: &Location) -> Decimal {
        self.lots
            .values()
            .fold(Decimal::ZERO, |s, l| s.saturating_add(l.at(location)))
    }

    /// Stock at `location` that backflush may take: the level less the stock of lots that
    /// are not available (held or scrapped).
    pub fn available(&self, location: &Location) -> Decimal {
        let blocked = self
            .lots
            .values()
            .filter(|l| l.status != LotStatus::Available)
            .fold(Decimal::ZERO, |s, l| s.saturating_add(l.at(location)));
        (self.level(location.as_str()) - blocked).max(Decimal::ZERO)
    }

    /// Stock at `location` in no lot.
    pub fn untracked(&self, location: &Location) -> Decimal {
        (self.level(location.as_str()) - self.in_lots(location)).max(Decimal::ZERO)
    }

    /// The lots in `pick` order.
    pub fn lots_in_order(&self, pick: PickOrder) -> Vec<&Lot> {
        let mut lots: Vec<&Lot> = self.lots.values().collect();
        match pick {
            PickOrder::Fifo => lots.sort_by_key(|l| l.seq),
            PickOrder::Fefo => lots.sort_by_key(|l| (l.expiry.is_none(), l.expiry, l.seq)),
        }
        lots
    }

    /// How `qty` taken at `location` splits over its lots: available lots in `pick` order,
    /// then untracked stock (with `only_available: false`, lots of any status, FIFO).
    pub(crate) fn split_take(
        &self,
        location: &Location,
        mut qty: Decimal,
        pick: PickOrder,
        only_available: bool,
        already: &BTreeMap<LotId, Decimal>,
    ) -> Vec<LotTake> {
        let mut takes = Vec::new();
        let untracked = self.untracked(location);
        // A shrinking count takes untracked stock first; backflush takes lots first.
        let untracked_take = |qty: &mut Decimal, takes: &mut Vec<LotTake>| {
            let t = (*qty).min(untracked);
            if t > Decimal::ZERO {
                takes.push(LotTake {
                    lot_id: None,
                    location: location.clone(),
                    qty: t,
                    new_qty: untracked - t,
                });
                *qty -= t;
            }
        };
        if !only_available {
            untracked_take(&mut qty, &mut takes);
        }
        for lot in self.lots_in_order(pick) {
            if qty <= Decimal::ZERO {
                break;
            }
            if only_available && lot.status != LotStatus::Available {
                continue;
            }
            let have = lot.at(location) - already.get(&lot.lot_id).copied().unwrap_or_default();
            if have <= Decimal::ZERO {
                continue;
            }
            let t = qty.min(have);
            takes.push(LotTake {
                lot_id: Some(lot.lot_id.clone()),
                location: location.clone(),
                qty: t,
                new_qty: have - t,
            });
            qty -= t;
        }
        if only_available && qty > Decimal::ZERO {
            untracked_take(&mut qty, &mut takes);
        }
        takes
    }

    /// Takes up to `qty` from the available lots `prefer`, in that order, at `location`
    /// only when one is named (else wherever each lot is, by location name). Returns the
    /// takes; the caller allocates what is left in the pick order.
    pub(crate) fn take_preferred(
        &self,
        prefer: &[LotId],
        location: Option<&Location>,
        mut qty: Decimal,
    ) -> Vec<LotTake> {
        let mut takes = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for lot in prefer
            .iter()
            .filter(|l| seen.insert(*l))
            .filter_map(|l| self.lots.get(l))
        {
            if lot.status != LotStatus::Available {
                continue;
            }
            for (at, have) in &lot.stock {
                if qty <= Decimal::ZERO {
                    return takes;
                }
                if location.is_some_and(|l| l != at) || *have <= Decimal::ZERO {
                    continue;
                }
                let t = qty.min(*have);
                takes.push(LotTake {
                    lot_id: Some(lot.lot_id.clone()),
                    location: at.clone(),
                    qty: t,
                    new_qty: *have - t,
                });
                qty -= t;
            }
        }
        takes
    }

    /// The pick order of backflush for this item.
    pub fn pick(&self) -> PickOrder {
        self.lot_rule.map(|r| r.pick).unwrap_or_default()
    }
}
