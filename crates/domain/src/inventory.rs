//! Inventory: the stock of one item across locations, and backflush from production.
//!
//! Stream type `inventory_item`, one stream per [`ItemId`], holding the level at each
//! [`Location`] in a `BTreeMap` (so it serializes in location order). Every command carries the
//! item id, because any of them may be the first event of the stream; a command whose item id
//! differs from the stream's is refused ([`InventoryError::WrongItem`]).
//!
//! Two kinds of change, following the contract ("Inventory from production"):
//! - Direct changes (`ReceiveStock`, `AdjustStock`) never take a level below zero: such a change
//!   is refused with [`InventoryError::InsufficientStock`], which carries the available quantity,
//!   and changes nothing.
//! - Backflush (`ConsumeStock`, `ProduceStock`) records production that happened and is never
//!   refused for lack of stock. Consumption takes from the named input location only, else from
//!   the locations holding the item, largest level first (ties by location name); what cannot be
//!   covered is recorded as `shortage` in [`InventoryEvent::InventoryConsumed`].
//!
//! Item type: the first event fixes it (`raw` when the first event is a consumption, `finished`
//! when it is a production). Direct changes state a type and are refused when it differs
//! ([`InventoryError::ItemTypeMismatch`]); backflush never checks it, since a sub-assembly may be
//! both produced by one order and consumed by another.
//!
//! Every event carries the new level of each location it touches, so a read model sets levels
//! rather than adding deltas.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use cqrs_es::{Aggregate, DomainEvent};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::lot::{
    self, ConsumeLots, HoldLot, Lot, LotRef, LotRule, LotStatus, LotTake, MergeLots, MoveLot,
    ProduceLot, ReceiveLot, ReleaseLot, ScrapLot, SetLotRule, SplitLot,
};
use crate::values::{ItemId, Location, LotId, MachineId, OrderId, Quantity, StockDelta, Text};
use crate::Decide;

/// Raw material or finished goods; serialized in snake_case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemType {
    Raw,
    Finished,
}

impl fmt::Display for ItemType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Raw => "raw material",
            Self::Finished => "finished goods",
        })
    }
}

/// Receives stock at a location.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceiveStock {
    pub item_id: ItemId,
    pub item_type: ItemType,
    pub location: Location,
    pub qty: Quantity,
    pub reason: Option<Text>,
    pub at: DateTime<Utc>,
}

/// Corrects the level at a location (count, damage, transfer...); refused below zero.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdjustStock {
    pub item_id: ItemId,
    pub item_type: ItemType,
    pub location: Location,
    pub delta: StockDelta,
    pub reason: Text,
    pub at: DateTime<Utc>,
}

/// Backflush: consumes material used by an order's production. Never refused for lack of stock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsumeStock {
    pub item_id: ItemId,
    pub order_id: OrderId,
    pub qty: Quantity,
    /// The order's input location, when it names one.
    pub location: Option<Location>,
    pub at: DateTime<Utc>,
}

/// Backflush: adds the good units an order produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProduceStock {
    pub item_id: ItemId,
    pub order_id: OrderId,
    pub location: Location,
    pub qty: Quantity,
    pub at: DateTime<Utc>,
}

/// Every command an inventory item accepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum InventoryCommand {
    ReceiveStock(ReceiveStock),
    AdjustStock(AdjustStock),
    ConsumeStock(ConsumeStock),
    ProduceStock(ProduceStock),
    // Lots (ADR 0057, [`crate::lot`]).
    ReceiveLot(ReceiveLot),
    ProduceLot(ProduceLot),
    ConsumeLots(ConsumeLots),
    SplitLot(SplitLot),
    MergeLots(MergeLots),
    MoveLot(MoveLot),
    HoldLot(HoldLot),
    ReleaseLot(ReleaseLot),
    ScrapLot(ScrapLot),
    SetLotRule(SetLotRule),
}

/// Why lot stock was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TakeCause {
    /// Backflush of an order's production.
    Backflush,
    /// A downward adjustment of a location's level (a count, damage...).
    Adjustment,
}

/// Stock taken from one location by a consumption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    pub location: Location,
    pub qty: Decimal,
    /// The level at the location afterwards.
    pub new_level: Decimal,
}

/// What happened to an item's stock. Serialized with an `event_type` tag equal to the variant
/// name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type")]
pub enum InventoryEvent {
    InventoryReceived {
        item_id: ItemId,
        item_type: ItemType,
        location: Location,
        qty: Quantity,
        new_level: Decimal,
        reason: Option<Text>,
        at: DateTime<Utc>,
    },
    InventoryAdjusted {
        item_id: ItemId,
        item_type: ItemType,
        location: Location,
        delta: StockDelta,
        new_level: Decimal,
        reason: Text,
        at: DateTime<Utc>,
    },
    InventoryConsumed {
        item_id: ItemId,
        item_type: ItemType,
        order_id: OrderId,
        requested: Quantity,
        /// The input location asked for, if any.
        location: Option<Location>,
        /// Where the stock came from, in the order it was taken.
        allocations: Vec<Allocation>,
        /// What could not be covered: `requested` less the sum of the allocations.
        shortage: Decimal,
        at: DateTime<Utc>,
    },
    InventoryProduced {
        item_id: ItemId,
        item_type: ItemType,
        order_id: OrderId,
        location: Location,
        qty: Quantity,
        new_level: Decimal,
        at: DateTime<Utc>,
    },
    /// A lot received; follows the `InventoryReceived` of its quantity.
    InventoryLotReceived {
        item_id: ItemId,
        item_type: ItemType,
        lot_id: LotId,
        supplier_lot: Option<Text>,
        location: Location,
        qty: Quantity,
        expiry: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
    /// Production into an output lot; follows the `InventoryProduced` of its quantity.
    InventoryLotProduced {
        item_id: ItemId,
        item_type: ItemType,
        lot_id: LotId,
        order_id: OrderId,
        machine_id: Option<MachineId>,
        location: Location,
        qty: Quantity,
        /// The lot's stock at the location afterwards.
        new_qty: Decimal,
        at: DateTime<Utc>,
    },
    /// Lot stock taken (follows the `InventoryConsumed` or `InventoryAdjusted` whose
    /// allocations it splits over lots); `into` is the output lot it fed (genealogy).
    InventoryLotsTaken {
        item_id: ItemId,
        item_type: ItemType,
        cause: TakeCause,
        order_id: Option<OrderId>,
        into: Option<LotRef>,
        takes: Vec<LotTake>,
        at: DateTime<Utc>,
    },
    InventoryLotSplit {
        item_id: ItemId,
        item_type: ItemType,
        lot_id: LotId,
        new_lot_id: LotId,
        location: Location,
        qty: Quantity,
        /// The source lot's stock at the location afterwards.
        from_new_qty: Decimal,
        reason: Option<Text>,
        at: DateTime<Utc>,
    },
    InventoryLotsMerged {
        item_id: ItemId,
        item_type: ItemType,
        /// What each source gave (all its stock at the location).
        sources: Vec<LotTake>,
        into: LotId,
        location: Location,
        into_new_qty: Decimal,
        /// The earliest expiry of the lots merged (kept by a new target lot).
        expiry: Option<DateTime<Utc>>,
        /// The supplier lot when all of them share one.
        supplier_lot: Option<Text>,
        reason: Option<Text>,
        at: DateTime<Utc>,
    },
    InventoryLotMoved {
        item_id: ItemId,
        item_type: ItemType,
        lot_id: LotId,
        from: Location,
        to: Location,
        qty: Decimal,
        from_new_qty: Decimal,
        to_new_qty: Decimal,
        from_new_level: Decimal,
        to_new_level: Decimal,
        reason: Option<Text>,
        at: DateTime<Utc>,
    },
    InventoryLotHeld {
        item_id: ItemId,
        item_type: ItemType,
        lot_id: LotId,
        hold_id: Option<Text>,
        reason: Text,
        at: DateTime<Utc>,
    },
    InventoryLotReleased {
        item_id: ItemId,
        item_type: ItemType,
        lot_id: LotId,
        reason: Text,
        at: DateTime<Utc>,
    },
    /// A lot scrapped: its stock at each location leaves the level.
    InventoryLotScrapped {
        item_id: ItemId,
        item_type: ItemType,
        lot_id: LotId,
        allocations: Vec<Allocation>,
        reason: Text,
        at: DateTime<Utc>,
    },
    InventoryLotRuleSet {
        item_id: ItemId,
        item_type: ItemType,
        rule: LotRule,
        at: DateTime<Utc>,
    },
}

impl InventoryEvent {
    /// The item (and its type) the event belongs to.
    pub fn item(&self) -> (&ItemId, ItemType) {
        match self {
            Self::InventoryReceived {
                item_id, item_type, ..
            }
            | Self::InventoryAdjusted {
                item_id, item_type, ..
            }
            | Self::InventoryConsumed {
                item_id, item_type, ..
            }
            | Self::InventoryProduced {
                item_id, item_type, ..
            }
            | Self::InventoryLotReceived {
                item_id, item_type, ..
            }
            | Self::InventoryLotProduced {
                item_id, item_type, ..
            }
            | Self::InventoryLotsTaken {
                item_id, item_type, ..
            }
            | Self::InventoryLotSplit {
                item_id, item_type, ..
            }
            | Self::InventoryLotsMerged {
                item_id, item_type, ..
            }
            | Self::InventoryLotMoved {
                item_id, item_type, ..
            }
            | Self::InventoryLotHeld {
                item_id, item_type, ..
            }
            | Self::InventoryLotReleased {
                item_id, item_type, ..
            }
            | Self::InventoryLotScrapped {
                item_id, item_type, ..
            }
            | Self::InventoryLotRuleSet {
                item_id, item_type, ..
            } => (item_id, *item_type),
        }
    }
}

impl DomainEvent for InventoryEvent {
    fn event_type(&self) -> String {
        match self {
            Self::InventoryReceived { .. } => "InventoryReceived",
            Self::InventoryAdjusted { .. } => "InventoryAdjusted",
            Self::InventoryConsumed { .. } => "InventoryConsumed",
            Self::InventoryProduced { .. } => "InventoryProduced",
            Self::InventoryLotReceived { .. } => "InventoryLotReceived",
            Self::InventoryLotProduced { .. } => "InventoryLotProduced",
            Self::InventoryLotsTaken { .. } => "InventoryLotsTaken",
            Self::InventoryLotSplit { .. } => "InventoryLotSplit",
            Self::InventoryLotsMerged { .. } => "InventoryLotsMerged",
            Self::InventoryLotMoved { .. } => "InventoryLotMoved",
            Self::InventoryLotHeld { .. } => "InventoryLotHeld",
            Self::InventoryLotReleased { .. } => "InventoryLotReleased",
            Self::InventoryLotScrapped { .. } => "InventoryLotScrapped",
            Self::InventoryLotRuleSet { .. } => "InventoryLotRuleSet",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        String::from("1")
    }
}

/// Why a command on an inventory item was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InventoryError {
    #[error("only {available} of item {item_id} at {location}; cannot take {requested}")]
    InsufficientStock {
        item_id: ItemId,
        location: Location,
        available: Decimal,
        requested: Decimal,
    },
    #[error("item {item_id} is stocked as {recorded}, not as {given}")]
    ItemTypeMismatch {
        item_id: ItemId,
        recorded: ItemType,
        given: ItemType,
    },
    #[error("this stream holds item {expected}, not {given}")]
    WrongItem { expected: ItemId, given: ItemId },
    #[error("the stock level of item {item_id} at {location} would be too large")]
    LevelOverflow { item_id: ItemId, location: Location },
    #[error("item {item_id} has no lot {lot_id}")]
    LotNotFound { item_id: ItemId, lot_id: LotId },
    #[error("lot {lot_id} exists already")]
    LotExists { lot_id: LotId },
    #[error("only {available} of lot {lot_id} at {location}; cannot take {requested}")]
    InsufficientLotStock {
        lot_id: LotId,
        location: Location,
        available: Decimal,
        requested: Decimal,
    },
    #[error("lot {lot_id} is scrapped")]
    LotScrapped { lot_id: LotId },
    #[error("lot {lot_id} is not on hold")]
    LotNotHeld { lot_id: LotId },
    #[error("lot {lot_id} is {status:?}, not available")]
    LotNotAvailable { lot_id: LotId, status: LotStatus },
    #[error("a merge needs distinct source lots other than its target")]
    InvalidMerge,
    #[error("a move needs two different locations")]
    SameLocation,
    #[error("invalid lot rule: {detail}")]
    InvalidLotRule { detail: String },
}

/// The stock of an item that has had at least one event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub item_id: ItemId,
    pub item_type: ItemType,
    /// Level per location; a location emptied stays listed at zero.
    pub levels: BTreeMap<Location, Decimal>,
    /// Sum of all shortages recorded by backflush.
    pub shortage_total: Decimal,
    /// Its lots (ADR 0057); absent from snapshots taken before lots existed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub lots: BTreeMap<LotId, Lot>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lot_rule: Option<LotRule>,
    /// The creation number the next lot gets (FIFO order).
    #[serde(default)]
    pub next_lot_seq: u64,
}

impl Item {
    /// The level at `location` (zero when never stocked there).
    pub fn level(&self, location: &str) -> Decimal {
        self.levels.get(location).copied().unwrap_or_default()
    }

    /// The sum over all locations.
    pub fn total(&self) -> Decimal {
        self.levels
            .values()
            .fold(Decimal::ZERO, |sum, level| sum.saturating_add(*level))
    }
}

/// The inventory item aggregate: `None` until its first event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InventoryItem {
    pub(crate) item: Option<Item>,
}

impl InventoryItem {
    /// The item, once it has had an event.
    pub fn item(&self) -> Option<&Item> {
        self.item.as_ref()
    }

    fn level(&self, location: &str) -> Decimal {
        self.item
            .as_ref()
            .map_or(Decimal::ZERO, |item| item.level(location))
    }

    fn check_item(&self, given: &ItemId) -> Result<(), InventoryError> {
        match &self.item {
            Some(item) if item.item_id != *given => Err(InventoryError::WrongItem {
                expected: item.item_id.clone(),
                given: given.clone(),
            }),
            _ => Ok(()),
        }
    }

    fn check_type(&self, given: ItemType) -> Result<(), InventoryError> {
        match &self.item {
            Some(item) if item.item_type != given => Err(InventoryError::ItemTypeMismatch {
                item_id: item.item_id.clone(),
                recorded: item.item_type,
                given,
            }),
            _ => Ok(()),
        }
    }

    fn item_type_or(&self, default: ItemType) -> ItemType {
        self.item.as_ref().map_or(default, |item| item.item_type)
    }

    /// Where a backflush of `qty` takes stock: the named location only, else the locations
    /// holding the item, most available stock first (ties by location name); at each, its
    /// available lots in the item's pick order, then untracked stock. Held lots are not
    /// available. Returns the allocations per location, their split over lots, and the
    /// shortage.
    fn allocate(
        &self,
        qty: Decimal,
        location: Option<&Location>,
        prefer: &[LotId],
    ) -> (Vec<Allocation>, Vec<LotTake>, Decimal) {
        let Some(item) = &self.item else {
            return (Vec::new(), Vec::new(), qty);
        };
        // The lots named on the order first (ADR 0057), then the rest as below.
        let mut takes = item.take_preferred(prefer, location, qty);
        let mut taken: BTreeMap<Location, (Decimal, BTreeMap<LotId, Decimal>)> = BTreeMap::new();
        for t in &takes {
            let entry = taken.entry(t.location.clone()).or_default();
            entry.0 += t.qty;
            if let Some(lot) = &t.lot_id {
                *entry.1.entry(lot.clone()).or_default() += t.qty;
            }
        }
        let already = |l: &Location| taken.get(l).map_or(Decimal::ZERO, |e| e.0);
        let mut remaining = qty - takes.iter().map(|t| t.qty).sum::<Decimal>();
        let mut candidates: Vec<(Location, Decimal)> = match location {
            Some(location) => vec![(location.clone(), item.available(location))],
            None => item
                .levels
                .keys()
                .map(|location| (location.clone(), item.available(location)))
                .collect(),
        };
        for c in &mut candidates {
            c.1 -= already(&c.0);
        }
        // Most available first; the sort is stable and the map is ordered by name, so ties
        // keep location-name order. Without held lots, available equals the level.
        candidates.sort_by_key(|candidate| std::cmp::Reverse(candidate.1));
        let none = BTreeMap::new();
        // In the order the stock was taken: named lots' locations, then the candidates'.
        let mut per_location: Vec<(Location, Decimal)> =
            taken.iter().map(|(l, e)| (l.clone(), e.0)).collect();
        for (location, available) in candidates {
            if remaining <= Decimal::ZERO {
                break;
            }
            if available <= Decimal::ZERO {
                continue;
            }
            let take = remaining.min(available);
            remaining -= take;
            let lots = taken.get(&location).map_or(&none, |e| &e.1);
            takes.extend(item.split_take(&location, take, item.pick(), true, lots));
            match per_location.iter_mut().find(|(l, _)| *l == location) {
                Some((_, q)) => *q += take,
                None => per_location.push((location, take)),
            }
        }
        let allocations = per_location
            .into_iter()
            .map(|(location, qty)| Allocation {
                new_level: item.level(location.as_str()) - qty,
                location,
                qty,
            })
            .collect();
        (allocations, takes, remaining)
    }

    /// A backflush: the consumption, and its split over lots when a lot was taken or the
    /// consumption fed an output lot.
    fn consume(
        &self,
        cmd: ConsumeStock,
        into: Option<LotRef>,
        prefer: &[LotId],
    ) -> Vec<InventoryEvent> {
        let (allocations, takes, shortage) =
            self.allocate(cmd.qty.value(), cmd.location.as_ref(), prefer);
        let item_type = self.item_type_or(ItemType::Raw);
        let mut events = Vec::with_capacity(2);
        let traced = into.is_some() || takes.iter().any(|t| t.lot_id.is_some());
        if traced && !takes.is_empty() {
            events.push(InventoryEvent::InventoryLotsTaken {
                item_id: cmd.item_id.clone(),
                item_type,
                cause: TakeCause::Backflush,
                order_id: Some(cmd.order_id.clone()),
                into,
                takes,
                at: cmd.at,
            });
        }
        events.insert(
            0,
            InventoryEvent::InventoryConsumed {
                item_id: cmd.item_id,
                item_type,
                order_id: cmd.order_id,
                requested: cmd.qty,
                location: cmd.location,
                allocations,
                shortage,
                at: cmd.at,
            },
        );
        events
    }

    fn produce(&self, cmd: &ProduceStock) -> Result<InventoryEvent, InventoryError> {
        self.check_item(&cmd.item_id)?;
        let new_level = self
            .level(cmd.location.as_str())
            .checked_add(cmd.qty.value())
            .ok_or_else(|| InventoryError::LevelOverflow {
                item_id: cmd.item_id.clone(),
                location: cmd.location.clone(),
            })?;
        Ok(InventoryEvent::InventoryProduced {
            item_id: cmd.item_id.clone(),
            item_type: self.item_type_or(ItemType::Finished),
            order_id: cmd.order_id.clone(),
            location: cmd.location.clone(),
            qty: cmd.qty,
            new_level,
            at: cmd.at,
        })
    }

    fn receive(&self, cmd: ReceiveStock) -> Result<Vec<InventoryEvent>, InventoryError> {
        self.check_item(&cmd.item_id)?;
        self.check_type(cmd.item_type)?;
        let new_level = self
            .level(cmd.location.as_str())
            .checked_add(cmd.qty.value())
            .ok_or_else(|| InventoryError::LevelOverflow {
                item_id: cmd.item_id.clone(),
                location: cmd.location.clone(),
            })?;
        Ok(vec![InventoryEvent::InventoryReceived {
            item_id: cmd.item_id,
            item_type: cmd.item_type,
            location: cmd.location,
            qty: cmd.qty,
            new_level,
            reason: cmd.reason,
            at: cmd.at,
        }])
    }

    /// A direct adjustment; a downward one that leaves less than the location's lots hold
    /// shrinks them too (untracked stock first, then lots FIFO).
    fn adjust(&self, cmd: AdjustStock) -> Result<Vec<InventoryEvent>, InventoryError> {
        self.check_item(&cmd.item_id)?;
        self.check_type(cmd.item_type)?;
        let available = self.level(cmd.location.as_str());
        let new_level = available.checked_add(cmd.delta.value()).ok_or_else(|| {
            InventoryError::LevelOverflow {
                item_id: cmd.item_id.clone(),
                location: cmd.location.clone(),
            }
        })?;
        if new_level < Decimal::ZERO {
            return Err(InventoryError::InsufficientStock {
                item_id: cmd.item_id,
                location: cmd.location,
                available,
                requested: -cmd.delta.value(),
            });
        }
        let takes = match &self.item {
            Some(item) if new_level < item.in_lots(&cmd.location) => item.split_take(
                &cmd.location,
                available - new_level,
                lot::PickOrder::Fifo,
                false,
                &BTreeMap::new(),
            ),
            _ => Vec::new(),
        };
        let mut events = vec![InventoryEvent::InventoryAdjusted {
            item_id: cmd.item_id.clone(),
            item_type: cmd.item_type,
            location: cmd.location,
            delta: cmd.delta,
            new_level,
            reason: cmd.reason,
            at: cmd.at,
        }];
        if !takes.is_empty() {
            events.push(InventoryEvent::InventoryLotsTaken {
                item_id: cmd.item_id,
                item_type: cmd.item_type,
                cause: TakeCause::Adjustment,
                order_id: None,
                into: None,
                takes,
                at: cmd.at,
            });
        }
        Ok(events)
    }

    /// Checks that a lot command is addressed to this stream's item.
    fn lot_command(&self, item_id: &ItemId) -> Result<Option<&Item>, InventoryError> {
        self.check_item(item_id)?;
        Ok(self.item.as_ref())
    }
}

impl Decide for InventoryItem {
    fn decide(&self, command: InventoryCommand) -> Result<Vec<InventoryEvent>, InventoryError> {
        use InventoryCommand as C;
        match command {
            C::ReceiveStock(cmd) => self.receive(cmd),
            C::AdjustStock(cmd) => self.adjust(cmd),
            C::ConsumeStock(cmd) => {
                self.check_item(&cmd.item_id)?;
                Ok(self.consume(cmd, None, &[]))
            }
            C::ProduceStock(cmd) => Ok(vec![self.produce(&cmd)?]),
            C::ConsumeLots(cmd) => {
                self.check_item(&cmd.consume.item_id)?;
                Ok(self.consume(cmd.consume, cmd.into, &cmd.prefer))
            }
            C::ProduceLot(cmd) => {
                let produced = self.produce(&cmd.produce)?;
                let item_type = self.item_type_or(ItemType::Finished);
                Ok(lot::decide_produce(
                    self.item.as_ref(),
                    item_type,
                    cmd,
                    produced,
                ))
            }
            C::ReceiveLot(cmd) => {
                self.check_item(&cmd.item_id)?;
                self.check_type(cmd.item_type)?;
                lot::decide_receive(self.item.as_ref(), cmd)
            }
            C::SplitLot(cmd) => lot::decide_split(self.lot_command(&cmd.item_id)?, cmd),
            C::MergeLots(cmd) => lot::decide_merge(self.lot_command(&cmd.item_id)?, cmd),
            C::MoveLot(cmd) => lot::decide_move(self.lot_command(&cmd.item_id)?, cmd),
            C::HoldLot(cmd) => lot::decide_hold(self.lot_command(&cmd.item_id)?, cmd),
            C::ReleaseLot(cmd) => lot::decide_release(self.lot_command(&cmd.item_id)?, cmd),
            C::ScrapLot(cmd) => lot::decide_scrap(self.lot_command(&cmd.item_id)?, cmd),
            C::SetLotRule(cmd) => {
                self.check_item(&cmd.item_id)?;
                self.check_type(cmd.item_type)?;
                lot::decide_rule(cmd)
            }
        }
    }
}

impl Aggregate for InventoryItem {
    const TYPE: &'static str = crate::StreamType::InventoryItem.as_str();
    type Command = InventoryCommand;
    type Event = InventoryEvent;
    type Error = InventoryError;
    type Services = ();

    crate::handle_by_deciding!();

    fn apply(&mut self, event: Self::Event) {
        let (item_id, item_type) = event.item();
        let item = self.item.get_or_insert_with(|| Item {
            item_id: item_id.clone(),
            item_type,
            levels: BTreeMap::new(),
            shortage_total: Decimal::ZERO,
            lots: BTreeMap::new(),
            lot_rule: None,
            next_lot_seq: 0,
        });
        apply_to(item, event);
    }
}

/// A new lot, numbered next in its item.
fn new_lot(item: &mut Item, lot_id: LotId, at: DateTime<Utc>) -> Lot {
    let seq = item.next_lot_seq;
    item.next_lot_seq += 1;
    Lot {
        lot_id,
        supplier_lot: None,
        expiry: None,
        seq,
        created_at: at,
        order_id: None,
        stock: BTreeMap::new(),
        status: LotStatus::Available,
        hold_reason: None,
    }
}

/// Folds one event into the item (sets the values the event carries).
fn apply_to(item: &mut Item, event: InventoryEvent) {
    use InventoryEvent as E;
    match event {
        E::InventoryReceived {
            location,
            new_level,
            ..
        }
        | E::InventoryAdjusted {
            location,
            new_level,
            ..
        }
        | E::InventoryProduced {
            location,
            new_level,
            ..
        } => {
            item.levels.insert(location, new_level);
        }
        E::InventoryConsumed {
            allocations,
            shortage,
            ..
        } => {
            for allocation in allocations {
                item.levels
                    .insert(allocation.location, allocation.new_level);
            }
            item.shortage_total = item.shortage_total.saturating_add(shortage);
        }
        E::InventoryLotReceived {
            lot_id,
            supplier_lot,
            location,
            qty,
            expiry,
            at,
            ..
        } => {
            let mut lot = new_lot(item, lot_id.clone(), at);
            lot.supplier_lot = supplier_lot;
            lot.expiry = expiry;
            lot.stock.insert(location, qty.value());
            item.lots.insert(lot_id, lot);
        }
        E::InventoryLotProduced {
            lot_id,
            order_id,
            location,
            new_qty,
            at,
            ..
        } => {
            if !item.lots.contains_key(&lot_id) {
                let mut lot = new_lot(item, lot_id.clone(), at);
                lot.order_id = Some(order_id);
                item.lots.insert(lot_id.clone(), lot);
            }
            if let Some(lot) = item.lots.get_mut(&lot_id) {
                lot.stock.insert(location, new_qty);
            }
        }
        E::InventoryLotsTaken { takes, .. } => {
            for take in takes {
                if let Some(lot) = take.lot_id.and_then(|id| item.lots.get_mut(&id)) {
                    lot.stock.insert(take.location, take.new_qty);
                }
            }
        }
        E::InventoryLotSplit {
            lot_id,
            new_lot_id,
            location,
            qty,
            from_new_qty,
            at,
            ..
        } => {
            let mut lot = new_lot(item, new_lot_id.clone(), at);
            if let Some(from) = item.lots.get_mut(&lot_id) {
                from.stock.insert(location.clone(), from_new_qty);
                lot.supplier_lot = from.supplier_lot.clone();
                lot.expiry = from.expiry;
                lot.order_id = from.order_id.clone();
                lot.status = from.status;
                lot.hold_reason = from.hold_reason.clone();
            }
            lot.stock.insert(location, qty.value());
            item.lots.insert(new_lot_id, lot);
        }
        E::InventoryLotsMerged {
            sources,
            into,
            location,
            into_new_qty,
            expiry,
            supplier_lot,
            at,
            ..
        } => {
            for source in sources {
                if let Some(lot) = source.lot_id.and_then(|id| item.lots.get_mut(&id)) {
                    lot.stock.insert(source.location, source.new_qty);
                }
            }
            if !item.lots.contains_key(&into) {
                let mut lot = new_lot(item, into.clone(), at);
                lot.expiry = expiry;
                lot.supplier_lot = supplier_lot;
                item.lots.insert(into.clone(), lot);
            }
            if let Some(lot) = item.lots.get_mut(&into) {
                lot.stock.insert(location, into_new_qty);
            }
        }
        E::InventoryLotMoved {
            lot_id,
            from,
            to,
            from_new_qty,
            to_new_qty,
            from_new_level,
            to_new_level,
            ..
        } => {
            if let Some(lot) = item.lots.get_mut(&lot_id) {
                lot.stock.insert(from.clone(), from_new_qty);
                lot.stock.insert(to.clone(), to_new_qty);
            }
            item.levels.insert(from, from_new_level);
            item.levels.insert(to, to_new_level);
        }
        E::InventoryLotHeld { lot_id, reason, .. } => {
            if let Some(lot) = item.lots.get_mut(&lot_id) {
                lot.status = LotStatus::Held;
                lot.hold_reason = Some(reason);
            }
        }
        E::InventoryLotReleased { lot_id, .. } => {
            if let Some(lot) = item.lots.get_mut(&lot_id) {
                lot.status = LotStatus::Available;
                lot.hold_reason = None;
            }
        }
        E::InventoryLotScrapped {
            lot_id,
            allocations,
            ..
        } => {
            if let Some(lot) = item.lots.get_mut(&lot_id) {
                lot.status = LotStatus::Scrapped;
                for a in &allocations {
                    lot.stock.insert(a.location.clone(), Decimal::ZERO);
                }
            }
            for a in allocations {
                item.levels.insert(a.location, a.new_level);
            }
        }
        E::InventoryLotRuleSet { rule, .. } => item.lot_rule = Some(rule),
    }
}
