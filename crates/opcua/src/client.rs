//! The OPC UA client (async-opcua): one session per server, one subscription with
//! a monitored item per mapped node, data change notifications sent to the
//! batching loop as [`Event`]s.
//!
//! Reconnection: the session's event loop reconnects with exponential back-off
//! (`retry_initial_ms` … `retry_max_ms`, forever); on every new session the
//! client creates the subscription and its monitored items anew (a reactivated
//! session keeps its own); the first notification of every item after that is
//! its current value. The time between the loss and the reconnection is
//! sent as [`Event::Gap`]. When the server cannot be reached at all (not even for
//! its endpoints), the whole client is built again after the same back-off.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use opcua::client::{
    ClientBuilder, DataChangeCallback, IdentityToken, MonitoredItem, Session, SessionConnectMode,
    SessionPollResult, SubscriptionActivity,
};
use opcua::types::{
    DataValue, MessageSecurityMode, MonitoredItemCreateRequest, MonitoringMode,
    MonitoringParameters, NodeId, ReadValueId, StatusCode, TimestampsToReturn, UserTokenPolicy,
    Variant,
};
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{Identity, Meaning, SecurityMode, ServerConfig};
use crate::decode::{Change, Event, Reading};

/// Most elements in one array of a message: the notifications of one publish
/// response (a server may send a change of every monitored item in one).
pub const MAX_ARRAY_LENGTH: usize = 1_000_000;
/// Largest message accepted (in any number of chunks): about 30 bytes per data
/// change, so room for far more than [`MAX_ARRAY_LENGTH`]'s worth of doubles.
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// Keep-alive reads (one a second) that may fail in a row before the session is
/// given up (the library's default, 0, never gives it up).
pub const MAX_FAILED_KEEP_ALIVES: u64 = 3;
/// How long any request (a keep-alive read among them) may wait for its answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A value of the OPC UA library as a [`Reading`].
pub fn reading(v: Option<&Variant>) -> Reading {
    match v {
        None | Some(Variant::Empty) => Reading::Empty,
        Some(Variant::Boolean(b)) => Reading::Bool(*b),
        Some(Variant::SByte(i)) => Reading::Int {
            value: i64::from(*i),
            bits: 8,
        },
        Some(Variant::Byte(u)) => Reading::UInt {
            value: u64::from(*u),
            bits: 8,
        },
        Some(Variant::Int16(i)) => Reading::Int {
            value: i64::from(*i),
            bits: 16,
        },
        Some(Variant::UInt16(u)) => Reading::UInt {
            value: u64::from(*u),
            bits: 16,
        },
        Some(Variant::Int32(i)) => Reading::Int {
            value: i64::from(*i),
            bits: 32,
        },
        Some(Variant::UInt32(u)) => Reading::UInt {
            value: u64::from(*u),
            bits: 32,
        },
        Some(Variant::Int64(i)) => Reading::Int {
            value: *i,
            bits: 64,
        },
        Some(Variant::UInt64(u)) => Reading::UInt {
            value: *u,
            bits: 64,
        },
        Some(Variant::Float(f)) => Reading::Float(f64::from(*f)),
        Some(Variant::Double(d)) => Reading::Float(*d),
        Some(Variant::String(s)) => Reading::Text(s.as_ref().to_string()),
        Some(Variant::LocalizedText(t)) => Reading::Text(t.text.as_ref().to_string()),
        Some(other) => Reading::Other(
            other
                .scalar_type_id()
                .map(|t| format!("{t:?}"))
                .unwrap_or_else(|| "array".into()),
        ),
    }
}

fn timestamp(t: Option<&opcua::types::DateTime>) -> Option<DateTime<Utc>> {
    let t = t?.as_chrono();
    (t.timestamp() > 0).then_some(t)
}

/// A data change as an [`Event`].
pub fn change_of(server: usize, node: usize, v: &DataValue) -> Event {
    let bad_status = v.status.filter(|s| !s.is_good()).map(|s| s.to_string());
    Event::Change(Change {
        server,
        node,
        reading: reading(v.value.as_ref()),
        bad_status,
        source_time: timestamp(v.source_timestamp.as_ref())
            .or_else(|| timestamp(v.server_timestamp.as_ref())),
        received_at: Utc::now(),
    })
}

fn identity_token(server: &ServerConfig) -> anyhow::Result<IdentityToken> {
    Ok(match server.identity()? {
        Identity::Anonymous => IdentityToken::Anonymous,
        Identity::UserName { username, password } => {
            IdentityToken::new_user_name(username, password)
        }
        Identity::Certificate { certificate, key } => {
            IdentityToken::new_x509_path(certificate, key).map_err(|e| anyhow::anyhow!("{e}"))?
        }
    })
}

fn security_mode(mode: SecurityMode) -> MessageSecurityMode {
    match mode {
        SecurityMode::None => MessageSecurityMode::None,
        SecurityMode::Sign => MessageSecurityMode::Sign,
        SecurityMode::SignAndEncrypt => MessageSecurityMode::SignAndEncrypt,
    }
}

/// Runs the client of server `index` until `shutdown`, sending its events to `tx`.
pub async fn run_server(
    index: usize,
    server: ServerConfig,
    tx: UnboundedSender<Event>,
    shutdown: CancellationToken,
) {
    let mut wait = Duration::from_millis(server.retry_initial_ms);
    let max = Duration::from_millis(server.retry_max_ms);
    let mut lost_since: Option<(DateTime<Utc>, String)> = None;
    while !shutdown.is_cancelled() {
        match session(index, &server, &tx, &shutdown, &mut lost_since).await {
            Ok(()) => return,
            Err(e) => {
                warn!(server = %server.name, error = %e, "OPC UA server unreachable; retrying");
                metrics::counter!("shopfloor_opcua_connect_failures_total", "server" => server.name.clone()).increment(1);
                lost_since.get_or_insert_with(|| (Utc::now(), format!("{e}")));
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(max);
    }
}

/// One client and session: connects, subscribes, and drives the session's event
/// loop (which reconnects by itself) until `shutdown`. An error: the server could
/// not be reached to begin with, or the session ended on its own (creating the
/// subscription failed): [`run_server`] builds a new client after its back-off.
async fn session(
    index: usize,
    server: &ServerConfig,
    tx: &UnboundedSender<Event>,
    shutdown: &CancellationToken,
    lost_since: &mut Option<(DateTime<Utc>, String)>,
) -> anyhow::Result<()> {
    let mut client = ClientBuilder::new()
        .application_name("Shopfloor OPC UA ingest")
        .application_uri("urn:shopfloor:opcua-ingest")
        .product_uri("urn:shopfloor")
        .pki_dir(server.pki_dir.clone())
        .create_sample_keypair(true)
        .trust_server_certs(server.trust_server_certs)
        .session_retry_limit(-1)
        .session_retry_initial(Duration::from_millis(server.retry_initial_ms))
        .session_retry_max(Duration::from_millis(server.retry_max_ms))
        .keep_alive_interval(Duration::from_secs(1))
        // A connection that is open but dead (a pulled cable, a PLC that stopped
        // answering) sends no error: three keep-alive reads without an answer in
        // time close the session, and it is built again after the back-off.
        .max_failed_keep_alive_count(MAX_FAILED_KEEP_ALIVES)
        .request_timeout(REQUEST_TIMEOUT)
        // Subscriptions are created anew by us on every new session (below): some
        // servers answer TransferSubscriptions for a subscription they lost with Good.
        .recreate_subscriptions(false)
        .session_timeout(60_000)
        // A publish response carries a change of every item that changed: thousands
        // of items in one message. The library's defaults (arrays of at most 1,000
        // elements, messages of at most 5 chunks, ~320 KiB) make a larger response
        // fail to decode, and the subscription then delivers nothing more.
        .max_array_length(MAX_ARRAY_LENGTH)
        .max_message_size(MAX_MESSAGE_SIZE)
        .max_chunk_count(0)
        .client()
        .map_err(|e| anyhow::anyhow!("OPC UA client configuration: {}", e.join("; ")))?;
    let endpoint: opcua::types::EndpointDescription = (
        server.endpoint.as_str(),
        server.security_policy.as_str(),
        security_mode(server.security_mode()),
        UserTokenPolicy::anonymous(),
    )
        .into();
    let (session, event_loop) = client
        .connect_to_matching_endpoint(endpoint, identity_token(server)?)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut events = Box::pin(event_loop.enter());
    let current: Arc<std::sync::Mutex<Option<u32>>> = Arc::default();
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => {
                // The close goes through the event loop: keep driving it until it
                // ends (or for at most 2 s).
                let s = session.clone();
                let close = tokio::spawn(async move { s.disconnect().await });
                let drain = async { while events.next().await.is_some() {} };
                let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
                close.abort();
                return Ok(());
            }
            e = events.next() => e,
        };
        match event {
            // The session was closed without our asking (a failed subscription
            // closes it): a new client after the back-off.
            None => anyhow::bail!("session closed"),
            Some(Err(status)) => anyhow::bail!("session ended: {status}"),
            Some(Ok(SessionPollResult::ConnectionLost(status))) => {
                warn!(server = %server.name, %status, "OPC UA connection lost");
                metrics::gauge!("shopfloor_opcua_connected", "server" => server.name.clone())
                    .set(0.0);
                lost_since.get_or_insert_with(|| (Utc::now(), status.to_string()));
            }
            Some(Ok(SessionPollResult::Reconnected(mode))) => {
                info!(server = %server.name, ?mode, "OPC UA session connected");
                metrics::gauge!("shopfloor_opcua_connected", "server" => server.name.clone())
                    .set(1.0);
                if matches!(mode, SessionConnectMode::NewSession(_)) {
                    // A new session has no subscription: create it (on its own task,
                    // as the event loop must keep running meanwhile), dropping the
                    // old one from the client's books.
                    let (s, cfg, tx, current) =
                        (session.clone(), server.clone(), tx.clone(), current.clone());
                    tokio::spawn(async move {
                        let old = current.lock().ok().and_then(|mut c| c.take());
                        if let Some(old) = old {
                            let _ = s.delete_subscription(old).await;
                        }
                        match subscribe(index, &s, &cfg, tx).await {
                            Ok(id) => {
                                if let Ok(mut c) = current.lock() {
                                    *c = Some(id);
                                }
                            }
                            Err(e) => {
                                warn!(server = %cfg.name, error = %e, "OPC UA subscription failed; reconnecting");
                                let _ = s.disconnect_without_delete_subscriptions().await;
                            }
                        }
                    });
                }
                if let Some((lost_at, status)) = lost_since.take() {
                    let _ = tx.send(Event::Gap {
                        server: index,
                        lost_at,
                        back_at: Utc::now(),
                        status,
                    });
                }
            }
            // A server's flow control: the library waits for an answer before it
            // sends another request.
            Some(Ok(SessionPollResult::Subscription(SubscriptionActivity::PublishFailed(
                StatusCode::BadTooManyPublishRequests,
            )))) => {}
            Some(Ok(SessionPollResult::Subscription(SubscriptionActivity::PublishFailed(
                status,
            )))) => {
                // The server has sent notifications we could not take (or none in
                // time): they are lost unless the library's republish gets them.
                warn!(server = %server.name, %status, "OPC UA publish failed");
                metrics::counter!("shopfloor_opcua_publish_failures_total", "server" => server.name.clone())
                    .increment(1);
            }
            Some(Ok(_)) => {}
        }
    }
}

/// Creates the subscription and one monitored item per node (reason nodes first,
/// so that a fault's reason is known when its state arrives).
async fn subscribe(
    index: usize,
    session: &Arc<Session>,
    server: &ServerConfig,
    tx: UnboundedSender<Event>,
) -> anyhow::Result<u32> {
    let callback = DataChangeCallback::new(move |value: DataValue, item: &MonitoredItem| {
        // Client handles are the node's index + 1 (0 asks the library for one).
        let node = (item.client_handle() as usize).saturating_sub(1);
        let _ = tx.send(change_of(index, node, &value));
    });
    let publishing = Duration::from_millis(server.publishing_interval_ms);
    let subscription = session
        .create_subscription(publishing, 60, 10, 0, 0, true, callback)
        .await
        .map_err(|e| anyhow::anyhow!("create subscription: {e}"))?;
    let mut order: Vec<usize> = (0..server.nodes.len()).collect();
    order.sort_by_key(|i| server.nodes[*i].meaning != Meaning::Reason);
    let mut items = Vec::with_capacity(order.len());
    for i in order {
        let node = &server.nodes[i];
        let node_id = NodeId::from_str(&node.node_id)
            .map_err(|e| anyhow::anyhow!("node id {:?}: {e:?}", node.node_id))?;
        items.push(MonitoredItemCreateRequest::new(
            ReadValueId::from(node_id),
            MonitoringMode::Reporting,
            MonitoringParameters {
                client_handle: u32::try_from(i + 1)?,
                sampling_interval: server.sampling_interval_ms(node) as f64,
                queue_size: 100,
                discard_oldest: true,
                ..Default::default()
            },
        ));
    }
    for chunk in items.chunks(1000) {
        let results = session
            .create_monitored_items(subscription, TimestampsToReturn::Both, chunk.to_vec())
            .await
            .map_err(|e| anyhow::anyhow!("create monitored items: {e}"))?;
        for (r, req) in results.iter().zip(chunk) {
            if !r.result.status_code.is_good() {
                warn!(server = %server.name, node = %req.item_to_monitor.node_id,
                      status = %r.result.status_code, "monitored item refused");
            }
        }
    }
    info!(server = %server.name, items = items.len(), "OPC UA subscription created");
    Ok(subscription)
}
