//! The OPC UA ingest's loop: the clients' events in, batches through the ingest's
//! engine out.
//!
//! Events are gathered for at most [`BATCH_WINDOW`] or [`MAX_BATCH`] events,
//! decoded by the [`Mapper`] and handed to [`Engine::process_decoded`]: the same
//! planner, writer, telemetry store and rejection record as MQTT. The engine
//! stores its machine states (among them the counters' last totals, the baselines
//! of the next deltas) in the transaction of the batch's own rows, after the
//! batch's commands are in the log; a failed batch is processed again as it was
//! (its command ids and sample keys make that idempotent). A restart therefore
//! resumes each counter from the last total that was counted: no count twice,
//! none lost that the counter still shows.
//!
//! The engine's machine states are kept under the namespace `{namespace}/opcua`,
//! apart from the MQTT ingest's (each engine owns its states while it runs).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use shopfloor_commands::CommandService;
use shopfloor_ingest::{Engine, Mapping};
use tokio::sync::mpsc::{self, UnboundedReceiver};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::client::run_server;
use crate::config::OpcuaConfig;
use crate::decode::{Event, Mapper};

/// Longest wait for more events before a batch is processed.
pub const BATCH_WINDOW: Duration = Duration::from_millis(50);
/// Most events in one batch.
pub const MAX_BATCH: usize = 5000;
/// How often the machines' timers (debounce, no signal) run when nothing arrives.
pub const TICK: Duration = Duration::from_secs(1);

/// The namespace under which the OPC UA engine keeps its machine states.
pub fn state_namespace(namespace: &str) -> String {
    format!("{namespace}/opcua")
}

/// What the loop has done so far (for tests and the benchmark).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    pub events: u64,
    pub batches: u64,
    pub samples: u64,
    pub commands: u64,
    pub rejected: u64,
    pub gaps: u64,
}

/// Runs the OPC UA ingest until `cancel`: one client per server, one batching loop.
/// `progress` is updated after each durable batch.
pub async fn run_opcua(
    commands: CommandService,
    namespace: &str,
    mapping: Arc<Mapping>,
    config: Arc<OpcuaConfig>,
    progress: watch::Sender<Progress>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let mut engine = Engine::load(commands, &state_namespace(namespace), mapping, Utc::now())
        .await
        .map_err(|e| anyhow::anyhow!("loading the OPC UA ingest's machine states: {e}"))?;
    let (tx, rx) = mpsc::unbounded_channel();
    let mut clients = tokio::task::JoinSet::new();
    for (i, server) in config.servers.iter().enumerate() {
        clients.spawn(run_server(i, server.clone(), tx.clone(), cancel.clone()));
    }
    drop(tx);
    let result = batch_loop(&mut engine, Mapper::new(config), rx, &progress, &cancel).await;
    cancel.cancel();
    while clients.join_next().await.is_some() {}
    result
}

/// Gathers a batch: waits for a first event (or the tick), then takes what comes
/// within the window.
async fn next_batch(
    rx: &mut UnboundedReceiver<Event>,
    cancel: &CancellationToken,
) -> Option<Vec<Event>> {
    let mut batch = Vec::new();
    tokio::select! {
        _ = cancel.cancelled() => return None,
        e = rx.recv() => match e {
            Some(e) => batch.push(e),
            None => return None,
        },
        _ = tokio::time::sleep(TICK) => return Some(batch),
    }
    let deadline = tokio::time::Instant::now() + BATCH_WINDOW;
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(e) => batch.push(e),
            Err(mpsc::error::TryRecvError::Empty) => {
                tokio::select! {
                    e = rx.recv() => match e { Some(e) => batch.push(e), None => break },
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            }
            Err(mpsc::error::TryRecvError::Disconnected) => break,
        }
    }
    Some(batch)
}

async fn batch_loop(
    engine: &mut Engine,
    mut mapper: Mapper,
    mut rx: UnboundedReceiver<Event>,
    progress: &watch::Sender<Progress>,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    while let Some(events) = next_batch(&mut rx, cancel).await {
        let gaps = events
            .iter()
            .filter(|e| matches!(e, Event::Gap { .. }))
            .count() as u64;
        let (batch, decoded) = mapper.decode_batch(&events);
        let mut wait = Duration::from_millis(100);
        let report = loop {
            match engine
                .process_decoded(&batch, decoded.clone(), Utc::now(), true)
                .await
            {
                Ok(r) => break r,
                Err(e) => {
                    warn!(error = %e, "OPC UA batch failed; processing it again");
                    tokio::select! {
                        _ = cancel.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(wait) => {}
                    }
                    wait = (wait * 2).min(Duration::from_secs(10));
                }
            }
        };
        metrics::counter!("shopfloor_opcua_data_changes_total")
            .increment(events.len() as u64 - gaps);
        progress.send_modify(|p| {
            p.events += events.len() as u64 - gaps;
            p.batches += 1;
            p.samples += report.samples;
            p.commands += report.events as u64;
            p.rejected += report.rejected as u64;
            p.gaps += gaps;
        });
    }
    Ok(())
}
