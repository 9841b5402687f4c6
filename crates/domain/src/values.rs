//! Value types: identifiers, free text and quantities that validate once, when made.
//!
//! Every command and event carries these types instead of bare `String`s and numbers, so an
//! aggregate never sees an empty id, a negative quantity or a cycle time of `NaN`: the caller
//! (HTTP handler, MQTT ingest, process manager) builds them with `new`/`TryFrom` and turns a
//! [`ValueError`] into a 422-style answer before any command exists.
//!
//! Layout:
//! - identifiers ([`OrderId`], [`MachineId`], [`ItemId`], [`Location`], ...): trimmed, non-empty,
//!   at most [`MAX_ID_LEN`] characters, no control characters. They serialize as plain JSON
//!   strings and deserialization runs the same validation.
//! - [`Text`]: free text (reasons, notes, descriptions): trimmed, non-empty, at most
//!   [`MAX_TEXT_LEN`] characters; newlines and tabs are allowed, other control characters not.
//! - quantities: [`Quantity`] (material, `Decimal` > 0), [`StockDelta`] (material, `Decimal` ≠ 0),
//!   [`OrderQuantity`] (units to make, 1 to [`MAX_ORDER_QUANTITY`]), [`CycleTime`] (seconds,
//!   [`MIN_CYCLE_TIME_S`] to [`MAX_CYCLE_TIME_S`]).
//!   Decimal values are normalised (trailing zeros stripped) so equal quantities serialize alike,
//!   and bounded by [`MAX_QUANTITY`] so that no sum or product in the domain can overflow.
//!
//! Every bound is physical sense, not a storage limit (ADR 0031): a value outside it is a typo
//! or a glitch, and refusing it at the edge (400) keeps every accepted command within what every
//! read model holds (a PostgreSQL `bigint`, a `numeric`, an `f64`).

use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Longest identifier accepted, in characters.
pub const MAX_ID_LEN: usize = 128;
/// Longest policy identifier accepted, in characters: shorter than [`MAX_ID_LEN`] so that the
/// task ids derived from it (`{policy_id}-{occurrence}`) always fit in a [`TaskId`].
pub const MAX_POLICY_ID_LEN: usize = 96;
/// Longest free text accepted, in characters.
pub const MAX_TEXT_LEN: usize = 2000;
/// Largest absolute material quantity in one command (10^12 units).
pub const MAX_QUANTITY: Decimal = Decimal::from_parts(3_567_587_328, 232, 0, false, 0);
/// Most units one production order may make (10^9): a billion parts is years of a fast line.
pub const MAX_ORDER_QUANTITY: u64 = 1_000_000_000;
/// Shortest ideal cycle time accepted, in seconds (0.1 ms: 600,000 parts a minute, ten times
/// the fastest tablet presses and cigarette makers).
pub const MIN_CYCLE_TIME_S: f64 = 0.000_1;
/// Longest ideal cycle time accepted, in seconds (one day: curing and heat treatment cycles
/// take hours, not days).
pub const MAX_CYCLE_TIME_S: f64 = 86_400.0;

/// Why a value could not be made. Shown to API users, so every message is plain language.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("{kind} must not be empty")]
    Empty { kind: &'static str },
    #[error("{kind} must be at most {max} characters long")]
    TooLong { kind: &'static str, max: usize },
    #[error("{kind} must not contain control characters")]
    ControlCharacter { kind: &'static str },
    #[error("{kind} must be greater than zero")]
    NotPositive { kind: &'static str },
    #[error("{kind} must not be zero")]
    Zero { kind: &'static str },
    #[error("{kind} must be at most {max} in absolute value")]
    TooLarge { kind: &'static str, max: Decimal },
    #[error("{kind} must be a finite number")]
    NotFinite { kind: &'static str },
    #[error("{kind} must be between {min} and {max}")]
    OutOfRange {
        kind: &'static str,
        min: &'static str,
        max: &'static str,
    },
}

fn validate_identifier(raw: &str, kind: &'static str, max: usize) -> Result<String, ValueError> {
    let value = raw.trim();
    if value.is_empty() {
        return Err(ValueError::Empty { kind });
    }
    if value.chars().count() > max {
        return Err(ValueError::TooLong { kind, max });
    }
    if value.chars().any(char::is_control) {
        return Err(ValueError::ControlCharacter { kind });
    }
    Ok(value.to_owned())
}

macro_rules! identifier {
    ($(#[$meta:meta])* $name:ident, $kind:literal, $max:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// What this identifier is called in error messages.
            pub const KIND: &'static str = $kind;

            /// Validates and normalises (trims) `value`.
            pub fn new(value: impl AsRef<str>) -> Result<Self, ValueError> {
                validate_identifier(value.as_ref(), $kind, $max).map(Self)
            }

            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = ValueError;
            fn try_from(value: String) -> Result<Self, ValueError> {
                Self::new(value)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = ValueError;
            fn try_from(value: &str) -> Result<Self, ValueError> {
                Self::new(value)
            }
        }

        impl std::str::FromStr for $name {
            type Err = ValueError;
            fn from_str(value: &str) -> Result<Self, ValueError> {
                Self::new(value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

identifier!(
    /// Identifies a production order (the `production_order` stream id).
    OrderId, "order id", MAX_ID_LEN
);
identifier!(
    /// Identifies a product: what an order makes. Its finished goods are stocked under the
    /// [`ItemId`] of the same text.
    ProductId, "product id", MAX_ID_LEN
);
identifier!(
    /// Identifies an inventory item (the `inventory_item` stream id).
    ItemId, "item id", MAX_ID_LEN
);
identifier!(
    /// Identifies a machine (the `machine` stream id).
    MachineId, "machine id", MAX_ID_LEN
);
identifier!(
    /// The kind of a machine ("press", "cnc", ...), as the plant names it.
    MachineType, "machine type", MAX_ID_LEN
);
identifier!(
    /// The production line a machine belongs to.
    LineId, "line", MAX_ID_LEN
);
identifier!(
    /// Identifies a maintenance task (the `maintenance_task` stream id).
    TaskId, "task id", MAX_ID_LEN
);
identifier!(
    /// Identifies a preventive-maintenance policy (the `maintenance_policy` stream id). At most
    /// [`MAX_POLICY_ID_LEN`] characters, so the task ids derived from it stay valid.
    PolicyId, "policy id", MAX_POLICY_ID_LEN
);
identifier!(
    /// Identifies a quality inspection within its order.
    InspectionId, "inspection id", MAX_ID_LEN
);
identifier!(
    /// Identifies an operator: a person who works on the floor (the `operator` stream id).
    OperatorId, "operator id", MAX_ID_LEN
);
identifier!(
    /// The id printed on an operator's badge (scanned at a terminal).
    BadgeId, "badge id", MAX_ID_LEN
);
identifier!(
    /// A skill an operator holds ("welding", "press-setup", ...), as the plant names it.
    Skill, "skill", MAX_ID_LEN
);
identifier!(
    /// Identifies an alert rule (the `alert_rule` stream id).
    AlertRuleId, "alert rule id", MAX_ID_LEN
);
identifier!(
    /// Identifies an alert (the `alert` stream id): derived from the rule and the triggering
    /// event, so evaluating the same event twice names the same alert.
    AlertId, "alert id", MAX_ID_LEN
);
identifier!(
    /// A stock location ("FG", "RAW-A1", ...).
    Location, "location", MAX_ID_LEN
);
identifier!(
    /// A person or system acting (an inspector, the supervisor who classified a stop).
    Actor, "actor", MAX_ID_LEN
);
identifier!(
    /// A downtime reason code such as `breakdown.mechanical`; see [`crate::reason`]. The type
    /// only checks the identifier rules; membership of the catalogue is a business rule checked
    /// by the machine aggregate.
    ReasonCode, "reason code", MAX_ID_LEN
);
identifier!(
    /// Identifies a characteristic under statistical process control (the
    /// `spc_characteristic` stream id); inspections name it in their measurements.
    CharacteristicId, "characteristic id", MAX_ID_LEN
);

identifier!(
    /// Identifies a node of the equipment hierarchy (the enterprise, a site, an area, a
    /// line or a work cell; ADR 0062). A line node's id is the `line` its machines name.
    NodeId, "node id", MAX_ID_LEN
);

impl From<ProductId> for ItemId {
    /// Finished goods of a product are stocked under an item id equal to the product id.
    fn from(value: ProductId) -> Self {
        ItemId(value.0)
    }
}

impl TaskId {
    /// The task id of the `occurrence`-th due occurrence of `policy`: `{policy_id}-{occurrence}`.
    /// Deterministic, so a retried policy check schedules the same task; always valid because
    /// policy ids are at most [`MAX_POLICY_ID_LEN`] characters.
    pub fn for_policy_occurrence(policy: &PolicyId, occurrence: u64) -> Self {
        TaskId(format!("{}-{occurrence}", policy.as_str()))
    }
}

/// The output location used when an order names none.
pub fn default_output_location() -> Location {
    Location(String::from("FG"))
}

/// Free text: reasons, notes, descriptions.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Text(String);

impl Text {
    /// Validates and normalises (trims) `value`.
    pub fn new(value: impl AsRef<str>) -> Result<Self, ValueError> {
        const KIND: &str = "text";
        let value = value.as_ref().trim();
        if value.is_empty() {
            return Err(ValueError::Empty { kind: KIND });
        }
        if value.chars().count() > MAX_TEXT_LEN {
            return Err(ValueError::TooLong {
                kind: KIND,
                max: MAX_TEXT_LEN,
            });
        }
        if value
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
        {
            return Err(ValueError::ControlCharacter { kind: KIND });
        }
        Ok(Self(value.to_owned()))
    }

    /// The text as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Text {
    type Error = ValueError;
    fn try_from(value: String) -> Result<Self, ValueError> {
        Self::new(value)
    }
}

impl TryFrom<&str> for Text {
    type Error = ValueError;
    fn try_from(value: &str) -> Result<Self, ValueError> {
        Self::new(value)
    }
}

impl From<Text> for String {
    fn from(value: Text) -> String {
        value.0
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A positive quantity of material (0 < q ≤ [`MAX_QUANTITY`]). Serialized as a decimal string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "Decimal", into = "Decimal")]
pub struct Quantity(Decimal);

impl Quantity {
    /// Validates `value` and strips trailing zeros.
    pub fn new(value: Decimal) -> Result<Self, ValueError> {
        const KIND: &str = "quantity";
        if value <= Decimal::ZERO {
            return Err(ValueError::NotPositive { kind: KIND });
        }
        if value > MAX_QUANTITY {
            return Err(ValueError::TooLarge {
                kind: KIND,
                max: MAX_QUANTITY,
            });
        }
        Ok(Self(value.normalize()))
    }

    /// The quantity as a decimal.
    pub fn value(self) -> Decimal {
        self.0
    }
}

impl TryFrom<Decimal> for Quantity {
    type Error = ValueError;
    fn try_from(value: Decimal) -> Result<Self, ValueError> {
        Self::new(value)
    }
}

impl From<Quantity> for Decimal {
    fn from(value: Quantity) -> Decimal {
        value.0
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A non-zero change of a stock level, either sign (|d| ≤ [`MAX_QUANTITY`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "Decimal", into = "Decimal")]
pub struct StockDelta(Decimal);

impl StockDelta {
    /// Validates `value` and strips trailing zeros.
    pub fn new(value: Decimal) -> Result<Self, ValueError> {
        const KIND: &str = "delta";
        if value.is_zero() {
            return Err(ValueError::Zero { kind: KIND });
        }
        if value.abs() > MAX_QUANTITY {
            return Err(ValueError::TooLarge {
                kind: KIND,
                max: MAX_QUANTITY,
            });
        }
        Ok(Self(value.normalize()))
    }

    /// The delta as a decimal.
    pub fn value(self) -> Decimal {
        self.0
    }
}

impl TryFrom<Decimal> for StockDelta {
    type Error = ValueError;
    fn try_from(value: Decimal) -> Result<Self, ValueError> {
        Self::new(value)
    }
}

impl From<StockDelta> for Decimal {
    fn from(value: StockDelta) -> Decimal {
        value.0
    }
}

/// How many units an order is to make (1 to [`MAX_ORDER_QUANTITY`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "StoredOrderQuantity", into = "u64")]
pub struct OrderQuantity(u64);

/// An order quantity as stored in an event: recorded events always load, so reading keeps the
/// rule they were recorded under (> 0), while [`OrderQuantity::new`] also applies the bound.
#[derive(Deserialize)]
#[serde(transparent)]
struct StoredOrderQuantity(u64);

impl TryFrom<StoredOrderQuantity> for OrderQuantity {
    type Error = ValueError;
    fn try_from(value: StoredOrderQuantity) -> Result<Self, ValueError> {
        if value.0 == 0 {
            return Err(ValueError::NotPositive {
                kind: "order quantity",
            });
        }
        Ok(Self(value.0))
    }
}

impl OrderQuantity {
    /// Validates `value`.
    pub fn new(value: u64) -> Result<Self, ValueError> {
        const KIND: &str = "order quantity";
        if value == 0 {
            return Err(ValueError::NotPositive { kind: KIND });
        }
        if value > MAX_ORDER_QUANTITY {
            return Err(ValueError::OutOfRange {
                kind: KIND,
                min: "1",
                max: "1000000000",
            });
        }
        Ok(Self(value))
    }

    /// The number of units.
    pub fn value(self) -> u64 {
        self.0
    }
}

impl TryFrom<u64> for OrderQuantity {
    type Error = ValueError;
    fn try_from(value: u64) -> Result<Self, ValueError> {
        Self::new(value)
    }
}

impl From<OrderQuantity> for u64 {
    fn from(value: OrderQuantity) -> u64 {
        value.0
    }
}

/// An ideal cycle time in seconds: from [`MIN_CYCLE_TIME_S`] (0.1 ms) to [`MAX_CYCLE_TIME_S`]
/// (one day).
///
/// A time, not a quantity of material, and used only in the KPI ratio
/// `performance = ideal cycle time × count / run time`, which is a floating-point figure anyway;
/// so it is an `f64` (JSON number) rather than a `Decimal`.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "StoredCycleTime", into = "f64")]
pub struct CycleTime(f64);

/// A cycle time as stored in an event: recorded events always load, so reading keeps the rule
/// they were recorded under (finite, > 0), while [`CycleTime::new`] also applies the bounds.
#[derive(Deserialize)]
#[serde(transparent)]
struct StoredCycleTime(f64);

impl TryFrom<StoredCycleTime> for CycleTime {
    type Error = ValueError;
    fn try_from(value: StoredCycleTime) -> Result<Self, ValueError> {
        const KIND: &str = "ideal cycle time";
        if !value.0.is_finite() {
            return Err(ValueError::NotFinite { kind: KIND });
        }
        if value.0 <= 0.0 {
            return Err(ValueError::NotPositive { kind: KIND });
        }
        Ok(Self(value.0))
    }
}

impl CycleTime {
    /// Validates `seconds`.
    pub fn new(seconds: f64) -> Result<Self, ValueError> {
        const KIND: &str = "ideal cycle time";
        if !seconds.is_finite() {
            return Err(ValueError::NotFinite { kind: KIND });
        }
        if seconds <= 0.0 {
            return Err(ValueError::NotPositive { kind: KIND });
        }
        if !(MIN_CYCLE_TIME_S..=MAX_CYCLE_TIME_S).contains(&seconds) {
            return Err(ValueError::OutOfRange {
                kind: KIND,
                min: "0.0001 s",
                max: "86400 s (one day)",
            });
        }
        Ok(Self(seconds))
    }

    /// The cycle time in seconds.
    pub fn seconds(self) -> f64 {
        self.0
    }
}

impl TryFrom<f64> for CycleTime {
    type Error = ValueError;
    fn try_from(value: f64) -> Result<Self, ValueError> {
        Self::new(value)
    }
}

impl From<CycleTime> for f64 {
    fn from(value: CycleTime) -> f64 {
        value.0
    }
}

identifier!(
    /// Identifies a lot of an item: unique within the item's stream (`inventory_item`), so a
    /// lot is named by its item and its lot id together ([`crate::lot::LotRef`]).
    LotId, "lot id", MAX_ID_LEN
);
