//! Reports (issue 19): figures equal `/api/v1/kpi-metrics` at the report's position,
//! regeneration gives the same bytes in every format (late events included), a
//! changed file fails verification, roles, the S3 path against a real
//! S3-compatible server on loopback (moto, installed by scripts/s3.sh), the Azure
//! Blob path against Azurite (installed by scripts/azurite.sh), and the schedules. The read models are brought up to date with the projectors' replay.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chrono::{DateTime, NaiveTime, Utc};
use secrecy::SecretString;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use shopfloor_projections::query::{replace_shifts, ShiftDefinition};
use shopfloor_reports::schedule::{self, Schedule, Trigger};
use shopfloor_reports::{AzureSettings, Format, ReportStore, Reports, S3Settings, StorageSettings};
use sqlx::PgPool;

use crate::support::TestApp;

const FROM: &str = "2025-03-01T06:00:00Z";
const TO: &str = "2025-03-01T14:00:00Z";

async fn project(app: &TestApp) {
    shopfloor_projections::replay(&app.pool, None, |_, _| {})
        .await
        .expect("replay");
}

/// Two machines of line L1 with a morning of states and parts, projected.
async fn plant(app: &TestApp) {
    app.machine("M-1").await;
    app.machine("M-2").await;
    let batch = json!({ "events": [
        { "event_type": "state_changed", "machine_id": "M-1", "timestamp": "2025-03-01T06:00:00Z", "state": "running" },
        { "event_type": "parts_produced", "machine_id": "M-1", "timestamp": "2025-03-01T07:00:00Z", "good": 900, "scrap": 12 },
        { "event_type": "state_changed", "machine_id": "M-1", "timestamp": "2025-03-01T09:00:00Z", "state": "down", "reason": "breakdown.mechanical" },
        { "event_type": "state_changed", "machine_id": "M-1", "timestamp": "2025-03-01T09:40:00Z", "state": "running" },
        { "event_type": "parts_produced", "machine_id": "M-1", "timestamp": "2025-03-01T11:00:00Z", "good": 700, "scrap": 3 },
        { "event_type": "state_changed", "machine_id": "M-2", "timestamp": "2025-03-01T06:30:00Z", "state": "running" },
        { "event_type": "parts_produced", "machine_id": "M-2", "timestamp": "2025-03-01T08:00:00Z", "good": 1200, "scrap": 30 },
        { "event_type": "state_changed", "machine_id": "M-2", "timestamp": "2025-03-01T12:00:00Z", "state": "idle" },
    ]});
    let r = app
        .post("/api/v1/machines/events", &app.admin, &batch)
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    project(app).await;
}

fn request(format: &str) -> Value {
    json!({ "kind": "shift", "line": "L1", "from": FROM, "to": TO, "format": format })
}

/// Generates a report; returns the 201 answer.
async fn generate(app: &TestApp, token: &str, format: &str) -> Value {
    let r = app.post("/api/v1/reports", token, &request(format)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body
}

/// The raw bytes of a GET, with status and content type.
async fn download(app: &TestApp, path: &str, token: &str) -> (u16, String, Vec<u8>) {
    let r = app
        .client
        .get(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (status, ct, r.bytes().await.unwrap().to_vec())
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_shift_reports_figures_are_the_kpi_metrics_at_its_position(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    plant(&app).await;
    let head = app.event_count().await;
    let created = generate(&app, &app.admin, "json").await;
    let id = created["report_id"].as_str().unwrap();
    assert_eq!(created["position"], head, "{created}");
    let hash = created["chain_hash"].as_str().unwrap();
    assert_eq!(hash.len(), 64, "{created}");
    let record = app.get(&format!("/api/v1/reports/{id}"), &app.admin).await;
    assert_eq!(record.status, 200, "{}", record.body);
    let as_of = record.body["as_of"].as_str().unwrap().to_owned();

    let (status, ct, bytes) =
        download(&app, &format!("/api/v1/reports/{id}/content"), &app.admin).await;
    assert_eq!((status, ct.as_str()), (200, "application/json"));
    let report: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(report["anchor"]["position"], head);
    assert_eq!(report["anchor"]["chain_hash"], hash);
    assert_eq!(report["plant"], "Test plant");
    let machines = report["machines"].as_array().unwrap();
    assert_eq!(machines.len(), 2);
    for m in machines {
        let machine = m["machine_id"].as_str().unwrap();
        let kpi = app
            .get(
                &format!(
                    "/api/v1/kpi-metrics?machine_id={machine}&from={FROM}&to={TO}&as_of={as_of}"
                ),
                &app.admin,
            )
            .await;
        assert_eq!(kpi.status, 200, "{}", kpi.body);
        assert_eq!(m["kpi"], kpi.body[0], "{machine}");
    }
    let total = app
        .get(
            &format!("/api/v1/kpi-metrics?line=L1&rollup=true&from={FROM}&to={TO}&as_of={as_of}"),
            &app.admin,
        )
        .await;
    assert_eq!(report["total"], total.body[0]);
    // The figures are real: M-1 made 1600 good parts and stopped 40 minutes for
    // breakdown.mechanical; M-2 idled the last two hours.
    assert_eq!(machines[0]["kpi"]["good_count"], 1600);
    let stops = report["longest_stops"].as_array().unwrap();
    assert_eq!(stops.len(), 2, "{report}");
    assert_eq!(
        (&stops[0]["machine_id"], &stops[0]["state"]),
        (&json!("M-2"), &json!("idle"))
    );
    assert_eq!(stops[0]["duration_s"], 7200.0);
    assert_eq!(stops[1]["reason_code"], "breakdown.mechanical");
    assert_eq!(stops[1]["duration_s"], 2400.0);
    let pareto = report["pareto_by_reason"].as_array().unwrap();
    assert!(
        pareto
            .iter()
            .any(|p| p["key"] == "breakdown.mechanical" && p["duration_s"] == 2400.0),
        "{report}"
    );
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn regeneration_at_the_position_gives_the_same_bytes_after_late_events(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    plant(&app).await;
    let mut made = Vec::new();
    for (format, content_type, magic) in [
        ("pdf", "application/pdf", &b"%PDF-"[..]),
        ("csv", "application/zip", &b"PK"[..]),
        ("json", "application/json", &b"{"[..]),
    ] {
        let created = generate(&app, &app.admin, format).await;
        let id = created["report_id"].as_str().unwrap().to_owned();
        let (status, ct, bytes) =
            download(&app, &format!("/api/v1/reports/{id}/content"), &app.admin).await;
        assert_eq!((status, ct.as_str()), (200, content_type), "{format}");
        assert!(bytes.starts_with(magic), "{format}");
        let record = app.get(&format!("/api/v1/reports/{id}"), &app.admin).await;
        assert_eq!(record.body["sha256"], sha256(&bytes), "{format}");
        made.push((id, sha256(&bytes)));
    }
    // Asking again at the same position names the same report.
    let again = generate(&app, &app.admin, "pdf").await;
    assert_eq!(again["report_id"], made[0].0.as_str());

    // A late event inside the shift, and a reclassified stop.
    let late = json!({ "events": [
        { "event_type": "parts_produced", "machine_id": "M-2", "timestamp": "2025-03-01T10:00:00Z", "good": 555, "scrap": 5 },
        { "event_type": "state_changed", "machine_id": "M-2", "timestamp": "2025-03-01T10:30:00Z", "state": "down", "reason": "breakdown.mechanical" },
    ]});
    let r = app.post("/api/v1/machines/events", &app.admin, &late).await;
    assert_eq!(r.status, 202, "{}", r.body);
    project(&app).await;

    for (id, sha) in &made {
        let v = app
            .get(&format!("/api/v1/reports/{id}/verify"), &app.admin)
            .await;
        assert_eq!(v.status, 200, "{}", v.body);
        assert_eq!(v.body["identical"], true, "{}", v.body);
        assert_eq!(v.body["regenerated_sha256"], sha.as_str(), "{}", v.body);
        assert_eq!(v.body["chain_hash_matches"], true, "{}", v.body);
    }
    // A report made now includes the late events: other figures, other bytes.
    let now = generate(&app, &app.admin, "json").await;
    assert_ne!(now["report_id"], made[2].0.as_str());
    let (_, _, bytes) = download(
        &app,
        &format!(
            "/api/v1/reports/{}/content",
            now["report_id"].as_str().unwrap()
        ),
        &app.admin,
    )
    .await;
    let report: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(report["machines"][1]["kpi"]["good_count"], 1755);
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn an_edited_file_fails_verification(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    plant(&app).await;
    for format in ["pdf", "csv"] {
        let created = generate(&app, &app.admin, format).await;
        let id = created["report_id"].as_str().unwrap();
        let ext = if format == "pdf" { "pdf" } else { "zip" };
        let path = app.reports_dir.path().join(format!("reports/{id}.{ext}"));
        let mut bytes = std::fs::read(&path).unwrap();
        let i = bytes.len() / 2;
        bytes[i] ^= 0x20;
        std::fs::write(&path, &bytes).unwrap();
        let v = app
            .get(&format!("/api/v1/reports/{id}/verify"), &app.admin)
            .await;
        assert_eq!(v.status, 200, "{}", v.body);
        assert_eq!(v.body["identical"], false, "{}", v.body);
        assert_ne!(v.body["stored_sha256"], v.body["sha256"]);
        assert_eq!(v.body["regenerated_sha256"], v.body["sha256"]);
    }
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn an_auditor_reads_and_verifies_reports_but_does_not_create_them(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    plant(&app).await;
    let supervisor = app.token("supervisor").await;
    let created = generate(&app, &supervisor, "json").await;
    let id = created["report_id"].as_str().unwrap();
    let record = app.get(&format!("/api/v1/reports/{id}"), &app.admin).await;
    let by = record.body["requested_by"].as_str().unwrap();
    assert!(by.starts_with("supervisor-"), "{}", record.body);
    for role in ["auditor", "operator"] {
        let token = app.token(role).await;
        let r = app.post("/api/v1/reports", &token, &request("json")).await;
        r.assert_problem(403);
        let list = app.get("/api/v1/reports", &token).await;
        assert_eq!(list.status, 200, "{}", list.body);
        assert_eq!(list.body.as_array().unwrap().len(), 1);
        assert_eq!(list.body[0]["report_id"], id);
        let (status, ct, _) =
            download(&app, &format!("/api/v1/reports/{id}/content"), &token).await;
        assert_eq!((status, ct.as_str()), (200, "application/json"));
        let v = app
            .get(&format!("/api/v1/reports/{id}/verify"), &token)
            .await;
        assert_eq!(v.body["identical"], true, "{}", v.body);
    }
    app.get("/api/v1/reports/RPT-NOPE/content", &app.admin)
        .await
        .assert_problem(404);
    let bad = json!({ "kind": "shift", "from": TO, "to": FROM, "format": "pdf" });
    app.post("/api/v1/reports", &app.admin, &bad)
        .await
        .assert_problem(400);
    let bad = json!({ "kind": "month", "from": FROM, "to": TO, "format": "pdf" });
    app.post("/api/v1/reports", &app.admin, &bad)
        .await
        .assert_problem(400);
}

/// A moto S3 server on a free loopback port, killed on drop.
struct Moto {
    child: Child,
    port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_server() -> std::path::PathBuf {
    let tools = std::env::var("SHOPFLOOR_TOOLS_DIR").map_or_else(
        |_| std::path::PathBuf::from(std::env::var("HOME").unwrap()).join(".local/share/shopfloor"),
        std::path::PathBuf::from,
    );
    let bin = tools.join("moto-5.2.5/bin/moto_server");
    assert!(
        bin.exists(),
        "{} is missing: run scripts/s3.sh",
        bin.display()
    );
    bin
}

async fn start_moto() -> Moto {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(moto_server())
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let moto = Moto { child, port };
    // Ready when it answers HTTP.
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if client
            .get(format!("http://127.0.0.1:{port}/"))
            .send()
            .await
            .is_ok()
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "moto did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    moto
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn reports_round_trip_through_a_real_s3_server(pool: PgPool) {
    let moto = start_moto().await;
    let endpoint = format!("http://127.0.0.1:{}", moto.port);
    let bucket = "shopfloor-reports";
    // moto takes an unsigned bucket creation.
    let r = reqwest::Client::new()
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let settings = StorageSettings::S3(S3Settings {
        endpoint: endpoint.clone(),
        bucket: bucket.into(),
        region: "us-east-1".into(),
        access_key_id: "test".into(),
        secret_access_key: SecretString::from("test"),
    });
    let app = TestApp::spawn_with_storage(pool, Some(settings.clone())).await;
    plant(&app).await;
    let created = generate(&app, &app.admin, "pdf").await;
    let id = created["report_id"].as_str().unwrap();
    let (status, ct, bytes) =
        download(&app, &format!("/api/v1/reports/{id}/content"), &app.admin).await;
    assert_eq!((status, ct.as_str()), (200, "application/pdf"));
    // The object is in the bucket, byte for byte (read with a client of its own).
    let bucket_now = ReportStore::open(&settings).unwrap();
    let object = bucket_now.get(&format!("reports/{id}.pdf")).await.unwrap();
    assert_eq!(object.to_vec(), bytes);
    // Unsigned requests are refused: the bucket is not public.
    let anonymous = reqwest::Client::new()
        .get(format!("{endpoint}/{bucket}/reports/{id}.pdf"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 403);
    // Nothing went to the local folder.
    assert!(!app.reports_dir.path().join("reports").exists());
    let v = app
        .get(&format!("/api/v1/reports/{id}/verify"), &app.admin)
        .await;
    assert_eq!(v.body["identical"], true, "{}", v.body);
}

/// Azurite's blob service on a free loopback port, in a temporary folder, killed on drop.
struct Azurite {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Azurite's well-known development account and key.
const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

async fn start_azurite() -> Azurite {
    let tools = std::env::var("SHOPFLOOR_TOOLS_DIR").map_or_else(
        |_| std::path::PathBuf::from(std::env::var("HOME").unwrap()).join(".local/share/shopfloor"),
        std::path::PathBuf::from,
    );
    let bin = tools.join("azurite-3.37.0/node_modules/.bin/azurite-blob");
    assert!(
        bin.exists(),
        "{} is missing: run scripts/azurite.sh",
        bin.display()
    );
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(bin)
        .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
        .args(["--skipApiVersionCheck", "--silent"])
        // Its blobs and its database in a folder of its own, removed with the test.
        .arg("--location")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let azurite = Azurite {
        child,
        port,
        _dir: dir,
    };
    // Ready when it answers HTTP (any status).
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if client
            .get(format!("http://127.0.0.1:{port}/"))
            .send()
            .await
            .is_ok()
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "azurite did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    azurite
}

/// Creates a container with a Shared Key signed request (object_store makes none).
async fn create_container(endpoint: &str, container: &str) -> reqwest::StatusCode {
    use base64::Engine as _;
    use hmac::Mac as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let date = Utc::now().format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    let version = "2021-08-06";
    let to_sign = format!(
        "PUT\n{}x-ms-date:{date}\nx-ms-version:{version}\n/{AZURITE_ACCOUNT}/{AZURITE_ACCOUNT}/{container}\nrestype:container",
        "\n".repeat(11)
    );
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(&b64.decode(AZURITE_KEY).unwrap()).unwrap();
    mac.update(to_sign.as_bytes());
    let signature = b64.encode(mac.finalize().into_bytes());
    reqwest::Client::new()
        .put(format!("{endpoint}/{container}?restype=container"))
        .header("x-ms-date", date)
        .header("x-ms-version", version)
        .header(
            "authorization",
            format!("SharedKey {AZURITE_ACCOUNT}:{signature}"),
        )
        .body("")
        .send()
        .await
        .unwrap()
        .status()
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn reports_round_trip_through_a_real_azure_blob_server(pool: PgPool) {
    let azurite = start_azurite().await;
    let endpoint = format!("http://127.0.0.1:{}/{AZURITE_ACCOUNT}", azurite.port);
    let container = "shopfloor-reports";
    let created = create_container(&endpoint, container).await;
    assert_eq!(created.as_u16(), 201, "creating the container");
    let settings = StorageSettings::Azure(AzureSettings {
        account: AZURITE_ACCOUNT.into(),
        container: container.into(),
        access_key: SecretString::from(AZURITE_KEY),
        endpoint: Some(endpoint.clone()),
    });
    let app = TestApp::spawn_with_storage(pool, Some(settings.clone())).await;
    plant(&app).await;
    let created = generate(&app, &app.admin, "pdf").await;
    let id = created["report_id"].as_str().unwrap();
    let (status, ct, bytes) =
        download(&app, &format!("/api/v1/reports/{id}/content"), &app.admin).await;
    assert_eq!((status, ct.as_str()), (200, "application/pdf"));
    assert_eq!(created["sha256"], sha256(&bytes));
    // The blob is in the container, byte for byte (read with a client of its own).
    let container_now = ReportStore::open(&settings).unwrap();
    assert!(container_now.describe().starts_with("azure "));
    let blob = container_now
        .get(&format!("reports/{id}.pdf"))
        .await
        .unwrap();
    assert_eq!(blob.to_vec(), bytes);
    // An unsigned read is refused: the container is private.
    let anonymous = reqwest::Client::new()
        .get(format!("{endpoint}/{container}/reports/{id}.pdf"))
        .send()
        .await
        .unwrap();
    assert!(
        anonymous.status().is_client_error(),
        "{}",
        anonymous.status()
    );
    // A wrong key is refused too.
    let wrong = StorageSettings::Azure(AzureSettings {
        access_key: SecretString::from("d3Jvbmc="),
        ..match settings {
            StorageSettings::Azure(a) => a,
            _ => unreachable!(),
        }
    });
    assert!(ReportStore::open(&wrong)
        .unwrap()
        .get(&format!("reports/{id}.pdf"))
        .await
        .is_err());
    // Nothing went to the local folder.
    assert!(!app.reports_dir.path().join("reports").exists());
    let v = app
        .get(&format!("/api/v1/reports/{id}/verify"), &app.admin)
        .await;
    assert_eq!(v.body["identical"], true, "{}", v.body);
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn schedules_make_each_shift_and_day_report_once(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    plant(&app).await;
    let shift = |name: &str, a: u32, b: u32| ShiftDefinition {
        line: "L1".into(),
        shift_name: name.into(),
        start_time: NaiveTime::from_hms_opt(a, 0, 0).unwrap(),
        end_time: NaiveTime::from_hms_opt(b, 0, 0).unwrap(),
        days: (1..=7).collect(),
    };
    replace_shifts(&pool, "L1", &[shift("early", 6, 14), shift("late", 14, 22)])
        .await
        .unwrap();
    let s = |id: &str, trigger| Schedule {
        schedule_id: id.into(),
        trigger,
        line: Some("L1".into()),
        format: Format::Json,
        at_local: NaiveTime::from_hms_opt(6, 0, 0).unwrap(),
        not_before: at("2025-03-01T00:00:00Z"),
        created_by: "test".into(),
        channels: Vec::new(),
    };
    schedule::create(&pool, &s("S-SHIFT", Trigger::ShiftEnd))
        .await
        .unwrap();
    schedule::create(&pool, &s("S-DAY", Trigger::Daily))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = ReportStore::open(&StorageSettings::Filesystem(dir.path().into())).unwrap();
    let reports = Reports::new(pool.clone(), files, "Test plant");

    // At 15:00 the early shift is over (the late one is not); no day is over.
    let made = schedule::tick(&reports, at("2025-03-01T15:00:00Z"))
        .await
        .unwrap();
    assert_eq!(made, 1);
    // A restart (another tick at the same time) makes nothing twice.
    assert_eq!(
        schedule::tick(&reports, at("2025-03-01T15:00:00Z"))
            .await
            .unwrap(),
        0
    );
    // The next morning at 07:00: the late shift, the night's none, and the day of 1 March.
    let made = schedule::tick(&reports, at("2025-03-02T07:00:00Z"))
        .await
        .unwrap();
    assert_eq!(made, 2);
    let list = app
        .get("/api/v1/reports?schedule_id=S-SHIFT", &app.admin)
        .await;
    let periods: Vec<(&str, &str)> = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["from"].as_str().unwrap(), r["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(periods.len(), 2, "{}", list.body);
    assert!(periods.contains(&("2025-03-01T06:00:00Z", "shift")));
    assert!(periods.contains(&("2025-03-01T14:00:00Z", "shift")));
    let day = app
        .get("/api/v1/reports?schedule_id=S-DAY", &app.admin)
        .await;
    assert_eq!(day.body.as_array().unwrap().len(), 1, "{}", day.body);
    assert_eq!(day.body[0]["kind"], "day");
    assert_eq!(day.body[0]["requested_by"], "schedule:S-DAY");
    // The day report has the shifts as its series and a trend against the day before.
    // Stored in the scheduler's folder (this test's `Reports`), not the app's.
    let id = day.body[0]["report_id"].as_str().unwrap();
    let file = std::fs::read(dir.path().join(format!("reports/{id}.json"))).unwrap();
    let report: Value = serde_json::from_slice(&file).unwrap();
    let series = report["series"].as_array().unwrap();
    assert_eq!(series.len(), 2, "{report}");
    assert_eq!(series[0]["shift"], "early");
    assert!(report["trend"]["previous"].is_object(), "{report}");
}

/// The early shift of L1 (06:00-14:00) and a `shift_end` JSON schedule over it.
async fn shift_schedule(pool: &PgPool, format: Format) {
    let early = ShiftDefinition {
        line: "L1".into(),
        shift_name: "early".into(),
        start_time: NaiveTime::from_hms_opt(6, 0, 0).unwrap(),
        end_time: NaiveTime::from_hms_opt(14, 0, 0).unwrap(),
        days: (1..=7).collect(),
    };
    replace_shifts(pool, "L1", &[early]).await.unwrap();
    schedule::create(
        pool,
        &Schedule {
            schedule_id: "S-SHIFT".into(),
            trigger: Trigger::ShiftEnd,
            line: Some("L1".into()),
            format,
            at_local: NaiveTime::MIN,
            not_before: at("2025-03-01T00:00:00Z"),
            created_by: "test".into(),
            channels: Vec::new(),
        },
    )
    .await
    .unwrap();
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_late_event_supersedes_a_scheduled_report_and_both_versions_remain(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    plant(&app).await;
    shift_schedule(&pool, Format::Json).await;
    let dir = tempfile::tempdir().unwrap();
    let files = ReportStore::open(&StorageSettings::Filesystem(dir.path().into())).unwrap();
    let reports = Reports::new(pool.clone(), files, "Test plant");
    assert_eq!(
        schedule::tick(&reports, at("2025-03-01T15:00:00Z"))
            .await
            .unwrap(),
        1
    );
    // Nothing late yet: another tick makes nothing.
    assert_eq!(
        schedule::tick(&reports, at("2025-03-01T15:01:00Z"))
            .await
            .unwrap(),
        0
    );
    // ... and notes that the log up to its head changed nothing, so the next look at
    // the log starts there (each tick reads only the events since the one before).
    let checked: Option<i64> = sqlx::query_scalar("SELECT checked_position FROM reports")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(checked, Some(app.event_count().await));
    // A count from 10:00 arrives after the shift's report was made.
    let late = json!({ "event_type": "parts_produced", "machine_id": "M-1",
        "timestamp": "2025-03-01T10:00:00Z", "good": 500, "scrap": 5 });
    let r = app.post("/api/v1/machines/events", &app.admin, &late).await;
    assert_eq!(r.status, 202, "{}", r.body);
    project(&app).await;
    assert_eq!(
        schedule::tick(&reports, at("2025-03-01T15:05:00Z"))
            .await
            .unwrap(),
        1,
        "one corrected version"
    );
    // Once made, the same late event makes nothing more.
    assert_eq!(
        schedule::tick(&reports, at("2025-03-01T15:06:00Z"))
            .await
            .unwrap(),
        0
    );

    let list = app
        .get("/api/v1/reports?schedule_id=S-SHIFT", &app.admin)
        .await;
    let rows = list.body.as_array().unwrap();
    assert_eq!(rows.len(), 2, "both versions are listed: {}", list.body);
    let v1 = rows.iter().find(|r| r["version"] == 1).unwrap();
    let v2 = rows.iter().find(|r| r["version"] == 2).unwrap();
    let (id1, id2) = (
        v1["report_id"].as_str().unwrap(),
        v2["report_id"].as_str().unwrap(),
    );
    assert_ne!(id1, id2);
    assert_eq!(v1["superseded_by"], id2, "{}", list.body);
    assert_eq!(v2["supersedes"], id1, "{}", list.body);
    assert!(v2["superseded_by"].is_null());
    assert!(v2["position"].as_i64() > v1["position"].as_i64());
    assert_eq!((&v1["from"], &v1["to"]), (&v2["from"], &v2["to"]));
    let one = app.get(&format!("/api/v1/reports/{id1}"), &app.admin).await;
    assert_eq!(one.body["superseded_by"], id2);

    // The first version is untouched: its file says 1600 good parts for M-1.
    let read = |id: &str| -> Value {
        serde_json::from_slice(
            &std::fs::read(dir.path().join(format!("reports/{id}.json"))).unwrap(),
        )
        .unwrap()
    };
    let (first, second) = (read(id1), read(id2));
    assert_eq!(first["machines"][0]["kpi"]["good_count"], 1600);
    assert!(first.get("corrections").is_none());
    // The corrected version has the new figures and lists what changed, before and after.
    assert_eq!(second["machines"][0]["kpi"]["good_count"], 2100);
    let c = &second["corrections"];
    assert_eq!(
        (c["version"].as_i64(), c["supersedes"].as_str()),
        (Some(2), Some(id1))
    );
    let changes = c["changes"].as_array().unwrap();
    let find = |scope: &str, figure: &str| {
        changes
            .iter()
            .find(|ch| ch["scope"] == scope && ch["figure"] == figure)
            .unwrap_or_else(|| panic!("{scope} {figure}: {c}"))
    };
    let good = find("M-1", "good_count");
    assert_eq!(
        (good["before"].as_f64(), good["after"].as_f64()),
        (Some(1600.0), Some(2100.0))
    );
    let total = find("total", "scrap_count");
    assert_eq!(
        (total["before"].as_f64(), total["after"].as_f64()),
        (Some(45.0), Some(50.0))
    );
    assert!(
        !changes.iter().any(|ch| ch["scope"] == "M-2"),
        "M-2 did not change: {c}"
    );
    // Both versions verify at their own positions.
    for id in [id1, id2] {
        let v = reports.verify(id).await.unwrap();
        assert!(v.identical, "{id}: {v:?}");
    }
}

/// Runs the process manager over every event in the log (the order's progress and
/// the backflush follow from the parts reports), including those it appends.
async fn drain_process(app: &TestApp) {
    let store = shopfloor_eventstore::EventStore::new(app.pool.clone());
    let pm = shopfloor_commands::process::ProcessManager::new(
        shopfloor_commands::CommandService::new(store.clone()),
    );
    let mut position = 0;
    loop {
        let batch = store.read_all(position, 100).await.unwrap();
        if batch.is_empty() {
            return;
        }
        for e in &batch {
            pm.handle(e).await.unwrap();
            position = e.position;
        }
    }
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn an_order_report_tells_the_orders_whole_life(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.machine("M-1").await;
    let ok = |r: crate::support::Resp, what: &str| {
        assert!(
            (200..300).contains(&r.status),
            "{what}: {} {}",
            r.status,
            r.body
        );
    };
    ok(
        app.patch(
            "/api/v1/inventory/update",
            &app.admin,
            &json!({ "item_id": "STEEL", "item_type": "raw", "location": "RAW-1", "delta": 100, "reason": "receipt" }),
        )
        .await,
        "stock",
    );
    ok(
        app.post(
            "/api/v1/operators",
            &app.admin,
            &json!({ "operator_id": "ADA", "name": "Ada" }),
        )
        .await,
        "operator",
    );
    ok(
        app.post(
            "/api/v1/production-orders",
            &app.admin,
            &json!({ "order_id": "PO-1", "product_id": "BRACKET", "quantity": 100,
                "bom": [{ "item_id": "STEEL", "qty_per_unit": 0.5 }], "input_location": "RAW-1" }),
        )
        .await,
        "order",
    );
    for (path, body) in [
        ("assign", json!({ "machine_id": "M-1" })),
        ("start", json!({})),
    ] {
        ok(
            app.post(
                &format!("/api/v1/production-orders/PO-1/{path}"),
                &app.admin,
                &body,
            )
            .await,
            path,
        );
    }
    ok(
        app.post(
            "/api/v1/operators/ADA/clock-on",
            &app.admin,
            &json!({ "order_id": "PO-1", "machine_id": "M-1", "timestamp": "2025-03-01T08:00:00Z" }),
        )
        .await,
        "clock-on",
    );
    let parts = json!({ "events": [
        { "event_type": "parts_produced", "machine_id": "M-1", "timestamp": "2025-03-01T09:00:00Z",
          "good": 40, "scrap": 2, "order_id": "PO-1", "scrap_reason": "scrap.dimensional" },
        { "event_type": "parts_produced", "machine_id": "M-1", "timestamp": "2025-03-01T10:00:00Z",
          "good": 20, "scrap": 0, "order_id": "PO-1" },
    ]});
    ok(
        app.post("/api/v1/machines/events", &app.admin, &parts)
            .await,
        "parts",
    );
    ok(
        app.post(
            "/api/v1/production-orders/PO-1/inspections",
            &app.admin,
            &json!({ "inspection_id": "I-1", "sample_size": 5, "defects": 1 }),
        )
        .await,
        "inspection",
    );
    drain_process(&app).await;
    project(&app).await;

    let body = json!({ "kind": "order", "order_id": "PO-1", "format": "json" });
    let created = app.post("/api/v1/reports", &app.admin, &body).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["kind"], "order");
    assert_eq!(created.body["order_id"], "PO-1");
    let id = created.body["report_id"].as_str().unwrap();
    let (status, _, bytes) =
        download(&app, &format!("/api/v1/reports/{id}/content"), &app.admin).await;
    assert_eq!(status, 200);
    let report: Value = serde_json::from_slice(&bytes).unwrap();
    let o = &report["order"];
    assert_eq!(
        (o["status"].as_str(), o["quantity"].as_u64()),
        (Some("in_progress"), Some(100))
    );
    assert_eq!(
        (o["good_count"].as_u64(), o["scrap_count"].as_u64()),
        (Some(60), Some(2))
    );
    let steps: Vec<&str> = o["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["created", "assigned", "started"], "{o}");
    assert_eq!(o["production"][0]["machine_id"], "M-1");
    assert_eq!(o["production"][0]["reports"], 2);
    assert_eq!(o["scrap_by_reason"][0]["scrap_reason"], "scrap.dimensional");
    assert_eq!(o["scrap_by_reason"][0]["scrap"], 2);
    assert_eq!(o["inspections"][0]["inspection_id"], "I-1");
    // Backflush: 0.5 per part, (60 + 2) parts.
    assert_eq!(o["consumption"][0]["item_id"], "STEEL");
    assert_eq!(o["consumption"][0]["consumed"], "31");
    assert_eq!(o["labour"][0]["operator_id"], "ADA");
    assert!(o["labour_time_s"].as_f64().unwrap() > 0.0, "{o}");
    // The machines that worked it, with the KPIs of /kpi-metrics over its life.
    assert_eq!(report["machines"][0]["machine_id"], "M-1");
    assert_eq!(report["machines"][0]["kpi"]["good_count"], 60);

    // The PDF and CSV forms, and verification.
    for format in ["pdf", "csv"] {
        let body = json!({ "kind": "order", "order_id": "PO-1", "format": format });
        let r = app.post("/api/v1/reports", &app.admin, &body).await;
        assert_eq!(r.status, 201, "{}", r.body);
        let id = r.body["report_id"].as_str().unwrap();
        let v = app
            .get(&format!("/api/v1/reports/{id}/verify"), &app.admin)
            .await;
        assert_eq!(v.body["identical"], true, "{format}: {}", v.body);
    }
    let listed = app
        .get("/api/v1/reports?kind=order&order_id=PO-1", &app.admin)
        .await;
    assert_eq!(listed.body.as_array().unwrap().len(), 3, "{}", listed.body);
    // An unknown order is a 404, a missing id a 400.
    let r = app
        .post(
            "/api/v1/reports",
            &app.admin,
            &json!({ "kind": "order", "order_id": "PO-404", "format": "json" }),
        )
        .await;
    r.assert_problem(404);
    let r = app
        .post(
            "/api/v1/reports",
            &app.admin,
            &json!({ "kind": "order", "format": "json" }),
        )
        .await;
    r.assert_problem(400);
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_shift_report_lists_orders_quality_and_maintenance(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.machine("M-1").await;
    app.machine("M-2").await;
    let now = chrono::Utc::now();
    let (from, to) = (
        now - chrono::Duration::hours(4),
        now + chrono::Duration::hours(1),
    );
    let ok = |r: crate::support::Resp, what: &str| {
        assert!(
            (200..300).contains(&r.status),
            "{what}: {} {}",
            r.status,
            r.body
        );
    };
    let order = json!({ "order_id": "PO-7", "product_id": "BRACKET", "quantity": 200 });
    ok(
        app.post("/api/v1/production-orders", &app.admin, &order)
            .await,
        "order",
    );
    for (path, body) in [
        ("assign", json!({ "machine_id": "M-1" })),
        ("start", json!({})),
    ] {
        ok(
            app.post(
                &format!("/api/v1/production-orders/PO-7/{path}"),
                &app.admin,
                &body,
            )
            .await,
            path,
        );
    }
    let parts = json!({ "event_type": "parts_produced", "machine_id": "M-1",
        "timestamp": (now - chrono::Duration::hours(1)).to_rfc3339(), "good": 50, "scrap": 3,
        "order_id": "PO-7", "scrap_reason": "scrap.material" });
    ok(
        app.post("/api/v1/machines/events", &app.admin, &parts)
            .await,
        "parts",
    );
    let inspection = json!({ "inspection_id": "I-7", "sample_size": 10, "defects": 0 });
    ok(
        app.post(
            "/api/v1/production-orders/PO-7/inspections",
            &app.admin,
            &inspection,
        )
        .await,
        "inspection",
    );
    let task = |date: chrono::DateTime<Utc>| {
        json!({ "machine_id": "M-2", "scheduled_date": date.to_rfc3339(), "kind": "preventive",
            "description": "Grease the ram" })
    };
    let done = app
        .post(
            "/api/v1/maintenance/schedule",
            &app.admin,
            &task(now - chrono::Duration::hours(2)),
        )
        .await;
    let done_id = done.body["task_id"].as_str().unwrap().to_owned();
    for step in ["start", "complete"] {
        let path = format!("/api/v1/maintenance/tasks/{done_id}/{step}");
        ok(app.post(&path, &app.admin, &json!({})).await, step);
    }
    let due = app
        .post(
            "/api/v1/maintenance/schedule",
            &app.admin,
            &task(now - chrono::Duration::hours(3)),
        )
        .await;
    let due_id = due.body["task_id"].as_str().unwrap().to_owned();
    // A task due after the period is not listed.
    app.post(
        "/api/v1/maintenance/schedule",
        &app.admin,
        &task(now + chrono::Duration::days(3)),
    )
    .await;
    drain_process(&app).await;
    project(&app).await;

    let body = json!({ "kind": "shift", "line": "L1", "from": from, "to": to, "format": "json" });
    let created = app.post("/api/v1/reports", &app.admin, &body).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["layout"], 2);
    let id = created.body["report_id"].as_str().unwrap();
    let (_, _, bytes) = download(&app, &format!("/api/v1/reports/{id}/content"), &app.admin).await;
    let report: Value = serde_json::from_slice(&bytes).unwrap();
    let s = &report["sections"];
    assert_eq!(s["orders"][0]["order_id"], "PO-7", "{s}");
    assert_eq!(s["orders"][0]["good_in_period"], 50);
    assert_eq!(s["orders"][0]["good_total"], 50);
    assert_eq!(s["orders"][0]["status"], "in_progress");
    assert_eq!(s["inspections"][0]["inspection_id"], "I-7");
    // Scrap by reason is /api/v1/scrap for the same scope, window and as_of.
    let as_of = created.body["as_of"].as_str().unwrap();
    let scrap = app
        .get(
            &format!(
                "/api/v1/scrap?line=L1&from={}&to={}&as_of={}",
                urlencode(&from.to_rfc3339()),
                urlencode(&to.to_rfc3339()),
                urlencode(as_of)
            ),
            &app.admin,
        )
        .await;
    assert_eq!(scrap.status, 200, "{}", scrap.body);
    assert_eq!(s["scrap_by_reason"], scrap.body["by_reason"], "{s}");
    assert_eq!(s["scrap_by_reason"][0]["scrap_reason"], "scrap.material");
    let ids = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|t| t["task_id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(&s["maintenance_done"]), [done_id]);
    assert_eq!(ids(&s["maintenance_due"]), [due_id]);
    assert_eq!(s["alerts_raised"], 0);
    // `from` and `to` had nanoseconds; the record keeps microseconds (PostgreSQL), and
    // the report was made from the request as recorded, so it regenerates the same.
    let v = app
        .get(&format!("/api/v1/reports/{id}/verify"), &app.admin)
        .await;
    assert_eq!(v.body["identical"], true, "{}", v.body);
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_weekly_schedule_makes_each_weeks_report_once(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    plant(&app).await;
    let r = app
        .post(
            "/api/v1/report-schedules",
            &app.admin,
            &json!({ "schedule_id": "S-WEEK", "trigger": "weekly", "line": "L1", "format": "json",
                "at_local": "06:00" }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["trigger"], "weekly");
    // The schedule starts now; for the test, from the week of 1 March 2025 (a Saturday).
    sqlx::query("UPDATE report_schedules SET not_before = '2025-02-24T00:00:00Z'")
        .execute(&pool)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = ReportStore::open(&StorageSettings::Filesystem(dir.path().into())).unwrap();
    let reports = Reports::new(pool.clone(), files, "Test plant");
    // Monday 3 March 05:00: the week of 24 February is over but its time (06:00) has not come.
    let tick = |t: &'static str| {
        let reports = reports.clone();
        async move { schedule::tick(&reports, at(t)).await.unwrap() }
    };
    assert_eq!(tick("2025-03-03T05:00:00Z").await, 0);
    assert_eq!(tick("2025-03-03T06:00:00Z").await, 1);
    assert_eq!(tick("2025-03-05T06:00:00Z").await, 0, "made once");
    let list = app
        .get("/api/v1/reports?schedule_id=S-WEEK", &app.admin)
        .await;
    let rows = list.body.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{}", list.body);
    assert_eq!(rows[0]["kind"], "week");
    assert_eq!(rows[0]["from"], "2025-02-24T00:00:00Z");
    assert_eq!(rows[0]["to"], "2025-03-03T00:00:00Z");
    let id = rows[0]["report_id"].as_str().unwrap();
    let file: Value = serde_json::from_slice(
        &std::fs::read(dir.path().join(format!("reports/{id}.json"))).unwrap(),
    )
    .unwrap();
    // The week by day, with the morning of 1 March in it.
    assert_eq!(file["series"].as_array().unwrap().len(), 7, "{file}");
    assert_eq!(file["total"]["good_count"], 2800);
}

/// A webhook receiver on loopback: every request's signature header and body.
async fn webhook_receiver() -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let tx = tx.clone();
                async move {
                    let sig = headers
                        .get("x-shopfloor-signature")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    let _ = tx.send((sig, body.to_vec()));
                    axum::http::StatusCode::NO_CONTENT
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), rx)
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn scheduled_reports_and_their_corrections_reach_the_schedules_webhook(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    plant(&app).await;
    let (url, mut received) = webhook_receiver().await;
    // A webhook without a secret is refused (400); a webhook is kept, its secret never shown.
    let r = app
        .post(
            "/api/v1/report-schedules",
            &app.admin,
            &json!({ "trigger": "daily", "format": "json",
                "channels": [{ "type": "webhook", "url": url, "secret": "" }] }),
        )
        .await;
    r.assert_problem(400);
    let r = app
        .post(
            "/api/v1/report-schedules",
            &app.admin,
            &json!({ "schedule_id": "S-HOOK", "trigger": "shift_end", "line": "L1", "format": "json",
                "channels": [{ "type": "webhook", "url": url, "secret": "s3cret" }] }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(!r.body.to_string().contains("s3cret"), "{}", r.body);
    assert_eq!(r.body["channels"][0]["url"], url.as_str());
    let early = ShiftDefinition {
        line: "L1".into(),
        shift_name: "early".into(),
        start_time: NaiveTime::from_hms_opt(6, 0, 0).unwrap(),
        end_time: NaiveTime::from_hms_opt(14, 0, 0).unwrap(),
        days: (1..=7).collect(),
    };
    replace_shifts(&pool, "L1", &[early]).await.unwrap();
    sqlx::query("UPDATE report_schedules SET not_before = '2025-03-01T00:00:00Z'")
        .execute(&pool)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = ReportStore::open(&StorageSettings::Filesystem(dir.path().into())).unwrap();
    let reports = Reports::new(pool.clone(), files, "Test plant");
    let deliverer =
        shopfloor_reports::deliver::Deliverer::new(pool.clone(), Duration::from_secs(5)).unwrap();
    assert_eq!(
        schedule::tick(&reports, at("2025-03-01T15:00:00Z"))
            .await
            .unwrap(),
        1
    );
    assert_eq!(deliverer.pass().await.unwrap(), 1);
    let (sig, body) = received.recv().await.unwrap();
    assert_eq!(sig, shopfloor_alerts::outbox::signature("s3cret", &body));
    let first: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (first["kind"].as_str(), first["version"].as_i64()),
        (Some("shift"), Some(1))
    );
    let id1 = first["report_id"].as_str().unwrap().to_owned();
    assert_eq!(first["content"], format!("/api/v1/reports/{id1}/content"));
    // Delivered once: the next pass has nothing to send.
    assert_eq!(deliverer.pass().await.unwrap(), 0);

    // A late count: the corrected version is delivered too, naming what it supersedes.
    let late = json!({ "event_type": "parts_produced", "machine_id": "M-2",
        "timestamp": "2025-03-01T09:00:00Z", "good": 10, "scrap": 0 });
    assert_eq!(
        app.post("/api/v1/machines/events", &app.admin, &late)
            .await
            .status,
        202
    );
    project(&app).await;
    assert_eq!(
        schedule::tick(&reports, at("2025-03-01T15:10:00Z"))
            .await
            .unwrap(),
        1
    );
    assert_eq!(deliverer.pass().await.unwrap(), 1);
    let (sig, body) = received.recv().await.unwrap();
    assert_eq!(sig, shopfloor_alerts::outbox::signature("s3cret", &body));
    let second: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(second["version"], 2);
    assert_eq!(second["supersedes"], id1.as_str());
    let states: Vec<String> =
        sqlx::query_scalar("SELECT status FROM report_deliveries ORDER BY created_at")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(states, ["delivered", "delivered"]);
}

/// aiosmtpd (installed by scripts/smtp.sh) on a free loopback port, writing each
/// message it accepts to a maildir; killed on drop.
struct Smtp {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_smtp() -> Smtp {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/smtp.sh");
    let text = std::fs::read_to_string(script).expect("scripts/smtp.sh");
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("VERSION="))
        .expect("VERSION= in scripts/smtp.sh");
    let tools = std::env::var("SHOPFLOOR_TOOLS_DIR")
        .unwrap_or_else(|_| format!("{}/.local/share/shopfloor", std::env::var("HOME").unwrap()));
    let python = std::path::PathBuf::from(format!("{tools}/aiosmtpd-{version}/bin/python"));
    assert!(
        python.exists(),
        "{} is missing: run scripts/smtp.sh",
        python.display()
    );
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(python)
        .args(["-m", "aiosmtpd", "-n", "-l"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-c", "aiosmtpd.handlers.Mailbox"])
        .arg(dir.path().join("maildir"))
        .spawn()
        .unwrap();
    let smtp = Smtp { child, dir, port };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "aiosmtpd did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    smtp
}

impl Smtp {
    /// The messages accepted so far, as text with `\n` line ends, oldest first.
    fn messages(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.dir.path().join("maildir/new")) else {
            return vec![];
        };
        let mut files: Vec<_> = entries
            .filter_map(|e| {
                let e = e.ok()?;
                Some((e.metadata().ok()?.modified().ok()?, e.path()))
            })
            .collect();
        files.sort();
        files
            .into_iter()
            .filter_map(|(_, p)| std::fs::read_to_string(p).ok())
            .map(|m| m.replace("\r\n", "\n"))
            .collect()
    }
}

/// The base64 body of the MIME part that attaches `filename`, decoded.
fn attachment(message: &str, filename: &str) -> Vec<u8> {
    use base64::Engine as _;
    let at = message
        .find(&format!("filename=\"{filename}\""))
        .unwrap_or_else(|| panic!("no attachment {filename} in:\n{message}"));
    let body = &message[at..];
    let body = &body[body.find("\n\n").unwrap() + 2..];
    let b64: String = body
        .lines()
        .take_while(|l| !l.starts_with("--") && !l.is_empty())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn scheduled_reports_and_their_corrections_are_emailed_with_the_file_attached(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    plant(&app).await;
    let smtp = start_smtp().await;
    let bad = json!({ "trigger": "daily", "format": "json",
        "channels": [{ "type": "email", "to": ["not an address"] }] });
    app.post("/api/v1/report-schedules", &app.admin, &bad)
        .await
        .assert_problem(400);
    let r = app
        .post(
            "/api/v1/report-schedules",
            &app.admin,
            &json!({ "schedule_id": "S-MAIL", "trigger": "shift_end", "line": "L1", "format": "pdf",
                "channels": [{ "type": "email", "to": ["supervisor@plant.example"] }] }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let early = ShiftDefinition {
        line: "L1".into(),
        shift_name: "early".into(),
        start_time: NaiveTime::from_hms_opt(6, 0, 0).unwrap(),
        end_time: NaiveTime::from_hms_opt(14, 0, 0).unwrap(),
        days: (1..=7).collect(),
    };
    replace_shifts(&pool, "L1", &[early]).await.unwrap();
    sqlx::query("UPDATE report_schedules SET not_before = '2025-03-01T00:00:00Z'")
        .execute(&pool)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = ReportStore::open(&StorageSettings::Filesystem(dir.path().into())).unwrap();
    let reports = Reports::new(pool.clone(), files, "Test plant");
    assert_eq!(
        schedule::tick(&reports, at("2025-03-01T15:00:00Z"))
            .await
            .unwrap(),
        1
    );
    // Without SMTP settings the e-mail fails and stays pending, to be tried again.
    let no_smtp =
        shopfloor_reports::deliver::Deliverer::new(pool.clone(), Duration::from_secs(5)).unwrap();
    assert_eq!(no_smtp.pass().await.unwrap(), 1);
    let (status, error): (String, Option<String>) =
        sqlx::query_as("SELECT status, last_error FROM report_deliveries")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(status, "pending");
    assert!(error.unwrap().contains("SHOPFLOOR_SMTP_URL"));
    assert!(smtp.messages().is_empty());
    sqlx::query("UPDATE report_deliveries SET next_attempt = now()")
        .execute(&pool)
        .await
        .unwrap();

    let settings = shopfloor_alerts::SmtpSettings {
        url: SecretString::from(format!("smtp://127.0.0.1:{}", smtp.port)),
        from: "Shopfloor <shopfloor@plant.example>".into(),
        ca_file: None,
    };
    let deliverer =
        shopfloor_reports::deliver::Deliverer::new(pool.clone(), Duration::from_secs(5))
            .unwrap()
            .with_email(&settings, reports.clone())
            .unwrap();
    assert_eq!(deliverer.pass().await.unwrap(), 1);
    assert_eq!(deliverer.pass().await.unwrap(), 0);
    let id1: String = sqlx::query_scalar("SELECT report_id FROM report_deliveries")
        .fetch_one(&pool)
        .await
        .unwrap();
    let mails = smtp.messages();
    assert_eq!(mails.len(), 1);
    assert!(
        mails[0].contains("To: supervisor@plant.example"),
        "{}",
        mails[0]
    );
    assert!(
        mails[0].contains("Subject: [Shopfloor] shift report L1"),
        "{}",
        mails[0]
    );
    assert!(
        mails[0].contains(&format!("report_id: {id1}")),
        "{}",
        mails[0]
    );
    let (_, stored) = reports.content(&id1).await.unwrap();
    let attached = attachment(&mails[0], &format!("{id1}.pdf"));
    assert_eq!(attached, stored.to_vec());
    assert!(attached.starts_with(b"%PDF-"));

    // A late count: the corrected version is e-mailed too, naming what it supersedes.
    let late = json!({ "event_type": "parts_produced", "machine_id": "M-2",
        "timestamp": "2025-03-01T09:00:00Z", "good": 10, "scrap": 0 });
    assert_eq!(
        app.post("/api/v1/machines/events", &app.admin, &late)
            .await
            .status,
        202
    );
    project(&app).await;
    assert_eq!(
        schedule::tick(&reports, at("2025-03-01T15:10:00Z"))
            .await
            .unwrap(),
        1
    );
    assert_eq!(deliverer.pass().await.unwrap(), 1);
    let mails = smtp.messages();
    assert_eq!(mails.len(), 2);
    let second = mails
        .iter()
        .find(|m| m.contains(&format!("supersedes: {id1}")))
        .expect("the corrected version's e-mail");
    assert!(second.contains("(v2, corrected)"), "{second}");
    let id2: String = sqlx::query_scalar("SELECT report_id FROM reports WHERE supersedes = $1")
        .bind(&id1)
        .fetch_one(&pool)
        .await
        .unwrap();
    let (_, stored2) = reports.content(&id2).await.unwrap();
    assert_eq!(attachment(second, &format!("{id2}.pdf")), stored2.to_vec());
    assert_ne!(stored2, stored);
    let states: Vec<String> =
        sqlx::query_scalar("SELECT status FROM report_deliveries ORDER BY created_at")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(states, ["delivered", "delivered"]);
}
