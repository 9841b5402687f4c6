//! Backup, restore and tamper evidence through the real binary.

use std::time::Duration;

use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};

use crate::support::{shopfloor, Server, TestDb};

const ADMIN: &str = "e2e-backup-admin-token-0123";

async fn run(args: &[&str], db: &str) -> std::process::Output {
    shopfloor()
        .args(args)
        .env("DATABASE_URL", db)
        .output()
        .await
        .unwrap()
}

/// Every read-model table's rows, as sorted JSON text.
async fn read_models(url: &str) -> Vec<(String, Vec<String>)> {
    let mut conn = PgConnection::connect(url).await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE 'rm\\_%' ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let mut out = Vec::new();
    for t in tables {
        let rows: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT to_jsonb(t)::text FROM \"{t}\" t ORDER BY 1"
        ))
        .fetch_all(&mut conn)
        .await
        .unwrap();
        out.push((t, rows));
    }
    out
}

#[tokio::test]
async fn a_restored_backup_rebuilds_equal_read_models_and_tampering_is_detected() {
    let mut server = Server::start(&[], &[("SHOPFLOOR_ADMIN_TOKEN", ADMIN)]).await;
    let http = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        http.post(server.url(path))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
    };
    assert_eq!(
        post(
            "/api/v1/machines",
            json!({"machine_id": "M-1", "type": "press", "line": "L1", "ideal_cycle_time_s": 20})
        )
        .await
        .unwrap()
        .status(),
        201
    );
    assert_eq!(post("/api/v1/production-orders", json!({"order_id": "PO-1", "product_id": "bracket", "quantity": 100, "bom": [{"item_id": "steel", "qty_per_unit": 1.5}]})).await.unwrap().status(), 201);
    let r = http.patch(server.url("/api/v1/inventory/update")).bearer_auth(ADMIN)
        .json(&json!({"item_id": "steel", "item_type": "raw", "location": "A", "delta": 500, "reason": "delivery"}))
        .send().await.unwrap();
    assert_eq!(r.status(), 200);
    for (i, state) in ["running", "down", "running", "idle", "running"]
        .iter()
        .enumerate()
    {
        let body = json!({"event_type": "state_changed", "machine_id": "M-1", "state": state, "timestamp": format!("2026-11-24T08:{:02}:00Z", i * 10)});
        assert_eq!(
            post("/api/v1/machines/events", body)
                .await
                .unwrap()
                .status(),
            202
        );
        let parts = json!({"event_type": "parts_produced", "machine_id": "M-1", "good": 10, "scrap": 1, "order_id": "PO-1", "timestamp": format!("2026-11-24T08:{:02}:30Z", i * 10)});
        assert_eq!(
            post("/api/v1/machines/events", parts)
                .await
                .unwrap()
                .status(),
            202
        );
    }
    // Wait until the projectors and the process manager have caught up with the log.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status: Value = http
            .get(server.url("/api/v1/projections"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let inv: Value = http
            .get(server.url("/api/v1/inventory?item_id=steel"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let caught_up = status
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["position"] == p["head"]);
        // 5 reports × 11 parts × 1.5 = 82.5 steel consumed by backflush.
        if caught_up
            && inv
                .as_array()
                .is_some_and(|a| a.iter().any(|l| l["quantity"] == 417.5))
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never caught up: {status} {inv}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(server.terminate().await.success());
    let original = server.db.url.clone();

    let out = run(&["verify"], &original).await;
    assert!(out.status.success(), "{out:?}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plant.jsonl.gz");
    let out = run(&["backup", "--out", file.to_str().unwrap()], &original).await;
    assert!(out.status.success(), "{out:?}");

    let restored = TestDb::new().await;
    let out = run(
        &["restore", "--from", file.to_str().unwrap()],
        &restored.url,
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["verify"], &restored.url).await;
    assert!(out.status.success(), "{out:?}");
    let out = run(&["replay", "--verify"], &restored.url).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let (a, b) = (
        read_models(&original).await,
        read_models(&restored.url).await,
    );
    assert!(a.iter().any(|(_, rows)| !rows.is_empty()));
    assert_eq!(a, b, "the restored read models differ from the original's");

    // Someone edits the log behind Shopfloor's back: verify says where, in one line.
    let mut conn = PgConnection::connect(&original).await.unwrap();
    sqlx::query("UPDATE events SET payload = jsonb_set(payload, '{good}', '1000') WHERE event_type = 'MachinePartsProduced' AND position = (SELECT min(position) FROM events WHERE event_type = 'MachinePartsProduced')")
        .execute(&mut conn)
        .await
        .unwrap();
    let out = run(&["verify"], &original).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the event log is broken at position"),
        "{stderr}"
    );
}
