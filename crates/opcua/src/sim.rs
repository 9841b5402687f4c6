//! A load source for the benchmark and the tests: an in-process OPC UA server
//! (async-opcua's own server, without the generated core address space) with `n`
//! Double nodes `ns={ns};s=Bench.{i}` under the namespace [`NAMESPACE_URI`].
//!
//! [`SimServer::churn`] changes every node once per period, all with the cycle's
//! scheduled time as their source timestamp (exactly one period apart, so the
//! server's sampling filter passes each of them) and a value that differs from the
//! node's previous one: every change made is one data change the client should
//! receive. It counts the changes it made, for the benchmark's "lost".
//!
//! Only security mode None and anonymous users: the interop and security tests run
//! against Python's asyncua (scripts/opcua_server.py).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use opcua::types::{DataValue, NodeId, ObjectId, VariableId, Variant};
use opcua_server::diagnostics::NamespaceMetadata;
use opcua_server::node_manager::memory::{simple_node_manager, SimpleNodeManager};
use opcua_server::{
    address_space::Variable, ServerBuilder, ServerEndpoint, ServerHandle, SubscriptionCache,
    ANONYMOUS_USER_TOKEN_ID,
};
use tokio::task::JoinHandle;

use crate::config::{Meaning, NodeMapping, OpcuaConfig, ServerConfig};
use tokio_util::sync::CancellationToken;

/// OPC UA's own namespace (index 0).
const CORE_NAMESPACE_URI: &str = "http://opcfoundation.org/UA/";

/// The namespace of the simulator's nodes.
pub const NAMESPACE_URI: &str = "urn:shopfloor:bench";

/// Sizes of the server's messages: large enough for one publish response with a
/// data change of every node (about 30 bytes each) of a 100,000-node server.
const MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;
const MAX_ARRAY_LENGTH: usize = 1_000_000;

/// The in-process OPC UA server.
pub struct SimServer {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    /// The namespace index of its nodes.
    pub namespace: u16,
    ids: Arc<Vec<NodeId>>,
    manager: Arc<SimpleNodeManager>,
    subscriptions: Arc<SubscriptionCache>,
    handle: ServerHandle,
    task: JoinHandle<Result<(), String>>,
    /// Data changes made so far by [`Self::churn`] and [`Self::set_all`].
    changes: Arc<AtomicU64>,
}

impl std::fmt::Debug for SimServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimServer")
            .field("port", &self.port)
            .field("nodes", &self.ids.len())
            .finish()
    }
}

impl SimServer {
    /// Starts a server with `nodes` Double nodes (value 0.0) on a free loopback
    /// port, keeping its PKI files in `pki_dir`.
    pub async fn start(nodes: usize, pki_dir: &Path) -> Result<Self, String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("binding the OPC UA simulator: {e}"))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let mut builder = ServerBuilder::new()
            .application_name("Shopfloor OPC UA simulator")
            .application_uri("urn:shopfloor:bench:server")
            .product_uri("urn:shopfloor")
            .pki_dir(pki_dir)
            .create_sample_keypair(false)
            .host("127.0.0.1")
            .port(port)
            .add_endpoint(
                "none",
                ServerEndpoint::new_none("/", &[ANONYMOUS_USER_TOKEN_ID.to_string()]),
            )
            .discovery_urls(vec!["/".to_owned()])
            .max_message_size(MAX_MESSAGE_SIZE)
            .max_chunk_count(0)
            .max_array_length(MAX_ARRAY_LENGTH)
            .with_node_manager(simple_node_manager(
                NamespaceMetadata {
                    namespace_uri: NAMESPACE_URI.to_owned(),
                    ..Default::default()
                },
                "bench",
            ))
            // Of the core address space, only the server's state: clients read it
            // as their keep-alive.
            .with_node_manager(simple_node_manager(
                NamespaceMetadata {
                    namespace_uri: CORE_NAMESPACE_URI.to_owned(),
                    ..Default::default()
                },
                "core",
            ));
        let limits = builder.limits_mut();
        limits.subscriptions.max_monitored_items_per_sub = 0;
        limits.subscriptions.max_publish_requests_per_subscription = 10;
        // Notification messages waiting for a publish request (0 drops every one
        // that waits, whatever the documentation says).
        limits.subscriptions.max_queued_notifications = 10_000;
        // (0 here is a limit of 0, not "no limit".)
        limits.operational.max_monitored_items_per_call = MAX_ARRAY_LENGTH;
        let (server, handle) = builder.build()?;
        let manager = handle
            .node_managers()
            .get_by_name::<SimpleNodeManager>("bench")
            .ok_or("the simulator's node manager is missing")?;
        let core = handle
            .node_managers()
            .get_by_name::<SimpleNodeManager>("core")
            .ok_or("the simulator's core node manager is missing")?;
        core.address_space().write().insert::<_, NodeId>(
            Variable::new(
                &VariableId::Server_ServerStatus_State.into(),
                "State",
                "State",
                Variant::Int32(0), // ServerState Running
            ),
            None,
        );
        let namespace = handle
            .get_namespace_index(NAMESPACE_URI)
            .ok_or("the simulator's namespace is missing")?;
        let ids: Vec<NodeId> = (0..nodes)
            .map(|i| NodeId::new(namespace, format!("Bench.{i}")))
            .collect();
        {
            let mut space = manager.address_space().write();
            let folder = NodeId::new(namespace, "Bench");
            space.add_folder(&folder, "Bench", "Bench", &ObjectId::ObjectsFolder.into());
            let variables = ids
                .iter()
                .map(|id| {
                    let name = id.identifier.to_string();
                    Variable::new(id, name.as_str(), name.as_str(), 0.0f64)
                })
                .collect();
            space.add_variables(variables, &folder);
        }
        let subscriptions = handle.subscriptions().clone();
        let task = tokio::spawn(server.run_with(listener));
        Ok(Self {
            port,
            namespace,
            ids: Arc::new(ids),
            manager,
            subscriptions,
            handle,
            task,
            changes: Arc::default(),
        })
    }

    /// The endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("opc.tcp://127.0.0.1:{}/", self.port)
    }

    /// The node id of node `i`, as the mapping file writes it.
    pub fn node_id(&self, i: usize) -> String {
        format!("ns={};s=Bench.{i}", self.namespace)
    }

    /// A mapping of every node as a telemetry sensor `s{i}` of machine
    /// `machines[i % machines.len()]`, sampled and published every `interval_ms`.
    pub fn config(&self, machines: &[String], interval_ms: u64, pki_dir: &Path) -> OpcuaConfig {
        let nodes = (0..self.ids.len())
            .map(|i| NodeMapping {
                node_id: self.node_id(i),
                machine_id: machines[i % machines.len()].clone(),
                meaning: Meaning::Sensor(format!("s{i}")),
                sampling_interval_ms: None,
                values: Default::default(),
                counter_bits: None,
            })
            .collect();
        let server = serde_json::json!({
            "name": "sim",
            "endpoint": self.endpoint(),
            "pki_dir": pki_dir,
            "publishing_interval_ms": interval_ms,
            "sampling_interval_ms": interval_ms,
            "retry_initial_ms": 100,
            "retry_max_ms": 1000,
            "nodes": [],
        });
        let mut server: ServerConfig =
            serde_json::from_value(server).expect("a valid server configuration");
        server.nodes = nodes;
        OpcuaConfig {
            servers: vec![server],
        }
    }

    /// Data changes made so far.
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Relaxed)
    }

    /// Sets every node to a value of `cycle` with source timestamp `at`.
    pub fn set_all(&self, cycle: u64, at: DateTime<Utc>) {
        set_all(
            &self.manager,
            &self.subscriptions,
            &self.ids,
            cycle,
            at,
            &self.changes,
        );
    }

    /// Changes every node once per `period` until `stop`, on its own task.
    pub fn churn(&self, period: Duration, stop: CancellationToken) -> JoinHandle<()> {
        let (manager, subscriptions, ids, changes) = (
            self.manager.clone(),
            self.subscriptions.clone(),
            self.ids.clone(),
            self.changes.clone(),
        );
        tokio::spawn(async move {
            let start = Utc::now();
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            for cycle in 1u64.. {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = ticks.tick() => {}
                }
                let at = start + period * u32::try_from(cycle).unwrap_or(u32::MAX);
                set_all(&manager, &subscriptions, &ids, cycle, at, &changes);
            }
        })
    }

    /// Stops the server (closing its sessions).
    pub async fn stop(self) {
        self.handle.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

fn set_all(
    manager: &SimpleNodeManager,
    subscriptions: &SubscriptionCache,
    ids: &[NodeId],
    cycle: u64,
    at: DateTime<Utc>,
    changes: &AtomicU64,
) {
    let at: opcua::types::DateTime = at.into();
    let values = ids.iter().enumerate().map(|(i, id)| {
        let value = Variant::Double(cycle as f64 + (i % 7) as f64);
        (id, None, DataValue::new_at(value, at))
    });
    if manager.set_values(subscriptions, values).is_ok() {
        changes.fetch_add(ids.len() as u64, Ordering::Relaxed);
    }
}
