//! The equipment hierarchy over HTTP (ADR 0062): nodes created, moved, renamed; a
//! machine placed in a work cell; the tree; KPI and machine-list filters by node; and
//! problem+json for bad input (a move under the node's own descendant, an unknown
//! parent, a wrong level, an unknown node).

use serde_json::{json, Value};
use sqlx::PgPool;

use crate::support::TestApp;

async fn node(app: &TestApp, token: &str, id: &str, level: &str, parent: Option<&str>) -> Value {
    let r = app
        .post(
            "/api/v1/hierarchy/nodes",
            token,
            &json!({ "node_id": id, "level": level, "name": format!("{id} name"), "parent": parent }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn nodes_are_created_moved_renamed_and_refused_with_problems(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let sup = app.token("supervisor").await;
    let op = app.token("operator").await;

    app.post(
        "/api/v1/hierarchy/nodes",
        &op,
        &json!({ "node_id": "S1", "level": "site", "name": "Site 1" }),
    )
    .await
    .assert_problem(403);

    node(&app, &sup, "S1", "site", None).await;
    node(&app, &sup, "A1", "area", Some("S1")).await;
    node(&app, &sup, "A2", "area", Some("S1")).await;
    let l1 = node(&app, &sup, "L1", "line", Some("A1")).await;
    assert_eq!(l1["parent"], "A1");
    assert_eq!(l1["level"], "line");
    node(&app, &sup, "C1", "work_cell", Some("L1")).await;

    // Bad input: each a problem+json that names what is wrong.
    let bad = [
        (
            "/api/v1/hierarchy/nodes/A1/move",
            json!({ "parent": "C1" }),
            400,
            "descendant",
        ),
        (
            "/api/v1/hierarchy/nodes",
            json!({ "node_id": "A9", "level": "area", "name": "x", "parent": "nowhere" }),
            400,
            "nowhere",
        ),
        (
            "/api/v1/hierarchy/nodes",
            json!({ "node_id": "L9", "level": "line", "name": "x", "parent": "S1" }),
            400,
            "area",
        ),
        (
            "/api/v1/hierarchy/nodes",
            json!({ "node_id": "a/b", "level": "site", "name": "x" }),
            400,
            "a/b",
        ),
        (
            "/api/v1/hierarchy/nodes",
            json!({ "node_id": "S2", "level": "galaxy", "name": "x" }),
            400,
            "level",
        ),
        (
            "/api/v1/hierarchy/nodes/ghost/move",
            json!({ "parent": "A1" }),
            404,
            "ghost",
        ),
        (
            "/api/v1/hierarchy/nodes/L1/move",
            json!({ "parent": "A2", "effective_from": "2999-01-01T00:00:00Z" }),
            400,
            "after the time",
        ),
        (
            "/api/v1/hierarchy/nodes",
            json!({ "node_id": "L1", "level": "line", "name": "other", "parent": "A2" }),
            409,
            "already exists",
        ),
    ];
    let before = app.event_count().await;
    for (path, body, status, needle) in bad {
        let r = app.post(path, &sup, &body).await;
        let detail = r.assert_problem(status);
        assert!(
            detail.contains(needle),
            "{path} {body}: {detail:?} lacks {needle:?}"
        );
    }
    assert_eq!(app.event_count().await, before, "a refusal appended events");

    // A move and a rename.
    let moved = app
        .post(
            "/api/v1/hierarchy/nodes/L1/move",
            &sup,
            &json!({ "parent": "A2", "effective_from": "2024-01-01T00:00:00Z" }),
        )
        .await;
    assert_eq!(moved.status, 200, "{}", moved.body);
    assert_eq!(moved.body["parent"], "A2");
    assert_eq!(moved.body["moved_from"], "2024-01-01T00:00:00Z");
    let renamed = app
        .post(
            "/api/v1/hierarchy/nodes/L1/rename",
            &sup,
            &json!({ "name": "Press line" }),
        )
        .await;
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    assert_eq!(
        (
            renamed.body["name"].as_str(),
            renamed.body["node_id"].as_str()
        ),
        (Some("Press line"), Some("L1"))
    );
    let r = app
        .get(
            "/api/v1/streams/equipment_hierarchy/plant/events",
            &app.admin,
        )
        .await;
    let types: Vec<&str> = r.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["event_type"].as_str())
        .collect();
    assert_eq!(
        &types[types.len() - 2..],
        ["HierarchyNodeMoved", "HierarchyNodeRenamed"]
    );
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_machine_is_placed_in_a_cell_of_its_line(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.machine("M-1").await; // line L1
    let sup = app.token("supervisor").await;
    node(&app, &sup, "S1", "site", None).await;
    node(&app, &sup, "A1", "area", Some("S1")).await;
    node(&app, &sup, "L1", "line", Some("A1")).await;
    node(&app, &sup, "L2", "line", Some("A1")).await;
    node(&app, &sup, "C1", "work_cell", Some("L1")).await;
    node(&app, &sup, "C2", "work_cell", Some("L2")).await;

    let place = |cell: &str| json!({ "cell": cell, "effective_from": "2024-01-01T00:00:00Z" });
    let detail = app
        .post("/api/v1/hierarchy/machines/M-1/place", &sup, &place("C2"))
        .await
        .assert_problem(400);
    assert!(detail.contains("not on line L1"), "{detail}");
    app.post("/api/v1/hierarchy/machines/M-9/place", &sup, &place("C1"))
        .await
        .assert_problem(404);
    let r = app
        .post("/api/v1/hierarchy/machines/M-1/place", &sup, &place("C1"))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (r.body["line"].as_str(), r.body["cell"].as_str()),
        (Some("L1"), Some("C1"))
    );

    // A cell that holds a machine does not move to another line.
    let detail = app
        .post(
            "/api/v1/hierarchy/nodes/C1/move",
            &sup,
            &json!({ "parent": "L2" }),
        )
        .await
        .assert_problem(409);
    assert!(detail.contains("holds machines"), "{detail}");

    // Reads by node: the tree, the machine list and the KPIs.
    app.post(
        "/api/v1/machines",
        &app.admin,
        &json!({ "machine_id": "M-2", "type": "press", "line": "L9", "ideal_cycle_time_s": 2.0 }),
    )
    .await;
    for p in shopfloor_projections::Projection::ALL {
        shopfloor_projections::projection::apply_from_store(&app.pool, p)
            .await
            .unwrap();
    }
    let tree = app.get("/api/v1/hierarchy", &sup).await;
    assert_eq!(tree.status, 200, "{}", tree.body);
    let roots: Vec<&str> = tree.body["roots"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["node_id"].as_str())
        .collect();
    assert_eq!(roots, ["S1", "default"]);
    let m1 = &tree.body["machines"][0];
    assert_eq!(
        (
            m1["site"].as_str(),
            m1["area"].as_str(),
            m1["cell"].as_str()
        ),
        (Some("S1"), Some("A1"), Some("C1"))
    );
    let listed = |body: &Value| -> Vec<String> {
        body.as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["machine_id"].as_str().map(str::to_owned))
            .collect()
    };
    let r = app.get("/api/v1/machines?site=S1", &sup).await;
    assert_eq!(listed(&r.body), ["M-1"]);
    let r = app.get("/api/v1/machines?area=default", &sup).await;
    assert_eq!(listed(&r.body), ["M-2"]);
    let r = app
        .get(
            "/api/v1/kpi-metrics?node=C1&from=2024-01-01T00:00:00Z&to=2024-01-02T00:00:00Z",
            &sup,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(listed(&r.body), ["M-1"]);
    let detail = app
        .get("/api/v1/kpi-metrics?area=nowhere", &sup)
        .await
        .assert_problem(404);
    assert!(detail.contains("nowhere"), "{detail}");
}
