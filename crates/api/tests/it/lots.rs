//! Lots through the API (ADR 0057), with the real process manager and projections: lot
//! receipts, output lots by rule, a forward hold that reaches every descendant, a hold that
//! blocks consumption (other lots are taken, then a shortage is recorded), the traces, and
//! release and scrap decisions.

use serde_json::{json, Value};
use shopfloor_projections::projection::apply_from_store;
use shopfloor_projections::Projection;
use sqlx::PgPool;

use crate::support::{Resp, TestApp};

/// Runs the process manager over the whole log (backflush follows parts reports), then
/// brings the read models the traces use up to the head.
async fn settle(app: &TestApp) {
    let store = shopfloor_eventstore::EventStore::new(app.pool.clone());
    let pm = shopfloor_commands::process::ProcessManager::new(
        shopfloor_commands::CommandService::new(store.clone()),
    );
    let mut position = 0;
    loop {
        let batch = store.read_all(position, 100).await.unwrap();
        if batch.is_empty() {
            break;
        }
        for e in &batch {
            pm.handle(e).await.unwrap();
            position = e.position;
        }
    }
    for p in [
        Projection::Inventory,
        Projection::Orders,
        Projection::People,
    ] {
        apply_from_store(&app.pool, p).await.unwrap();
    }
}

fn ok(r: Resp, status: u16) -> Value {
    assert_eq!(r.status, status, "{}", r.body);
    r.body
}

async fn order(app: &TestApp, id: &str, product: &str, bom: Value) {
    let body = json!({"order_id": id, "product_id": product, "quantity": 100, "bom": bom});
    ok(
        app.post("/api/v1/production-orders", &app.admin, &body)
            .await,
        201,
    );
    let path = format!("/api/v1/production-orders/{id}/assign");
    ok(
        app.post(&path, &app.admin, &json!({"machine_id": "M-1"}))
            .await,
        200,
    );
    let path = format!("/api/v1/production-orders/{id}/start");
    ok(app.post(&path, &app.admin, &json!({})).await, 200);
}

async fn parts(app: &TestApp, order: &str, good: u64) {
    let at = chrono::Utc::now().to_rfc3339();
    let body = json!({"event_type": "parts_produced", "machine_id": "M-1", "timestamp": at,
        "good": good, "scrap": 0, "order_id": order});
    ok(
        app.post("/api/v1/machines/events", &app.admin, &body).await,
        202,
    );
}

fn lot_quantity(app_lots: &Value, lot: &str) -> f64 {
    app_lots
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["lot_id"] == lot)
        .map_or(0.0, |l| l["quantity"].as_f64().unwrap())
}

fn names(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            format!(
                "{}/{}",
                l["item_id"].as_str().unwrap(),
                l["lot_id"].as_str().unwrap()
            )
        })
        .collect();
    out.sort();
    out
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_forward_hold_reaches_every_descendant_and_held_lots_are_never_consumed(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let supervisor = app.token("supervisor").await;
    let operator = app.token("operator").await;
    app.machine("M-1").await;
    for (item, t) in [("frame", "finished"), ("widget", "finished")] {
        let rule = json!({"item_type": t, "output": "per_order"});
        let path = format!("/api/v1/lot-rules/{item}");
        ok(app.put(&path, &supervisor, &rule).await, 200);
    }
    for (lot, supplier, qty) in [("S1", "SUP-X", 10), ("S2", "SUP-Y", 100)] {
        let body = json!({"item_id": "steel", "item_type": "raw", "lot_id": lot,
            "supplier_lot": supplier, "location": "RAW", "quantity": qty});
        let lot = ok(app.post("/api/v1/lots", &operator, &body).await, 201);
        assert_eq!(lot["status"], "available");
        assert_eq!(lot["quantity"], f64::from(qty));
    }
    // The contract's update still works beside lots: untracked steel.
    let untracked = json!({"item_id": "steel", "item_type": "raw", "location": "RAW",
        "delta": 1, "reason": "found"});
    ok(
        app.patch("/api/v1/inventory/update", &operator, &untracked)
            .await,
        200,
    );
    order(
        &app,
        "O-FR",
        "frame",
        json!([{"item_id": "steel", "qty_per_unit": 1}]),
    )
    .await;
    order(
        &app,
        "O-WG",
        "widget",
        json!([{"item_id": "frame", "qty_per_unit": 2}]),
    )
    .await;
    // 5 frames: 5 steel from S1 (FIFO) into frame/O-FR; then 2 widgets: 4 frames from O-FR.
    parts(&app, "O-FR", 5).await;
    settle(&app).await;
    parts(&app, "O-WG", 2).await;
    settle(&app).await;

    let back = ok(
        app.get("/api/v1/lots/widget/O-WG/backward", &operator)
            .await,
        200,
    );
    assert_eq!(
        names(&back["lots"]),
        ["frame/O-FR", "steel/S1", "widget/O-WG"]
    );
    let frame = back["lots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["lot_id"] == "O-FR")
        .unwrap();
    assert_eq!(frame["machine_id"], "M-1");
    assert_eq!(frame["depth"], 1);
    let s1 = back["lots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["lot_id"] == "S1")
        .unwrap();
    assert_eq!(s1["supplier_lot"], "SUP-X");
    assert_eq!(s1["quantity"], 5.0);

    let fwd = ok(
        app.get("/api/v1/lots/steel/S1/forward", &operator).await,
        200,
    );
    assert_eq!(
        names(&fwd["lots"]),
        ["frame/O-FR", "steel/S1", "widget/O-WG"],
        "{fwd}"
    );
    // An operator may not hold; a supervisor holds S1 and its whole forward trace.
    let hold = json!({"reason": "supplier recall SUP-X", "forward": true});
    app.post("/api/v1/lots/steel/S1/hold", &operator, &hold)
        .await
        .assert_problem(403);
    let answer = ok(
        app.post("/api/v1/lots/steel/S1/hold", &supervisor, &hold)
            .await,
        200,
    );
    assert_eq!(
        names(&answer["held"]),
        ["frame/O-FR", "steel/S1", "widget/O-WG"],
        "{answer}"
    );
    assert_eq!(answer["already_held"], json!([]));
    // Again: every lot is held already, nothing is appended.
    let before = app.event_count().await;
    let again = ok(
        app.post("/api/v1/lots/steel/S1/hold", &supervisor, &hold)
            .await,
        200,
    );
    assert_eq!(again["held"], json!([]));
    assert_eq!(names(&again["already_held"]).len(), 3);
    assert_eq!(app.event_count().await, before);
    settle(&app).await;
    let held = ok(app.get("/api/v1/lots?status=held", &operator).await, 200);
    assert_eq!(names(&held), ["frame/O-FR", "steel/S1", "widget/O-WG"]);

    // A held lot is not consumed: 10 frames take 10 of S2, S1 keeps its 5.
    parts(&app, "O-FR", 10).await;
    settle(&app).await;
    let steel = ok(app.get("/api/v1/lots?item_id=steel", &operator).await, 200);
    assert_eq!(lot_quantity(&steel, "S1"), 5.0);
    assert_eq!(lot_quantity(&steel, "S2"), 90.0);
    // With S2 held too, only the 1 untracked unit is left: 3 frames record a shortage of 2.
    let single = json!({"reason": "second recall"});
    let r = ok(
        app.post("/api/v1/lots/steel/S2/hold", &supervisor, &single)
            .await,
        200,
    );
    assert_eq!(names(&r["held"]), ["steel/S2"]);
    parts(&app, "O-FR", 3).await;
    settle(&app).await;
    let moves = ok(
        app.get("/api/v1/inventory/movements?item_id=steel", &operator)
            .await,
        200,
    );
    let shortage = moves
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["kind"] == "shortage")
        .expect("a shortage row");
    assert_eq!(shortage["shortage"], 2.0);
    assert_eq!(shortage["order_id"], "O-FR");

    // Forward trace of S1 as of now: down to the widgets, and where they are.
    let fwd = ok(
        app.get("/api/v1/lots/steel/S1/forward", &operator).await,
        200,
    );
    let widgets = fwd["lots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["lot_id"] == "O-WG")
        .unwrap();
    assert_eq!(
        widgets["stock"],
        json!([{"location": "FG", "quantity": 2.0}])
    );
    assert_eq!(widgets["status"], "held");

    // Decisions: release S1 (consumable again), scrap S2 (its 90 leave the level).
    let r = ok(
        app.post(
            "/api/v1/lots/steel/S1/release",
            &supervisor,
            &json!({"reason": "cleared"}),
        )
        .await,
        200,
    );
    assert_eq!(r["status"], "available");
    app.post(
        "/api/v1/lots/steel/S1/release",
        &supervisor,
        &json!({"reason": "again"}),
    )
    .await
    .assert_problem(409);
    let r = ok(
        app.post(
            "/api/v1/lots/steel/S2/scrap",
            &supervisor,
            &json!({"reason": "contaminated"}),
        )
        .await,
        200,
    );
    assert_eq!(r["status"], "scrapped");
    assert_eq!(r["quantity"], 0.0);
    let item = ok(
        app.get("/api/v1/inventory/items/steel", &operator).await,
        200,
    );
    assert_eq!(item["total"], 5.0, "S1's 5 are left: {item}");
    // Unknown lots are 404.
    app.get("/api/v1/lots/steel/NOPE/backward", &operator)
        .await
        .assert_problem(404);
    app.post("/api/v1/lots/steel/NOPE/hold", &supervisor, &single)
        .await
        .assert_problem(404);
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn lots_split_move_and_merge_with_their_actor_on_the_ledger(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let operator = app.token("operator").await;
    let body = json!({"item_id": "resin", "item_type": "raw", "lot_id": "R1",
        "supplier_lot": "SUP-1", "location": "RAW", "quantity": 50,
        "expiry": "2027-01-01T00:00:00Z"});
    ok(app.post("/api/v1/lots", &operator, &body).await, 201);
    app.post("/api/v1/lots", &operator, &body)
        .await
        .assert_problem(409);
    let split = json!({"new_lot_id": "R1-b", "location": "RAW", "quantity": 20});
    let r = ok(
        app.post("/api/v1/lots/resin/R1/split", &operator, &split)
            .await,
        200,
    );
    assert_eq!(r["lot_id"], "R1-b");
    assert_eq!(r["supplier_lot"], "SUP-1");
    assert_eq!(r["quantity"], 20.0);
    let mv = json!({"from": "RAW", "to": "LINE-2", "quantity": 5});
    let r = ok(
        app.post("/api/v1/lots/resin/R1-b/move", &operator, &mv)
            .await,
        200,
    );
    assert_eq!(
        r["stock"],
        json!([{"location": "LINE-2", "quantity": 5.0}, {"location": "RAW", "quantity": 15.0}])
    );
    let merge = json!({"item_id": "resin", "sources": ["R1-b"], "into": "R1", "location": "RAW"});
    let r = ok(app.post("/api/v1/lots/merge", &operator, &merge).await, 200);
    assert_eq!(r["quantity"], 45.0);
    let levels = ok(
        app.get("/api/v1/inventory/items/resin", &operator).await,
        200,
    );
    assert_eq!(levels["total"], 50.0, "lots move stock, never create it");
    settle(&app).await;
    let detail = ok(app.get("/api/v1/lots/resin/R1", &operator).await, 200);
    let kinds: Vec<&str> = detail["movements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["received", "split_out", "merged_in"]);
    assert!(detail["movements"][0]["actor"]
        .as_str()
        .unwrap()
        .starts_with("operator-"));
    let at_line = ok(
        app.get("/api/v1/lots?location=LINE-2", &operator).await,
        200,
    );
    assert_eq!(names(&at_line), ["resin/R1-b"]);
    // The trace of R1-b back: its parent R1 (split); R1 forward: R1-b, merged back.
    let back = ok(
        app.get("/api/v1/lots/resin/R1-b/backward", &operator).await,
        200,
    );
    assert_eq!(names(&back["lots"]), ["resin/R1", "resin/R1-b"]);
}

/// A rule holds an order's production lots by itself (ADR 0057, automatic holds): a failed
/// inspection holds them under its rule; a passing inspection under the defect limit holds
/// nothing; one above the limit holds the lots of its order and no other order's.
#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn an_inspection_holds_its_orders_lots_by_rule(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let supervisor = app.token("supervisor").await;
    app.machine("M-1").await;
    let rules = [
        (
            "gear",
            json!({"item_type": "finished", "output": "per_order",
            "hold_on_failed_inspection": true}),
        ),
        (
            "shaft",
            json!({"item_type": "finished", "output": "per_order",
            "hold_above_defects_ppm": 20000}),
        ),
    ];
    for (item, rule) in rules {
        let set = ok(
            app.put(&format!("/api/v1/lot-rules/{item}"), &supervisor, &rule)
                .await,
            200,
        );
        assert_eq!(set["item_id"], item, "{set}");
    }
    let bad = json!({"item_type": "finished", "hold_above_defects_ppm": 1_000_000});
    let refused = app.put("/api/v1/lot-rules/bolt", &supervisor, &bad).await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    for (id, product) in [("O-G", "gear"), ("O-S1", "shaft"), ("O-S2", "shaft")] {
        order(&app, id, product, json!([])).await;
        parts(&app, id, 10).await;
    }
    settle(&app).await;
    let inspect = |order: &str, sample: u64, defects: u64, passed: bool| {
        let body = json!({"sample_size": sample, "defects": defects, "passed": passed});
        (
            format!("/api/v1/production-orders/{order}/inspections"),
            body,
        )
    };
    for (path, body) in [
        inspect("O-G", 20, 1, false), // failed: held
        inspect("O-S1", 50, 1, true), // 20,000 ppm, not above the limit: not held
        inspect("O-S2", 40, 1, true), // 25,000 ppm: held
    ] {
        ok(app.post(&path, &supervisor, &body).await, 201);
    }
    settle(&app).await;
    let status = |item: &'static str, lot: &'static str| {
        let app = &app;
        async move {
            let path = format!("/api/v1/lots/{item}/{lot}");
            ok(app.get(&path, &app.admin).await, 200)
        }
    };
    let gear = status("gear", "O-G").await;
    assert_eq!(gear["status"], "held", "{gear}");
    let reason = gear["hold_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("failed inspection"), "{gear}");
    let s1 = status("shaft", "O-S1").await;
    assert_eq!(s1["status"], "available", "{s1}");
    let s2 = status("shaft", "O-S2").await;
    assert_eq!(s2["status"], "held", "{s2}");
    let reason = s2["hold_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("25000 ppm > 20000 ppm"), "{s2}");
    // The process manager handling the log again (a redelivery) holds nothing twice.
    let before: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'InventoryLotHeld'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(before, 2);
    settle(&app).await;
    let after: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'InventoryLotHeld'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(after, before);
}

/// Lots named on the order's bill of materials are consumed first (ADR 0057), not the
/// item's FIFO lot: the output lot's backward trace names the named lot only.
#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn lots_named_on_the_order_are_consumed_first(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let supervisor = app.token("supervisor").await;
    let operator = app.token("operator").await;
    app.machine("M-1").await;
    let rule = json!({"item_type": "finished", "output": "per_order"});
    ok(
        app.put("/api/v1/lot-rules/frame", &supervisor, &rule).await,
        200,
    );
    for lot in ["S1", "S2"] {
        let body = json!({"item_id": "steel", "item_type": "raw", "lot_id": lot,
            "location": "RAW", "quantity": 10});
        ok(app.post("/api/v1/lots", &operator, &body).await, 201);
    }
    let bad = json!({"order_id": "O-BAD", "product_id": "frame", "quantity": 5,
        "bom": [{"item_id": "steel", "qty_per_unit": 1, "lots": [""]}]});
    let refused = app
        .post("/api/v1/production-orders", &app.admin, &bad)
        .await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(
        refused.body.to_string().contains("bom[0].lots[0]"),
        "{}",
        refused.body
    );
    order(
        &app,
        "O-N",
        "frame",
        json!([{"item_id": "steel", "qty_per_unit": 1, "lots": ["S2"]}]),
    )
    .await;
    let view = ok(
        app.get("/api/v1/production-orders/O-N", &operator).await,
        200,
    );
    assert_eq!(view["bom"][0]["lots"], json!(["S2"]), "{view}");
    parts(&app, "O-N", 4).await;
    settle(&app).await;
    let lots = ok(app.get("/api/v1/lots?item_id=steel", &operator).await, 200);
    assert_eq!(lot_quantity(&lots, "S1"), 10.0, "{lots}");
    assert_eq!(lot_quantity(&lots, "S2"), 6.0, "{lots}");
    let trace = ok(
        app.get("/api/v1/lots/frame/O-N/backward", &operator).await,
        200,
    );
    assert_eq!(names(&trace["lots"]), ["frame/O-N", "steel/S2"], "{trace}");
}
