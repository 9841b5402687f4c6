//! The equipment hierarchy (ADR 0062): given events, when a command, then events or the
//! exact error.

use chrono::{DateTime, Duration, Utc};
use shopfloor_domain::hierarchy::*;
use shopfloor_domain::values::{Actor, NodeId};
use shopfloor_domain::Decide;

use crate::support::{id, t, text};

fn node(id_: &str) -> NodeId {
    id(id_)
}

fn by() -> Actor {
    id("sup")
}

fn create(id_: &str, level: Level, parent: Option<&str>) -> HierarchyCommand {
    HierarchyCommand::CreateNode(CreateNode {
        node_id: node(id_),
        level,
        name: text(&format!("name of {id_}")),
        parent: parent.map(node),
        by: by(),
        at: t(8, 0),
    })
}

fn move_to(id_: &str, parent: Option<&str>, effective_from: DateTime<Utc>) -> HierarchyCommand {
    HierarchyCommand::MoveNode(MoveNode {
        node_id: node(id_),
        parent: parent.map(node),
        effective_from,
        by: by(),
        at: t(12, 0),
    })
}

fn place(machine: &str, line: &str, cell: Option<&str>) -> HierarchyCommand {
    HierarchyCommand::PlaceMachine(PlaceMachine {
        machine_id: id(machine),
        line: id(line),
        cell: cell.map(node),
        effective_from: t(9, 0),
        by: by(),
        at: t(9, 0),
    })
}

/// ACME → plant1 → (press, paint); press → L1 → C1, C2; paint → L2.
fn plant() -> EquipmentHierarchy {
    let mut h = EquipmentHierarchy::default();
    for cmd in [
        create("acme", Level::Enterprise, None),
        create("plant1", Level::Site, Some("acme")),
        create("press", Level::Area, Some("plant1")),
        create("paint", Level::Area, Some("plant1")),
        create("L1", Level::Line, Some("press")),
        create("L2", Level::Line, Some("paint")),
        create("C1", Level::WorkCell, Some("L1")),
        create("C2", Level::WorkCell, Some("L1")),
    ] {
        h.execute(cmd).expect("plant set-up");
    }
    h
}

#[test]
fn nodes_nest_one_level_at_a_time() {
    let h = plant();
    let chain: Vec<&str> = h.chain("C1").iter().map(|n| n.node_id.as_str()).collect();
    assert_eq!(chain, ["C1", "L1", "press", "plant1", "acme"]);
    assert_eq!(h.line_of("C2").map(NodeId::as_str), Some("L1"));
    assert_eq!(
        h.decide(create("X", Level::Line, Some("plant1"))),
        Err(HierarchyError::WrongParentLevel {
            level: Level::Line,
            parent: node("plant1"),
            expected: Level::Area,
            found: Level::Site,
        })
    );
    assert_eq!(
        h.decide(create("X", Level::Enterprise, Some("acme"))),
        Err(HierarchyError::NoParentAllowed {
            level: Level::Enterprise
        })
    );
    assert_eq!(
        h.decide(create("X", Level::Area, Some("nowhere"))),
        Err(HierarchyError::UnknownParent {
            parent: node("nowhere")
        })
    );
    assert_eq!(
        h.decide(create("a/b", Level::Site, None)),
        Err(HierarchyError::Shape {
            node_id: node("a/b")
        })
    );
    // A line without an area is allowed (shown under the default area).
    assert_eq!(h.decide(create("L9", Level::Line, None)).unwrap().len(), 1);
}

#[test]
fn creating_again_is_idempotent_and_a_different_node_conflicts() {
    let h = plant();
    assert!(h
        .decide(create("L1", Level::Line, Some("press")))
        .unwrap()
        .is_empty());
    assert_eq!(
        h.decide(create("L1", Level::Line, Some("paint"))),
        Err(HierarchyError::AlreadyExists {
            node_id: node("L1")
        })
    );
}

#[test]
fn a_move_keeps_levels_and_refuses_a_cycle() {
    let mut h = plant();
    assert_eq!(
        h.decide(move_to("press", Some("C1"), t(10, 0))),
        Err(HierarchyError::UnderItself {
            node_id: node("press"),
            parent: node("C1"),
        })
    );
    assert_eq!(
        h.decide(move_to("L1", Some("L1"), t(10, 0))),
        Err(HierarchyError::UnderItself {
            node_id: node("L1"),
            parent: node("L1"),
        })
    );
    assert_eq!(
        h.decide(move_to("ghost", Some("paint"), t(10, 0))),
        Err(HierarchyError::NotFound {
            node_id: node("ghost")
        })
    );
    assert_eq!(
        h.decide(move_to("L1", Some("paint"), t(13, 0))),
        Err(HierarchyError::EffectiveInFuture {
            effective_from: t(13, 0)
        })
    );
    let events = h.execute(move_to("L1", Some("paint"), t(10, 0))).unwrap();
    assert_eq!(
        events,
        vec![HierarchyEvent::HierarchyNodeMoved {
            node_id: node("L1"),
            level: Level::Line,
            from_parent: Some(node("press")),
            parent: Some(node("paint")),
            effective_from: t(10, 0),
            by: by(),
            at: t(12, 0),
        }]
    );
    assert_eq!(h.chain("C1")[2].node_id.as_str(), "paint");
    // Not before the previous move; the same parent again is nothing.
    assert_eq!(
        h.decide(move_to("L1", Some("press"), t(9, 0))),
        Err(HierarchyError::EffectiveBeforePrevious {
            effective_from: t(9, 0),
            previous: t(10, 0),
        })
    );
    assert!(h
        .decide(move_to("L1", Some("paint"), t(11, 0)))
        .unwrap()
        .is_empty());
}

#[test]
fn machines_go_in_cells_of_their_own_line() {
    let mut h = plant();
    assert_eq!(
        h.decide(place("m1", "L2", Some("C1"))),
        Err(HierarchyError::CellOnOtherLine {
            cell: node("C1"),
            line: id("L2"),
        })
    );
    assert_eq!(
        h.decide(place("m1", "L1", Some("L1"))),
        Err(HierarchyError::NotACell {
            node_id: node("L1"),
            level: Level::Line,
        })
    );
    assert!(h.decide(place("m1", "L1", None)).unwrap().is_empty());
    h.execute(place("m1", "L1", Some("C1"))).unwrap();
    assert_eq!(
        h.placement("m1").and_then(|p| p.cell.clone()),
        Some(node("C1"))
    );
    // A cell that holds machines moves within its line only.
    h.execute(create("L3", Level::Line, Some("press"))).unwrap();
    assert_eq!(
        h.decide(move_to("C1", Some("L3"), t(10, 0))),
        Err(HierarchyError::CellHoldsMachines {
            node_id: node("C1"),
            line: id("L1"),
        })
    );
    assert_eq!(
        h.decide(move_to("C2", Some("L3"), t(10, 0))).unwrap().len(),
        1
    );
}

#[test]
fn a_rename_changes_the_name_only() {
    let mut h = plant();
    let rename = |name: &str| {
        HierarchyCommand::RenameNode(RenameNode {
            node_id: node("L1"),
            name: text(name),
            by: by(),
            at: t(9, 0) + Duration::minutes(1),
        })
    };
    h.execute(rename("Press line 1")).unwrap();
    let l1 = h.node("L1").unwrap();
    assert_eq!(l1.name.as_str(), "Press line 1");
    assert_eq!(l1.parent.as_ref().map(NodeId::as_str), Some("press"));
    assert!(h.decide(rename("Press line 1")).unwrap().is_empty());
}

#[test]
fn events_round_trip_through_json() {
    let mut h = EquipmentHierarchy::default();
    let events = h.execute(create("acme", Level::Enterprise, None)).unwrap();
    let json = serde_json::to_value(&events[0]).unwrap();
    assert_eq!(json["event_type"], "HierarchyNodeCreated");
    assert_eq!(json["level"], "enterprise");
    let back: HierarchyEvent = serde_json::from_value(json).unwrap();
    assert_eq!(back, events[0]);
    let replayed = EquipmentHierarchy::replay(events);
    assert_eq!(replayed, h);
}

/// Where the serialized hierarchy events are pinned (create it with
/// `UPDATE_SNAPSHOTS=1 cargo test -p shopfloor-domain hierarchy`).
const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/hierarchy_events.v1.json"
);

#[test]
fn serialized_hierarchy_events_match_the_pinned_snapshot() {
    use cqrs_es::DomainEvent;
    use serde_json::{json, Value};
    let mut h = plant();
    let mut events = EquipmentHierarchy::default()
        .execute(create("acme", Level::Enterprise, None))
        .unwrap();
    events.extend(h.execute(move_to("L1", Some("paint"), t(10, 0))).unwrap());
    events.extend(
        h.execute(HierarchyCommand::RenameNode(RenameNode {
            node_id: node("L1"),
            name: text("Press line 1"),
            by: by(),
            at: t(12, 0),
        }))
        .unwrap(),
    );
    events.extend(h.execute(place("m1", "L1", Some("C1"))).unwrap());
    let actual = Value::Array(
        events
            .iter()
            .map(|e| {
                json!({
                    "stream_type": "equipment_hierarchy",
                    "event_type": e.event_type(),
                    "event_version": e.event_version(),
                    "payload": serde_json::to_value(e).unwrap(),
                })
            })
            .collect(),
    );
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
        let back: HierarchyEvent = serde_json::from_value(entry["payload"].clone()).unwrap();
        assert_eq!(entry["event_type"], back.event_type());
    }
}

mod props {
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;

    const IDS: [&str; 6] = ["n0", "n1", "n2", "n3", "n4", "n5"];

    fn command() -> impl Strategy<Value = HierarchyCommand> {
        let id = proptest::sample::select(IDS.to_vec());
        let parent = proptest::option::of(proptest::sample::select(IDS.to_vec()));
        let level = proptest::sample::select(Level::ALL.to_vec());
        let minutes = 0i64..600;
        prop_oneof![
            (id.clone(), level, parent.clone()).prop_map(|(i, l, p)| create(i, l, p)),
            (id.clone(), parent.clone(), minutes.clone())
                .prop_map(|(i, p, m)| { move_to(i, p, t(0, 0) + Duration::minutes(m)) }),
            (0usize..3, id.clone(), parent)
                .prop_map(|(m, line, cell)| { place(["m0", "m1", "m2"][m], line, cell) }),
        ]
    }

    proptest! {
        /// Any sequence of commands: refusals change nothing, and what is accepted
        /// keeps the tree sound (every parent one level up, chains end, machines in
        /// cells of their own line).
        #[test]
        fn any_commands_keep_the_tree_sound(commands in vec(command(), 0..60)) {
            let mut h = EquipmentHierarchy::default();
            for cmd in commands {
                let before = h.clone();
                match h.decide(cmd) {
                    Ok(events) => {
                        for e in events {
                            cqrs_es::Aggregate::apply(&mut h, e);
                        }
                    }
                    Err(_) => prop_assert_eq!(&h, &before),
                }
                for n in h.nodes() {
                    if let Some(p) = &n.parent {
                        let parent = h.node(p.as_str()).expect("a parent exists");
                        prop_assert_eq!(Some(parent.level), n.level.parent_level());
                    }
                    prop_assert!(h.chain(n.node_id.as_str()).len() <= Level::ALL.len());
                }
                for m in ["m0", "m1", "m2"] {
                    if let Some(cell) = h.placement(m).and_then(|p| p.cell.clone()) {
                        let line = h.line_of(cell.as_str()).map(|l| l.to_string());
                        prop_assert_eq!(line, Some(h.placement(m).unwrap().line.to_string()));
                    }
                }
            }
        }
    }
}
