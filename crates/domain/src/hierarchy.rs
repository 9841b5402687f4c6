//! The ISA-95 equipment hierarchy (ADR 0062): enterprise → site → area → line → work
//! cell → machine, as data.
//!
//! Stream type `equipment_hierarchy`, one stream ([`PLANT_STREAM`]), so that the rules
//! that span nodes (no node under its own descendant, a cell's machines stay on their
//! line) are decided on one consistent state. A supervisor may
//! - create a node of a [`Level`] under a parent one level up, or with no parent (a root:
//!   a line without an area is shown under an implicit default site and area);
//! - move a node to another parent of the same level, from an effective time;
//! - rename a node (its id, which MQTT topics and machines name, never changes);
//! - place a machine in a work cell of its line, or back on its line, from an effective
//!   time.
//!
//! A line node's id is the `line` string its machines were registered with, so every
//! machine's line stays valid and machines of a line without a node keep working.
//!
//! **Time.** A node's parent at creation, and a machine's first placement, hold for all
//! time before their first change; each later move or placement takes effect from its
//! `effective_from` (not after the command's time, and not before the node's or
//! machine's previous change). The read model keeps every change with its effective and
//! recorded times, so a query resolves the tree as it stood at a floor time and as it was
//! known by `as_of`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::values::{Actor, LineId, MachineId, NodeId, Text};
use crate::Decide;

/// The id of the one hierarchy stream.
pub const PLANT_STREAM: &str = "plant";

/// The level of a node, from the top.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Enterprise,
    Site,
    Area,
    Line,
    WorkCell,
}

impl Level {
    /// Every level, from the top.
    pub const ALL: [Level; 5] = [
        Level::Enterprise,
        Level::Site,
        Level::Area,
        Level::Line,
        Level::WorkCell,
    ];

    /// The level a parent of this level must have (none for the enterprise).
    pub const fn parent_level(self) -> Option<Level> {
        match self {
            Level::Enterprise => None,
            Level::Site => Some(Level::Enterprise),
            Level::Area => Some(Level::Site),
            Level::Line => Some(Level::Area),
            Level::WorkCell => Some(Level::Line),
        }
    }

    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Level::Enterprise => "enterprise",
            Level::Site => "site",
            Level::Area => "area",
            Level::Line => "line",
            Level::WorkCell => "work_cell",
        }
    }

    /// The level of a stored name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.as_str() == name)
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Adds a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateNode {
    pub node_id: NodeId,
    pub level: Level,
    pub name: Text,
    pub parent: Option<NodeId>,
    pub by: Actor,
    pub at: DateTime<Utc>,
}

/// Moves a node to another parent (none: a root) from `effective_from`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MoveNode {
    pub node_id: NodeId,
    pub parent: Option<NodeId>,
    pub effective_from: DateTime<Utc>,
    pub by: Actor,
    pub at: DateTime<Utc>,
}

/// Gives a node another display name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RenameNode {
    pub node_id: NodeId,
    pub name: Text,
    pub by: Actor,
    pub at: DateTime<Utc>,
}

/// Places a machine in a work cell of its line (none: directly on its line).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlaceMachine {
    pub machine_id: MachineId,
    /// The machine's line, looked up by the caller from the machine.
    pub line: LineId,
    pub cell: Option<NodeId>,
    pub effective_from: DateTime<Utc>,
    pub by: Actor,
    pub at: DateTime<Utc>,
}

/// Every command the hierarchy accepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum HierarchyCommand {
    CreateNode(CreateNode),
    MoveNode(MoveNode),
    RenameNode(RenameNode),
    PlaceMachine(PlaceMachine),
}

/// What happened to the hierarchy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type")]
pub enum HierarchyEvent {
    HierarchyNodeCreated {
        node_id: NodeId,
        level: Level,
        name: Text,
        parent: Option<NodeId>,
        by: Actor,
        at: DateTime<Utc>,
    },
    HierarchyNodeMoved {
        node_id: NodeId,
        level: Level,
        from_parent: Option<NodeId>,
        parent: Option<NodeId>,
        effective_from: DateTime<Utc>,
        by: Actor,
        at: DateTime<Utc>,
    },
    HierarchyNodeRenamed {
        node_id: NodeId,
        name: Text,
        by: Actor,
        at: DateTime<Utc>,
    },
    HierarchyMachinePlaced {
        machine_id: MachineId,
        line: LineId,
        cell: Option<NodeId>,
        effective_from: DateTime<Utc>,
        by: Actor,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for HierarchyEvent {
    fn event_type(&self) -> String {
        match self {
            Self::HierarchyNodeCreated { .. } => "HierarchyNodeCreated",
            Self::HierarchyNodeMoved { .. } => "HierarchyNodeMoved",
            Self::HierarchyNodeRenamed { .. } => "HierarchyNodeRenamed",
            Self::HierarchyMachinePlaced { .. } => "HierarchyMachinePlaced",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        String::from("1")
    }
}

/// Why a change to the hierarchy was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HierarchyError {
    #[error("node id {node_id:?} must not be `default` nor contain `/`, `+`, `#` or spaces (it is an MQTT topic level)")]
    Shape { node_id: NodeId },
    #[error("node {node_id} already exists")]
    AlreadyExists { node_id: NodeId },
    #[error("node {node_id} does not exist")]
    NotFound { node_id: NodeId },
    #[error("parent node {parent} does not exist")]
    UnknownParent { parent: NodeId },
    #[error("a {level} cannot have a parent")]
    NoParentAllowed { level: Level },
    #[error("a {level} goes under a {expected}, and {parent} is a {found}")]
    WrongParentLevel {
        level: Level,
        parent: NodeId,
        expected: Level,
        found: Level,
    },
    #[error("node {node_id} cannot move under itself or its own descendant {parent}")]
    UnderItself { node_id: NodeId, parent: NodeId },
    #[error("work cell {node_id} holds machines of line {line}: place them elsewhere before moving it to another line")]
    CellHoldsMachines { node_id: NodeId, line: LineId },
    #[error("effective_from {effective_from} is after the time of the command")]
    EffectiveInFuture { effective_from: DateTime<Utc> },
    #[error("effective_from {effective_from} is before the previous change, at {previous}")]
    EffectiveBeforePrevious {
        effective_from: DateTime<Utc>,
        previous: DateTime<Utc>,
    },
    #[error("node {node_id} is a {level}, not a work cell")]
    NotACell { node_id: NodeId, level: Level },
    #[error("work cell {cell} is not on line {line}, the machine's line")]
    CellOnOtherLine { cell: NodeId, line: LineId },
}

/// One node as it stands now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HierarchyNode {
    pub node_id: NodeId,
    pub level: Level,
    pub name: Text,
    pub parent: Option<NodeId>,
    /// The effective time of its last move (none: never moved).
    pub moved_from: Option<DateTime<Utc>>,
}

/// Where a machine stands now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    pub line: LineId,
    pub cell: Option<NodeId>,
    pub effective_from: DateTime<Utc>,
}

/// The plant's equipment hierarchy as it stands now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EquipmentHierarchy {
    nodes: BTreeMap<NodeId, HierarchyNode>,
    machines: BTreeMap<MachineId, Placement>,
}

impl EquipmentHierarchy {
    /// A node by id.
    pub fn node(&self, id: &str) -> Option<&HierarchyNode> {
        self.nodes.get(id)
    }

    /// Every node, by id.
    pub fn nodes(&self) -> impl Iterator<Item = &HierarchyNode> {
        self.nodes.values()
    }

    /// The placement of a machine that has been placed.
    pub fn placement(&self, machine: &str) -> Option<&Placement> {
        self.machines.get(machine)
    }

    /// The node and its ancestors, from the node up (stops at an unknown id).
    pub fn chain(&self, id: &str) -> Vec<&HierarchyNode> {
        let mut out = Vec::new();
        let mut next = self.nodes.get(id);
        while let Some(node) = next {
            if out.len() > Level::ALL.len() {
                break; // levels strictly decrease, so this never happens
            }
            out.push(node);
            next = node.parent.as_ref().and_then(|p| self.nodes.get(p));
        }
        out
    }

    /// The line a node is on (itself for a line).
    pub fn line_of(&self, id: &str) -> Option<&NodeId> {
        self.chain(id)
            .into_iter()
            .find(|n| n.level == Level::Line)
            .map(|n| &n.node_id)
    }

    fn existing(&self, id: &NodeId) -> Result<&HierarchyNode, HierarchyError> {
        self.nodes.get(id).ok_or_else(|| HierarchyError::NotFound {
            node_id: id.clone(),
        })
    }

    /// Checks that `parent` may hold a node of `level`.
    fn check_parent(&self, level: Level, parent: Option<&NodeId>) -> Result<(), HierarchyError> {
        let Some(parent) = parent else {
            return Ok(());
        };
        let found = self
            .nodes
            .get(parent)
            .ok_or_else(|| HierarchyError::UnknownParent {
                parent: parent.clone(),
            })?
            .level;
        let expected = level
            .parent_level()
            .ok_or(HierarchyError::NoParentAllowed { level })?;
        if found != expected {
            return Err(HierarchyError::WrongParentLevel {
                level,
                parent: parent.clone(),
                expected,
                found,
            });
        }
        Ok(())
    }

    fn decide_create(&self, cmd: CreateNode) -> Result<Vec<HierarchyEvent>, HierarchyError> {
        check_shape(&cmd.node_id)?;
        if let Some(existing) = self.nodes.get(&cmd.node_id) {
            let same = existing.level == cmd.level
                && existing.name == cmd.name
                && existing.parent == cmd.parent;
            return match same {
                true => Ok(vec![]),
                false => Err(HierarchyError::AlreadyExists {
                    node_id: cmd.node_id,
                }),
            };
        }
        self.check_parent(cmd.level, cmd.parent.as_ref())?;
        Ok(vec![HierarchyEvent::HierarchyNodeCreated {
            node_id: cmd.node_id,
            level: cmd.level,
            name: cmd.name,
            parent: cmd.parent,
            by: cmd.by,
            at: cmd.at,
        }])
    }

    fn decide_move(&self, cmd: MoveNode) -> Result<Vec<HierarchyEvent>, HierarchyError> {
        let node = self.existing(&cmd.node_id)?;
        if let Some(parent) = &cmd.parent {
            let under_itself = self
                .chain(parent.as_str())
                .iter()
                .any(|n| n.node_id == cmd.node_id);
            if under_itself {
                return Err(HierarchyError::UnderItself {
                    node_id: cmd.node_id,
                    parent: parent.clone(),
                });
            }
        }
        self.check_parent(node.level, cmd.parent.as_ref())?;
        check_effective(cmd.effective_from, cmd.at, node.moved_from)?;
        if node.parent == cmd.parent {
            return Ok(vec![]);
        }
        if node.level == Level::WorkCell {
            self.check_cell_keeps_line(node, cmd.parent.as_ref())?;
        }
        Ok(vec![HierarchyEvent::HierarchyNodeMoved {
            node_id: cmd.node_id,
            level: node.level,
            from_parent: node.parent.clone(),
            parent: cmd.parent,
            effective_from: cmd.effective_from,
            by: cmd.by,
            at: cmd.at,
        }])
    }

    /// A cell holding machines may only move within its line (their line stays valid).
    fn check_cell_keeps_line(
        &self,
        cell: &HierarchyNode,
        to: Option<&NodeId>,
    ) -> Result<(), HierarchyError> {
        let holds = self
            .machines
            .values()
            .find(|p| p.cell.as_ref() == Some(&cell.node_id));
        match holds {
            Some(p) if to.map(NodeId::as_str) != Some(p.line.as_str()) => {
                Err(HierarchyError::CellHoldsMachines {
                    node_id: cell.node_id.clone(),
                    line: p.line.clone(),
                })
            }
            _ => Ok(()),
        }
    }

    fn decide_rename(&self, cmd: RenameNode) -> Result<Vec<HierarchyEvent>, HierarchyError> {
        let node = self.existing(&cmd.node_id)?;
        if node.name == cmd.name {
            return Ok(vec![]);
        }
        Ok(vec![HierarchyEvent::HierarchyNodeRenamed {
            node_id: cmd.node_id,
            name: cmd.name,
            by: cmd.by,
            at: cmd.at,
        }])
    }

    fn decide_place(&self, cmd: PlaceMachine) -> Result<Vec<HierarchyEvent>, HierarchyError> {
        if let Some(cell) = &cmd.cell {
            let node = self.existing(cell)?;
            if node.level != Level::WorkCell {
                return Err(HierarchyError::NotACell {
                    node_id: cell.clone(),
                    level: node.level,
                });
            }
            if self.line_of(cell.as_str()).map(NodeId::as_str) != Some(cmd.line.as_str()) {
                return Err(HierarchyError::CellOnOtherLine {
                    cell: cell.clone(),
                    line: cmd.line,
                });
            }
        }
        let current = self.machines.get(&cmd.machine_id);
        check_effective(
            cmd.effective_from,
            cmd.at,
            current.map(|p| p.effective_from),
        )?;
        if current.is_some_and(|p| p.cell == cmd.cell) || (current.is_none() && cmd.cell.is_none())
        {
            return Ok(vec![]);
        }
        Ok(vec![HierarchyEvent::HierarchyMachinePlaced {
            machine_id: cmd.machine_id,
            line: cmd.line,
            cell: cmd.cell,
            effective_from: cmd.effective_from,
            by: cmd.by,
            at: cmd.at,
        }])
    }
}

/// The id of the implicit site and area that hold lines no area holds; no node may take it.
pub const DEFAULT_NODE: &str = "default";

/// Whether a node id can be an MQTT topic level and a path segment, and is not the
/// implicit [`DEFAULT_NODE`].
fn check_shape(id: &NodeId) -> Result<(), HierarchyError> {
    let bad = |c: char| matches!(c, '/' | '+' | '#') || c.is_whitespace();
    match id.as_str() == DEFAULT_NODE || id.as_str().chars().any(bad) {
        true => Err(HierarchyError::Shape {
            node_id: id.clone(),
        }),
        false => Ok(()),
    }
}

/// A change takes effect no later than it is made, and not before the previous one.
fn check_effective(
    effective_from: DateTime<Utc>,
    at: DateTime<Utc>,
    previous: Option<DateTime<Utc>>,
) -> Result<(), HierarchyError> {
    if effective_from > at {
        return Err(HierarchyError::EffectiveInFuture { effective_from });
    }
    match previous {
        Some(previous) if effective_from < previous => {
            Err(HierarchyError::EffectiveBeforePrevious {
                effective_from,
                previous,
            })
        }
        _ => Ok(()),
    }
}

impl Decide for EquipmentHierarchy {
    fn decide(&self, command: HierarchyCommand) -> Result<Vec<HierarchyEvent>, HierarchyError> {
        match command {
            HierarchyCommand::CreateNode(cmd) => self.decide_create(cmd),
            HierarchyCommand::MoveNode(cmd) => self.decide_move(cmd),
            HierarchyCommand::RenameNode(cmd) => self.decide_rename(cmd),
            HierarchyCommand::PlaceMachine(cmd) => self.decide_place(cmd),
        }
    }
}

impl Aggregate for EquipmentHierarchy {
    const TYPE: &'static str = crate::StreamType::EquipmentHierarchy.as_str();
    type Command = HierarchyCommand;
    type Event = HierarchyEvent;
    type Error = HierarchyError;
    type Services = ();

    crate::handle_by_deciding!();

    fn apply(&mut self, event: Self::Event) {
        match event {
            HierarchyEvent::HierarchyNodeCreated {
                node_id,
                level,
                name,
                parent,
                ..
            } => {
                let node = HierarchyNode {
                    node_id: node_id.clone(),
                    level,
                    name,
                    parent,
                    moved_from: None,
                };
                self.nodes.insert(node_id, node);
            }
            HierarchyEvent::HierarchyNodeMoved {
                node_id,
                parent,
                effective_from,
                ..
            } => {
                if let Some(node) = self.nodes.get_mut(&node_id) {
                    node.parent = parent;
                    node.moved_from = Some(effective_from);
                }
            }
            HierarchyEvent::HierarchyNodeRenamed { node_id, name, .. } => {
                if let Some(node) = self.nodes.get_mut(&node_id) {
                    node.name = name;
                }
            }
            HierarchyEvent::HierarchyMachinePlaced {
                machine_id,
                line,
                cell,
                effective_from,
                ..
            } => {
                let placement = Placement {
                    line,
                    cell,
                    effective_from,
                };
                self.machines.insert(machine_id, placement);
            }
        }
    }
}
