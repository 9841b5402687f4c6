//! Inventory updates: receive, adjust, never below zero (409).

use serde_json::json;
use sqlx::PgPool;

use crate::support::TestApp;

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn updates_return_the_new_level_and_never_go_below_zero(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let op = app.token("operator").await;
    let update = |delta: serde_json::Value| json!({ "item_id": "STEEL", "item_type": "raw", "location": "RAW-1", "delta": delta, "reason": "count" });
    let r = app
        .patch("/api/v1/inventory/update", &op, &update(json!(100.5)))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["quantity"], 100.5);
    assert_eq!(r.body["item_id"], "STEEL");
    assert_eq!(r.body["item_type"], "raw");
    assert_eq!(r.body["location"], "RAW-1");
    let r = app
        .patch("/api/v1/inventory/update", &op, &update(json!(-0.5)))
        .await;
    assert_eq!(r.body["quantity"], 100.0);
    let before = app.event_count().await;
    let r = app
        .patch("/api/v1/inventory/update", &op, &update(json!(-100.01)))
        .await;
    let detail = r.assert_problem(409);
    assert!(detail.contains("100"), "{detail}");
    assert_eq!(app.event_count().await, before);
    // The other item type is refused too.
    let mut wrong = update(json!(1));
    wrong["item_type"] = json!("finished");
    app.patch("/api/v1/inventory/update", &op, &wrong)
        .await
        .assert_problem(409);
    let r = app.get("/api/v1/inventory/items/STEEL", &op).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["levels"][0]["quantity"], 100.0);
    assert_eq!(r.body["total"], 100.0);
    // Events record a receive or an adjustment.
    let r = app
        .get("/api/v1/streams/inventory_item/STEEL/events", &app.admin)
        .await;
    let types: Vec<_> = r.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(types, ["InventoryReceived", "InventoryAdjusted"]);
}
