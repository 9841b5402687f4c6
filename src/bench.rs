//! `shopfloor bench …`: throughput and latency of the real paths, measured on
//! the real services. Progress goes to stderr; the last stdout line is one JSON
//! object with at least `ops`, `secs`, `ops_per_sec`, `p50_ms` and `p99_ms`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use shopfloor_commands::{workload, CommandContext, CommandService, Target};
use shopfloor_domain::values::MachineId;
use shopfloor_eventstore::{EventStore, Source};

/// Latency figures of a run.
pub struct Summary {
    pub ops: usize,
    pub secs: f64,
    pub latencies: Vec<Duration>,
}

impl Summary {
    fn percentile(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[i.min(self.latencies.len() - 1)].as_secs_f64() * 1000.0
    }

    pub fn json(mut self, extra: serde_json::Value) -> serde_json::Value {
        self.latencies.sort_unstable();
        let mut v = json!({
            "ops": self.ops,
            "secs": self.secs,
            "ops_per_sec": self.ops as f64 / self.secs,
            "p50_ms": self.percentile(0.50),
            "p90_ms": self.percentile(0.90),
            "p99_ms": self.percentile(0.99),
            "max_ms": self.percentile(1.0),
        });
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        v
    }
}

/// `bench commands`: C concurrent tasks send N machine commands round-robin over
/// A machines through the real command path (decide, append, durable).
pub async fn commands(
    store: EventStore,
    aggregates: usize,
    commands: usize,
    concurrency: usize,
    group_commit: bool,
) -> anyhow::Result<serde_json::Value> {
    // Without group commit: one request per transaction.
    let service = CommandService::new(store).with_group_commit(if group_commit { 256 } else { 1 });
    let run_id = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let machines: Vec<MachineId> = (0..aggregates)
        .map(|i| MachineId::new(format!("bench-{run_id}-{i}")))
        .collect::<Result<_, _>>()
        .context("machine ids")?;
    eprintln!("registering {aggregates} machines…");
    let ctx = CommandContext::new("bench", Source::System);
    for m in &machines {
        let register = Target::Machine {
            machine_id: m.clone(),
            command: workload::register(m).context("machine")?,
        };
        service
            .execute(register, &ctx)
            .await
            .context("registering a machine")?;
    }
    eprintln!("sending {commands} commands with {concurrency} concurrent tasks…");
    let next = Arc::new(AtomicUsize::new(0));
    let machines = Arc::new(machines);
    let group_before = service.group_stats();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (service, next, machines, ctx) =
            (service.clone(), next.clone(), machines.clone(), ctx.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= commands {
                    return Ok::<_, anyhow::Error>(latencies);
                }
                let target = Target::Machine {
                    machine_id: machines[i % machines.len()].clone(),
                    command: workload::command(i),
                };
                let t0 = Instant::now();
                service
                    .execute(target, &ctx)
                    .await
                    .context("a command failed")?;
                latencies.push(t0.elapsed());
                if i % 5000 == 0 && i > 0 {
                    eprintln!("  {i} commands");
                }
            }
        }));
    }
    let mut latencies = Vec::with_capacity(commands);
    for t in tasks {
        latencies.extend(t.await.context("a bench task panicked")??);
    }
    let secs = started.elapsed().as_secs_f64();
    let group = service.group_stats().since(&group_before);
    Ok(Summary {
        ops: latencies.len(),
        secs,
        latencies,
    }
    .json(json!({
        "bench": "commands",
        "aggregates": aggregates,
        "concurrency": concurrency,
        "group_commit": group_commit,
        "mean_batch": group.mean_batch(),
        "mean_transaction_ms": group.mean_transaction_ms(),
    })))
}

/// Counts what the ingest made durable for the benchmark's machines.
struct Durable<'a> {
    pool: &'a sqlx::PgPool,
    telemetry: bool,
    like: String,
    /// Events: the position counted up to, and the count so far.
    position: i64,
    events: i64,
}

impl<'a> Durable<'a> {
    async fn new(pool: &'a sqlx::PgPool, telemetry: bool, like: String) -> anyhow::Result<Self> {
        let position = sqlx::query_scalar("SELECT position FROM event_log_head")
            .fetch_one(pool)
            .await?;
        Ok(Self {
            pool,
            telemetry,
            like,
            position,
            events: 0,
        })
    }

    async fn count(&mut self) -> anyhow::Result<i64> {
        if self.telemetry {
            return Ok(sqlx::query_scalar(
                "SELECT count(*) FROM telemetry WHERE machine_id LIKE $1",
            )
            .bind(&self.like)
            .fetch_one(self.pool)
            .await?);
        }
        // Positions are gapless and in commit order: everything up to the head is
        // committed, so each event is counted exactly once.
        let head: i64 = sqlx::query_scalar("SELECT position FROM event_log_head")
            .fetch_one(self.pool)
            .await?;
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM events WHERE position > $2 AND position <= $3 \
             AND stream_type = 'machine' AND stream_id LIKE $1 \
             AND event_type IN ('MachineStateChanged', 'MachinePartsProduced') AND source = 'mqtt'",
        )
        .bind(&self.like)
        .bind(self.position)
        .bind(head)
        .persistent(false)
        .fetch_one(self.pool)
        .await?;
        self.position = head;
        self.events += n;
        Ok(self.events)
    }
}

/// Registers benchmark machines named `{prefix}-{i}` (already registered ones are kept).
pub(crate) async fn register_machines(
    service: &CommandService,
    prefix: &str,
    n: usize,
) -> anyhow::Result<Vec<MachineId>> {
    let ctx = CommandContext::new("bench", Source::System);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let m = MachineId::new(format!("{prefix}-{i}")).context("machine id")?;
        let target = Target::Machine {
            machine_id: m.clone(),
            command: workload::register(&m).context("machine")?,
        };
        match service.execute(target, &ctx).await {
            Ok(_) | Err(shopfloor_commands::CommandError::Rejected { .. }) => {}
            Err(e) => return Err(e).context("registering a machine"),
        }
        out.push(m);
    }
    Ok(out)
}

pub(crate) fn run_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_string()
}

/// Polls `check` every few milliseconds until it holds (bounded by `limit`).
async fn until<F, Fut>(limit: Duration, what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + limit;
    while !check().await? {
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

/// `bench ingest`: MQTT telemetry, then state and count messages, from a QoS 1
/// publisher through the broker and the real ingest until durable; reads the
/// broker's dropped counter before and after.
pub async fn ingest(
    settings: &crate::settings::Settings,
    pool: sqlx::PgPool,
    messages: usize,
    machines: usize,
) -> anyhow::Result<serde_json::Value> {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

    let url = settings.mqtt_url.clone().context("MQTT_URL is off")?;
    let host = url.host_str().unwrap_or("127.0.0.1").to_string();
    let port = url.port().unwrap_or(1883);
    let ns = format!("{}-bench{}", settings.namespace, run_id());
    let service = CommandService::new(EventStore::new(pool.clone())).with_group_commit(256);
    let prefix = format!("ib{}", run_id());
    let ids = register_machines(&service, &prefix, machines).await?;

    // The real ingest, in this process.
    let cancel = tokio_util::sync::CancellationToken::new();
    let (ready_tx, mut ready_rx) = tokio::sync::watch::channel(false);
    let ingest = tokio::spawn(shopfloor_ingest::run_ingest(
        service.clone(),
        shopfloor_ingest::IngestConfig::new(url.clone(), ns.clone()),
        ready_tx,
        cancel.clone(),
    ));
    tokio::time::timeout(Duration::from_secs(30), ready_rx.wait_for(|r| *r))
        .await
        .context("the ingest did not subscribe in time")??;

    // The publisher: QoS 1, TCP_NODELAY, a wide in-flight window.
    let mut options = MqttOptions::new(format!("{ns}-bench-pub"), host, port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_inflight(1000);
    let (client, mut eventloop) = AsyncClient::new(options, 10_000);
    let mut net = rumqttc::NetworkOptions::new();
    net.set_tcp_nodelay(true);
    eventloop.set_network_options(net);
    let (acked_tx, acked_rx) = tokio::sync::watch::channel(0usize);
    let (dropped_tx, dropped_rx) = tokio::sync::watch::channel(None::<u64>);
    let pump = tokio::spawn(async move {
        let mut acked = 0usize;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    acked += 1;
                    let _ = acked_tx.send(acked);
                }
                Ok(Event::Incoming(Packet::Publish(p))) if p.topic.starts_with("$SYS") => {
                    let v = String::from_utf8_lossy(&p.payload).trim().parse().ok();
                    let _ = dropped_tx.send(v);
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("publisher connection: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    });
    client
        .subscribe("$SYS/broker/publish/messages/dropped", QoS::AtMostOnce)
        .await?;
    let mut dropped_rx2 = dropped_rx.clone();
    let dropped_before = tokio::time::timeout(
        Duration::from_secs(15),
        dropped_rx2.wait_for(|v| v.is_some()),
    )
    .await
    .ok()
    .and_then(|v| v.ok().and_then(|v| *v));

    let start_floor = chrono::Utc::now()
        - chrono::Duration::seconds((messages / machines.max(1) + 10) as i64 * 60);
    let mut results = serde_json::Map::new();
    let mut total_ops = 0;
    let mut total_secs = 0.0;
    let mut total_lost = 0_i64;
    let mut latencies = Vec::new();
    for phase in ["telemetry", "state_count"] {
        let acked_start = *acked_rx.borrow();
        // What is durable so far, counted without loading the database it measures:
        // events incrementally (only those committed since the last look, by
        // position), telemetry rows as a whole.
        let like = format!("{prefix}-%");
        let mut counter = Durable::new(&pool, phase == "telemetry", like).await?;
        let before = counter.count().await?;
        eprintln!("{phase}: publishing {messages} messages…");
        let started = Instant::now();
        for i in 0..messages {
            let m = &ids[i % ids.len()];
            let k = i / ids.len();
            let at = (start_floor + chrono::Duration::seconds(k as i64 * 60)).to_rfc3339();
            let (kind, body) = if phase == "telemetry" {
                (
                    "telemetry",
                    json!({ "timestamp": at, "temperature_c": 40.0 + (i % 7) as f64 * 0.1 }),
                )
            } else if k % 2 == 0 {
                let state = if (k / 2) % 2 == 0 { "running" } else { "idle" };
                ("state", json!({ "state": state, "timestamp": at }))
            } else {
                ("count", json!({ "good": 1, "scrap": 0, "timestamp": at }))
            };
            client
                .publish(
                    format!("{ns}/machines/{}/{kind}", m.as_str()),
                    QoS::AtLeastOnce,
                    false,
                    body.to_string(),
                )
                .await?;
        }
        let target = acked_start + messages;
        let mut acked = acked_rx.clone();
        tokio::time::timeout(Duration::from_secs(600), acked.wait_for(|a| *a >= target))
            .await
            .context("the broker did not acknowledge every message")??;
        let published_in = started.elapsed().as_secs_f64();
        let expected = before + messages as i64;
        // Wait until everything is durable, or until nothing has moved for 15 s (then
        // what is missing was lost, and is reported as such).
        let mut stored = before;
        let mut last_progress = Instant::now();
        while stored < expected && last_progress.elapsed() < Duration::from_secs(15) {
            let n = counter.count().await?;
            if n > stored {
                stored = n;
                last_progress = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let lost = expected - stored;
        results.insert(format!("{phase}_lost"), json!(lost));
        total_lost += lost;
        let secs = last_progress.duration_since(started).as_secs_f64();
        eprintln!(
            "{phase}: {messages} durable in {secs:.2} s ({:.0}/s)",
            messages as f64 / secs
        );
        results.insert(
            format!("{phase}_msgs_per_sec"),
            json!(messages as f64 / secs),
        );
        results.insert(format!("{phase}_publish_secs"), json!(published_in));
        total_ops += messages;
        total_secs += secs;
        latencies.push(Duration::from_secs_f64(secs / messages as f64));
    }
    // Mosquitto republishes a $SYS figure (every sys_interval, 10 s by default) only
    // when it changed: wait one interval for a change; none means it still stands.
    let mut fresh = dropped_rx.clone();
    fresh.mark_unchanged();
    let _ = tokio::time::timeout(Duration::from_secs(11), fresh.changed()).await;
    let dropped_after = *dropped_rx.borrow();
    cancel.cancel();
    let _ = ingest.await;
    pump.abort();
    results.insert("machines".into(), json!(machines));
    results.insert("broker_dropped_before".into(), json!(dropped_before));
    results.insert("broker_dropped_after".into(), json!(dropped_after));
    results.insert("lost".into(), json!(total_lost));
    results.insert("bench".into(), json!("ingest"));
    Ok(Summary {
        ops: total_ops,
        secs: total_secs,
        latencies,
    }
    .json(serde_json::Value::Object(results)))
}

/// `bench e2e`: commands at a steady rate, and the time from accepted to visible in
/// the machines read model (relay → JetStream → projector), all in this process.
pub async fn e2e(
    settings: &crate::settings::Settings,
    pool: sqlx::PgPool,
    nats: async_nats::Client,
    rate: f64,
    secs: f64,
) -> anyhow::Result<serde_json::Value> {
    let ns = format!("{}-bench{}", settings.namespace, run_id());
    let store = EventStore::new(pool.clone());
    let service = CommandService::new(store.clone()).with_group_commit(256);
    let machines = register_machines(&service, &format!("eb{}", run_id()), 100).await?;
    let cancel = tokio_util::sync::CancellationToken::new();
    let relay = shopfloor_projections::Relay::new(store.clone(), nats.clone(), &ns);
    let relay_task = tokio::spawn({
        let cancel = cancel.clone();
        async move { relay.run(cancel).await }
    });
    let projectors = tokio::spawn({
        let (pool, nats, ns, cancel) = (pool.clone(), nats.clone(), ns.clone(), cancel.clone());
        async move {
            shopfloor_projections::run_projectors(pool, nats, &ns, Default::default(), cancel).await
        }
    });
    let visible = || async {
        let p = shopfloor_projections::projection::checkpoint(
            &pool,
            shopfloor_projections::Projection::Machines,
        )
        .await?;
        Ok::<_, anyhow::Error>(p)
    };
    // Let the projectors catch up with the registrations first.
    let head = store.head_position().await?;
    until(
        Duration::from_secs(120),
        "the projectors to catch up",
        || async { Ok(visible().await? >= head) },
    )
    .await?;

    let total = (rate * secs).round() as usize;
    eprintln!("sending {total} commands at {rate}/s…");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(i64, Instant)>();
    let sender = {
        let (service, machines) = (service.clone(), machines.clone());
        tokio::spawn(async move {
            let ctx = CommandContext::new("bench", Source::System);
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
            let mut sends = tokio::task::JoinSet::new();
            for i in 0..total {
                tick.tick().await;
                let (service, ctx, tx) = (service.clone(), ctx.clone(), tx.clone());
                let target = Target::Machine {
                    machine_id: machines[i % machines.len()].clone(),
                    command: workload::command(i),
                };
                sends.spawn(async move {
                    let out = service.execute(target, &ctx).await?;
                    let accepted = Instant::now();
                    if let Some(e) = out.events.last() {
                        let _ = tx.send((e.position, accepted));
                    }
                    Ok::<_, anyhow::Error>(())
                });
            }
            while let Some(r) = sends.join_next().await {
                r??;
            }
            Ok::<_, anyhow::Error>(())
        })
    };
    let started = Instant::now();
    let mut pending: std::collections::BTreeMap<i64, Instant> = Default::default();
    let mut latencies = Vec::with_capacity(total);
    let deadline = Instant::now() + Duration::from_secs_f64(secs + 120.0);
    while latencies.len() < total {
        anyhow::ensure!(Instant::now() < deadline, "commands never became visible");
        while let Ok((p, t)) = rx.try_recv() {
            pending.insert(p, t);
        }
        let now_visible = visible().await?;
        let seen = Instant::now();
        let done: Vec<i64> = pending.range(..=now_visible).map(|(p, _)| *p).collect();
        for p in done {
            if let Some(t) = pending.remove(&p) {
                latencies.push(seen.saturating_duration_since(t));
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    sender.await??;
    let elapsed = started.elapsed().as_secs_f64();
    cancel.cancel();
    let _ = relay_task.await;
    let _ = projectors.await;
    let js = async_nats::jetstream::new(nats);
    let _ = js
        .delete_stream(shopfloor_projections::names::events_stream(&ns))
        .await;
    Ok(Summary { ops: latencies.len(), secs: elapsed, latencies }.json(json!({
        "bench": "e2e", "rate": rate, "note": "latency: command accepted → visible in the machines read model",
    })))
}

/// Appends a generated history: `machines` machines, `days` days, a state change
/// every 20 minutes and parts every 10 minutes, decided by the real aggregates and
/// appended in large batches. Returns the machine ids and the history's start.
pub(crate) async fn generate_history(
    store: &EventStore,
    machines: usize,
    days: u32,
    line: &str,
) -> anyhow::Result<(Vec<String>, chrono::DateTime<chrono::Utc>)> {
    use shopfloor_domain::machine::{
        ChangeState, MachineCommand, MachineStatus, RecordParts, RegisterMachine,
    };
    use shopfloor_domain::values::{CycleTime, LineId, MachineType};
    use shopfloor_domain::{Decide, Machine};
    use shopfloor_eventstore::repository::AggregateRepository;
    use shopfloor_eventstore::{AppendRequest, ExpectedVersion, StreamRef};

    let start = chrono::Utc::now() - chrono::Duration::days(i64::from(days) + 1);
    let start =
        chrono::DateTime::from_timestamp(start.timestamp() / 3600 * 3600, 0).unwrap_or(start);
    let prefix = format!("qb{}", run_id());
    let steps = i64::from(days) * 24 * 6; // ten-minute steps
    let meta = std::collections::HashMap::from([("actor".to_string(), "bench".to_string())]);
    let mut ids = Vec::new();
    let mut requests = Vec::new();
    let mut appended = 0usize;
    for i in 0..machines {
        let id = MachineId::new(format!("{prefix}-{i:03}")).context("id")?;
        let stream = StreamRef::new("machine", id.as_str());
        let mut machine = Machine::default();
        let register = MachineCommand::RegisterMachine(RegisterMachine {
            machine_id: id.clone(),
            machine_type: MachineType::new("press")?,
            line: LineId::new(line)?,
            ideal_cycle_time_s: CycleTime::new(2.0)?,
            at: start,
        });
        let mut events = machine
            .execute(register)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        for s in 0..steps {
            let at = start + chrono::Duration::minutes(s * 10);
            if s % 2 == 0 {
                let state = match (s / 2 + i as i64) % 9 {
                    0 => MachineStatus::Down,
                    1 => MachineStatus::Idle,
                    _ => MachineStatus::Running,
                };
                let planned = (s / 2) % 36 == 35;
                let cmd = MachineCommand::ChangeState(ChangeState {
                    state,
                    reason: None,
                    planned: Some(planned),
                    at,
                });
                events.extend(machine.execute(cmd).map_err(|e| anyhow::anyhow!("{e}"))?);
            }
            let cmd = MachineCommand::RecordParts(RecordParts {
                good: 250 + (s % 7) as u64,
                scrap: (s % 5) as u64,
                order_id: None,
                at,
            });
            events.extend(machine.execute(cmd).map_err(|e| anyhow::anyhow!("{e}"))?);
        }
        for chunk in events.chunks(2000) {
            let new = AggregateRepository::<Machine>::new_events(&stream, chunk, &meta)?;
            appended += new.len();
            requests.push(AppendRequest {
                stream: stream.clone(),
                expected: ExpectedVersion::Any,
                events: new,
            });
        }
        if requests.len() >= 8 || i + 1 == machines {
            for r in store.append_batch(std::mem::take(&mut requests)).await? {
                r?;
            }
            eprint!("\r  {appended} events appended");
        }
        ids.push(id.as_str().to_string());
    }
    eprintln!();
    Ok((ids, start))
}

/// `bench replay`: rebuild every read model from the event store (at least `events`
/// events; a history is generated first when the store has fewer).
pub async fn replay(pool: sqlx::PgPool, events: i64) -> anyhow::Result<serde_json::Value> {
    let store = EventStore::new(pool.clone());
    let head = store.head_position().await?;
    if head < events {
        let per_machine_day = 24 * 6 + 24 * 3; // parts every 10 min + states every 20 min
        let days = 10;
        let machines = ((events - head) as usize / (per_machine_day * days as usize)).max(1) + 1;
        eprintln!("generating {} more events…", events - head);
        generate_history(&store, machines, days, "bench").await?;
    }
    let head = store.head_position().await?;
    eprintln!("replaying {head} events…");
    let started = Instant::now();
    shopfloor_projections::replay(&pool, None, |_, _| {}).await?;
    let secs = started.elapsed().as_secs_f64();
    Ok(Summary {
        ops: head as usize,
        secs,
        latencies: vec![Duration::from_secs_f64(secs)],
    }
    .json(json!({ "bench": "replay", "events_per_sec": head as f64 / secs })))
}

/// `bench query`: GET /api/v1/kpi-metrics under load over a generated history of
/// `machines` machines and `days` days, at `rate` requests per second.
pub async fn query(
    settings: &crate::settings::Settings,
    pool: sqlx::PgPool,
    machines: usize,
    days: u32,
    rate: f64,
    secs: f64,
) -> anyhow::Result<serde_json::Value> {
    let store = EventStore::new(pool.clone());
    eprintln!("generating {machines} machines × {days} days of history…");
    let (ids, start) = generate_history(&store, machines, days, "bench").await?;
    eprintln!("building the read models…");
    shopfloor_projections::replay(&pool, None, |_, _| {}).await?;
    let token = format!("bench-{}-{}", run_id(), run_id());
    let state = shopfloor_api::AppState::new(
        shopfloor_commands::CommandService::new(store),
        shopfloor_api::Readiness::default(),
        None,
        Some(secrecy::SecretString::from(token.clone())),
        settings.namespace.clone(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let router = shopfloor_api::router_with_limits(state, shopfloor_api::RateLimits::unlimited());
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let client = reqwest_like::Client::new(addr, token);
    let total = (rate * secs).round() as usize;
    eprintln!("{total} KPI queries at {rate}/s…");
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let mut set = tokio::task::JoinSet::new();
    let started = Instant::now();
    for i in 0..total {
        tick.tick().await;
        // A day or a shift somewhere in the history, for one machine.
        let day = (i * 7919) % days as usize;
        let from = start
            + chrono::Duration::days(day as i64)
            + chrono::Duration::hours(((i % 3) * 8) as i64);
        let to = from
            + if i % 2 == 0 {
                chrono::Duration::hours(8)
            } else {
                chrono::Duration::hours(24)
            };
        let path = format!(
            "/api/v1/kpi-metrics?machine_id={}&from={}&to={}",
            ids[(i * 31) % ids.len()],
            from.format("%Y-%m-%dT%H:%M:%SZ"),
            to.format("%Y-%m-%dT%H:%M:%SZ")
        );
        let client = client.clone();
        set.spawn(async move {
            let t0 = Instant::now();
            let status = client.get(&path).await?;
            anyhow::ensure!(status == 200, "GET {path} answered {status}");
            Ok::<_, anyhow::Error>(t0.elapsed())
        });
    }
    let mut latencies = Vec::with_capacity(total);
    while let Some(r) = set.join_next().await {
        latencies.push(r??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    server.abort();
    Ok(Summary {
        ops: latencies.len(),
        secs: elapsed,
        latencies,
    }
    .json(json!({
        "bench": "query", "machines": machines, "days": days, "rate": rate,
        "history_events": EventStore::new(pool).head_position().await?,
    })))
}

/// A minimal keep-alive HTTP/1.1 GET client over hyper's connection pool would
/// pull more crates in; plain per-request TCP is close to what a dashboard does.
mod reqwest_like {
    use std::net::SocketAddr;
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[derive(Clone)]
    pub struct Client {
        addr: SocketAddr,
        token: Arc<String>,
    }

    impl Client {
        pub fn new(addr: SocketAddr, token: String) -> Self {
            Self {
                addr,
                token: Arc::new(token),
            }
        }

        /// GET `path`; returns the status code (the body is read and dropped).
        pub async fn get(&self, path: &str) -> anyhow::Result<u16> {
            let mut s = tokio::net::TcpStream::connect(self.addr).await?;
            s.set_nodelay(true)?;
            let req = format!(
                "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
                self.addr, self.token
            );
            s.write_all(req.as_bytes()).await?;
            let mut buf = Vec::with_capacity(4096);
            s.read_to_end(&mut buf).await?;
            let head = String::from_utf8_lossy(&buf[..buf.len().min(16)]);
            let status = head
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            Ok(status)
        }
    }
}
