//! The andon on the live feed (ADR 0048). Three "processes" on one database, each with its
//! own connection pool: two API instances with their live hubs (and `forward_alerts`), and
//! the alert evaluator. Every change of the alerts table, whichever process made it, reaches
//! the `/api/v1/live` subscribers of both instances as `alert:{alert_id}`, carrying the alert
//! as committed (equal to its item in `GET /api/v1/alerts`, so a client applies it without
//! reading anything); a listener that loses its connection says `alerts:reload` once it
//! listens again, and goes on.

use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt;
use secrecy::SecretString;
use serde_json::{json, Value};
use shopfloor_api::routes::live::forward_alerts;
use shopfloor_api::{router, serve, AppState, Readiness, ServeLimits};
use shopfloor_commands::CommandService;
use shopfloor_eventstore::EventStore;
use shopfloor_projections::live::LiveHub;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const ADMIN: &str = "live-alerts-admin-token-0123456789";
/// How long one change may take to reach a feed (it takes milliseconds).
const PATIENCE: Duration = Duration::from_secs(20);

/// A pool of its own on the test database, as another process would have.
async fn own_pool(pool: &PgPool) -> PgPool {
    PgPoolOptions::new()
        .max_connections(8)
        .connect_with((*pool.connect_options()).clone())
        .await
        .unwrap()
}

/// One API instance with its live hub, served on its own socket.
struct Instance {
    addr: SocketAddr,
    pool: PgPool,
    hub: LiveHub,
    http: reqwest::Client,
}

impl Instance {
    async fn spawn(pool: &PgPool, cancel: &CancellationToken) -> Self {
        let pool = own_pool(pool).await;
        let mut state = AppState::new(
            shopfloor_commands::CommandService::new(EventStore::new(pool.clone())),
            Readiness::default(),
            None,
            Some(SecretString::from(ADMIN)),
            "livealerts",
        );
        let hub = LiveHub::new(10);
        state.live = Some(hub.clone());
        state.shutdown = cancel.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = cancel.clone();
        tokio::spawn(serve(
            listener,
            router(state),
            ServeLimits::default(),
            async move { stop.cancelled().await },
        ));
        Self {
            addr,
            pool,
            hub,
            http: reqwest::Client::new(),
        }
    }

    /// Starts putting alert changes on this instance's hub.
    fn forward(&self, cancel: &CancellationToken) -> JoinHandle<()> {
        tokio::spawn(forward_alerts(
            self.pool.clone(),
            self.hub.clone(),
            cancel.clone(),
        ))
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn send(&self, method: reqwest::Method, path: &str, token: &str, body: Value) -> Value {
        let r = self
            .http
            .request(method.clone(), self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{method} {path}: {status} {body}");
        body
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> Value {
        self.send(reqwest::Method::POST, path, token, body).await
    }

    async fn get(&self, path: &str, token: &str) -> Value {
        let r = self
            .http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.unwrap()
    }

    /// Subscribes to `/api/v1/live?topics=alert,alerts`, once its `ready` event came.
    async fn live(&self) -> Feed {
        let r = self
            .http
            .get(self.url("/api/v1/live?topics=alert,alerts"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let mut feed = Feed {
            body: Box::pin(r.bytes_stream()),
            buffer: String::new(),
        };
        let (event, _) = feed.event().await;
        assert_eq!(event, "ready");
        feed
    }
}

/// An open `/api/v1/live` stream, read event by event.
struct Feed {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<axum::body::Bytes>> + Send>>,
    buffer: String,
}

impl Feed {
    /// The next event: its name and data.
    async fn event(&mut self) -> (String, Value) {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut event, mut data) = (String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if event.is_empty() && data.is_empty() {
                    continue; // a keep-alive comment
                }
                return (event, serde_json::from_str(&data).unwrap_or(Value::Null));
            }
            let chunk = tokio::time::timeout(PATIENCE, self.body.next())
                .await
                .expect("the live feed stayed silent")
                .expect("the live feed ended")
                .unwrap();
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// The data of the first update of `topic` for which `check` holds (others are skipped).
    async fn until(&mut self, topic: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no update of {topic} as expected"
            );
            let (event, update) = self.event().await;
            assert_ne!(event, "resync", "the feed lagged");
            if event == "update" && update["topic"] == topic && check(&update["data"]) {
                return update["data"].clone();
            }
        }
    }

    /// The data of the first update whose topic starts with `prefix` and for which `check`
    /// holds.
    async fn until_kind(&mut self, prefix: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no update of {prefix}* as expected"
            );
            let (event, update) = self.event().await;
            assert_ne!(event, "resync", "the feed lagged");
            let topic = update["topic"].as_str().unwrap_or_default();
            if event == "update" && topic.starts_with(prefix) && check(&update["data"]) {
                assert_eq!(
                    topic,
                    format!(
                        "alert:{}",
                        update["data"]["alert_id"].as_str().unwrap_or_default()
                    )
                );
                return update["data"].clone();
            }
        }
    }
}

/// The alert as `GET /api/v1/alerts` lists it.
async fn listed(on: &Instance, alert_id: &str) -> Value {
    let all = on.get("/api/v1/alerts?limit=5000", ADMIN).await;
    all.as_array()
        .and_then(|a| a.iter().find(|a| a["alert_id"] == alert_id))
        .cloned()
        .unwrap_or_else(|| panic!("{alert_id} is not listed: {all}"))
}

/// Ends the connections that listen for alert changes; how many there were.
async fn cut_listeners(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid() \
         AND query ILIKE 'listen%shopfloor_alerts%') t",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn alert_changes_reach_the_live_feed_of_every_api_instance(pool: PgPool) {
    let cancel = CancellationToken::new();
    let instances = [
        Instance::spawn(&pool, &cancel).await,
        Instance::spawn(&pool, &cancel).await,
    ];
    // Subscribed before the listeners start: each feed hears its listener's first reload.
    let mut feeds = Vec::new();
    let mut forwarders = Vec::new();
    for instance in &instances {
        let mut feed = instance.live().await;
        forwarders.push(instance.forward(&cancel));
        feed.until("alerts:reload", |_| true).await;
        feeds.push(feed);
    }
    let [a, b] = &instances;
    // The evaluator runs in a process of its own.
    let evaluator_pool = own_pool(&pool).await;
    let settings = shopfloor_alerts::AlertSettings {
        tick: Duration::from_millis(50),
        ..Default::default()
    };
    let service = CommandService::new(EventStore::new(evaluator_pool.clone()));
    let evaluator = tokio::spawn(shopfloor_alerts::run(service, settings, cancel.clone()));

    a.post(
        "/api/v1/machines",
        ADMIN,
        json!({ "machine_id": "M-1", "type": "press", "line": "L1", "ideal_cycle_time_s": 2.0 }),
    )
    .await;
    a.post(
        "/api/v1/alert-rules",
        ADMIN,
        json!({ "kind": "machine_down", "machine_id": "M-1", "after_minutes": 5,
                "channels": [{ "type": "webhook", "url": "http://127.0.0.1:9/hook", "secret": "s" }] }),
    )
    .await;
    let operator = a
        .post(
            "/api/v1/auth/tokens",
            ADMIN,
            json!({ "name": "op-anna", "role": "operator" }),
        )
        .await["token"]
        .as_str()
        .unwrap()
        .to_string();
    // Floor times in the past: each stop is past the rule's 5 minutes when it is reported.
    let t0 = chrono::Utc::now();
    let state = |state: &str, minutes_ago: i64| {
        json!({ "event_type": "state_changed", "machine_id": "M-1", "state": state,
                "timestamp": (t0 - chrono::TimeDelta::minutes(minutes_ago)).to_rfc3339() })
    };

    // Raised (an insert by the evaluator): both instances' feeds carry the alert.
    a.post("/api/v1/machines/events", &operator, state("down", 30))
        .await;
    let mut raised = Vec::new();
    for feed in &mut feeds {
        raised.push(feed.until_kind("alert:", |d| d["state"] == "open").await);
    }
    let alert_id = raised[0]["alert_id"].as_str().unwrap().to_string();
    let topic = format!("alert:{alert_id}");
    assert_eq!(raised[0], raised[1]);
    assert_eq!(
        raised[0],
        listed(b, &alert_id).await,
        "the update is the listed alert"
    );
    assert_eq!(raised[0]["machine_id"], "M-1");

    // Acknowledged on instance B: both feeds carry the new state, with who.
    b.post(
        &format!("/api/v1/alerts/{alert_id}/acknowledge"),
        &operator,
        json!({}),
    )
    .await;
    for feed in &mut feeds {
        let acked = feed.until(&topic, |d| d["state"] == "acknowledged").await;
        assert_eq!(acked["acknowledged_by"], "op-anna");
        assert_eq!(acked, listed(a, &alert_id).await);
    }

    // Resolved when the machine runs again.
    a.post("/api/v1/machines/events", &operator, state("running", 20))
        .await;
    for feed in &mut feeds {
        let resolved = feed.until(&topic, |d| d["state"] == "resolved").await;
        assert_eq!(resolved["resolved_by"], Value::Null);
        assert_eq!(resolved, listed(b, &alert_id).await);
    }

    // The listeners lose their connections: each feed is told to reload, and changes go
    // on reaching it.
    assert_eq!(cut_listeners(&pool).await, 2, "two listeners listen");
    for feed in &mut feeds {
        feed.until("alerts:reload", |_| true).await;
    }
    a.post("/api/v1/machines/events", &operator, state("down", 10))
        .await;
    for feed in &mut feeds {
        let again = feed
            .until_kind("alert:", |d| {
                d["state"] == "open" && d["alert_id"] != alert_id.as_str()
            })
            .await;
        assert_eq!(again["machine_id"], "M-1");
    }

    cancel.cancel();
    evaluator.await.unwrap().unwrap();
    for forwarder in forwarders {
        forwarder.await.unwrap();
    }
    drop(feeds);
    for instance in &instances {
        instance.pool.close().await;
    }
    evaluator_pool.close().await;
}
