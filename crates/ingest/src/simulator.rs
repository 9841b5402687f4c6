//! A plant simulator publishing to the broker: states with reasons, counts with
//! scrap, a 16-bit counter that rolls over, noisy telemetry, and one machine whose
//! vibration slowly degrades. JSON topics by default, Sparkplug B with `sparkplug`.
//!
//! The binary registers [`simulated_machines`] through the command service first
//! (registration is a command, not a sensor message), then calls [`simulate`].
//!
//! # A plant that tells the truth (issue 14)
//! - Every machine runs at a steady fraction of its ideal rate (its `speed`, 72 to 86 %): a
//!   running machine accrues `tick period × speed / ideal cycle time` parts per tick and
//!   reports the whole ones, carrying the fraction, so performance never exceeds its speed
//!   (and never 100 %) whatever the tick rate.
//! - With a [`DemoFloor`] shared with the demo director (`crate::demo`), counts name the order
//!   the machine is running, and about half of the stops are reported without a reason, to be
//!   classified later as a person would.

use std::time::Duration;

use chrono::Utc;
use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rumqttc::{Event, LastWill, Packet, QoS};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{info, instrument};
use url::Url;

use crate::config::broker_of;
use crate::error::IngestError;
use crate::mqtt::{event_loop, mqtt_options};
use crate::sparkplug::{proto, NAMESPACE};

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimulatorConfig {
    pub mqtt_url: Url,
    pub namespace: String,
    pub machines: usize,
    /// Ticks per second; every machine publishes telemetry (and usually a count) per tick.
    pub rate: f64,
    /// Publish Sparkplug B (group = namespace, one edge node per line) instead of JSON.
    pub sparkplug: bool,
    pub seed: u64,
    /// Stop after this many ticks (`None`: until cancelled).
    pub ticks: Option<u64>,
    /// Machine ids are `{prefix}-000`, `{prefix}-001`, …
    pub prefix: String,
    /// Orders to report counts against and stops to classify later (the demo director's).
    pub floor: Option<std::sync::Arc<DemoFloor>>,
    /// Multiplies every machine's ideal cycle time (1 for the demo; tests that need many
    /// parts in a few seconds make the machines faster, never faster than their ideal).
    pub cycle_scale: f64,
}

impl SimulatorConfig {
    pub fn new(mqtt_url: Url, namespace: impl Into<String>, machines: usize, rate: f64) -> Self {
        Self {
            mqtt_url,
            namespace: namespace.into(),
            machines,
            rate,
            sparkplug: false,
            seed: 7,
            ticks: None,
            prefix: "sim".to_string(),
            floor: None,
            cycle_scale: 1.0,
        }
    }
}

/// A machine the simulator plays, to be registered before simulating.
#[derive(Debug, Clone, PartialEq)]
pub struct SimulatedMachine {
    pub machine_id: String,
    pub machine_type: String,
    pub line: String,
    pub ideal_cycle_time_s: f64,
}

/// What a simulation published.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimulationReport {
    pub ticks: u64,
    pub published: u64,
    pub acknowledged: u64,
}

/// The machine that degrades (its vibration drifts up).
pub const DEGRADING: usize = 0;
/// The machine whose 16-bit good counter rolls over.
pub const ROLLOVER: usize = 1;

const TYPES: [&str; 4] = ["press", "lathe", "mill", "welder"];
const STOP_REASONS: [&str; 4] = [
    "breakdown.mechanical",
    "small_stop.jam",
    "setup.changeover",
    "small_stop.starved",
];

/// Why simulated scrap was rejected (ADR 0050), taken in turn (no draw from the random
/// stream, so the rest of a seeded run stays as it was); mostly out of tolerance.
const SCRAP_REASONS: [&str; 5] = [
    "scrap.dimensional",
    "scrap.surface",
    "scrap.dimensional",
    "scrap.material",
    "scrap.startup",
];

/// The simulated plant's machines: `{prefix}-000`, `{prefix}-001`, … five per line.
pub fn simulated_machines(config: &SimulatorConfig) -> Vec<SimulatedMachine> {
    (0..config.machines)
        .map(|i| SimulatedMachine {
            machine_id: format!("{}-{i:03}", config.prefix),
            machine_type: TYPES[i % TYPES.len()].to_string(),
            line: format!("line-{}", i / 5 + 1),
            ideal_cycle_time_s: (1.0 + (i % TYPES.len()) as f64) * config.cycle_scale,
        })
        .collect()
}

struct Sim {
    state: &'static str,
    reason: Option<&'static str>,
    remaining: u32,
    good_total: u64,
    scrap_total: u64,
    /// Fraction of the ideal rate the machine runs at.
    speed: f64,
    /// Parts begun but not finished.
    progress: f64,
}

/// The whole parts a machine finishes in `dt_s` seconds of running at `speed` of its ideal
/// rate; the unfinished fraction stays in `progress`. Never more than
/// `dt_s × speed / ideal_cycle_time_s` over any run, so performance stays at or below `speed`.
pub fn parts_in(progress: &mut f64, dt_s: f64, ideal_cycle_time_s: f64, speed: f64) -> u64 {
    if !(dt_s > 0.0 && ideal_cycle_time_s > 0.0 && speed > 0.0) {
        return 0;
    }
    *progress += dt_s * speed / ideal_cycle_time_s;
    let whole = progress.floor();
    *progress -= whole;
    whole as u64
}

/// An order a simulated machine is running, as the demo director set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoOrder {
    pub order_id: String,
    pub quantity: u64,
    /// Good parts reported for it so far.
    pub made: u64,
}

/// A stop the simulator reported without a reason, with the reason a person will give it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopToClassify {
    pub machine_id: String,
    pub stop_at: chrono::DateTime<Utc>,
    pub reason_code: &'static str,
}

/// What the simulator and the demo director share: the order each machine runs (by machine
/// index) and the stops waiting for a reason.
#[derive(Debug, Default)]
pub struct DemoFloor {
    pub orders: std::sync::Mutex<Vec<Option<DemoOrder>>>,
    pub stops: std::sync::Mutex<Vec<StopToClassify>>,
}

impl DemoFloor {
    pub fn new(machines: usize) -> Self {
        Self {
            orders: std::sync::Mutex::new(vec![None; machines]),
            stops: std::sync::Mutex::default(),
        }
    }

    /// The order machine `i` runs, counting `good` parts to it.
    fn record(&self, i: usize, good: u64) -> Option<String> {
        let mut orders = self.orders.lock().unwrap_or_else(|p| p.into_inner());
        let order = orders.get_mut(i)?.as_mut()?;
        order.made += good;
        Some(order.order_id.clone())
    }

    fn stopped(&self, stop: StopToClassify) {
        self.stops
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(stop);
    }
}

fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.gen::<f64>().max(1e-12);
    let u2: f64 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

fn metric(
    name: &str,
    alias: u64,
    datatype: u32,
    value: proto::Value,
    birth: bool,
) -> proto::Metric {
    proto::Metric {
        name: birth.then(|| name.to_string()),
        alias: Some(alias),
        datatype: birth.then_some(datatype),
        value: Some(value),
        ..Default::default()
    }
}

fn sp_payload(seq: Option<u64>, metrics: Vec<proto::Metric>) -> Vec<u8> {
    proto::Payload {
        timestamp: u64::try_from(Utc::now().timestamp_millis()).ok(),
        metrics,
        seq,
        uuid: None,
        body: None,
    }
    .encode_to_vec()
}

/// Publishes the simulated plant until `cancel` fires (or `ticks` ran out), then
/// waits (up to 10 s) for the broker to acknowledge what was published.
#[instrument(skip_all, fields(machines = config.machines, rate = config.rate, sparkplug = config.sparkplug), err)]
pub async fn simulate(
    config: SimulatorConfig,
    cancel: CancellationToken,
) -> Result<SimulationReport, IngestError> {
    if !(config.rate > 0.0 && config.rate.is_finite()) {
        return Err(IngestError::Config(
            "the rate must be a positive number".into(),
        ));
    }
    let (host, port) = broker_of(&config.mqtt_url)?;
    let ns = config.namespace.clone();
    let machines = simulated_machines(&config);
    let lines: Vec<String> = {
        let mut l: Vec<String> = machines.iter().map(|m| m.line.clone()).collect();
        l.dedup();
        l
    };
    let mut options = mqtt_options(
        format!("{ns}-simulator-{}", config.seed),
        host,
        port,
        Duration::from_secs(30),
    );
    options.set_clean_session(true).set_manual_acks(false);
    crate::mqtt::apply_url(&mut options, &config.mqtt_url)?;
    let bd_seq = config.seed % 256;
    if config.sparkplug {
        if let Some(line) = lines.first() {
            let will = sp_payload(
                None,
                vec![metric(
                    "bdSeq",
                    0,
                    proto::datatype::UINT64,
                    proto::Value::LongValue(bd_seq),
                    true,
                )],
            );
            options.set_last_will(LastWill::new(
                format!("{NAMESPACE}/{ns}/NDEATH/{line}"),
                will,
                QoS::AtLeastOnce,
                false,
            ));
        }
    }
    let (client, mut eventloop) = event_loop(options, 10_000);
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let acked_in = acked.clone();
    let stop_loop = CancellationToken::new();
    let stop_in = stop_loop.clone();
    let driver = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop_in.cancelled() => break,
                e = eventloop.poll() => match e {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        acked_in.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "simulator connection error");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        }
    });

    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut sims: Vec<Sim> = machines
        .iter()
        .enumerate()
        .map(|(i, _)| Sim {
            state: "running",
            reason: None,
            remaining: 0,
            good_total: if i == ROLLOVER { 65_500 } else { 0 },
            scrap_total: 0,
            speed: rng.gen_range(0.72..0.86),
            progress: 0.0,
        })
        .collect();
    let mut published = 0u64;
    let publish = |topic: String, payload: Vec<u8>| {
        let client = client.clone();
        async move {
            client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .map_err(|e| IngestError::Mqtt(e.to_string()))
        }
    };
    // Sparkplug births.
    let mut seqs: Vec<u64> = vec![0; lines.len()];
    if config.sparkplug {
        for (li, line) in lines.iter().enumerate() {
            publish(
                format!("{NAMESPACE}/{ns}/NBIRTH/{line}"),
                sp_payload(
                    Some(0),
                    vec![metric(
                        "bdSeq",
                        0,
                        proto::datatype::UINT64,
                        proto::Value::LongValue(bd_seq),
                        true,
                    )],
                ),
            )
            .await?;
            published += 1;
            for (i, m) in machines.iter().enumerate().filter(|(_, m)| &m.line == line) {
                seqs[li] = (seqs[li] + 1) % 256;
                publish(
                    format!("{NAMESPACE}/{ns}/DBIRTH/{line}/{}", m.machine_id),
                    sp_payload(Some(seqs[li]), device_metrics(i, &sims[i], 0.0, 0.0, true)),
                )
                .await?;
                published += 1;
            }
        }
    }
    let period = Duration::from_secs_f64(1.0 / config.rate);
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tick = 0u64;
    loop {
        if config.ticks.is_some_and(|n| tick >= n) {
            break;
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = interval.tick() => {}
        }
        tick += 1;
        // Milliseconds, as PLCs and edge gateways stamp their messages.
        let now_at = chrono::SubsecRound::trunc_subsecs(Utc::now(), 3);
        let now = now_at.to_rfc3339();
        for (i, m) in machines.iter().enumerate() {
            let sim = &mut sims[i];
            // Parts of the period that just ended, at the machine's speed (the state it was
            // in during the period; the first tick only announces the state).
            let made = if sim.state == "running" && tick > 1 {
                parts_in(
                    &mut sim.progress,
                    period.as_secs_f64(),
                    m.ideal_cycle_time_s,
                    sim.speed,
                )
            } else {
                0
            };
            let scrap = (0..made).filter(|_| rng.gen_bool(0.03)).count() as u64;
            let good = made - scrap;
            // States with reasons; every machine announces its state on the first tick,
            // so a plant never starts out "unknown".
            let mut state_changed = tick == 1;
            if sim.remaining > 0 {
                sim.remaining -= 1;
                if sim.remaining == 0 {
                    sim.state = "running";
                    sim.reason = None;
                    state_changed = true;
                }
            } else if rng.gen_bool(0.01) {
                sim.state = "down";
                let reason = STOP_REASONS[rng.gen_range(0..STOP_REASONS.len())];
                sim.reason = Some(reason);
                sim.remaining = rng.gen_range(5..30);
                state_changed = true;
                // About half the stops reach the system without a reason: someone gives
                // it later.
                if let Some(floor) = config.floor.as_ref().filter(|_| rng.gen_bool(0.5)) {
                    sim.reason = None;
                    floor.stopped(StopToClassify {
                        machine_id: m.machine_id.clone(),
                        stop_at: now_at,
                        reason_code: reason,
                    });
                }
            } else if rng.gen_bool(0.003) {
                sim.state = "idle";
                sim.reason = Some("planned.break");
                sim.remaining = rng.gen_range(10..40);
                state_changed = true;
            }
            sim.good_total += good;
            sim.scrap_total += scrap;
            // Telemetry with noise; one machine degrading.
            let drift = if i == DEGRADING {
                0.004 * tick as f64
            } else {
                0.0
            };
            let running = if sim.state == "running" { 1.0 } else { 0.0 };
            let temperature = 45.0 + 15.0 * running + 0.4 * normal(&mut rng) + drift * 2.0;
            let vibration = 1.0 + 1.5 * running + 0.08 * normal(&mut rng) + drift;
            if config.sparkplug {
                let li = lines.iter().position(|l| l == &m.line).unwrap_or(0);
                seqs[li] = (seqs[li] + 1) % 256;
                let mut metrics = device_metrics(i, sim, temperature, vibration, false);
                if !state_changed {
                    metrics.remove(0);
                }
                publish(
                    format!("{NAMESPACE}/{ns}/DDATA/{}/{}", m.line, m.machine_id),
                    sp_payload(Some(seqs[li]), metrics),
                )
                .await?;
                published += 1;
                continue;
            }
            let base = format!("{ns}/machines/{}", m.machine_id);
            if state_changed {
                let mut p = json!({"state": sim.state, "timestamp": now});
                if let Some(r) = sim.reason {
                    p["reason"] = json!(r);
                }
                publish(format!("{base}/state"), p.to_string().into_bytes()).await?;
                published += 1;
            }
            if good + scrap > 0 {
                let mut p = if i == ROLLOVER {
                    json!({"good_total": sim.good_total % 65_536, "scrap_total": sim.scrap_total, "bits": 16, "timestamp": now})
                } else if scrap > 0 {
                    let reason = SCRAP_REASONS[(tick as usize + i) % SCRAP_REASONS.len()];
                    json!({"good": good, "scrap": scrap, "scrap_reason": reason, "timestamp": now})
                } else {
                    json!({"good": good, "scrap": scrap, "timestamp": now})
                };
                if let Some(order_id) = config.floor.as_ref().and_then(|f| f.record(i, good)) {
                    p["order_id"] = json!(order_id);
                }
                publish(format!("{base}/count"), p.to_string().into_bytes()).await?;
                published += 1;
            }
            let p = json!({"timestamp": now, "temperature_c": temperature, "vibration_mm_s": vibration});
            publish(format!("{base}/telemetry"), p.to_string().into_bytes()).await?;
            published += 1;
        }
    }
    if config.sparkplug {
        for line in &lines {
            publish(
                format!("{NAMESPACE}/{ns}/NDEATH/{line}"),
                sp_payload(
                    None,
                    vec![metric(
                        "bdSeq",
                        0,
                        proto::datatype::UINT64,
                        proto::Value::LongValue(bd_seq),
                        true,
                    )],
                ),
            )
            .await?;
            published += 1;
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while acked.load(std::sync::atomic::Ordering::Relaxed) < published
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = client.try_disconnect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop_loop.cancel();
    let _ = driver.await;
    let report = SimulationReport {
        ticks: tick,
        published,
        acknowledged: acked.load(std::sync::atomic::Ordering::Relaxed),
    };
    info!(?report, "simulation finished");
    Ok(report)
}

/// A device's metrics; aliases are unique per edge node (machine index × 10 + n).
fn device_metrics(
    i: usize,
    sim: &Sim,
    temperature: f64,
    vibration: f64,
    birth: bool,
) -> Vec<proto::Metric> {
    use proto::datatype as dt;
    use proto::Value as V;
    let a = (i as u64) * 10;
    let good_type = if i == ROLLOVER {
        dt::UINT16
    } else {
        dt::UINT32
    };
    let good = if i == ROLLOVER {
        sim.good_total % 65_536
    } else {
        sim.good_total % (1 << 32)
    };
    let mut m = vec![
        metric(
            "state",
            a + 1,
            dt::STRING,
            V::StringValue(sim.state.to_string()),
            birth,
        ),
        metric(
            "reason",
            a + 2,
            dt::STRING,
            V::StringValue(sim.reason.unwrap_or("").to_string()),
            birth,
        ),
        metric("good", a + 3, good_type, V::IntValue(good as u32), birth),
        metric(
            "scrap",
            a + 4,
            dt::UINT32,
            V::IntValue(sim.scrap_total as u32),
            birth,
        ),
    ];
    if !birth {
        m.push(metric(
            "temperature_c",
            a + 5,
            dt::DOUBLE,
            V::DoubleValue(temperature),
            birth,
        ));
        m.push(metric(
            "vibration_mm_s",
            a + 6,
            dt::DOUBLE,
            V::DoubleValue(vibration),
            birth,
        ));
    } else {
        m.push(metric(
            "temperature_c",
            a + 5,
            dt::DOUBLE,
            V::DoubleValue(0.0),
            birth,
        ));
        m.push(metric(
            "vibration_mm_s",
            a + 6,
            dt::DOUBLE,
            V::DoubleValue(0.0),
            birth,
        ));
        // A birth's sensor values are placeholders: mark them null.
        for x in m.iter_mut().skip(4) {
            x.is_null = Some(true);
        }
    }
    m
}
