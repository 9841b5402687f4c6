//! The OPC UA ingest against real services: PostgreSQL, and a real OPC UA server
//! on loopback (Python asyncua, scripts/opcua_server.py, installed by
//! scripts/opcua.sh), each test on its own server and port.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use shopfloor_commands::CommandService;
use shopfloor_domain::machine::{MachineCommand, RegisterMachine};
use shopfloor_domain::values::{CycleTime, LineId, MachineId, MachineType};
use shopfloor_domain::{Decide, Machine};
use shopfloor_eventstore::repository::meta;
use shopfloor_eventstore::{AggregateRepository, EventStore, ExpectedVersion, StreamRef};
use shopfloor_ingest::Mapping;
use shopfloor_opcua::sim::SimServer as RustServer;
use shopfloor_opcua::{run_opcua, OpcuaConfig, Progress};
use sqlx::PgPool;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);

fn python() -> PathBuf {
    if let Ok(p) = std::env::var("SHOPFLOOR_OPCUA_PYTHON") {
        return p.into();
    }
    let tools = std::env::var("SHOPFLOOR_TOOLS_DIR").unwrap_or_else(|_| {
        format!(
            "{}/.local/share/shopfloor",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    PathBuf::from(tools).join("asyncua-2.1.0/bin/python")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The test's own OPC UA server (scripts/opcua_server.py), driven on stdin.
struct SimServer {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl SimServer {
    async fn start(port: u16, args: &[&str]) -> Self {
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/opcua_server.py");
        let py = python();
        assert!(
            py.exists(),
            "{} is missing: run scripts/opcua.sh",
            py.display()
        );
        let mut child = Command::new(py)
            .arg(script)
            .arg("--port")
            .arg(port.to_string())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start the OPC UA server");
        let stdin = child.stdin.take().expect("stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let line = tokio::time::timeout(WAIT, stdout.next_line())
            .await
            .expect("the server starts in time")
            .expect("read")
            .expect("a line");
        assert_eq!(line, "ready");
        Self {
            child,
            stdin,
            stdout,
        }
    }

    /// Writes a value with its source timestamp and waits for the server's ok.
    async fn set(&mut self, name: &str, kind: &str, value: &str, at: DateTime<Utc>) {
        let line = format!("set {name} {kind} {value} {}\n", at.timestamp_millis());
        self.stdin.write_all(line.as_bytes()).await.expect("write");
        let answer = self
            .stdout
            .next_line()
            .await
            .expect("read")
            .expect("answer");
        assert_eq!(answer, "ok", "{line}");
    }

    async fn kill(mut self) {
        self.child.kill().await.expect("kill");
    }
}

async fn register(pool: &PgPool, id: &str) {
    let at = chrono::DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let events = Machine::default()
        .decide(MachineCommand::RegisterMachine(RegisterMachine {
            machine_id: MachineId::new(id).unwrap(),
            machine_type: MachineType::new("press").unwrap(),
            line: LineId::new("line-1").unwrap(),
            ideal_cycle_time_s: CycleTime::new(2.0).unwrap(),
            at,
        }))
        .unwrap();
    let stream = StreamRef::new(Machine::TYPE, id);
    let mut md = HashMap::new();
    md.insert(meta::ACTOR.to_string(), "test".to_string());
    let new = AggregateRepository::<Machine>::new_events(&stream, &events, &md).unwrap();
    EventStore::new(pool.clone())
        .append(&stream, ExpectedVersion::NoStream, new)
        .await
        .unwrap();
}

fn noise_off(max_parts: u64) -> Arc<Mapping> {
    Arc::new(
        Mapping::from_json(&format!(
            r#"{{"defaults": {{"min_dwell_ms": 0, "no_signal_timeout_s": 0, "max_parts_per_message": {max_parts}}}}}"#
        ))
        .unwrap(),
    )
}

/// The press's nodes on `port`, with `extra` server fields.
fn config(port: u16, extra: &str) -> Arc<OpcuaConfig> {
    Arc::new(
        OpcuaConfig::from_json(&format!(
            r#"{{"servers": [{{
              "name": "press-plc", "endpoint": "opc.tcp://127.0.0.1:{port}/",
              "publishing_interval_ms": 50, "sampling_interval_ms": 0,
              "retry_initial_ms": 100, "retry_max_ms": 500 {extra},
              "nodes": [
                {{"node_id": "ns=2;s=Press.State", "machine_id": "press-1", "meaning": "state",
                  "values": {{"0": "idle", "1": "running", "2": "down"}}}},
                {{"node_id": "ns=2;s=Press.Reason", "machine_id": "press-1", "meaning": "reason"}},
                {{"node_id": "ns=2;s=Press.Good", "machine_id": "press-1", "meaning": "good_count"}},
                {{"node_id": "ns=2;s=Press.Scrap", "machine_id": "press-1", "meaning": "scrap_count"}},
                {{"node_id": "ns=2;s=Press.Temp", "machine_id": "press-1", "meaning": {{"sensor": "oil_temp_c"}}}},
                {{"node_id": "ns=2;s=Press.Mode", "machine_id": "press-1", "meaning": {{"sensor": "mode"}}}}
              ]}}]}}"#
        ))
        .expect("config"),
    )
}

/// The OPC UA ingest running on its own task.
struct Ingest {
    progress: watch::Receiver<Progress>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Ingest {
    fn start(pool: &PgPool, ns: &str, mapping: Arc<Mapping>, config: Arc<OpcuaConfig>) -> Self {
        let commands = CommandService::new(EventStore::new(pool.clone())).with_group_commit(256);
        let (tx, progress) = watch::channel(Progress::default());
        let cancel = CancellationToken::new();
        let (c, ns) = (cancel.clone(), ns.to_string());
        let task =
            tokio::spawn(async move { run_opcua(commands, &ns, mapping, config, tx, c).await });
        Self {
            progress,
            cancel,
            task,
        }
    }

    /// Waits until the progress satisfies `f`.
    async fn until(&mut self, what: &str, f: impl Fn(&Progress) -> bool) {
        let done = tokio::time::timeout(WAIT, self.progress.wait_for(|p| f(p)))
            .await
            .map(|r| r.is_ok());
        if done == Ok(false) && self.task.is_finished() {
            let result = (&mut self.task).await;
            panic!("the ingest ended while waiting for {what}: {result:?}");
        }
        assert!(
            done == Ok(true),
            "timed out waiting for {what}: {:?}",
            *self.progress.borrow()
        );
    }

    async fn stop(self) {
        self.cancel.cancel();
        self.task.await.expect("join").expect("ingest ran");
    }
}

/// The parts recorded for a machine: (good, scrap).
async fn parts(pool: &PgPool, id: &str) -> (i64, i64) {
    sqlx::query_as(
        "SELECT COALESCE(SUM((payload->>'good')::bigint), 0)::bigint, \
                COALESCE(SUM((payload->>'scrap')::bigint), 0)::bigint \
         FROM events WHERE stream_id = $1 AND event_type = 'MachinePartsProduced'",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn states(pool: &PgPool, id: &str) -> Vec<(String, Option<String>, DateTime<Utc>)> {
    let rows: Vec<serde_json::Value> = sqlx::query_scalar(
        "SELECT payload FROM events WHERE stream_id = $1 AND event_type = 'MachineStateChanged' ORDER BY position",
    )
    .bind(id)
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|p| {
            (
                p["state"].as_str().unwrap().to_string(),
                p["reason"].as_str().map(str::to_string),
                serde_json::from_value(p["at"].clone()).unwrap(),
            )
        })
        .collect()
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ms(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap()
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn states_counts_and_telemetry_from_a_real_server_land_as_from_mqtt(pool: PgPool) {
    register(&pool, "press-1").await;
    let port = free_port();
    let mut plc = SimServer::start(port, &["--good", "65000"]).await;
    let mut ingest = Ingest::start(&pool, "opcua-a", noise_off(1000), config(port, ""));
    // The first notification of each of the 6 nodes: idle, counter baselines, a
    // temperature, and a mode that is no number.
    ingest.until("the initial values", |p| p.events >= 6).await;

    // Source times after the initial values' (a counter's older total is late).
    let t0 = ms(Utc::now());
    let at = |s: i64| t0 + chrono::Duration::seconds(s);
    plc.set("Press.State", "UInt16", "1", at(1)).await;
    plc.set("Press.Good", "UInt16", "65100", at(2)).await; // +100
    plc.set("Press.Temp", "Double", "71.5", at(3)).await;
    plc.set("Press.Good", "UInt16", "65530", at(4)).await; // +430
    plc.set("Press.Good", "UInt16", "10", at(5)).await; // rollover at 16 bits: +16
    plc.set("Press.Good", "UInt16", "5", at(6)).await; // a reset: +5
    plc.set("Press.Reason", "String", "hydraulic_pressure_low", at(7))
        .await;
    plc.set("Press.State", "UInt16", "2", at(8)).await;
    plc.set("Press.Scrap", "UInt32", "3", at(9)).await; // +3
    plc.set("Press.State", "UInt16", "7", at(10)).await; // not in the value map

    eventually("the scrap", || async {
        let p = parts(&pool, "press-1").await;
        if p.1 != 3 {
            let rej: Vec<(String, String)> =
                sqlx::query_as("SELECT topic, reason FROM ingest_rejected ORDER BY id")
                    .fetch_all(&pool)
                    .await
                    .unwrap();
            eprintln!(
                "parts {p:?} states {:?} rejected {rej:?} progress {:?}",
                states(&pool, "press-1").await,
                *ingest.progress.borrow()
            );
        }
        p.1 == 3
    })
    .await;
    assert_eq!(parts(&pool, "press-1").await, (100 + 430 + 16 + 5, 3));
    let s = states(&pool, "press-1").await;
    let tail: Vec<_> = s.iter().rev().take(2).rev().cloned().collect();
    assert_eq!(
        tail,
        vec![
            ("running".to_string(), None, at(1)),
            (
                "down".to_string(),
                Some("hydraulic_pressure_low".to_string()),
                at(8)
            ),
        ],
        "states with the source timestamps, the fault with its reason node's text"
    );
    assert_eq!(s[0].0, "idle", "the initial value 0 is idle");

    // A batch's samples commit in the transaction after its commands reach the log,
    // so the scrap can be seen a moment before the sample is.
    let sample_at = |ts| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, f64>(
                "SELECT value FROM telemetry WHERE machine_id = 'press-1' AND sensor = 'oil_temp_c' AND ts = $1",
            )
            .bind(ts)
            .fetch_optional(&pool)
            .await
            .unwrap()
        }
    };
    eventually("the sample at its source time", || async {
        sample_at(at(3)).await.is_some()
    })
    .await;
    assert_eq!(sample_at(at(3)).await, Some(71.5));

    eventually("the rejections", || async {
        let reasons: Vec<String> = sqlx::query_scalar(
            "SELECT reason FROM ingest_rejected WHERE disposition = 'rejected' ORDER BY id",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        reasons
            .iter()
            .any(|r| r == "ns=2;s=Press.Mode: mode of type String (a number is expected)")
            && reasons
                .iter()
                .any(|r| r == "ns=2;s=Press.State: state value \"7\" is not in the value map")
    })
    .await;
    let topic: String =
        sqlx::query_scalar("SELECT topic FROM ingest_rejected WHERE reason LIKE '%Press.Mode%'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(topic, "opcua/press-plc/ns=2;s=Press.Mode");
    ingest.stop().await;
    plc.kill().await;
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_server_restart_and_an_ingest_restart_lose_and_double_count_nothing(pool: PgPool) {
    register(&pool, "press-1").await;
    let port = free_port();
    let mut plc = SimServer::start(port, &["--good", "1000"]).await;
    let mut ingest = Ingest::start(&pool, "opcua-b", noise_off(1000), config(port, ""));
    ingest.until("the initial values", |p| p.events >= 6).await;
    plc.set("Press.Good", "UInt16", "1010", Utc::now()).await;
    eventually("+10", || async { parts(&pool, "press-1").await.0 == 10 }).await;

    // The PLC goes away; it made 15 parts meanwhile, and comes back on the same port.
    plc.kill().await;
    let mut plc = SimServer::start(port, &["--good", "1025"]).await;
    ingest.until("the reconnection", |p| p.gaps >= 1).await;
    eventually("the parts made in the gap", || async {
        let p = parts(&pool, "press-1").await.0;
        if p != 25 {
            eprintln!("parts {p} progress {:?}", *ingest.progress.borrow());
        }
        p == 25
    })
    .await;
    let notice: String = sqlx::query_scalar(
        "SELECT reason FROM ingest_rejected WHERE disposition = 'notice' AND topic = 'opcua/press-plc'",
    )
    .fetch_one(&pool)
    .await
    .expect("the gap is recorded");
    assert!(
        notice.starts_with("connection to OPC UA server press-plc lost"),
        "{notice}"
    );
    plc.set("Press.Good", "UInt16", "1030", Utc::now()).await;
    eventually("+5 after the reconnection", || async {
        parts(&pool, "press-1").await.0 == 30
    })
    .await;

    // The ingest itself restarts: the counter's current value (1030) is its stored
    // baseline, so it counts nothing again.
    ingest.stop().await;
    let mut ingest = Ingest::start(&pool, "opcua-b", noise_off(1000), config(port, ""));
    ingest
        .until("the initial values again", |p| p.events >= 6)
        .await;
    plc.set("Press.Good", "UInt16", "1032", Utc::now()).await;
    ingest.until("the +2", |p| p.commands >= 1).await;
    assert_eq!(parts(&pool, "press-1").await.0, 32, "nothing counted twice");
    ingest.stop().await;
    plc.kill().await;
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn basic256sha256_sign_and_encrypt_with_username_and_password(pool: PgPool) {
    register(&pool, "press-1").await;
    let port = free_port();
    let pki = tempfile::tempdir().unwrap();
    let server_pki = pki.path().join("server");
    let mut plc = SimServer::start(
        port,
        &[
            "--secure",
            "--user",
            "operator:s3cret",
            "--pki",
            server_pki.to_str().unwrap(),
        ],
    )
    .await;
    let client_pki = pki.path().join("client");
    let extra = format!(
        r#", "security_policy": "Basic256Sha256", "security_mode": "SignAndEncrypt",
           "trust_server_certs": true, "pki_dir": {:?},
           "user": {{"username": "operator", "password": "s3cret"}}"#,
        client_pki.to_str().unwrap()
    );
    let mut ingest = Ingest::start(&pool, "opcua-c", noise_off(1000), config(port, &extra));
    ingest.until("the initial values", |p| p.events >= 6).await;
    let at = ms(Utc::now() - chrono::Duration::seconds(5));
    plc.set("Press.Temp", "Double", "42.25", at).await;
    eventually("the sample over the encrypted channel", || async {
        let v: Option<f64> = sqlx::query_scalar(
            "SELECT value FROM telemetry WHERE machine_id = 'press-1' AND sensor = 'oil_temp_c' AND ts = $1",
        )
        .bind(at)
        .fetch_optional(&pool)
        .await
        .unwrap();
        v == Some(42.25)
    })
    .await;
    ingest.stop().await;
    plc.kill().await;
}

/// Thousands of items on one subscription: the server's publish responses then
/// carry thousands of notifications each (about 30 bytes apiece), past the OPC UA
/// library's default decoding limits (arrays of 1,000, messages of 5 chunks) that
/// once made the client take nothing after the first such response. Every initial
/// value and every change of two full cycles must be stored.
#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn thousands_of_items_deliver_every_initial_value_and_every_change(pool: PgPool) {
    const N: usize = 5000;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    register(&pool, "press-1").await;
    register(&pool, "press-2").await;
    let pki = tempfile::tempdir().unwrap();
    let plc = RustServer::start(N, &pki.path().join("server"))
        .await
        .expect("the simulator starts");
    let machines = ["press-1".to_string(), "press-2".to_string()];
    let config = Arc::new(plc.config(&machines, 100, &pki.path().join("client")));
    let mut ingest = Ingest::start(&pool, "opcua-many", noise_off(1000), config);
    ingest
        .until("every initial value", |p| {
            p.events >= N as u64 && p.samples >= N as u64
        })
        .await;
    // Source times after the initial values' (the server's sampling filter drops
    // a value less than a sampling interval after the previous one).
    let t0 = ms(Utc::now()) + chrono::Duration::seconds(1);
    let t1 = t0 + chrono::Duration::seconds(1);
    plc.set_all(1, t0);
    ingest
        .until("the first cycle", |p| p.samples >= 2 * N as u64)
        .await;
    plc.set_all(2, t1);
    ingest
        .until("the second cycle", |p| p.samples >= 3 * N as u64)
        .await;
    let stored: Vec<(String, i64)> = sqlx::query_as(
        "SELECT machine_id, count(*) FROM telemetry WHERE ts = ANY($1) GROUP BY 1 ORDER BY 1",
    )
    .bind(vec![t0, t1])
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        stored,
        vec![
            ("press-1".to_string(), N as i64),
            ("press-2".to_string(), N as i64)
        ],
        "both cycles, every node, at their source times"
    );
    let last: f64 = sqlx::query_scalar(
        "SELECT value FROM telemetry WHERE machine_id = 'press-2' AND sensor = 's4999' AND ts = $1",
    )
    .bind(t1)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(last, 2.0 + (4999 % 7) as f64);
    assert_eq!(ingest.progress.borrow().rejected, 0);
    ingest.stop().await;
    plc.stop().await;
}

/// The benchmark of issue 21 (ignored by default; run with
/// `OPCUA_BENCH_NODES=2000 cargo test -p shopfloor-opcua --test it bench -- --ignored --nocapture`):
/// one server changing every bench node every 100 ms, samples/s through to the
/// telemetry table. The Python server is the bottleneck well before the ingest: the
/// benchmark proper is `shopfloor bench opcua` (an async-opcua server in process);
/// this one checks that a Python server's publish responses are taken at any size.
#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
#[ignore = "benchmark"]
async fn bench_data_changes_through_to_durable_telemetry(pool: PgPool) {
    let n: usize = std::env::var("OPCUA_BENCH_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    register(&pool, "press-1").await;
    let port = free_port();
    let plc = SimServer::start(port, &["--bench", &n.to_string()]).await;
    let nodes: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"node_id": "ns=2;s=Bench.{i}", "machine_id": "press-1", "meaning": {{"sensor": "b{i}"}}}}"#
            )
        })
        .collect();
    let config = Arc::new(
        OpcuaConfig::from_json(&format!(
            r#"{{"servers": [{{"name": "bench", "endpoint": "opc.tcp://127.0.0.1:{port}/",
               "publishing_interval_ms": 100, "sampling_interval_ms": 100, "nodes": [{}]}}]}}"#,
            nodes.join(",")
        ))
        .unwrap(),
    );
    let mapping = Arc::new(
        Mapping::from_json(
            r#"{"defaults": {"no_signal_timeout_s": 0, "predictive": {"enabled": false}}}"#,
        )
        .unwrap(),
    );
    let mut ingest = Ingest::start(&pool, "opcua-bench", mapping, config);
    ingest
        .until("the subscription", |p| p.events >= n as u64)
        .await;
    let (e0, s0) = {
        let p = ingest.progress.borrow();
        (p.events, p.samples)
    };
    let started = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let secs = started.elapsed().as_secs_f64();
    let (e1, s1) = {
        let p = ingest.progress.borrow();
        (p.events, p.samples)
    };
    ingest.stop().await;
    plc.kill().await;
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM telemetry")
        .fetch_one(&pool)
        .await
        .unwrap();
    println!(
        "opcua bench: {n} monitored items, {:.0} data changes/s, {:.0} durable samples/s over {secs:.1} s; {stored} samples stored in all",
        (e1 - e0) as f64 / secs,
        (s1 - s0) as f64 / secs
    );
    assert!(s1 > s0, "samples were stored");
}
