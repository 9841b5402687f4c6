//! Helpers shared by the tests: terse constructors for validated values and fixed times.

use std::fmt::Debug;
use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use rust_decimal::Decimal;
use shopfloor_domain::values::{Quantity, StockDelta, Text};

/// 2024-03-01 at `h`:`m` UTC.
pub fn t(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, 1, h, m, 0).unwrap()
}

/// A day of March 2024 at midnight UTC.
pub fn day(d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, d, 0, 0, 0).unwrap()
}

/// Any validated identifier.
pub fn id<T>(value: &str) -> T
where
    T: FromStr,
    T::Err: Debug,
{
    value.parse().unwrap()
}

pub fn dec(value: &str) -> Decimal {
    value.parse().unwrap()
}

pub fn qty(value: &str) -> Quantity {
    Quantity::new(dec(value)).unwrap()
}

pub fn delta(value: &str) -> StockDelta {
    StockDelta::new(dec(value)).unwrap()
}

pub fn text(value: &str) -> Text {
    Text::new(value).unwrap()
}
