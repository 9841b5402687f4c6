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

use crate::values::{ItemId, Location, OrderId, Quantity, StockDelta, Text};
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
}

impl DomainEvent for InventoryEvent {
    fn event_type(&self) -> String {
        match self {
            Self::InventoryReceived { .. } => "InventoryReceived",
            Self::InventoryAdjusted { .. } => "InventoryAdjusted",
            Self::InventoryConsumed { .. } => "InventoryConsumed",
            Self::InventoryProduced { .. } => "InventoryProduced",
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
    item: Option<Item>,
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

    fn allocate(&self, qty: Decimal, location: Option<&Location>) -> (Vec<Allocation>, Decimal) {
        let mut candidates: Vec<(Location, Decimal)> = match (location, &self.item) {
            (Some(location), _) => vec![(location.clone(), self.level(location.as_str()))],
            (None, Some(item)) => item
                .levels
                .iter()
                .map(|(location, level)| (location.clone(), *level))
                .collect(),
            (None, None) => Vec::new(),
        };
        // Largest level first; the sort is stable and the map is ordered by name, so ties keep
        // location-name order.
        candidates.sort_by_key(|candidate| std::cmp::Reverse(candidate.1));
        let mut remaining = qty;
        let mut allocations = Vec::new();
        for (location, level) in candidates {
            if remaining <= Decimal::ZERO {
                break;
            }
            if level <= Decimal::ZERO {
                continue;
            }
            let take = remaining.min(level);
            remaining -= take;
            allocations.push(Allocation {
                location,
                qty: take,
                new_level: level - take,
            });
        }
        (allocations, remaining)
    }
}

impl Decide for InventoryItem {
    fn decide(&self, command: InventoryCommand) -> Result<Vec<InventoryEvent>, InventoryError> {
        let event = match command {
            InventoryCommand::ReceiveStock(cmd) => {
                self.check_item(&cmd.item_id)?;
                self.check_type(cmd.item_type)?;
                let new_level = self
                    .level(cmd.location.as_str())
                    .checked_add(cmd.qty.value())
                    .ok_or_else(|| InventoryError::LevelOverflow {
                        item_id: cmd.item_id.clone(),
                        location: cmd.location.clone(),
                    })?;
                InventoryEvent::InventoryReceived {
                    item_id: cmd.item_id,
                    item_type: cmd.item_type,
                    location: cmd.location,
                    qty: cmd.qty,
                    new_level,
                    reason: cmd.reason,
                    at: cmd.at,
                }
            }
            InventoryCommand::AdjustStock(cmd) => {
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
                InventoryEvent::InventoryAdjusted {
                    item_id: cmd.item_id,
                    item_type: cmd.item_type,
                    location: cmd.location,
                    delta: cmd.delta,
                    new_level,
                    reason: cmd.reason,
                    at: cmd.at,
                }
            }
            InventoryCommand::ConsumeStock(cmd) => {
                self.check_item(&cmd.item_id)?;
                let (allocations, shortage) = self.allocate(cmd.qty.value(), cmd.location.as_ref());
                InventoryEvent::InventoryConsumed {
                    item_id: cmd.item_id,
                    item_type: self.item_type_or(ItemType::Raw),
                    order_id: cmd.order_id,
                    requested: cmd.qty,
                    location: cmd.location,
                    allocations,
                    shortage,
                    at: cmd.at,
                }
            }
            InventoryCommand::ProduceStock(cmd) => {
                self.check_item(&cmd.item_id)?;
                let new_level = self
                    .level(cmd.location.as_str())
                    .checked_add(cmd.qty.value())
                    .ok_or_else(|| InventoryError::LevelOverflow {
                        item_id: cmd.item_id.clone(),
                        location: cmd.location.clone(),
                    })?;
                InventoryEvent::InventoryProduced {
                    item_id: cmd.item_id,
                    item_type: self.item_type_or(ItemType::Finished),
                    order_id: cmd.order_id,
                    location: cmd.location,
                    qty: cmd.qty,
                    new_level,
                    at: cmd.at,
                }
            }
        };
        Ok(vec![event])
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
        let (item_id, item_type) = match &event {
            InventoryEvent::InventoryReceived {
                item_id, item_type, ..
            }
            | InventoryEvent::InventoryAdjusted {
                item_id, item_type, ..
            }
            | InventoryEvent::InventoryConsumed {
                item_id, item_type, ..
            }
            | InventoryEvent::InventoryProduced {
                item_id, item_type, ..
            } => (item_id.clone(), *item_type),
        };
        let item = self.item.get_or_insert_with(|| Item {
            item_id,
            item_type,
            levels: BTreeMap::new(),
            shortage_total: Decimal::ZERO,
        });
        match event {
            InventoryEvent::InventoryReceived {
                location,
                new_level,
                ..
            }
            | InventoryEvent::InventoryAdjusted {
                location,
                new_level,
                ..
            }
            | InventoryEvent::InventoryProduced {
                location,
                new_level,
                ..
            } => {
                item.levels.insert(location, new_level);
            }
            InventoryEvent::InventoryConsumed {
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
        }
    }
}
