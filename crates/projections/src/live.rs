//! The live-update hub: read-model change notifications, coalesced per topic.
//!
//! Projectors call [`LiveHub::notify`] after each committed batch with a topic
//! (`machine:M-1`, `order:O-7`, `kpi:M-1`, ...) and a small JSON summary of what
//! changed. Subscribers (the SSE endpoint `GET /api/v1/live`) get a
//! [`tokio::sync::broadcast::Receiver`] of [`LiveUpdate`]s that are already
//! coalesced: at most `max_per_second` updates per topic, however fast events
//! arrive. The first change of a quiet topic goes out at once; changes inside the
//! interval replace each other (last one wins, it describes the newest state) and
//! the latest goes out when the interval has passed. So a machine reporting a
//! hundred counts a second costs a dashboard a few updates a second, and a hundred
//! dashboards share the same coalesced stream (one broadcast channel).
//!
//! A slow subscriber that falls more than the channel capacity behind gets
//! `RecvError::Lagged` and should reload what it shows; nothing else is slowed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::broadcast;
use tokio::time::Instant;

/// One coalesced change notification.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LiveUpdate {
    /// What changed: `{kind}:{id}`, e.g. `machine:M-1`, `order:O-1`, `task:T-1`,
    /// `inventory:steel`, `kpi:M-1` (the machine's KPI and downtime figures).
    pub topic: String,
    /// A summary of the newest change (ids, event type, position, new status).
    pub data: serde_json::Value,
}

/// Default cap of updates per topic and second.
pub const DEFAULT_MAX_PER_SECOND: u32 = 4;
const DEFAULT_CAPACITY: usize = 1024;

#[derive(Debug)]
struct TopicState {
    /// When the last update of this topic went out.
    last_sent: Instant,
    /// The newest change not yet sent, waiting for the interval to pass.
    pending: Option<serde_json::Value>,
    /// Whether a flush of `pending` is scheduled.
    flush_scheduled: bool,
}

#[derive(Debug)]
struct Inner {
    sender: broadcast::Sender<LiveUpdate>,
    topics: Mutex<HashMap<String, TopicState>>,
    /// The shortest time between two updates of one topic.
    min_interval: Duration,
}

/// The hub. Cheap to clone; every clone shares the same channel and state.
#[derive(Debug, Clone)]
pub struct LiveHub {
    inner: Arc<Inner>,
}

impl Default for LiveHub {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_PER_SECOND)
    }
}

impl LiveHub {
    /// A hub sending at most `max_per_second` updates per topic (at least 1).
    pub fn new(max_per_second: u32) -> Self {
        Self::with_capacity(max_per_second, DEFAULT_CAPACITY)
    }

    /// As [`LiveHub::new`], with the broadcast channel's capacity per subscriber.
    pub fn with_capacity(max_per_second: u32, capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(1));
        let per_second = max_per_second.max(1);
        Self {
            inner: Arc::new(Inner {
                sender,
                topics: Mutex::new(HashMap::new()),
                min_interval: Duration::from_secs(1) / per_second,
            }),
        }
    }

    /// The shortest time between two updates of one topic.
    pub fn min_interval(&self) -> Duration {
        self.inner.min_interval
    }

    /// A receiver of every coalesced update from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<LiveUpdate> {
        self.inner.sender.subscribe()
    }

    /// How many receivers are subscribed.
    pub fn subscribers(&self) -> usize {
        self.inner.sender.receiver_count()
    }

    /// Announces a change of `topic`. Never blocks; must be called inside a tokio
    /// runtime (a delayed flush is a spawned task).
    pub fn notify(&self, topic: impl Into<String>, data: serde_json::Value) {
        let topic = topic.into();
        let now = Instant::now();
        let min_interval = self.inner.min_interval;
        let mut topics = self
            .inner
            .topics
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Forget topics that have been quiet for a while, so the map stays small.
        if topics.len() > 10_000 {
            topics.retain(|_, t| t.flush_scheduled || now - t.last_sent < min_interval * 2);
        }
        match topics.get_mut(&topic) {
            Some(state) if state.flush_scheduled => {
                state.pending = Some(data);
            }
            Some(state) if now.duration_since(state.last_sent) < min_interval => {
                state.pending = Some(data);
                state.flush_scheduled = true;
                let due = state.last_sent + min_interval;
                self.schedule_flush(topic, due);
            }
            Some(state) => {
                state.last_sent = now;
                self.send(topic, data);
            }
            None => {
                topics.insert(
                    topic.clone(),
                    TopicState {
                        last_sent: now,
                        pending: None,
                        flush_scheduled: false,
                    },
                );
                self.send(topic, data);
            }
        }
    }

    fn send(&self, topic: String, data: serde_json::Value) {
        // No subscriber is not an error: nobody is watching.
        let _ = self.inner.sender.send(LiveUpdate { topic, data });
        metrics::counter!("shopfloor_live_updates_total").increment(1);
    }

    fn schedule_flush(&self, topic: String, due: Instant) {
        let hub = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(due).await;
            let data = {
                let mut topics = hub
                    .inner
                    .topics
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                let Some(state) = topics.get_mut(&topic) else {
                    return;
                };
                state.flush_scheduled = false;
                state.last_sent = Instant::now();
                state.pending.take()
            };
            if let Some(data) = data {
                hub.send(topic, data);
            }
        });
    }
}
