//! The equipment hierarchy (ADR 0062): the tree as it stands, where each machine stands
//! in it at a floor time as known by `as_of`, and the [`Scope`] filter every KPI,
//! downtime and scrap query takes (`site`, `area`, `cell`, `node`; `line` is the
//! queries' own).
//!
//! A machine's path: its work cell at that time (if it was placed in one), else its line;
//! then the ancestors of that node at that time. A line without a node, or a node without
//! an area or site above it, is shown under the implicit [`DEFAULT_NODE`] site and area.
//! The history is a few rows per node: it is read whole and resolved in memory.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shopfloor_domain::hierarchy::Level;
use sqlx::PgPool;
use tracing::instrument;

use crate::error::QueryError;

pub use shopfloor_domain::hierarchy::DEFAULT_NODE;

/// Which part of the plant a query covers, beside its `machine_id` and `line`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Scope {
    pub site: Option<String>,
    pub area: Option<String>,
    pub cell: Option<String>,
    /// Any node id: machines whose path holds it (the enterprise included).
    pub node: Option<String>,
}

impl Scope {
    /// Whether the scope selects everything.
    pub fn is_empty(&self) -> bool {
        self.site.is_none() && self.area.is_none() && self.cell.is_none() && self.node.is_none()
    }
}

/// Where a machine stands in the hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MachinePath {
    /// The enterprise, when the site has one.
    pub enterprise: Option<String>,
    /// The site ([`DEFAULT_NODE`] when none).
    pub site: String,
    /// The area ([`DEFAULT_NODE`] when none).
    pub area: String,
    /// The machine's line (always the line it was registered with).
    pub line: String,
    /// The work cell, when it is placed in one.
    pub cell: Option<String>,
}

impl MachinePath {
    /// Whether the path lies inside `scope` (ignoring the queries' own `line`).
    pub fn within(&self, scope: &Scope) -> bool {
        let eq = |want: &Option<String>, have: Option<&str>| {
            want.as_deref().is_none_or(|w| Some(w) == have)
        };
        let node_ok = scope.node.as_deref().is_none_or(|n| {
            [
                self.enterprise.as_deref(),
                Some(self.site.as_str()),
                Some(self.area.as_str()),
                Some(self.line.as_str()),
                self.cell.as_deref(),
            ]
            .contains(&Some(n))
        });
        eq(&scope.site, Some(&self.site))
            && eq(&scope.area, Some(&self.area))
            && eq(&scope.cell, self.cell.as_deref())
            && node_ok
    }
}

/// One change of a node's parent or a machine's cell: (effective from, position, value).
type Record = (DateTime<Utc>, i64, Option<String>);

/// The value in force at `t`: the latest record effective by then, else the first one
/// made (a node's creation, a machine's first placement holds for all time before).
fn value_at(records: &[Record], t: DateTime<Utc>) -> Option<&Option<String>> {
    records
        .iter()
        .filter(|r| r.0 <= t)
        .max_by_key(|r| (r.0, r.1))
        .or_else(|| records.iter().min_by_key(|r| r.1))
        .map(|r| &r.2)
}

/// The hierarchy's history as known by an `as_of` (or now).
#[derive(Debug, Clone, Default)]
pub struct HierarchyHistory {
    levels: HashMap<String, Level>,
    parents: HashMap<String, Vec<Record>>,
    placements: HashMap<String, Vec<Record>>,
}

impl HierarchyHistory {
    /// Reads every node, parent and placement recorded by `as_of`.
    #[instrument(skip(pool), err)]
    pub async fn load(pool: &PgPool, as_of: Option<DateTime<Utc>>) -> Result<Self, QueryError> {
        let nodes: Vec<(String, String)> =
            sqlx::query_as("SELECT node_id, level FROM rm_hierarchy_nodes")
                .fetch_all(pool)
                .await?;
        let parents: Vec<(String, DateTime<Utc>, i64, Option<String>)> = sqlx::query_as(
            "SELECT node_id, effective_from, position, parent FROM rm_hierarchy_parents \
             WHERE $1::timestamptz IS NULL OR recorded_at <= $1",
        )
        .bind(as_of)
        .fetch_all(pool)
        .await?;
        let placements: Vec<(String, DateTime<Utc>, i64, Option<String>)> = sqlx::query_as(
            "SELECT machine_id, effective_from, position, cell FROM rm_hierarchy_placements \
             WHERE $1::timestamptz IS NULL OR recorded_at <= $1",
        )
        .bind(as_of)
        .fetch_all(pool)
        .await?;
        let mut history = Self::default();
        for (id, at, position, parent) in parents {
            history
                .parents
                .entry(id)
                .or_default()
                .push((at, position, parent));
        }
        for (id, level) in nodes {
            if let (true, Some(level)) = (history.parents.contains_key(&id), Level::parse(&level)) {
                history.levels.insert(id, level);
            }
        }
        for (id, at, position, cell) in placements {
            history
                .placements
                .entry(id)
                .or_default()
                .push((at, position, cell));
        }
        Ok(history)
    }

    /// Whether `node` exists (as known by the `as_of` it was loaded with).
    pub fn knows(&self, node: &str) -> bool {
        node == DEFAULT_NODE || self.levels.contains_key(node)
    }

    /// Where machine `machine_id` of line `line` stood at floor time `t`.
    pub fn path(&self, machine_id: &str, line: &str, t: DateTime<Utc>) -> MachinePath {
        let cell = self
            .placements
            .get(machine_id)
            .and_then(|r| value_at(r, t))
            .cloned()
            .flatten()
            .filter(|c| self.levels.get(c) == Some(&Level::WorkCell));
        let mut path = MachinePath {
            enterprise: None,
            site: DEFAULT_NODE.to_owned(),
            area: DEFAULT_NODE.to_owned(),
            line: line.to_owned(),
            cell: cell.clone(),
        };
        let mut next = cell.or_else(|| Some(line.to_owned()));
        for _ in 0..Level::ALL.len() {
            let Some(id) = next.take() else { break };
            let Some(level) = self.levels.get(&id) else {
                break;
            };
            match level {
                Level::Enterprise => path.enterprise = Some(id.clone()),
                Level::Site => path.site = id.clone(),
                Level::Area => path.area = id.clone(),
                Level::Line | Level::WorkCell => {}
            }
            next = self
                .parents
                .get(&id)
                .and_then(|r| value_at(r, t))
                .cloned()
                .flatten();
        }
        path
    }
}

/// The machines (id, line) of `machines` inside `scope` at floor time `t`, as known by
/// `as_of`. An empty scope keeps them all without reading anything; a scope naming a
/// node that does not exist is a 404.
pub async fn filter_machines(
    pool: &PgPool,
    machines: Vec<(String, String)>,
    scope: &Scope,
    t: DateTime<Utc>,
    as_of: Option<DateTime<Utc>>,
) -> Result<Vec<(String, String)>, QueryError> {
    if scope.is_empty() {
        return Ok(machines);
    }
    let history = HierarchyHistory::load(pool, as_of).await?;
    let named = [&scope.site, &scope.area, &scope.cell, &scope.node];
    if let Some(unknown) = named
        .into_iter()
        .flatten()
        .find(|n| !history.knows(n) && !machines.iter().any(|m| &m.1 == *n))
    {
        return Err(QueryError::NotFound {
            kind: "node",
            id: unknown.clone(),
        });
    }
    Ok(machines
        .into_iter()
        .filter(|(id, line)| history.path(id, line, t).within(scope))
        .collect())
}

/// The instant a window's membership is resolved at: its last microsecond, or the
/// evaluation time when that comes first (ADR 0062).
pub fn membership_instant(to: DateTime<Utc>, eval: DateTime<Utc>) -> DateTime<Utc> {
    to.min(eval) - chrono::Duration::microseconds(1)
}

/// A node of the tree as it stands now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TreeNode {
    pub node_id: String,
    /// `enterprise`, `site`, `area`, `line` or `work_cell`.
    pub level: String,
    pub name: String,
    /// An implicit node: the default site or area, or a line no node names yet.
    pub implicit: bool,
    pub children: Vec<TreeNode>,
    /// Machines placed directly here (on a line, or in a work cell).
    pub machines: Vec<String>,
}

/// A machine and where it stands now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlacedMachine {
    pub machine_id: String,
    #[serde(flatten)]
    pub path: MachinePath,
}

/// `GET /api/v1/hierarchy`: the tree and every machine's path, now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HierarchyView {
    /// Top-level nodes: enterprises, and sites (the implicit default site last).
    pub roots: Vec<TreeNode>,
    pub machines: Vec<PlacedMachine>,
}

/// One current node row: (id, level, name, parent).
type NodeRow = (String, String, String, Option<String>);

/// The tree as it stands now, with every machine.
#[instrument(skip(pool), err)]
pub async fn hierarchy_tree(pool: &PgPool) -> Result<HierarchyView, QueryError> {
    let nodes: Vec<NodeRow> = sqlx::query_as(
        "SELECT node_id, level, name, parent FROM rm_hierarchy_nodes ORDER BY node_id",
    )
    .fetch_all(pool)
    .await?;
    let machines: Vec<(String, String)> =
        sqlx::query_as("SELECT machine_id, line FROM rm_machines ORDER BY machine_id")
            .fetch_all(pool)
            .await?;
    let history = HierarchyHistory::load(pool, None).await?;
    let now = Utc::now();
    let placed: Vec<PlacedMachine> = machines
        .iter()
        .map(|(id, line)| PlacedMachine {
            machine_id: id.clone(),
            path: history.path(id, line, now),
        })
        .collect();
    Ok(HierarchyView {
        roots: build_tree(&nodes, &placed),
        machines: placed,
    })
}

/// Assembles the tree: explicit nodes under their parents, parentless areas under the
/// default site, parentless lines (and lines no node names) under the default area.
fn build_tree(nodes: &[NodeRow], placed: &[PlacedMachine]) -> Vec<TreeNode> {
    let level_of: HashMap<&str, &str> =
        nodes.iter().map(|n| (n.0.as_str(), n.1.as_str())).collect();
    let mut children: BTreeMap<Option<String>, Vec<TreeNode>> = BTreeMap::new();
    let mut here: HashMap<String, Vec<String>> = HashMap::new();
    for m in placed {
        let at = m.path.cell.clone().unwrap_or_else(|| m.path.line.clone());
        here.entry(at).or_default().push(m.machine_id.clone());
    }
    let leaf = |id: &str, level: &str, name: &str, implicit: bool| TreeNode {
        node_id: id.to_owned(),
        level: level.to_owned(),
        name: name.to_owned(),
        implicit,
        children: Vec::new(),
        machines: here.get(id).cloned().unwrap_or_default(),
    };
    let default_parent = |level: &str| match level {
        "area" => Some(format!("{DEFAULT_NODE}/site")),
        "line" => Some(format!("{DEFAULT_NODE}/area")),
        _ => None,
    };
    for (id, level, name, parent) in nodes {
        let key = parent.clone().or_else(|| default_parent(level));
        children
            .entry(key)
            .or_default()
            .push(leaf(id, level, name, false));
    }
    let mut lines: Vec<&str> = placed.iter().map(|m| m.path.line.as_str()).collect();
    lines.sort_unstable();
    lines.dedup();
    for line in lines.into_iter().filter(|l| !level_of.contains_key(l)) {
        children
            .entry(default_parent("line"))
            .or_default()
            .push(leaf(line, "line", line, true));
    }
    let has = |key: &str, children: &BTreeMap<Option<String>, Vec<TreeNode>>| {
        children.contains_key(&Some(key.to_owned()))
    };
    if has(&format!("{DEFAULT_NODE}/area"), &children) {
        let area = leaf(DEFAULT_NODE, "area", "Default area", true);
        children
            .entry(default_parent("area"))
            .or_default()
            .push(TreeNode {
                node_id: format!("{DEFAULT_NODE}/area"),
                ..area
            });
    }
    if has(&format!("{DEFAULT_NODE}/site"), &children) {
        let site = leaf(DEFAULT_NODE, "site", "Default site", true);
        children.entry(None).or_default().push(TreeNode {
            node_id: format!("{DEFAULT_NODE}/site"),
            ..site
        });
    }
    let roots = children.remove(&None).unwrap_or_default();
    roots
        .into_iter()
        .map(|n| attach(n, &mut children))
        .collect()
}

/// Gives `node` its children, depth first (levels bound the depth).
fn attach(mut node: TreeNode, children: &mut BTreeMap<Option<String>, Vec<TreeNode>>) -> TreeNode {
    let key = Some(node.node_id.clone());
    if node.implicit && node.node_id.starts_with(DEFAULT_NODE) {
        node.node_id = DEFAULT_NODE.to_owned();
    }
    node.children = children
        .remove(&key)
        .unwrap_or_default()
        .into_iter()
        .map(|c| attach(c, children))
        .collect();
    node
}
