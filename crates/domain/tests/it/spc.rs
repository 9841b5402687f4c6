//! The SPC characteristic (ADR 0056) through its public surface: a given/when/then run of an
//! X̄-R chart (define, samples, freeze, a signal), and the serialized JSON of every SPC event
//! (and of an inspection carrying measurements) pinned in `tests/fixtures/spc_events.v1.json`,
//! like `snapshots` pins the others. Regenerate with
//! `UPDATE_SNAPSHOTS=1 cargo test -p shopfloor-domain spc`.

use cqrs_es::{Aggregate, DomainEvent};
use serde_json::{json, Value};
use shopfloor_domain::order::OrderEvent;
use shopfloor_domain::spc::*;
use shopfloor_domain::{Decide, ProductionOrder, SpcCharacteristic};

use crate::support::{id, t, text};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/spc_events.v1.json"
);

fn define() -> SpcCommand {
    SpcCommand::DefineCharacteristic(DefineCharacteristic {
        characteristic_id: id("bore"),
        name: text("Bore diameter"),
        chart: ChartKind::XbarR,
        subgroup_size: 4,
        spec: SpecLimits {
            lsl: Some(0.0),
            usl: Some(6.0),
            target: Some(3.0),
        },
        rules: RuleSet::WesternElectric.rules(),
        source: SampleSource::Measurements,
        machine_id: Some(id("M1")),
        by: id("qe"),
        at: t(8, 0),
    })
}

fn sample(values: [f64; 4], minute: u32) -> SpcCommand {
    SpcCommand::RecordSample(RecordSample {
        data: SampleData::Values {
            values: values.to_vec(),
        },
        order_id: Some(id("PO-1")),
        inspection_id: Some(id(&format!("I{minute}"))),
        at: t(9, minute),
    })
}

/// Define, three subgroups, freeze (x̄̄ = 3, R̄ = 3: X̄ 0.813 to 5.187, R up to 6.846), an
/// in-control subgroup, then one whose mean (5.5) is above the UCL: the events of each step.
fn history() -> Vec<SpcEvent> {
    let mut a = SpcCharacteristic::default();
    let mut events = a.execute(define()).unwrap();
    for (i, v) in [
        [1.0, 2.0, 3.0, 4.0],
        [2.0, 3.0, 4.0, 5.0],
        [2.0, 2.0, 3.0, 5.0],
    ]
    .into_iter()
    .enumerate()
    {
        events.extend(a.execute(sample(v, i as u32)).unwrap());
    }
    events.extend(
        a.execute(SpcCommand::FreezeLimits(FreezeLimits {
            basis: LimitsBasis::Baseline {
                from_index: 1,
                to_index: 3,
            },
            by: id("qe"),
            at: t(9, 30),
        }))
        .unwrap(),
    );
    events.extend(a.execute(sample([3.0, 3.5, 2.5, 3.0], 31)).unwrap());
    events.extend(a.execute(sample([5.0, 5.5, 6.0, 5.5], 32)).unwrap());
    events
}

#[test]
fn given_a_frozen_chart_when_a_subgroup_is_above_the_ucl_then_a_signal_is_recorded() {
    let events = history();
    let types: Vec<String> = events.iter().map(DomainEvent::event_type).collect();
    assert_eq!(
        types,
        [
            "SpcCharacteristicDefined",
            "SpcSampleRecorded",
            "SpcSampleRecorded",
            "SpcSampleRecorded",
            "SpcControlLimitsFrozen",
            "SpcSampleRecorded",
            "SpcSampleRecorded",
            "SpcSignalRaised",
        ]
    );
    let SpcEvent::SpcSignalRaised {
        rule,
        part,
        index,
        value,
        limits_version,
        machine_id,
        ..
    } = events.last().unwrap()
    else {
        panic!()
    };
    assert_eq!(
        (*rule, *part, *index, *value, *limits_version),
        (Rule::BeyondLimits, ChartPart::Primary, 5, 5.5, 1)
    );
    assert_eq!(machine_id.as_ref().map(|m| m.as_str()), Some("M1"));
    // Replaying the events gives the state deciding them left.
    let replayed = SpcCharacteristic::replay(events);
    let c = replayed.characteristic().unwrap();
    assert_eq!((c.samples, c.signals.len(), c.limits.len()), (5, 1, 1));
    assert!((c.current_limits().unwrap().limits.primary.ucl - 5.187).abs() < 1e-9);
}

fn entries<A: Aggregate>(events: Vec<A::Event>) -> Vec<Value> {
    events
        .into_iter()
        .map(|event| {
            let payload = serde_json::to_value(&event).unwrap();
            let back: A::Event = serde_json::from_value(payload.clone()).unwrap();
            assert_eq!(back, event);
            json!({
                "stream_type": A::TYPE,
                "event_type": event.event_type(),
                "event_version": event.event_version(),
                "payload": payload,
            })
        })
        .collect()
}

fn all_entries() -> Vec<Value> {
    let inspection = OrderEvent::OrderInspectionRecorded {
        order_id: id("PO-1"),
        inspection_id: id("I1"),
        sample_size: 4,
        defects: 0,
        passed: true,
        inspector: id("qa-anna"),
        notes: None,
        measurements: vec![Measurement::new(id("bore"), vec![2.5, 3.0, 3.5, 3.0]).unwrap()],
        at: t(9, 0),
    };
    let mut all = entries::<ProductionOrder>(vec![inspection]);
    all.extend(entries::<SpcCharacteristic>(history()));
    all
}

#[test]
fn serialized_spc_events_match_the_pinned_snapshot() {
    let actual = Value::Array(all_entries());
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        let text = serde_json::to_string_pretty(&actual).unwrap() + "\n";
        std::fs::write(FIXTURE, text).unwrap();
    }
    let pinned: Value = serde_json::from_str(
        &std::fs::read_to_string(FIXTURE).expect("run with UPDATE_SNAPSHOTS=1 to create it"),
    )
    .unwrap();
    assert_eq!(actual, pinned);
    for entry in pinned.as_array().unwrap() {
        let payload = entry["payload"].clone();
        match entry["stream_type"].as_str().unwrap() {
            "spc_characteristic" => {
                serde_json::from_value::<SpcEvent>(payload).unwrap();
            }
            "production_order" => {
                serde_json::from_value::<OrderEvent>(payload).unwrap();
            }
            other => panic!("unknown stream type {other}"),
        }
    }
}
