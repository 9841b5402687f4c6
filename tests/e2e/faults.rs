//! Faults under load: the real `shopfloor` binary against private PostgreSQL, NATS and
//! Mosquitto instances (see `services`), with a steady write load of HTTP machine events
//! and MQTT count and state messages, while one thing fails: NATS is killed and
//! restarted, PostgreSQL crashes and restarts, Mosquitto restarts, the shopfloor process
//! is killed with SIGKILL and started again, or a separate projector process is killed
//! with SIGKILL mid-stream.
//!
//! Afterwards, every request that got 2xx and every MQTT message the broker acknowledged
//! (QoS 1 PUBACK) is in the event store exactly once, a request refused or never sent is
//! not, one whose answer was lost is there at most once; the machines' `good_count` and
//! the KPIs' `total_count` equal the sums of what is stored; and `replay --verify` exits 0.
//! Requests made during an outage get 503 problem+json with `Retry-After` (never a 500 or
//! a hang), and `/readyz` is 503 while PostgreSQL, NATS or the broker is down and 200
//! after. Every loop is bounded in time; only loopback is targeted.
//!
//! Each test prints one `FAULT ...` line with its figures (run with `--nocapture`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, DurationRound, Utc};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::services::{free_port, PrivateMosquitto, PrivateNats, PrivatePg, Shopfloor};

const ADMIN: &str = "faults-admin-token-0123456789abcdef";
/// One machine per HTTP writer (writers to one stream would contend: 503, by design).
const HTTP_MACHINES: [&str; 3] = ["m-http-0", "m-http-1", "m-http-2"];
const MQTT_MACHINE: &str = "m-mqtt";
/// How long the load runs before and after a fault.
const CALM: Duration = Duration::from_secs(3);
/// How long a service stays down.
const OUTAGE: Duration = Duration::from_secs(6);

/// The three services and the settings of the shopfloor processes.
struct Plant {
    pg: PrivatePg,
    nats: PrivateNats,
    mqtt: PrivateMosquitto,
    http_port: u16,
    namespace: String,
}

impl Plant {
    fn new() -> Self {
        Self {
            pg: PrivatePg::start(),
            nats: PrivateNats::start(),
            mqtt: PrivateMosquitto::start(),
            http_port: free_port(),
            namespace: format!("flt{}", &uuid::Uuid::new_v4().simple().to_string()[..10]),
        }
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![
            ("DATABASE_URL".into(), self.pg.url()),
            ("NATS_URL".into(), self.nats.url()),
            ("MQTT_URL".into(), self.mqtt.url()),
            (
                "SHOPFLOOR_HTTP_ADDR".into(),
                format!("127.0.0.1:{}", self.http_port),
            ),
            ("SHOPFLOOR_NAMESPACE".into(), self.namespace.clone()),
            ("SHOPFLOOR_ADMIN_TOKEN".into(), ADMIN.into()),
        ]
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    async fn shopfloor(&self, roles: &[&str], ready_line: &str) -> Shopfloor {
        let env = self.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut args = Vec::new();
        for r in roles {
            args.push("--role");
            args.push(r);
        }
        Shopfloor::start(&args, &env, ready_line).await
    }

    /// Registers the two machines and waits until the API and ingest are ready.
    async fn prepare(&self) {
        let client = reqwest::Client::new();
        for id in HTTP_MACHINES.into_iter().chain([MQTT_MACHINE]) {
            let r = client
                .post(format!("{}/api/v1/machines", self.base()))
                .bearer_auth(ADMIN)
                .json(&json!({ "machine_id": id, "type": "press", "line": "L1", "ideal_cycle_time_s": 1.0 }))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
        }
        if wait_ready(&self.base(), Duration::from_secs(30))
            .await
            .is_none()
        {
            let body = reqwest::get(format!("{}/readyz", self.base()))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            panic!("never ready: {body}");
        }
    }
}

/// Polls `/readyz` until 200 (bounded); how long it took.
async fn wait_ready(base: &str, limit: Duration) -> Option<Duration> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await {
            if r.status() == 200 {
                return Some(start.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// What became of one write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// 2xx, or a PUBACK from the broker: must be stored exactly once.
    Accepted,
    /// A definite refusal (503), or never sent (connection refused): must not be stored.
    Refused,
    /// The answer was lost: stored at most once.
    Unknown,
}

#[derive(Debug, Clone)]
struct Write {
    machine: &'static str,
    at: DateTime<Utc>,
    good: u64,
    scrap: u64,
    /// `Some` for a state message.
    state: Option<&'static str>,
    outcome: Outcome,
}

#[derive(Debug, Default)]
struct Record {
    writes: Vec<Write>,
    /// (asked, answered, status) of every `/readyz` sample; `None`: no answer.
    ready: Vec<(Instant, Instant, Option<u16>)>,
    /// Statuses of the HTTP writes, and the slowest answer.
    statuses: HashMap<u16, usize>,
    slowest: Duration,
    /// Problems seen (a 5xx that is not 503 problem+json with Retry-After, ...).
    problems: Vec<String>,
}

/// The steady load: one HTTP writer, one MQTT publisher and a `/readyz` sampler.
struct Load {
    stop: CancellationToken,
    record: Arc<Mutex<Record>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(plant: &Plant, floor: DateTime<Utc>) -> Self {
        let stop = CancellationToken::new();
        let record = Arc::new(Mutex::new(Record::default()));
        let tasks = vec![
            tokio::spawn(http_writer(
                plant.base(),
                floor,
                0,
                stop.clone(),
                record.clone(),
            )),
            tokio::spawn(http_writer(
                plant.base(),
                floor,
                1,
                stop.clone(),
                record.clone(),
            )),
            tokio::spawn(http_writer(
                plant.base(),
                floor,
                2,
                stop.clone(),
                record.clone(),
            )),
            tokio::spawn(mqtt_publisher(
                plant.mqtt.port,
                plant.namespace.clone(),
                floor,
                stop.clone(),
                record.clone(),
            )),
            tokio::spawn(ready_sampler(plant.base(), stop.clone(), record.clone())),
        ];
        Self {
            stop,
            record,
            tasks,
        }
    }

    async fn finish(self) -> Record {
        self.stop.cancel();
        for t in self.tasks {
            tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .expect("a load task did not stop")
                .unwrap();
        }
        std::mem::take(&mut *self.record.lock().unwrap())
    }
}

/// Writes parts events of `HTTP_MACHINES[writer]` at floor times `floor + n` seconds.
async fn http_writer(
    base: String,
    floor: DateTime<Utc>,
    writer: usize,
    stop: CancellationToken,
    record: Arc<Mutex<Record>>,
) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let mut seq: i64 = 0;
    // Bounded: at most 10,000 writes, and stopped by the token.
    while !stop.is_cancelled() && seq < 10_000 {
        seq += 1;
        let at = floor + chrono::Duration::seconds(seq);
        let (good, scrap) = (1 + (seq % 3) as u64, (seq % 2) as u64);
        let body = json!({
            "event_type": "parts_produced", "machine_id": HTTP_MACHINES[writer],
            "timestamp": at.to_rfc3339(), "good": good, "scrap": scrap
        });
        let started = Instant::now();
        let sent = client
            .post(format!("{base}/api/v1/machines/events"))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .await;
        let took = started.elapsed();
        let outcome = match sent {
            Ok(r) => {
                let status = r.status().as_u16();
                let retry_after = r.headers().get("retry-after").is_some();
                let ct = r
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                let text = r.text().await.unwrap_or_default();
                let mut rec = record.lock().unwrap();
                *rec.statuses.entry(status).or_default() += 1;
                rec.slowest = rec.slowest.max(took);
                match status {
                    200..=299 => Outcome::Accepted,
                    503 => {
                        if !retry_after || !ct.starts_with("application/problem+json") {
                            rec.problems
                                .push(format!("503 without Retry-After/problem: {ct} {text}"));
                        }
                        Outcome::Refused
                    }
                    // The commit was cut off and not settled in time (ADR 0035): it
                    // may be stored, at most once.
                    504 => {
                        if !text.contains("unknown-outcome") {
                            rec.problems
                                .push(format!("504 that is not unknown-outcome: {text}"));
                        }
                        Outcome::Unknown
                    }
                    s => {
                        rec.problems.push(format!("unexpected {s}: {text}"));
                        if s >= 500 {
                            Outcome::Unknown
                        } else {
                            Outcome::Refused
                        }
                    }
                }
            }
            Err(e) if e.is_connect() => Outcome::Refused,
            Err(_) => Outcome::Unknown,
        };
        record.lock().unwrap().writes.push(Write {
            machine: HTTP_MACHINES[writer],
            at,
            good,
            scrap,
            state: None,
            outcome,
        });
        if outcome == Outcome::Refused {
            tokio::time::sleep(Duration::from_millis(100)).await;
        } else {
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    }
}

/// Publishes at QoS 1, one message at a time, waiting for its PUBACK (stop-and-wait), so
/// that each message is known to be acknowledged or not. A connection that fails is
/// dropped with its client, and a fresh one is made.
async fn mqtt_publisher(
    port: u16,
    namespace: String,
    floor: DateTime<Utc>,
    stop: CancellationToken,
    record: Arc<Mutex<Record>>,
) {
    let mut seq: i64 = 0;
    let mut connection = 0;
    while !stop.is_cancelled() && seq < 10_000 {
        connection += 1;
        let mut options = MqttOptions::new(
            format!("{namespace}-faultpub-{connection}"),
            "127.0.0.1",
            port,
        );
        options
            .set_clean_session(true)
            .set_keep_alive(Duration::from_secs(5));
        let (client, mut eventloop) = AsyncClient::new(options, 10);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let pump = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = tx.send(Ok(0));
                    }
                    Ok(Event::Incoming(Packet::PubAck(ack))) => {
                        let _ = tx.send(Ok(ack.pkid));
                    }
                    Ok(_) => {}
                    Err(_) => {
                        let _ = tx.send(Err(()));
                        return;
                    }
                }
            }
        });
        let connected = matches!(
            tokio::time::timeout(Duration::from_secs(2), rx.recv()).await,
            Ok(Some(Ok(0)))
        );
        if connected {
            while !stop.is_cancelled() && seq < 10_000 {
                seq += 1;
                let at = floor + chrono::Duration::seconds(seq);
                let (topic, payload, write) = if seq % 10 == 0 {
                    let state = if seq % 20 == 0 { "running" } else { "idle" };
                    (
                        "state",
                        json!({ "state": state, "reason": "test", "timestamp": at.to_rfc3339() }),
                        Write {
                            machine: MQTT_MACHINE,
                            at,
                            good: 0,
                            scrap: 0,
                            state: Some(state),
                            outcome: Outcome::Unknown,
                        },
                    )
                } else {
                    let (good, scrap) = (1 + (seq % 2) as u64, u64::from(seq % 3 == 0));
                    (
                        "count",
                        json!({ "good": good, "scrap": scrap, "timestamp": at.to_rfc3339() }),
                        Write {
                            machine: MQTT_MACHINE,
                            at,
                            good,
                            scrap,
                            state: None,
                            outcome: Outcome::Unknown,
                        },
                    )
                };
                let topic = format!("{namespace}/machines/{MQTT_MACHINE}/{topic}");
                let mut write = write;
                if client
                    .publish(topic, QoS::AtLeastOnce, false, payload.to_string())
                    .await
                    .is_err()
                {
                    write.outcome = Outcome::Refused;
                    record.lock().unwrap().writes.push(write);
                    break;
                }
                let acked = matches!(
                    tokio::time::timeout(Duration::from_secs(3), rx.recv()).await,
                    Ok(Some(Ok(pkid))) if pkid > 0
                );
                write.outcome = if acked {
                    Outcome::Accepted
                } else {
                    Outcome::Unknown
                };
                record.lock().unwrap().writes.push(write);
                if !acked {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        }
        pump.abort();
        let _ = pump.await;
        drop(client);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn ready_sampler(base: String, stop: CancellationToken, record: Arc<Mutex<Record>>) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(4))
        .build()
        .unwrap();
    while !stop.is_cancelled() {
        let asked = Instant::now();
        let status = client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16());
        record
            .lock()
            .unwrap()
            .ready
            .push((asked, Instant::now(), status));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One stored machine event, as the checks need it.
#[derive(Debug)]
struct Stored {
    machine: String,
    event_type: String,
    at: DateTime<Utc>,
    good: u64,
    scrap: u64,
    /// The state of a state event.
    state: Option<String>,
}

async fn stored(db: &str) -> Vec<Stored> {
    use sqlx::{Connection, Row};
    let mut conn = sqlx::PgConnection::connect(db).await.unwrap();
    let rows = sqlx::query(
        "SELECT stream_id, event_type, (payload->>'at')::timestamptz AS at, \
         COALESCE((payload->>'good')::bigint, 0) AS good, \
         COALESCE((payload->>'scrap')::bigint, 0) AS scrap, payload->>'state' AS state \
         FROM events WHERE stream_type = 'machine' \
         AND event_type IN ('MachinePartsProduced', 'MachineStateChanged')",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    rows.iter()
        .map(|r| Stored {
            machine: r.get("stream_id"),
            event_type: r.get("event_type"),
            at: r.get("at"),
            good: r.get::<i64, _>("good") as u64,
            scrap: r.get::<i64, _>("scrap") as u64,
            state: r.get("state"),
        })
        .collect()
}

/// True when `w` is a state report that repeats the state the machine is stored in
/// at its floor time: the ingest drops a repeated state as a duplicate (ADR 0007), so
/// it leaves no event. (It happens when the report of another state between the two
/// was lost with the broker, unacknowledged.)
fn repeats_stored_state(w: &Write, events: &[Stored]) -> bool {
    let Some(state) = w.state else {
        return false;
    };
    events
        .iter()
        .filter(|e| e.machine == w.machine && e.event_type == "MachineStateChanged" && e.at < w.at)
        .max_by_key(|e| e.at)
        .is_some_and(|e| e.state.as_deref() == Some(state))
}

/// Prints what the store and the ingest hold around a missing write's floor time.
async fn explain_missing(db: &str, machine: &str, at: DateTime<Utc>) {
    use sqlx::{Connection, Row};
    let mut conn = sqlx::PgConnection::connect(db).await.unwrap();
    let rows = sqlx::query(
        "SELECT position, event_type, payload::text AS p, extra::text AS x FROM events \
         WHERE stream_id = $1 AND (payload->>'at')::timestamptz \
         BETWEEN $2 - interval '15 seconds' AND $2 + interval '15 seconds' ORDER BY position",
    )
    .bind(machine)
    .bind(at)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    for r in rows {
        eprintln!(
            "MISSING-CONTEXT event {} {} {} {}",
            r.get::<i64, _>("position"),
            r.get::<String, _>("event_type"),
            r.get::<String, _>("p"),
            r.get::<String, _>("x")
        );
    }
    let rejected = sqlx::query("SELECT topic, reason, payload FROM ingest_rejected ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    for r in rejected {
        eprintln!(
            "MISSING-CONTEXT rejected {} {} {}",
            r.get::<String, _>("topic"),
            r.get::<String, _>("reason"),
            r.get::<String, _>("payload")
        );
    }
}

/// The figures of one run.
#[derive(Debug, Default)]
struct Figures {
    http_accepted: usize,
    http_refused: usize,
    http_unknown: usize,
    mqtt_acked: usize,
    mqtt_unknown: usize,
    unknown_landed: usize,
}

/// Every accepted write stored once, refused ones not, unknown ones at most once; the
/// read models agree with the store.
async fn check(plant: &Plant, record: &Record, floor: DateTime<Utc>) -> Figures {
    assert!(
        record.problems.is_empty(),
        "problems during the run: {:#?}",
        record.problems
    );
    let client = reqwest::Client::new();
    let mut figures = Figures::default();
    // Let the ingest drain what the broker still holds, then compare (bounded).
    let deadline = Instant::now() + Duration::from_secs(60);
    let events = loop {
        let events = stored(&plant.pg.url()).await;
        let mut count: HashMap<(String, DateTime<Utc>), usize> = HashMap::new();
        for e in &events {
            *count.entry((e.machine.clone(), e.at)).or_default() += 1;
        }
        let missing: Vec<&Write> = record
            .writes
            .iter()
            .filter(|w| w.outcome == Outcome::Accepted)
            .filter(|w| !count.contains_key(&(w.machine.to_string(), w.at)))
            .filter(|w| !repeats_stored_state(w, &events))
            .collect();
        if missing.is_empty() || Instant::now() > deadline {
            if let Some(w) = missing.first() {
                explain_missing(&plant.pg.url(), w.machine, w.at).await;
            }
            assert!(
                missing.is_empty(),
                "{} accepted writes are not in the store, e.g. {:?}",
                missing.len(),
                &missing[..missing.len().min(5)]
            );
            break events;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let mut count: HashMap<(String, DateTime<Utc>), Vec<&Stored>> = HashMap::new();
    for e in &events {
        count.entry((e.machine.clone(), e.at)).or_default().push(e);
    }
    for w in &record.writes {
        let found = count
            .get(&(w.machine.to_string(), w.at))
            .map_or(0, Vec::len);
        match w.outcome {
            Outcome::Accepted if found == 0 && repeats_stored_state(w, &events) => {}
            Outcome::Accepted => {
                assert_eq!(found, 1, "accepted write stored {found} times: {w:?}");
                let e = &count[&(w.machine.to_string(), w.at)][0];
                if w.state.is_some() {
                    assert_eq!(e.event_type, "MachineStateChanged", "{w:?}");
                } else {
                    assert_eq!((e.good, e.scrap), (w.good, w.scrap), "{w:?}");
                }
            }
            Outcome::Refused => assert_eq!(found, 0, "refused write stored: {w:?}"),
            Outcome::Unknown => {
                assert!(found <= 1, "write stored {found} times: {w:?}");
                figures.unknown_landed += found;
            }
        }
        match (w.machine == MQTT_MACHINE, w.outcome) {
            (false, Outcome::Accepted) => figures.http_accepted += 1,
            (false, Outcome::Refused) => figures.http_refused += 1,
            (false, Outcome::Unknown) => figures.http_unknown += 1,
            (true, Outcome::Accepted) => figures.mqtt_acked += 1,
            (true, _) => figures.mqtt_unknown += 1,
        }
    }
    // Nothing stored that was not written.
    let written: std::collections::HashSet<(String, DateTime<Utc>)> = record
        .writes
        .iter()
        .map(|w| (w.machine.to_string(), w.at))
        .collect();
    for e in &events {
        if e.at >= floor {
            assert!(
                written.contains(&(e.machine.clone(), e.at)),
                "an event nobody wrote: {e:?}"
            );
        }
    }
    // The read models count each stored part once.
    for machine in HTTP_MACHINES.into_iter().chain([MQTT_MACHINE]) {
        let parts: Vec<&Stored> = events
            .iter()
            .filter(|e| e.machine == machine && e.event_type == "MachinePartsProduced")
            .collect();
        let good: u64 = parts.iter().map(|e| e.good).sum();
        let total: u64 = parts.iter().map(|e| e.good + e.scrap).sum();
        let kpi = format!(
            "{}/api/v1/kpi-metrics?machine_id={machine}&from={}&to={}",
            plant.base(),
            urlencode(&floor.to_rfc3339()),
            urlencode(&(floor + chrono::Duration::days(1)).to_rfc3339())
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let list: Value = client
                .get(format!("{}/api/v1/machines", plant.base()))
                .bearer_auth(ADMIN)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let m = list
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["machine_id"] == machine)
                .cloned()
                .unwrap_or_default();
            let rows: Value = client
                .get(&kpi)
                .bearer_auth(ADMIN)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let kpi_total = rows[0]["total_count"].as_u64();
            if m["good_count"].as_u64() == Some(good) && kpi_total == Some(total) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{machine}: read models {} / KPI {:?}, store {good} good / {total} total",
                m["good_count"],
                kpi_total
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    figures
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

/// Readiness told the truth: 503 (or no answer) throughout `[from, to)`, with at least
/// one sample there, and 200 at the end.
fn check_ready(record: &Record, from: Instant, to: Instant, what: &str) {
    let during: Vec<Option<u16>> = record
        .ready
        .iter()
        .filter(|(asked, answered, _)| *asked >= from && *answered < to)
        .map(|(_, _, s)| *s)
        .collect();
    let samples: Vec<String> = record
        .ready
        .iter()
        .map(|(a, b, s)| {
            format!(
                "{:?}..{:?}: {s:?}",
                a.saturating_duration_since(from).as_millis() as i64
                    - from.saturating_duration_since(*a).as_millis() as i64,
                b.saturating_duration_since(from).as_millis()
            )
        })
        .collect();
    assert!(
        !during.is_empty(),
        "no /readyz sample while {what} was down: {samples:?}"
    );
    assert!(
        during.iter().all(|s| *s != Some(200)),
        "/readyz said 200 while {what} was down: {during:?}"
    );
    assert!(
        during.contains(&Some(503)),
        "/readyz never said 503 while {what} was down: {during:?}"
    );
    assert_eq!(
        record.ready.last().map(|(_, _, s)| *s),
        Some(Some(200)),
        "/readyz is not 200 at the end"
    );
}

async fn replay_verify(db: &str) {
    let out = crate::support::shopfloor()
        .args(["replay", "--verify"])
        .env("DATABASE_URL", db)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "replay --verify: {} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn floor_time() -> DateTime<Utc> {
    (Utc::now() - chrono::Duration::days(2))
        .duration_trunc(chrono::Duration::seconds(1))
        .unwrap()
}

fn report(what: &str, f: &Figures, record: &Record, ready_after: Duration) {
    println!(
        "FAULT {what}: http accepted {} refused {} unknown {}; statuses {:?}; slowest answer {} ms; \
         mqtt acked {} unacked {}; unknown that landed {}; ready again {} ms after the restart",
        f.http_accepted,
        f.http_refused,
        f.http_unknown,
        record.statuses,
        record.slowest.as_millis(),
        f.mqtt_acked,
        f.mqtt_unknown,
        f.unknown_landed,
        ready_after.as_millis()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_killed_and_restarted_under_load() {
    let mut plant = Plant::new();
    let mut sf = plant.shopfloor(&[], "listening on http://").await;
    plant.prepare().await;
    let floor = floor_time();
    let load = Load::start(&plant, floor);
    tokio::time::sleep(CALM).await;
    plant.nats.kill();
    let down = Instant::now();
    tokio::time::sleep(OUTAGE).await;
    let up = Instant::now();
    plant.nats.start_again();
    let ready_after = wait_ready(&plant.base(), Duration::from_secs(60))
        .await
        .expect("not ready after NATS came back");
    tokio::time::sleep(CALM).await;
    let record = load.finish().await;
    check_ready(&record, down + Duration::from_secs(2), up, "NATS");
    let figures = check(&plant, &record, floor).await;
    report("nats kill -9", &figures, &record, ready_after);
    assert!(figures.http_accepted > 20 && figures.mqtt_acked > 50);
    assert!(sf.terminate().await.is_some_and(|s| s.success()));
    replay_verify(&plant.pg.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_crashed_and_restarted_under_load() {
    let mut plant = Plant::new();
    let mut sf = plant.shopfloor(&[], "listening on http://").await;
    plant.prepare().await;
    let floor = floor_time();
    let load = Load::start(&plant, floor);
    tokio::time::sleep(CALM).await;
    plant.pg.stop("immediate");
    let down = Instant::now();
    tokio::time::sleep(OUTAGE).await;
    let up = Instant::now();
    plant.pg.start_again();
    let ready_after = wait_ready(&plant.base(), Duration::from_secs(60))
        .await
        .expect("not ready after PostgreSQL came back");
    tokio::time::sleep(CALM).await;
    let record = load.finish().await;
    check_ready(&record, down + Duration::from_millis(500), up, "PostgreSQL");
    // Writes caught by the outage are held and settled (ADR 0035): answered 2xx once
    // stored, 503 only when nothing was written, 504 when the outcome stayed unknown.
    // `check` below holds each answer to what the store says.
    assert!(
        record
            .statuses
            .keys()
            .all(|s| (200..300).contains(s) || *s == 503 || *s == 504),
        "statuses: {:?}",
        record.statuses
    );
    let figures = check(&plant, &record, floor).await;
    report(
        "postgres crash (pg_ctl -m immediate)",
        &figures,
        &record,
        ready_after,
    );
    assert!(figures.http_accepted > 20 && figures.mqtt_acked > 50);
    assert!(sf.terminate().await.is_some_and(|s| s.success()));
    replay_verify(&plant.pg.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mosquitto_restarted_under_load() {
    let mut plant = Plant::new();
    let mut sf = plant.shopfloor(&[], "listening on http://").await;
    plant.prepare().await;
    let floor = floor_time();
    let load = Load::start(&plant, floor);
    tokio::time::sleep(CALM).await;
    plant.mqtt.stop();
    let down = Instant::now();
    tokio::time::sleep(OUTAGE).await;
    let up = Instant::now();
    plant.mqtt.start_again();
    let ready_after = wait_ready(&plant.base(), Duration::from_secs(60))
        .await
        .expect("not ready after Mosquitto came back");
    tokio::time::sleep(CALM).await;
    let record = load.finish().await;
    check_ready(&record, down + Duration::from_secs(2), up, "Mosquitto");
    let figures = check(&plant, &record, floor).await;
    report("mosquitto restart", &figures, &record, ready_after);
    assert!(figures.http_accepted > 20 && figures.mqtt_acked > 50);
    assert!(sf.terminate().await.is_some_and(|s| s.success()));
    replay_verify(&plant.pg.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shopfloor_killed_and_restarted_under_load() {
    let plant = Plant::new();
    let mut sf = plant.shopfloor(&[], "listening on http://").await;
    plant.prepare().await;
    let floor = floor_time();
    let load = Load::start(&plant, floor);
    tokio::time::sleep(CALM).await;
    sf.kill9().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    sf.start_again("listening on http://").await;
    let ready_after = wait_ready(&plant.base(), Duration::from_secs(60))
        .await
        .expect("not ready after the restart");
    tokio::time::sleep(CALM).await;
    let record = load.finish().await;
    let figures = check(&plant, &record, floor).await;
    report("shopfloor kill -9", &figures, &record, ready_after);
    assert!(figures.http_accepted > 20 && figures.mqtt_acked > 50);
    assert!(sf.terminate().await.is_some_and(|s| s.success()));
    replay_verify(&plant.pg.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn projector_process_killed_mid_stream() {
    let plant = Plant::new();
    let mut front = plant
        .shopfloor(&["api", "relay", "ingest"], "listening on http://")
        .await;
    let mut projector = plant.shopfloor(&["projector"], "projector started").await;
    plant.prepare().await;
    let floor = floor_time();
    let load = Load::start(&plant, floor);
    // Kill it three times while events stream in.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        projector.kill9().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        projector.start_again("projector started").await;
    }
    let ready_after = wait_ready(&plant.base(), Duration::from_secs(60))
        .await
        .expect("not ready");
    tokio::time::sleep(CALM).await;
    let record = load.finish().await;
    let figures = check(&plant, &record, floor).await;
    report("projector kill -9 (x3)", &figures, &record, ready_after);
    assert!(figures.http_accepted > 20 && figures.mqtt_acked > 50);
    assert!(projector.terminate().await.is_some_and(|s| s.success()));
    assert!(front.terminate().await.is_some_and(|s| s.success()));
    replay_verify(&plant.pg.url()).await;
}
