//! Value types validate once, when made, and when deserialized.

use rust_decimal::Decimal;
use shopfloor_domain::values::*;

use crate::support::dec;

#[test]
fn identifiers_are_trimmed_and_validated() {
    assert_eq!(MachineId::new("  M1 ").unwrap().as_str(), "M1");
    assert_eq!(
        MachineId::new("   "),
        Err(ValueError::Empty { kind: "machine id" })
    );
    assert_eq!(
        OrderId::new("a".repeat(MAX_ID_LEN + 1)),
        Err(ValueError::TooLong {
            kind: "order id",
            max: MAX_ID_LEN,
        })
    );
    assert!(OrderId::new("a".repeat(MAX_ID_LEN)).is_ok());
    assert!(
        OrderId::new("é".repeat(MAX_ID_LEN)).is_ok(),
        "counted in characters"
    );
    assert_eq!(
        ItemId::new("ab\u{0}c"),
        Err(ValueError::ControlCharacter { kind: "item id" })
    );
    assert_eq!(
        ItemId::new("a\nb"),
        Err(ValueError::ControlCharacter { kind: "item id" })
    );
    assert_eq!(
        ValueError::Empty { kind: "machine id" }.to_string(),
        "machine id must not be empty"
    );
}

#[test]
fn identifiers_serialize_as_strings_and_validate_when_deserialized() {
    let id = Location::new("FG").unwrap();
    assert_eq!(serde_json::to_string(&id).unwrap(), "\"FG\"");
    assert_eq!(serde_json::from_str::<Location>("\" FG \"").unwrap(), id);
    assert!(serde_json::from_str::<Location>("\"\"").is_err());
    assert_eq!(default_output_location(), id);
    assert_eq!(
        ItemId::from(ProductId::new("widget").unwrap()),
        ItemId::new("widget").unwrap()
    );
}

#[test]
fn policy_ids_leave_room_for_occurrence_numbers() {
    let policy = PolicyId::new("p".repeat(MAX_POLICY_ID_LEN)).unwrap();
    let task = TaskId::for_policy_occurrence(&policy, u64::MAX);
    assert!(TaskId::new(task.as_str()).is_ok());
    assert!(PolicyId::new("p".repeat(MAX_POLICY_ID_LEN + 1)).is_err());
    assert_eq!(
        TaskId::for_policy_occurrence(&PolicyId::new("P1").unwrap(), 3).as_str(),
        "P1-3"
    );
}

#[test]
fn text_allows_newlines_but_not_other_control_characters() {
    assert_eq!(Text::new(" two\nlines\t ").unwrap().as_str(), "two\nlines");
    assert_eq!(Text::new(""), Err(ValueError::Empty { kind: "text" }));
    assert_eq!(
        Text::new("bell\u{7}"),
        Err(ValueError::ControlCharacter { kind: "text" })
    );
    assert_eq!(
        Text::new("x".repeat(MAX_TEXT_LEN + 1)),
        Err(ValueError::TooLong {
            kind: "text",
            max: MAX_TEXT_LEN,
        })
    );
}

#[test]
fn quantities_are_positive_bounded_and_normalised() {
    assert_eq!(MAX_QUANTITY, Decimal::from(1_000_000_000_000_i64));
    assert_eq!(
        Quantity::new(dec("2.500")).unwrap().value().to_string(),
        "2.5"
    );
    assert_eq!(
        Quantity::new(Decimal::ZERO),
        Err(ValueError::NotPositive { kind: "quantity" })
    );
    assert_eq!(
        Quantity::new(dec("-1")),
        Err(ValueError::NotPositive { kind: "quantity" })
    );
    assert_eq!(
        Quantity::new(MAX_QUANTITY + Decimal::ONE),
        Err(ValueError::TooLarge {
            kind: "quantity",
            max: MAX_QUANTITY,
        })
    );
    assert_eq!(
        serde_json::to_string(&Quantity::new(dec("1.50")).unwrap()).unwrap(),
        "\"1.5\""
    );
    assert_eq!(
        serde_json::from_str::<Quantity>("\"0.25\"").unwrap(),
        Quantity::new(dec("0.25")).unwrap()
    );
    assert!(serde_json::from_str::<Quantity>("\"0\"").is_err());
}

#[test]
fn deltas_are_non_zero_either_sign() {
    assert_eq!(StockDelta::new(dec("-3.0")).unwrap().value(), dec("-3"));
    assert_eq!(
        StockDelta::new(dec("0.000")),
        Err(ValueError::Zero { kind: "delta" })
    );
    assert_eq!(
        StockDelta::new(-MAX_QUANTITY - Decimal::ONE),
        Err(ValueError::TooLarge {
            kind: "delta",
            max: MAX_QUANTITY,
        })
    );
}

#[test]
fn order_quantities_and_cycle_times() {
    assert_eq!(OrderQuantity::new(5).unwrap().value(), 5);
    assert_eq!(
        OrderQuantity::new(0),
        Err(ValueError::NotPositive {
            kind: "order quantity"
        })
    );
    assert!(serde_json::from_str::<OrderQuantity>("0").is_err());
    assert_eq!(CycleTime::new(1.5).unwrap().seconds(), 1.5);
    for bad in [0.0, -1.0] {
        assert_eq!(
            CycleTime::new(bad),
            Err(ValueError::NotPositive {
                kind: "ideal cycle time"
            })
        );
    }
    for bad in [f64::NAN, f64::INFINITY] {
        assert_eq!(
            CycleTime::new(bad),
            Err(ValueError::NotFinite {
                kind: "ideal cycle time"
            })
        );
    }
    assert!(serde_json::from_str::<CycleTime>("-2").is_err());
}

/// Issue 16: values that make no physical sense are refused when made, so that nothing the
/// domain accepts is out of range for a read model (an order of 2^63 units, a cycle time of
/// 300 years).
#[test]
fn physically_absurd_values_are_refused() {
    use shopfloor_domain::values::{MAX_CYCLE_TIME_S, MAX_ORDER_QUANTITY, MIN_CYCLE_TIME_S};
    assert_eq!(MAX_ORDER_QUANTITY, 1_000_000_000);
    assert!(OrderQuantity::new(MAX_ORDER_QUANTITY).is_ok());
    for bad in [MAX_ORDER_QUANTITY + 1, 9_223_372_036_854_775_808, u64::MAX] {
        assert!(
            matches!(
                OrderQuantity::new(bad),
                Err(ValueError::OutOfRange {
                    kind: "order quantity",
                    ..
                })
            ),
            "{bad}"
        );
    }
    // A recorded event always loads: reading keeps the rule it was recorded under.
    assert_eq!(
        serde_json::from_str::<OrderQuantity>("9223372036854775808")
            .unwrap()
            .value(),
        9_223_372_036_854_775_808
    );

    assert!(CycleTime::new(MAX_CYCLE_TIME_S).is_ok());
    assert!(CycleTime::new(MIN_CYCLE_TIME_S).is_ok());
    for bad in [1e16, 300.0 * 365.25 * 86_400.0, 86_400.001, 1e-5, 5e-324] {
        assert!(
            matches!(
                CycleTime::new(bad),
                Err(ValueError::OutOfRange {
                    kind: "ideal cycle time",
                    ..
                })
            ),
            "{bad}"
        );
    }
    assert_eq!(
        serde_json::from_str::<CycleTime>("1e16").unwrap().seconds(),
        1e16
    );
    assert!(serde_json::from_str::<CycleTime>("0").is_err());
    let message = CycleTime::new(1e16).unwrap_err().to_string();
    assert!(message.contains("86400"), "{message}");
}
