//! High availability (issue 18, ADR 0043): the real `shopfloor` binary, two processes
//! of every role, on a private 3-node NATS JetStream cluster (`NATS_URL` as a comma
//! list, the stream at R3) and a private PostgreSQL.
//!
//! - The NATS stream leader is killed under a steady write load, then the process that
//!   leads the relay (SIGKILL, restarted later): every accepted write is stored and
//!   published exactly once, the publish gaps are bounded (the relay rides out the
//!   election instead of handing over; the standby takes over a killed relay), a write
//!   made during the election is visible in the read models through the PostgreSQL
//!   fallback, `/readyz` returns and one relay and one process manager lead afterwards.
//! - PostgreSQL restarts: the leader that lost its session steps down, and afterwards
//!   exactly one process manager and one relay lead (read from `/readyz` and
//!   `/metrics`).
//! - `NATS_URL` whose first servers are dead at start still starts.
//! - A stream created at R1 moves, with its consumers, to R3 when the processes restart
//!   with `SHOPFLOOR_STREAM_REPLICAS=3`.
//!
//! Each test prints one `HA ...` line with its figures (run with `--nocapture`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, DurationRound, Utc};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::services::{free_port, PrivateNats, PrivateNatsCluster, PrivatePg, Shopfloor};

const ADMIN: &str = "ha-admin-token-Xq7rT2mVw9Lk";
const LISTENING: &str = "listening on http://";

/// One deployment: a PostgreSQL, a NATS URL list and two `shopfloor serve` processes
/// with every role but ingest.
struct Deployment {
    pg: PrivatePg,
    nats_urls: String,
    namespace: String,
    ports: [u16; 2],
    processes: Vec<Shopfloor>,
}

impl Deployment {
    async fn start(pg: PrivatePg, nats_urls: String, replicas: usize) -> Self {
        let mut d = Self {
            pg,
            nats_urls,
            namespace: format!("ha{}", &uuid::Uuid::new_v4().simple().to_string()[..10]),
            ports: [free_port(), free_port()],
            processes: Vec::new(),
        };
        for i in 0..2 {
            let env = d.env(i, replicas);
            let env: Vec<(&str, &str)> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            d.processes
                .push(Shopfloor::start(&[], &env, LISTENING).await);
        }
        d
    }

    fn env(&self, i: usize, replicas: usize) -> Vec<(String, String)> {
        vec![
            ("DATABASE_URL".into(), self.pg.url()),
            ("NATS_URL".into(), self.nats_urls.clone()),
            ("MQTT_URL".into(), "off".into()),
            (
                "SHOPFLOOR_HTTP_ADDR".into(),
                format!("127.0.0.1:{}", self.ports[i]),
            ),
            ("SHOPFLOOR_NAMESPACE".into(), self.namespace.clone()),
            ("SHOPFLOOR_ADMIN_TOKEN".into(), ADMIN.into()),
            ("SHOPFLOOR_STREAM_REPLICAS".into(), replicas.to_string()),
        ]
    }

    fn base(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.ports[i])
    }

    async fn register(&self, machines: &[&str]) {
        for id in machines {
            let r = http()
                .post(format!("{}/api/v1/machines", self.base(0)))
                .bearer_auth(ADMIN)
                .json(&json!({ "machine_id": id, "type": "press", "line": "L1", "ideal_cycle_time_s": 1.0 }))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
        }
    }

    /// Waits (bounded) until both processes are ready and, between them, exactly
    /// one leads each lock; the leaders' process indexes.
    async fn one_leader_each(&self, limit: Duration) -> Result<Leaders, String> {
        let deadline = Instant::now() + limit;
        loop {
            let status = self.leading().await;
            match Leaders::from_status(&status) {
                Ok(l) => return Ok(l),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// The `leading` member of each process's `/readyz` (None: not ready).
    async fn leading(&self) -> Vec<Option<HashMap<String, bool>>> {
        let mut out = Vec::new();
        for i in 0..2 {
            let r = http().get(format!("{}/readyz", self.base(i))).send().await;
            let leading = match r {
                Ok(r) if r.status() == 200 => r
                    .json::<Value>()
                    .await
                    .ok()
                    .and_then(|v| serde_json::from_value(v["leading"].clone()).ok()),
                _ => None,
            };
            out.push(leading);
        }
        out
    }
}

/// Which process leads the relay and the process manager.
#[derive(Debug, PartialEq, Eq)]
struct Leaders {
    relay: usize,
    process_manager: usize,
}

impl Leaders {
    fn from_status(status: &[Option<HashMap<String, bool>>]) -> Result<Self, String> {
        let one = |lock: &str| {
            let holders: Vec<usize> = status
                .iter()
                .enumerate()
                .filter(|(_, s)| s.as_ref().and_then(|m| m.get(lock)) == Some(&true))
                .map(|(i, _)| i)
                .collect();
            match (status.iter().all(Option::is_some), holders.as_slice()) {
                (true, [i]) => Ok(*i),
                _ => Err(format!("{lock}: {status:?}")),
            }
        };
        Ok(Self {
            relay: one("relay")?,
            process_manager: one("process_manager")?,
        })
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

fn floor_time() -> DateTime<Utc> {
    (Utc::now() - chrono::Duration::days(2))
        .duration_trunc(chrono::Duration::seconds(1))
        .unwrap()
}

/// Accepted writes: (machine, floor time, good).
type Accepted = Arc<Mutex<Vec<(String, DateTime<Utc>, u64)>>>;

/// Writes parts events of `machine` through process `target`, one at a time, until
/// stopped (bounded to 10,000); records the accepted ones.
async fn writer(
    base: String,
    machine: &'static str,
    floor: DateTime<Utc>,
    stop: CancellationToken,
    accepted: Accepted,
) {
    let client = http();
    let mut seq: i64 = 0;
    while !stop.is_cancelled() && seq < 10_000 {
        seq += 1;
        let at = floor + chrono::Duration::seconds(seq);
        let good = 1 + (seq % 3) as u64;
        let r = client
            .post(format!("{base}/api/v1/machines/events"))
            .bearer_auth(ADMIN)
            .json(
                &json!({ "event_type": "parts_produced", "machine_id": machine,
                "timestamp": at.to_rfc3339(), "good": good, "scrap": 0 }),
            )
            .send()
            .await;
        match r {
            Ok(r) if r.status().is_success() => {
                accepted.lock().unwrap().push((machine.into(), at, good))
            }
            // Refused (503) or unknown: not counted; the store check allows at most one.
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// (machine, at) → how many times stored, and the machines' stored good sums.
async fn stored(
    db: &str,
) -> (
    HashMap<(String, DateTime<Utc>), usize>,
    HashMap<String, u64>,
) {
    use sqlx::{Connection, Row};
    let mut conn = sqlx::PgConnection::connect(db).await.unwrap();
    let rows = sqlx::query(
        "SELECT stream_id, (payload->>'at')::timestamptz AS at, \
         COALESCE((payload->>'good')::bigint, 0) AS good \
         FROM events WHERE stream_type = 'machine' AND event_type = 'MachinePartsProduced'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let mut count = HashMap::new();
    let mut good = HashMap::new();
    for r in rows {
        let machine: String = r.get("stream_id");
        *count.entry((machine.clone(), r.get("at"))).or_default() += 1;
        *good.entry(machine).or_default() += r.get::<i64, _>("good") as u64;
    }
    (count, good)
}

async fn event_count(db: &str) -> u64 {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(db).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    n as u64
}

/// The machine's `good_count` in the read model, through process `i`.
async fn good_count(d: &Deployment, i: usize, machine: &str) -> Option<u64> {
    let list: Value = http()
        .get(format!("{}/api/v1/machines", d.base(i)))
        .bearer_auth(ADMIN)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    list.as_array()?
        .iter()
        .find(|m| m["machine_id"] == machine)?["good_count"]
        .as_u64()
}

/// The stream as stored: every event message's position header and time (unix ns), in
/// order.
async fn stream_messages(js: &async_nats::jetstream::Context, stream: &str) -> Vec<(String, i128)> {
    let mut s = js.get_stream(stream).await.unwrap();
    let last = s.info().await.unwrap().state.last_sequence;
    let mut out = Vec::new();
    for seq in 1..=last {
        let m = s.get_raw_message(seq).await.unwrap();
        // Events only (the plant calendar snapshot is on `{ns}.settings.calendar`).
        if !m.subject.contains(".events.") {
            continue;
        }
        let id = m
            .headers
            .get("Shopfloor-Position")
            .map(|v| v.as_str().to_string())
            .unwrap_or_default();
        out.push((id, m.time.unix_timestamp_nanos()));
    }
    out
}

/// The longest time between two consecutive stored messages, the second one stored
/// in `[from, to)` (ms).
fn longest_gap(messages: &[(String, i128)], from_ns: i128, to_ns: i128) -> f64 {
    messages
        .windows(2)
        .filter(|w| w[1].1 >= from_ns && w[1].1 < to_ns)
        .map(|w| (w[1].1 - w[0].1) as f64 / 1e6)
        .fold(0.0, f64::max)
}

async fn stream_leader(js: &async_nats::jetstream::Context, stream: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut s) = js.get_stream(stream).await {
            if let Ok(info) = s.info().await {
                if let Some(leader) = info.cluster.as_ref().and_then(|c| c.leader.clone()) {
                    assert_eq!(info.config.num_replicas, 3, "the stream is not R3");
                    return leader;
                }
            }
        }
        assert!(Instant::now() < deadline, "no stream leader");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Writes 7 parts for `m-ha-probe` through process 0 and waits (bounded) until
/// process 1's API shows them: how long it took.
async fn probe_visibility(d: &Deployment, floor: DateTime<Utc>) -> Duration {
    let probe_base = d.base(0);
    let probe = http()
        .post(format!("{probe_base}/api/v1/machines/events"))
        .bearer_auth(ADMIN)
        .json(
            &json!({ "event_type": "parts_produced", "machine_id": "m-ha-probe",
            "timestamp": floor.to_rfc3339(), "good": 7, "scrap": 0 }),
        )
        .send()
        .await
        .unwrap();
    assert!(probe.status().is_success(), "{}", probe.status());
    let written = Instant::now();
    let visible_after = loop {
        if good_count(d, 1, "m-ha-probe").await == Some(7) {
            break written.elapsed();
        }
        assert!(
            written.elapsed() < Duration::from_secs(30),
            "the probe never became visible"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    visible_after
}

/// SIGKILLs the process that leads the relay; waits (bounded) until the other one
/// leads the relay and the process manager: which process was killed, when, and how
/// long the takeover took.
async fn kill_relay_leader(d: &mut Deployment) -> (usize, DateTime<Utc>, Duration) {
    let leaders = d.one_leader_each(Duration::from_secs(30)).await.unwrap();
    let survivor = 1 - leaders.relay;
    let relay_killed_at = Utc::now();
    d.processes[leaders.relay].kill9().await;
    let relay_kill = Instant::now();
    let took_over = loop {
        let status = d.leading().await;
        let leads = |lock: &str| status[survivor].as_ref().and_then(|m| m.get(lock)) == Some(&true);
        if leads("relay") && leads("process_manager") {
            break relay_kill.elapsed();
        }
        assert!(
            relay_kill.elapsed() < Duration::from_secs(15),
            "no takeover: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    (leaders.relay, relay_killed_at, took_over)
}

/// Every accepted write stored once, the read models equal to the store, and every
/// event in the stream exactly once: the stream's messages.
async fn check_stored_and_published(
    d: &Deployment,
    js: &async_nats::jetstream::Context,
    stream: &str,
    accepted: &[(String, DateTime<Utc>, u64)],
) -> Vec<(String, i128)> {
    let (count, good) = stored(&d.pg.url()).await;
    for (m, at, _) in accepted {
        assert_eq!(count.get(&(m.clone(), *at)), Some(&1), "{m} at {at}");
    }
    assert!(count.values().all(|n| *n == 1), "a write is stored twice");
    for m in ["m-ha-0", "m-ha-1"] {
        let want = good.get(m).copied().unwrap_or(0);
        let deadline = Instant::now() + Duration::from_secs(30);
        while good_count(d, 0, m).await != Some(want) {
            assert!(
                Instant::now() < deadline,
                "{m}: read model never reached {want}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Every event published exactly once.
    let events = event_count(&d.pg.url()).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let messages = loop {
        let messages = stream_messages(js, stream).await;
        if messages.len() as u64 >= events || Instant::now() > deadline {
            break messages;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let ids: HashSet<&String> = messages.iter().map(|(id, _)| id).collect();
    assert_eq!(messages.len() as u64, events, "stream and store differ");
    assert_eq!(ids.len(), messages.len(), "an event was published twice");
    messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ha_stream_leader_killed_under_load() {
    let mut cluster = PrivateNatsCluster::start(3);
    let mut d = Deployment::start(PrivatePg::start(), cluster.urls(), 3).await;
    d.register(&["m-ha-0", "m-ha-1", "m-ha-probe"]).await;
    d.one_leader_each(Duration::from_secs(30)).await.unwrap();
    let stream = format!("{}_EVENTS", d.namespace);
    let nats = async_nats::connect(
        cluster
            .urls()
            .split(',')
            .map(str::to_string)
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    let js = async_nats::jetstream::new(nats);
    let leader = stream_leader(&js, &stream).await;
    let floor = floor_time();
    let stop = CancellationToken::new();
    let accepted: Accepted = Arc::default();
    let tasks: Vec<_> = ["m-ha-0", "m-ha-1"]
        .into_iter()
        .enumerate()
        .map(|(i, m)| tokio::spawn(writer(d.base(i), m, floor, stop.clone(), accepted.clone())))
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;

    let killed = (0..3)
        .find(|i| PrivateNatsCluster::name(*i) == leader)
        .unwrap();
    let killed_at = Utc::now();
    cluster.kill(killed);
    let kill = Instant::now();
    // A write during the election: visible through the PostgreSQL fallback.
    let visible_after = probe_visibility(&d, floor).await;
    let new_leader = stream_leader(&js, &stream).await;
    let elected_after = kill.elapsed();
    tokio::time::sleep(Duration::from_secs(4)).await;

    // Then the process leading the relay is killed (SIGKILL): the other takes over.
    let (relay_leader, relay_killed_at, took_over) = kill_relay_leader(&mut d).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    d.processes[relay_leader].start_again(LISTENING).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.cancel();
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .unwrap()
            .unwrap();
    }
    let stopped = Instant::now();
    let ready = d.one_leader_each(Duration::from_secs(30)).await;
    let ready_after = stopped.elapsed();
    assert!(
        ready.is_ok(),
        "not one leader each after the kill: {ready:?}"
    );

    // Every accepted write stored once; the read models agree with the store.
    let accepted = accepted.lock().unwrap().clone();
    let messages = check_stored_and_published(&d, &js, &stream, &accepted).await;
    let events = messages.len();
    let ns = |t: DateTime<Utc>| t.timestamp_nanos_opt().unwrap() as i128;
    let gap = longest_gap(
        &messages,
        ns(killed_at) - 1_000_000_000,
        ns(relay_killed_at),
    );
    let relay_gap = longest_gap(&messages, ns(relay_killed_at), i128::MAX);
    println!(
        "HA stream leader {leader} killed (new leader {new_leader} reported {} ms after): accepted \
         {} writes, {events} events, longest publish gap {gap:.0} ms, a write during the election \
         visible after {} ms; then the relay's process killed: the other led after {} ms, \
         longest publish gap {relay_gap:.0} ms; both ready with one leader each {} ms after \
         the load stopped",
        elected_after.as_millis(),
        accepted.len(),
        visible_after.as_millis(),
        took_over.as_millis(),
        ready_after.as_millis()
    );
    assert!(accepted.len() > 100, "too little load: {}", accepted.len());
    // Generous: JetStream's own election takes 4-5 s here; before ADR 0043 the gap
    // was 11.2 s. Measured since: 4.3-7.7 s (docs/reliability.md).
    assert!(gap < 10_000.0, "publish gap {gap:.0} ms");
    // The standby polls the lock every second and catches up from the checkpoint.
    assert!(
        relay_gap < 5_000.0,
        "publish gap after the relay's kill {relay_gap:.0} ms"
    );
    // Issue 18: a command accepted during a NATS fault is visible within 2 s
    // (measured 0.2-0.8 s, through the projectors' PostgreSQL fallback).
    assert!(
        visible_after < Duration::from_secs(2),
        "probe after {visible_after:?}"
    );
}

/// The gauge `shopfloor_leader{lock}` summed over both processes.
async fn leader_gauge(d: &Deployment, lock: &str) -> f64 {
    let mut sum = 0.0;
    for i in 0..2 {
        let text = http()
            .get(format!("{}/metrics", d.base(i)))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let line = format!("shopfloor_leader{{lock=\"{lock}\"}} ");
        sum += text
            .lines()
            .find_map(|l| l.strip_prefix(&line))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
    }
    sum
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ha_postgres_restart_leaves_one_process_manager() {
    let nats = PrivateNats::start();
    let mut d = Deployment::start(PrivatePg::start(), nats.url(), 1).await;
    d.register(&["m-ha-0"]).await;
    let before = d.one_leader_each(Duration::from_secs(30)).await.unwrap();
    d.pg.stop("immediate");
    let down = Instant::now();
    // The leaders notice without PostgreSQL: nobody leads while it is down.
    let stepped_down = loop {
        let gauges = leader_gauge(&d, "process_manager").await + leader_gauge(&d, "relay").await;
        if gauges == 0.0 {
            break down.elapsed();
        }
        assert!(
            down.elapsed() < Duration::from_secs(10),
            "still leading: {gauges}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    d.pg.start_again();
    let up = Instant::now();
    let after = d.one_leader_each(Duration::from_secs(20)).await;
    let settled = up.elapsed();
    assert!(after.is_ok(), "{after:?}");
    // And it stays that way: never two, for 3 s of samples.
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(3) {
        let status = d.leading().await;
        Leaders::from_status(&status).unwrap();
        assert_eq!(leader_gauge(&d, "process_manager").await, 1.0);
        assert_eq!(leader_gauge(&d, "relay").await, 1.0);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "HA postgres restart: leaders before {before:?}, after {:?}; stepped down {} ms after \
         PostgreSQL stopped, one leader each {} ms after it was back",
        after.unwrap(),
        stepped_down.as_millis(),
        settled.as_millis()
    );
    for p in &mut d.processes {
        assert!(p.terminate().await.is_some_and(|s| s.success()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ha_nats_url_with_dead_first_servers_starts() {
    let nats = PrivateNats::start();
    let dead = [free_port(), free_port()];
    let urls = format!(
        "nats://127.0.0.1:{},nats://127.0.0.1:{},{}",
        dead[0],
        dead[1],
        nats.url()
    );
    let d = Deployment::start(PrivatePg::start(), urls, 1).await;
    d.register(&["m-ha-0"]).await;
    d.one_leader_each(Duration::from_secs(30)).await.unwrap();
    let r = http()
        .post(format!("{}/api/v1/machines/events", d.base(1)))
        .bearer_auth(ADMIN)
        .json(
            &json!({ "event_type": "parts_produced", "machine_id": "m-ha-0",
            "timestamp": floor_time().to_rfc3339(), "good": 3, "scrap": 0 }),
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let deadline = Instant::now() + Duration::from_secs(20);
    while good_count(&d, 0, "m-ha-0").await != Some(3) {
        assert!(
            Instant::now() < deadline,
            "the write never reached the read model"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The replicas of the stream and of each of its consumers, as JetStream reports them
/// (None while it does not answer: a replica change elects new leaders).
async fn replicas(
    js: &async_nats::jetstream::Context,
    stream: &str,
) -> Option<(usize, Vec<usize>)> {
    use futures::StreamExt;
    let mut s = js.get_stream(stream).await.ok()?;
    let info = s.info().await.ok()?;
    let stream_replicas = info.cluster.as_ref().map_or(1, |c| c.replicas.len() + 1);
    let names: Vec<_> = s.consumer_names().collect().await;
    let mut consumers = Vec::new();
    for name in names {
        let mut c: async_nats::jetstream::consumer::PullConsumer =
            s.get_consumer(&name.ok()?).await.ok()?;
        let ci = c.info().await.ok()?;
        consumers.push(ci.cluster.as_ref().map_or(1, |c| c.replicas.len() + 1));
    }
    Some((stream_replicas, consumers))
}

/// One durable consumer per projection.
const PROJECTIONS: usize = shopfloor_projections::Projection::ALL.len();

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ha_stream_replicas_move_from_one_to_three() {
    let cluster = PrivateNatsCluster::start(3);
    let mut d = Deployment::start(PrivatePg::start(), cluster.urls(), 1).await;
    d.one_leader_each(Duration::from_secs(30)).await.unwrap();
    let stream = format!("{}_EVENTS", d.namespace);
    let nats = async_nats::connect(cluster.urls().split(',').collect::<Vec<_>>())
        .await
        .unwrap();
    let js = async_nats::jetstream::new(nats);
    let deadline = Instant::now() + Duration::from_secs(30);
    let before = loop {
        let r = replicas(&js, &stream).await;
        if r.as_ref().is_some_and(|(_, c)| c.len() == PROJECTIONS) || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(before, Some((1, vec![1; PROJECTIONS])), "R1 at first");
    // Both processes restarted with SHOPFLOOR_STREAM_REPLICAS=3.
    for p in &mut d.processes {
        assert!(p.terminate().await.is_some_and(|s| s.success()));
    }
    d.processes.clear();
    for i in 0..2 {
        let env = d.env(i, 3);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        d.processes
            .push(Shopfloor::start(&[], &env, LISTENING).await);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let after = loop {
        let r = replicas(&js, &stream).await;
        if r == Some((3, vec![3; PROJECTIONS])) || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    println!("HA replicas: stream and consumers {before:?} -> {after:?}");
    assert_eq!(
        after,
        Some((3, vec![3; PROJECTIONS])),
        "the stream and its consumers at R3"
    );
}
