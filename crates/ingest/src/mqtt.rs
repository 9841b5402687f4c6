//! The MQTT side: one persistent session at QoS 1, manual acknowledgements after
//! commit, reconnection with backoff, and the batching loop.
//!
//! Two tasks:
//! - the **event loop** task polls `rumqttc` (TCP_NODELAY on, clean session off,
//!   manual acks), subscribes on every CONNACK (the broker keeps the session, but a
//!   fresh one needs the subscriptions again), flips the readiness flag, and hands
//!   every PUBLISH to the processor through a bounded channel;
//! - the **processor** gathers a batch (up to `batch_max` messages, or `batch_linger`
//!   after the first), gives each message its identity (`identify`: an explicit
//!   `msg_id`, or a fresh id remembered under the packet id of the session, which a
//!   DUP redelivery of the packet gets back; ADR 0034), has the [`Engine`] commit it,
//!   and only then acknowledges each message. A failed batch is retried with backoff
//!   and never acknowledged before it commits, so a crash loses nothing: the broker
//!   redelivers, and the redelivery, having its first delivery's id, is a no-op.
//!
//! With Sparkplug on, the ingest is a Sparkplug 3.0 host application: it publishes
//! `spBv1.0/STATE/{host_id}` `{"online": true, "timestamp": T}` (QoS 1, retained) once
//! subscribed, with the matching `online: false` as its will and before a clean exit.
//!
//! On cancellation the processor finishes its batch, acknowledges it, and the event
//! loop is stopped after the acknowledgements went out.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rumqttc::{
    AsyncClient, Event, EventLoop, LastWill, MqttOptions, NetworkOptions, Packet, Publish, QoS,
};
use shopfloor_commands::CommandService;
use sqlx::PgPool;
use tokio::sync::{mpsc, watch};
use tokio_rustls::rustls;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, instrument, warn};

use crate::config::IngestConfig;
use crate::engine::Engine;
use crate::error::IngestError;
use crate::message::{keys_to_load, plan_identities, Delivery, Incoming};
use crate::sparkplug;
use crate::store::{self, RejectedRow};

/// The Sparkplug host application's STATE topic and its two payloads (online,
/// offline), stamped with one time per process (Sparkplug 3.0: the will and the
/// birth carry the same timestamp).
#[derive(Debug, Clone)]
pub(crate) struct HostState {
    pub topic: String,
    pub online: Vec<u8>,
    pub offline: Vec<u8>,
}

impl HostState {
    pub(crate) fn new(host_id: &str, at_ms: i64) -> Self {
        let body =
            |online: bool| serde_json::json!({"online": online, "timestamp": at_ms}).to_string();
        Self {
            topic: sparkplug::state_topic(host_id),
            online: body(true).into_bytes(),
            offline: body(false).into_bytes(),
        }
    }

    fn is_offline_notice(&self, publish: &Publish) -> bool {
        publish.topic == self.topic
            && serde_json::from_slice::<serde_json::Value>(&publish.payload)
                .ok()
                .and_then(|v| v.get("online").and_then(serde_json::Value::as_bool))
                == Some(false)
    }
}

/// The topic filters the ingest subscribes to.
pub fn subscriptions(config: &IngestConfig) -> Vec<String> {
    let ns = &config.namespace;
    let mut topics = vec![
        format!("{ns}/machines/+/state"),
        format!("{ns}/machines/+/count"),
        format!("{ns}/machines/+/telemetry"),
        // ISA-95 paths (ADR 0062): site/area/line/cell/machine, and site/area/line/machine.
        format!("{ns}/+/+/+/+/+/state"),
        format!("{ns}/+/+/+/+/+/count"),
        format!("{ns}/+/+/+/+/+/telemetry"),
        format!("{ns}/+/+/+/+/state"),
        format!("{ns}/+/+/+/+/count"),
        format!("{ns}/+/+/+/+/telemetry"),
    ];
    if config.mapping.sparkplug.enabled {
        topics.push(sparkplug::state_topic(&sparkplug_host_id(config)));
        topics.push(format!("{}/{ns}/#", sparkplug::NAMESPACE));
        for g in &config.mapping.sparkplug.groups {
            if g != ns {
                topics.push(format!("{}/{g}/#", sparkplug::NAMESPACE));
            }
        }
    }
    topics
}

/// The Sparkplug host id: the mapping's `sparkplug.host_id`, else the client id.
pub fn sparkplug_host_id(config: &IngestConfig) -> String {
    config
        .mapping
        .sparkplug
        .host_id
        .clone()
        .unwrap_or_else(|| config.client_id())
}

/// Builds the client options: persistent session, manual acks, large packets.
pub(crate) fn mqtt_options(
    client_id: String,
    host: String,
    port: u16,
    keep_alive: Duration,
) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, host, port);
    options
        .set_clean_session(false)
        .set_manual_acks(true)
        .set_keep_alive(keep_alive)
        .set_max_packet_size(32 * 1024 * 1024, 32 * 1024 * 1024)
        .set_inflight(1000);
    options
}

/// Applies what the URL says beyond host and port: credentials (`user:pass@`,
/// percent-decoded) and, for `mqtts://`, TLS with rustls (ring), trusting the PEM file
/// named by `?ca=` or else the system's root certificates.
pub(crate) fn apply_url(options: &mut MqttOptions, url: &url::Url) -> Result<(), IngestError> {
    if !url.username().is_empty() {
        options.set_credentials(
            percent_decode(url.username()),
            percent_decode(url.password().unwrap_or("")),
        );
    }
    if crate::config::is_tls(url) {
        let config = tls_config(url)?;
        options.set_transport(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(Arc::new(config)),
        ));
    }
    Ok(())
}

fn tls_config(url: &url::Url) -> Result<rustls::ClientConfig, IngestError> {
    let bad = |what: String| IngestError::Config(what);
    let mut roots = rustls::RootCertStore::empty();
    let ca = url
        .query_pairs()
        .find(|(k, _)| k == "ca")
        .map(|(_, v)| v.into_owned());
    match ca {
        Some(path) => {
            let pem = std::fs::read(&path)
                .map_err(|e| bad(format!("cannot read the MQTT CA file {path}: {e}")))?;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert =
                    cert.map_err(|e| bad(format!("invalid PEM in the MQTT CA file {path}: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| bad(format!("invalid certificate in {path}: {e}")))?;
            }
            if roots.is_empty() {
                return Err(bad(format!("no certificate in the MQTT CA file {path}")));
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(native.certs);
            if added == 0 {
                return Err(bad(
                    "no system root certificates; name a CA file with mqtts://...?ca=/path/ca.pem"
                        .into(),
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// `%XX` escapes of a URL's user or password, decoded.
fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An event loop with TCP_NODELAY on (DESIGN trap 9: Nagle delays the PUBACKs).
pub(crate) fn event_loop(options: MqttOptions, capacity: usize) -> (AsyncClient, EventLoop) {
    let (client, mut eventloop) = AsyncClient::new(options, capacity);
    let mut network = NetworkOptions::new();
    network.set_tcp_nodelay(true);
    network.set_connection_timeout(5);
    eventloop.set_network_options(network);
    (client, eventloop)
}

/// Runs the ingest until `cancel` fires. `ready` is true while the subscription
/// stands (for `/readyz`).
#[instrument(skip_all, fields(namespace = %config.namespace), err)]
pub async fn run_ingest(
    commands: CommandService,
    config: IngestConfig,
    ready: watch::Sender<bool>,
    cancel: CancellationToken,
) -> Result<(), IngestError> {
    let (host, port) = config.broker()?;
    if config.namespace.is_empty() || config.namespace.contains(['+', '#', '/']) {
        return Err(IngestError::Config(format!(
            "namespace {:?} cannot be an MQTT topic root",
            config.namespace
        )));
    }
    let pool = commands.store().pool().clone();
    store::maintain_telemetry(&pool, &config.telemetry).await?;
    let mapping = Arc::new(config.mapping.clone());
    let engine = Engine::load(commands, &config.namespace, mapping, Utc::now()).await?;

    let mut options = mqtt_options(config.client_id(), host, port, config.keep_alive);
    apply_url(&mut options, &config.mqtt_url)?;
    let host_id = sparkplug_host_id(&config);
    if config.mapping.sparkplug.enabled && (host_id.is_empty() || host_id.contains(['+', '#', '/']))
    {
        return Err(IngestError::Config(format!(
            "Sparkplug host id {host_id:?} cannot be an MQTT topic level"
        )));
    }
    let host_state = config
        .mapping
        .sparkplug
        .enabled
        .then(|| HostState::new(&host_id, Utc::now().timestamp_millis()));
    if let Some(h) = &host_state {
        options.set_last_will(LastWill::new(
            h.topic.clone(),
            h.offline.clone(),
            QoS::AtLeastOnce,
            true,
        ));
    }
    let (client, eventloop) = event_loop(options, 100_000);
    let (tx, rx) = mpsc::channel::<Publish>(config.batch_max.max(1) * 4);
    let stop_polling = CancellationToken::new();
    let poller = tokio::spawn(poll_loop(
        eventloop,
        client.clone(),
        PollSettings {
            topics: subscriptions(&config),
            host_state: host_state.clone(),
            max_backoff: config.max_backoff,
        },
        tx,
        ready.clone(),
        stop_polling.clone(),
    ));
    let result = process_loop(engine, pool, &config, client.clone(), rx, cancel).await;
    // Say the host goes offline, let the last acknowledgements go out, then leave
    // (the session stays).
    if let Some(h) = &host_state {
        let _ = client.try_publish(h.topic.clone(), QoS::AtLeastOnce, true, h.offline.clone());
    }
    let _ = client.try_disconnect();
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        _ = wait_finished(&poller) => {}
    }
    stop_polling.cancel();
    let _ = poller.await;
    ready.send_replace(false);
    result
}

async fn wait_finished(handle: &tokio::task::JoinHandle<()>) {
    while !handle.is_finished() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What the event loop task needs besides its channels.
struct PollSettings {
    topics: Vec<String>,
    host_state: Option<HostState>,
    max_backoff: Duration,
}

/// Drives the MQTT connection.
async fn poll_loop(
    mut eventloop: EventLoop,
    client: AsyncClient,
    settings: PollSettings,
    tx: mpsc::Sender<Publish>,
    ready: watch::Sender<bool>,
    stop: CancellationToken,
) {
    let PollSettings {
        topics,
        host_state,
        max_backoff,
    } = settings;
    let mut backoff = Duration::from_millis(100);
    let mut pending_subscription = false;
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => break,
            e = eventloop.poll() => e,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                info!(
                    session_present = ack.session_present,
                    "connected to the MQTT broker"
                );
                metrics::gauge!("shopfloor_ingest_connected").set(1.0);
                backoff = Duration::from_millis(100);
                let filters = topics
                    .iter()
                    .map(|t| rumqttc::SubscribeFilter::new(t.clone(), QoS::AtLeastOnce));
                if let Err(e) = client.try_subscribe_many(filters) {
                    warn!(error = %e, "could not subscribe");
                } else {
                    pending_subscription = true;
                }
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                let refused = ack
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure));
                if pending_subscription && !refused {
                    pending_subscription = false;
                    ready.send_replace(true);
                    info!("subscribed");
                    if let Some(h) = &host_state {
                        publish_online(&client, h);
                    }
                } else if refused {
                    error!("the broker refused a subscription");
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish)))
                if host_state
                    .as_ref()
                    .is_some_and(|h| publish.topic == h.topic) =>
            {
                // Our own STATE: someone (or our old will) says we are offline.
                if let Some(h) = host_state
                    .as_ref()
                    .filter(|h| h.is_offline_notice(&publish))
                {
                    publish_online(&client, h);
                }
                if let Err(e) = client.try_ack(&publish) {
                    warn!(error = %e, "ack of the STATE message not sent");
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    sent = tx.send(publish) => if sent.is_err() { break },
                }
            }
            Ok(Event::Incoming(Packet::Disconnect)) => {
                ready.send_replace(false);
            }
            Ok(other) => debug!(?other, "mqtt event"),
            Err(e) => {
                ready.send_replace(false);
                metrics::gauge!("shopfloor_ingest_connected").set(0.0);
                metrics::counter!("shopfloor_ingest_reconnects_total").increment(1);
                warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "MQTT connection lost");
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(max_backoff);
            }
        }
    }
    ready.send_replace(false);
}

/// Publishes the host application's online STATE (retained, QoS 1).
fn publish_online(client: &AsyncClient, h: &HostState) {
    if let Err(e) = client.try_publish(h.topic.clone(), QoS::AtLeastOnce, true, h.online.clone()) {
        warn!(error = %e, "Sparkplug STATE not published");
    }
}

/// Gives each publish of a batch its identity (ADR 0034): loads what the session
/// remembers of the DUP packets and explicit `msg_id`s, plans, and remembers the
/// new ids (recording the repeats as notices) before the batch is processed.
async fn identify_once(
    pool: &PgPool,
    namespace: &str,
    scope: &str,
    publishes: &[Publish],
) -> Result<Vec<Incoming>, IngestError> {
    let now = Utc::now();
    let deliveries: Vec<Delivery> = publishes
        .iter()
        .map(|p| Delivery {
            topic: p.topic.clone(),
            payload: p.payload.clone(),
            acknowledged: p.qos != QoS::AtMostOnce,
            pkid: p.pkid,
            dup: p.dup,
            keyed: !matches!(
                crate::json::parse_topic(namespace, &p.topic),
                Some((_, crate::json::JsonKind::Telemetry))
            ),
        })
        .collect();
    let known = store::load_identities(pool, scope, &keys_to_load(&deliveries)).await?;
    let plan = plan_identities(&deliveries, &known, now, crate::message::fresh_message_id);
    let batch: Vec<Incoming> = deliveries
        .into_iter()
        .zip(&plan.identities)
        .map(|(d, identity)| Incoming {
            topic: d.topic,
            payload: d.payload,
            received_at: now,
            id: identity.message_id.clone(),
        })
        .collect();
    let notices: Vec<RejectedRow> = batch
        .iter()
        .zip(&plan.identities)
        .filter_map(|(m, identity)| {
            let reason = identity.repeat.clone()?;
            metrics::counter!("shopfloor_ingest_repeats_total").increment(1);
            Some(RejectedRow {
                message_id: m.id.clone(),
                topic: m.topic.clone(),
                reason,
                payload: crate::message::bounded_payload(&m.payload),
                payload_bytes: i32::try_from(m.payload.len()).unwrap_or(i32::MAX),
                notice: true,
                received_at: now,
            })
        })
        .collect();
    store::save_identities(pool, scope, &plan.remember, &notices).await?;
    Ok(batch)
}

/// [`identify_once`], retried with backoff; `None` when cancelled first.
pub(crate) async fn identify(
    pool: &PgPool,
    namespace: &str,
    scope: &str,
    publishes: &[Publish],
    max_backoff: Duration,
    cancel: &CancellationToken,
) -> Option<Vec<Incoming>> {
    let mut backoff = Duration::from_millis(50);
    loop {
        match identify_once(pool, namespace, scope, publishes).await {
            Ok(batch) => return Some(batch),
            Err(e) => {
                error!(error = %e, "message identities not stored; retrying");
                tokio::select! {
                    _ = cancel.cancelled() => return None,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(max_backoff);
            }
        }
    }
}

/// What a rejection says about an internal failure: its kind, never the raw
/// database message (which can quote a whole value); the log has the details.
fn failure_reason(e: &IngestError) -> String {
    let kind = match e {
        IngestError::Database(sqlx::Error::Database(db)) => {
            format!(
                "the database refused it (SQLSTATE {})",
                db.code().unwrap_or_default()
            )
        }
        IngestError::Database(_) => "a database failure".to_string(),
        IngestError::Store(_) => "the event store refused it".to_string(),
        IngestError::Command(_) => "the command could not be recorded".to_string(),
        IngestError::Config(_) | IngestError::MappingFile { .. } => "a configuration error".into(),
        IngestError::Mqtt(_) => "an MQTT client failure".to_string(),
    };
    format!("{kind}; see the ingest log")
}

/// Gathers batches, commits them, acknowledges them.
async fn process_loop(
    mut engine: Engine,
    pool: PgPool,
    config: &IngestConfig,
    client: AsyncClient,
    mut rx: mpsc::Receiver<Publish>,
    cancel: CancellationToken,
) -> Result<(), IngestError> {
    let mut tick = tokio::time::interval(config.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut maintenance = tokio::time::interval(Duration::from_secs(3600));
    maintenance.tick().await;
    let mut closed = false;
    while !closed {
        let mut publishes: Vec<Publish> = Vec::new();
        let mut timers = false;
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => timers = true,
            _ = maintenance.tick() => {
                if let Err(e) = store::maintain_telemetry(&pool, &config.telemetry).await {
                    warn!(error = %e, "telemetry maintenance failed");
                }
                continue;
            }
            p = rx.recv() => match p {
                Some(p) => publishes.push(p),
                None => closed = true,
            },
        }
        if !publishes.is_empty() {
            let deadline = tokio::time::Instant::now() + config.batch_linger;
            while publishes.len() < config.batch_max {
                match rx.try_recv() {
                    Ok(p) => {
                        publishes.push(p);
                        continue;
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        closed = true;
                        break;
                    }
                    Err(mpsc::error::TryRecvError::Empty) => {}
                }
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => break,
                    p = rx.recv() => match p {
                        Some(p) => publishes.push(p),
                        None => { closed = true; break; }
                    },
                }
            }
        }
        if publishes.is_empty() && !timers {
            continue;
        }
        let Some(batch) = identify(
            &pool,
            &config.namespace,
            &config.client_id(),
            &publishes,
            config.max_backoff,
            &cancel,
        )
        .await
        else {
            break;
        };
        // Commit, retrying until it works (or we are told to stop, unacknowledged).
        let Some(report) = commit(&mut engine, &batch, timers, config, &cancel).await else {
            break;
        };
        for p in &publishes {
            if let Err(e) = client.ack(p).await {
                warn!(error = %e, "ack not sent; the broker will redeliver");
            }
        }
        for (group, edge) in &report.rebirths {
            let topic = format!("{}/{group}/NCMD/{edge}", sparkplug::NAMESPACE);
            if let Err(e) =
                client.try_publish(topic, QoS::AtLeastOnce, false, sparkplug::rebirth_request())
            {
                warn!(error = %e, "rebirth request not sent");
            }
        }
    }
    Ok(())
}

/// Commits a batch, retrying transient failures with backoff. A batch that keeps
/// failing for another reason (a bug, data the database refuses) is split: each
/// message is tried alone, and one that still fails is set aside as rejected, so one
/// poisonous message never stops the ingest. `None` when cancelled first.
async fn commit(
    engine: &mut Engine,
    batch: &[Incoming],
    timers: bool,
    config: &IngestConfig,
    cancel: &CancellationToken,
) -> Option<crate::engine::BatchReport> {
    let mut backoff = Duration::from_millis(50);
    let mut permanent = 0;
    loop {
        match engine.process(batch, Utc::now(), timers).await {
            Ok(r) => return Some(r),
            Err(e) => {
                metrics::counter!("shopfloor_ingest_batch_failures_total").increment(1);
                error!(error = %e, transient = e.is_transient(), "batch failed; retrying");
                if !e.is_transient() {
                    permanent += 1;
                }
                if permanent >= 3 {
                    let mut report = crate::engine::BatchReport::default();
                    for message in batch {
                        let one = std::slice::from_ref(message);
                        let mut tries = 0;
                        loop {
                            match engine.process(one, Utc::now(), false).await {
                                Ok(r) => {
                                    report.events += r.events;
                                    report.rebirths.extend(r.rebirths);
                                    break;
                                }
                                Err(e) if e.is_transient() || tries < 2 => {
                                    tries += 1;
                                    tokio::select! {
                                        _ = cancel.cancelled() => return None,
                                        _ = tokio::time::sleep(backoff) => {}
                                    }
                                }
                                Err(e) => {
                                    error!(error = %e, topic = %message.topic, "message set aside");
                                    if let Err(e2) =
                                        engine.set_aside(message, &failure_reason(&e)).await
                                    {
                                        error!(error = %e2, "could not set a failing message aside");
                                        return None;
                                    }
                                    break;
                                }
                            }
                        }
                    }
                    return Some(report);
                }
                tokio::select! {
                    _ = cancel.cancelled() => return None,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(config.max_backoff);
            }
        }
    }
}
