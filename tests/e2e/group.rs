//! The plant group's transport (issue 18, docs/operations.md "Plant group"): two
//! plants, each its own database, its own nats-server with a JetStream domain and the
//! real `shopfloor` binary (api + relay), connected as leafnodes to a hub nats-server
//! whose stream `GROUP_EVENTS` sources both plants' event streams through their
//! domains. The site is in every subject (the plant's namespace is its site).
//!
//! Plant A's leafnode runs through a proxy the test cuts: while cut, both plants keep
//! taking writes; once restored, the hub's stream holds every event of both plants
//! exactly once. Prints one `GROUP ...` line.
//!
//! `group_role_sums_every_plant_exactly_once` runs the `group` role on that transport
//! (its own database, the hub's NATS, its own tokens; two replicas sharing the consumer):
//! with plant A's link cut and one replica restarted meanwhile, the group's KPIs, inventory and orders equal the
//! plants' sums once the link is back, and `replay --verify --group` is clean.
//!
//! `group_site_calendar_follows_the_plant` checks that a plant's calendar (time zone,
//! weekly shifts, a holiday) reaches its site at the group through the relay's snapshot
//! on `{site}.settings.calendar`: the group's KPIs equal the plant's, `as_of` included,
//! and a change made while the link is cut arrives once it is restored;
//! `a_site_keeps_the_newest_calendar_snapshot_as_recorded` checks the snapshot's
//! round trip and that an older one arriving late changes nothing.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::services::{free_port, Shopfloor};
use crate::support::TestDb;

const ADMIN: &str = "group-admin-token-R7vQ2kX9mW";
/// The plant's read models (their checkpoint names).
const READ_MODELS: [&str; 7] = [
    "machines",
    "machine_history",
    "orders",
    "maintenance",
    "inventory",
    "people",
    "spc",
];
/// The group role's own admin token (not a plant's).
const GROUP_ADMIN: &str = "hq-admin-token-Z3pL8wQ1nB5c";

/// A nats-server of the test's own, from a configuration text.
struct Node {
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Node {
    fn start(port: u16, body: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "listen: \"127.0.0.1:{port}\"\n{}",
            body.replace("STORE", &dir.path().join("js").display().to_string())
        );
        let path = dir.path().join("nats.conf");
        std::fs::write(&path, config).unwrap();
        let child = std::process::Command::new("/usr/sbin/nats-server")
            .arg("-c")
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server runs");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, _dir: dir }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP proxy on a loopback port that the test can cut and restore.
struct Link {
    port: u16,
    target: u16,
    cut: Option<CancellationToken>,
}

impl Link {
    fn new(target: u16) -> Self {
        Self {
            port: free_port(),
            target,
            cut: None,
        }
    }

    async fn up(&mut self) {
        let cancel = CancellationToken::new();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .unwrap();
        let (target, stop) = (self.target, cancel.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = stop.cancelled() => return,
                    a = listener.accept() => a,
                };
                let Ok((mut inbound, _)) = accepted else {
                    continue;
                };
                let stop = stop.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    }
                });
            }
        });
        self.cut = Some(cancel);
    }

    fn cut(&mut self) {
        if let Some(c) = self.cut.take() {
            c.cancel();
        }
    }
}

/// One plant: its database, its NATS (domain = site) and a shopfloor (api and relay, and
/// the projector where the test reads the plant's read models).
struct Plant {
    site: &'static str,
    db: TestDb,
    http: u16,
    nats_port: u16,
    _nats: Node,
    shopfloor: Shopfloor,
}

impl Plant {
    /// A plant running `roles` (`api` and `relay` at least).
    async fn start(site: &'static str, leaf_port: u16, roles: &[&str]) -> Self {
        let nats_port = free_port();
        let nats = Node::start(
            nats_port,
            &format!(
                "server_name: {site}\njetstream {{ store_dir: \"STORE\", domain: {site} }}\n\
                 leafnodes {{ remotes: [ {{ url: \"nats-leaf://127.0.0.1:{leaf_port}\" }} ] }}\n"
            ),
        );
        let db = TestDb::new().await;
        let http = free_port();
        let env = [
            ("DATABASE_URL", db.url.clone()),
            // Smaller pools: plants, group replicas and other tests share one PostgreSQL.
            ("SHOPFLOOR_DB_POOL", "12".into()),
            ("NATS_URL", format!("nats://127.0.0.1:{nats_port}")),
            ("MQTT_URL", "off".into()),
            ("SHOPFLOOR_HTTP_ADDR", format!("127.0.0.1:{http}")),
            ("SHOPFLOOR_NAMESPACE", site.into()),
            ("SHOPFLOOR_ADMIN_TOKEN", ADMIN.into()),
        ];
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let args: Vec<&str> = roles.iter().flat_map(|r| ["--role", *r]).collect();
        let shopfloor = Shopfloor::start(&args, &env, "listening on http://").await;
        let plant = Self {
            site,
            db,
            http,
            nats_port,
            _nats: nats,
            shopfloor,
        };
        let r = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{http}/api/v1/machines"))
            .bearer_auth(ADMIN)
            .json(&json!({ "machine_id": "m1", "type": "press", "line": "L1", "ideal_cycle_time_s": 1.0 }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        plant
    }

    /// Writes `n` parts events, each accepted.
    async fn write(&self, from: i64, n: i64) {
        let client = reqwest::Client::new();
        let floor = chrono::Utc::now() - chrono::Duration::days(1);
        for i in from..from + n {
            let r = client
                .post(format!(
                    "http://127.0.0.1:{}/api/v1/machines/events",
                    self.http
                ))
                .bearer_auth(ADMIN)
                .json(&json!({ "event_type": "parts_produced", "machine_id": "m1",
                    "timestamp": (floor + chrono::Duration::seconds(i)).to_rfc3339(),
                    "good": 1, "scrap": 0 }))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{}", r.status());
        }
    }

    /// Waits until the plant's own read models stand at its log's head.
    async fn projected(&self) {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&self.db.url).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (head, n, low): (i64, i64, Option<i64>) = sqlx::query_as(
                "SELECT (SELECT count(*) FROM events), count(*), min(position) \
                 FROM projection_checkpoints WHERE projection = ANY($1)",
            )
            .bind(&READ_MODELS[..])
            .fetch_one(&mut conn)
            .await
            .unwrap();
            if n == READ_MODELS.len() as i64 && low == Some(head) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "plant {} did not project",
                self.site
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn events(&self) -> u64 {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&self.db.url).await.unwrap();
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        n as u64
    }
}

/// (site, position) of every event message of the hub's group stream (the plants'
/// calendar snapshots, on `{site}.settings.calendar`, left out).
async fn group_messages(js: &async_nats::jetstream::Context) -> Vec<(String, String)> {
    let Ok(mut stream) = js.get_stream("GROUP_EVENTS").await else {
        return Vec::new();
    };
    let last = stream.info().await.unwrap().state.last_sequence;
    let mut out = Vec::new();
    for seq in 1..=last {
        let m = stream.get_raw_message(seq).await.unwrap();
        if !m.subject.contains(".events.") {
            continue;
        }
        let site = m.subject.split('.').next().unwrap_or_default().to_string();
        let position = m
            .headers
            .get("Shopfloor-Position")
            .map(|v| v.as_str().to_string())
            .unwrap_or_default();
        out.push((site, position));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_hub_sources_every_plant_over_leafnodes() {
    let (_hub, hub_port, hub_leaf, mut link_a) = hub().await;
    let mut a = Plant::start("sitea", link_a.port, &["api", "relay"]).await;
    let mut b = Plant::start("siteb", hub_leaf, &["api", "relay"]).await;
    a.write(0, 20).await;
    b.write(0, 20).await;

    let hub = async_nats::connect(format!("nats://127.0.0.1:{hub_port}"))
        .await
        .unwrap();
    let js = async_nats::jetstream::new(hub);
    let sources = [a.site, b.site]
        .iter()
        .map(|site| async_nats::jetstream::stream::Source {
            name: format!("{site}_EVENTS"),
            domain: Some(site.to_string()),
            ..Default::default()
        })
        .collect();
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "GROUP_EVENTS".into(),
        sources: Some(sources),
        storage: async_nats::jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .unwrap();

    // Cut plant A's link; both plants keep working alone.
    link_a.cut();
    a.write(20, 30).await;
    b.write(20, 30).await;
    // B's events reach the hub meanwhile; A's written during the cut do not.
    let (want_a, want_b) = (a.events().await, b.events().await);
    let deadline = Instant::now() + Duration::from_secs(60);
    let during = loop {
        let messages = group_messages(&js).await;
        let from_b = messages.iter().filter(|(s, _)| s == b.site).count() as u64;
        if from_b >= want_b || Instant::now() > deadline {
            break messages;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let from_a = during.iter().filter(|(s, _)| s == a.site).count() as u64;
    assert!(
        from_a + 30 <= want_a,
        "the cut link let {from_a} of A's {want_a} events through"
    );
    let restored = Instant::now();
    link_a.up().await;
    let want = want_a + want_b;
    let deadline = Instant::now() + Duration::from_secs(60);
    let messages = loop {
        let messages = group_messages(&js).await;
        if messages.len() as u64 >= want || Instant::now() > deadline {
            break messages;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let caught_up = restored.elapsed();
    let unique: HashSet<&(String, String)> = messages.iter().collect();
    println!(
        "GROUP hub caught up {} ms after plant A's link was restored: {} messages for {} plant events \
         ({} from A, {} from B)",
        caught_up.as_millis(),
        messages.len(),
        want,
        messages.iter().filter(|(s, _)| s == a.site).count(),
        messages.iter().filter(|(s, _)| s == b.site).count()
    );
    assert_eq!(
        messages.len() as u64,
        want,
        "the group stream misses events"
    );
    assert_eq!(
        unique.len(),
        messages.len(),
        "the group stream doubles events"
    );
    for p in [&mut a, &mut b] {
        assert!(p.shopfloor.terminate().await.is_some_and(|s| s.success()));
    }
}

/// A hub with a leafnode listener, and the link (up) that the test can cut between
/// plant A and it: (node, client port, leafnode port, link). The hub advertises the link
/// as its leafnode address: a plant's leafnode learns the advertised URL from the hub's
/// INFO and, once its connection drops, may reconnect to it, so advertising the hub's
/// own listener would let plant A reconnect around the cut (seen with nats-server 2.9).
async fn hub() -> (Node, u16, u16, Link) {
    let (hub_port, hub_leaf) = (free_port(), free_port());
    let mut link = Link::new(hub_leaf);
    let node = Node::start(
        hub_port,
        &format!(
            "server_name: hq\njetstream {{ store_dir: \"STORE\", domain: hq }}\n\
             leafnodes {{ listen: \"127.0.0.1:{hub_leaf}\", advertise: \"127.0.0.1:{}\" }}\n",
            link.port
        ),
    );
    link.up().await;
    (node, hub_port, hub_leaf, link)
}

/// Creates the hub's GROUP_EVENTS sourcing every site's stream through its domain.
async fn group_stream(js: &async_nats::jetstream::Context, sites: &[&str]) {
    let sources = sites
        .iter()
        .map(|site| async_nats::jetstream::stream::Source {
            name: format!("{site}_EVENTS"),
            domain: Some(site.to_string()),
            ..Default::default()
        })
        .collect();
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "GROUP_EVENTS".into(),
        sources: Some(sources),
        storage: async_nats::jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .unwrap();
}

async fn send(
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut r = reqwest::Client::new()
        .request(method, url)
        .bearer_auth(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

impl Plant {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http)
    }

    async fn ok(&self, method: reqwest::Method, path: &str, body: serde_json::Value) {
        let (status, answer) = send(method, self.url(path), ADMIN, Some(body)).await;
        assert!((200..300).contains(&status), "{path}: {status} {answer}");
    }

    /// A state change of m1 at `floor + at_s`.
    async fn state(&self, floor: chrono::DateTime<chrono::Utc>, at_s: i64, state: &str) {
        let at = (floor + chrono::Duration::seconds(at_s)).to_rfc3339();
        self.ok(
            reqwest::Method::POST,
            "/api/v1/machines/events",
            json!({ "event_type": "state_changed", "machine_id": "m1", "state": state, "timestamp": at }),
        )
        .await;
    }

    /// `n` parts reports of m1 (`good` good, 1 scrap each) from `floor + at_s`.
    async fn parts(&self, floor: chrono::DateTime<chrono::Utc>, at_s: i64, n: i64, good: i64) {
        let events: Vec<_> = (0..n)
            .map(|i| {
                let at = (floor + chrono::Duration::seconds(at_s + i)).to_rfc3339();
                json!({ "event_type": "parts_produced", "machine_id": "m1", "timestamp": at,
                        "good": good, "scrap": 1 })
            })
            .collect();
        self.ok(
            reqwest::Method::POST,
            "/api/v1/machines/events",
            json!({ "events": events }),
        )
        .await;
    }

    async fn get(&self, path: &str) -> serde_json::Value {
        let (status, answer) = send(reqwest::Method::GET, self.url(path), ADMIN, None).await;
        assert_eq!(status, 200, "{path}: {answer}");
        answer
    }
}

/// The group role on its own database and the hub's NATS.
struct Group {
    db: TestDb,
    http: u16,
    shopfloor: Shopfloor,
}

impl Group {
    async fn start(hub_port: u16) -> Self {
        let db = TestDb::new().await;
        let http = free_port();
        let env = [
            ("DATABASE_URL", db.url.clone()),
            // Small pools: plants, group replicas and other tests share one PostgreSQL.
            ("SHOPFLOOR_DB_POOL", "8".into()),
            ("NATS_URL", format!("nats://127.0.0.1:{hub_port}")),
            ("MQTT_URL", "off".into()),
            ("SHOPFLOOR_HTTP_ADDR", format!("127.0.0.1:{http}")),
            ("SHOPFLOOR_ADMIN_TOKEN", GROUP_ADMIN.into()),
        ];
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let shopfloor =
            Shopfloor::start(&["--role", "group"], &env, "group API listening on http://").await;
        Self {
            db,
            http,
            shopfloor,
        }
    }

    /// A second group process on the same database, sharing the durable consumer.
    async fn replica(&self, hub_port: u16) -> Shopfloor {
        let env = [
            ("DATABASE_URL", self.db.url.clone()),
            ("SHOPFLOOR_DB_POOL", "8".into()),
            ("NATS_URL", format!("nats://127.0.0.1:{hub_port}")),
            ("MQTT_URL", "off".into()),
            ("SHOPFLOOR_HTTP_ADDR", format!("127.0.0.1:{}", free_port())),
            ("SHOPFLOOR_ADMIN_TOKEN", GROUP_ADMIN.into()),
        ];
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Shopfloor::start(&["--role", "group"], &env, "group API listening on http://").await
    }

    async fn get(&self, path: &str) -> serde_json::Value {
        let url = format!("http://127.0.0.1:{}{path}", self.http);
        let answer = reqwest::Client::new()
            .get(url)
            .bearer_auth(GROUP_ADMIN)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{path}: {e}: {}",
                    self.shopfloor.log.lock().unwrap().join("\n")
                )
            });
        let status = answer.status().as_u16();
        let answer: serde_json::Value = answer.json().await.unwrap_or_default();
        assert_eq!(status, 200, "{path}: {answer}");
        answer
    }

    /// The last lines of the group process's log.
    fn log_tail(&self) -> String {
        let log = self.shopfloor.log.lock().unwrap();
        let notable: Vec<&str> = log
            .iter()
            .map(String::as_str)
            .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("panicked"))
            .collect();
        notable[notable.len().saturating_sub(20)..].join("\n")
    }

    /// Waits until every plant's whole log is copied and projected.
    async fn caught_up(&self, plants: &[&Plant]) -> Duration {
        let started = Instant::now();
        let deadline = started + Duration::from_secs(60);
        loop {
            let sites = self.get("/api/v1/group/sites").await;
            let mut done = true;
            for p in plants {
                let head = p.events().await as i64;
                let site = sites
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|s| s["site"] == p.site);
                done &= site.is_some_and(|s| {
                    s["copied_position"] == head && s["projected_position"] == head
                });
            }
            if done {
                return started.elapsed();
            }
            assert!(
                Instant::now() < deadline,
                "the group did not catch up: {sites}\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn close(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => (x - y).abs() <= 1e-6 * x.abs().max(1.0),
        _ => a == b,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_role_sums_every_plant_exactly_once() {
    let (_hub, hub_port, hub_leaf, mut link_a) = hub().await;
    let roles = ["api", "relay", "projector"];
    let mut a = Plant::start("sitea", link_a.port, &roles).await;
    let mut b = Plant::start("siteb", hub_leaf, &roles).await;
    let js = async_nats::jetstream::new(
        async_nats::connect(format!("nats://127.0.0.1:{hub_port}"))
            .await
            .unwrap(),
    );
    group_stream(&js, &[a.site, b.site]).await;
    let mut group = Group::start(hub_port).await;
    // A second replica shares the consumer: batches of one site reach both.
    let mut replica = group.replica(hub_port).await;

    // Tokens are not shared: a plant's token is unknown to the group, and back.
    let (status, problem) = send(
        reqwest::Method::GET,
        format!("http://127.0.0.1:{}/api/v1/group/sites", group.http),
        ADMIN,
        None,
    )
    .await;
    assert_eq!(status, 401, "{problem}");
    assert!(problem["detail"].is_string());
    let (status, _) = send(
        reqwest::Method::GET,
        a.url("/api/v1/machines"),
        GROUP_ADMIN,
        None,
    )
    .await;
    assert_eq!(status, 401);
    // The group's own OpenAPI document names every group route.
    let doc: serde_json::Value = reqwest::get(format!(
        "http://127.0.0.1:{}/api/v1/group/openapi.json",
        group.http
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    for route in [
        "sites",
        "kpi-metrics",
        "downtime",
        "inventory",
        "orders",
        "auth/tokens",
    ] {
        assert!(
            doc["paths"][format!("/api/v1/group/{route}")].is_object(),
            "{route} is not in the group's OpenAPI document"
        );
    }
    // A group token issued by the group's admin reads; an auditor may not issue tokens.
    let (status, issued) = send(
        reqwest::Method::POST,
        format!("http://127.0.0.1:{}/api/v1/group/auth/tokens", group.http),
        GROUP_ADMIN,
        Some(json!({ "name": "hq-auditor", "role": "auditor" })),
    )
    .await;
    assert_eq!(status, 201, "{issued}");
    let auditor = issued["token"].as_str().unwrap().to_string();
    let (status, _) = send(
        reqwest::Method::GET,
        format!("http://127.0.0.1:{}/api/v1/group/sites", group.http),
        &auditor,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, problem) = send(
        reqwest::Method::POST,
        format!("http://127.0.0.1:{}/api/v1/group/auth/tokens", group.http),
        &auditor,
        Some(json!({ "name": "x", "role": "admin" })),
    )
    .await;
    assert_eq!(status, 403, "{problem}");
    let (status, _) = send(
        reqwest::Method::GET,
        a.url("/api/v1/machines"),
        &auditor,
        None,
    )
    .await;
    assert_eq!(status, 401, "a group token works at a plant");

    let floor = chrono::Utc::now() - chrono::Duration::days(1);
    for (p, good) in [(&a, 3), (&b, 5)] {
        p.state(floor, 0, "running").await;
        p.parts(floor, 10, 20, good).await;
        p.ok(
            reqwest::Method::PATCH,
            "/api/v1/inventory/update",
            json!({ "item_id": "steel", "item_type": "raw", "location": "RM", "delta": 100 + good, "reason": "receipt" }),
        )
        .await;
        p.ok(
            reqwest::Method::POST,
            "/api/v1/production-orders",
            json!({ "order_id": format!("{}-o1", p.site), "product_id": "widget", "quantity": 50 }),
        )
        .await;
        p.ok(
            reqwest::Method::POST,
            &format!("/api/v1/production-orders/{}-o1/assign", p.site),
            json!({ "machine_id": "m1" }),
        )
        .await;
    }
    group.caught_up(&[&a, &b]).await;

    // Plant A's link is cut; both plants keep working, and the group role restarts.
    link_a.cut();
    a.state(floor, 600, "down").await;
    a.parts(floor, 700, 15, 2).await;
    a.state(floor, 1200, "running").await;
    b.state(floor, 900, "idle").await;
    b.parts(floor, 1000, 10, 4).await;
    assert!(group
        .shopfloor
        .terminate()
        .await
        .is_some_and(|s| s.success()));
    group
        .shopfloor
        .start_again("group API listening on http://")
        .await;
    b.parts(floor, 1100, 5, 1).await;
    let restored = Instant::now();
    link_a.up().await;
    group.caught_up(&[&a, &b]).await;
    let caught_up = restored.elapsed();

    // KPIs: each site as its plant says; the group the sums, ratios from the sums.
    let from = (floor - chrono::Duration::minutes(10)).to_rfc3339();
    let to = (floor + chrono::Duration::hours(1)).to_rfc3339();
    let window = format!("from={}&to={}", urlencode(&from), urlencode(&to));
    let by_site = group
        .get(&format!("/api/v1/group/kpi-metrics?{window}&by=site"))
        .await;
    let fields = [
        "planned_production_time_s",
        "run_time_s",
        "downtime_minutes",
        "good_count",
        "scrap_count",
        "total_count",
        "availability",
        "performance",
        "quality",
        "oee",
    ];
    let mut sums = [0.0_f64; 4];
    for p in [&a, &b] {
        p.projected().await;
        let plant = p
            .get(&format!("/api/v1/kpi-metrics?machine_id=m1&{window}"))
            .await;
        let plant = &plant[0];
        let site = by_site
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["site"] == p.site)
            .unwrap_or_else(|| panic!("no row of {} in {by_site}", p.site));
        for f in fields {
            assert!(
                close(&site[f], &plant[f]),
                "{} {f}: group {} plant {}",
                p.site,
                site[f],
                plant[f]
            );
        }
        for (i, f) in [
            "planned_production_time_s",
            "run_time_s",
            "good_count",
            "total_count",
        ]
        .iter()
        .enumerate()
        {
            sums[i] += plant[f].as_f64().unwrap();
        }
    }
    let all = group
        .get(&format!("/api/v1/group/kpi-metrics?{window}&by=group"))
        .await;
    let all = &all[0];
    assert_eq!(all["site"], "*");
    assert!(
        close(&all["planned_production_time_s"], &json!(sums[0])),
        "{all}"
    );
    assert!(close(&all["run_time_s"], &json!(sums[1])), "{all}");
    assert_eq!(all["good_count"].as_f64(), Some(sums[2]), "{all}");
    assert_eq!(all["total_count"].as_f64(), Some(sums[3]), "{all}");
    assert!(
        close(&all["availability"], &json!(sums[1] / sums[0])),
        "{all}"
    );
    // Counts written: A 20×3 + 15×2 good, B 20×5 + 10×4 + 5×1; nothing doubled.
    assert_eq!(sums[2], 60.0 + 30.0 + 100.0 + 40.0 + 5.0);

    // Inventory and orders: sums over the plants.
    let stock = group
        .get("/api/v1/group/inventory?by=group&item_id=steel")
        .await;
    assert_eq!(
        stock[0]["quantity"].as_f64(),
        Some(103.0 + 105.0),
        "{stock}"
    );
    let orders = group.get("/api/v1/group/orders?by=group").await;
    assert_eq!(orders[0]["orders"], 2, "{orders}");
    assert_eq!(orders[0]["quantity"], 100, "{orders}");
    let by_line = group.get("/api/v1/group/orders?by=line").await;
    let lines: Vec<(&str, &str)> = by_line
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["site"].as_str().unwrap(),
                r["line"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(lines, [("sitea", "L1"), ("siteb", "L1")], "{by_line}");
    let downtime = group
        .get(&format!("/api/v1/group/downtime?{window}&by=site"))
        .await;
    assert_eq!(downtime.as_array().map(Vec::len), Some(2), "{downtime}");
    for p in [&a, &b] {
        let plant = p
            .get(&format!("/api/v1/downtime?machine_id=m1&{window}"))
            .await;
        let site = downtime
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["site"] == p.site)
            .unwrap();
        for f in ["stops", "downtime_s", "run_time_s", "failures"] {
            assert!(
                close(&site[f], &plant[0][f]),
                "{} {f}: {site} {plant}",
                p.site
            );
        }
    }
    // A was down from 600 s to 1200 s of floor time.
    let a_down = downtime
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["site"] == "sitea")
        .unwrap();
    assert!(close(&a_down["downtime_s"], &json!(600.0)), "{a_down}");

    println!(
        "GROUP role caught up {} ms after plant A's link was restored; group OEE {} over {} parts",
        caught_up.as_millis(),
        all["oee"],
        all["total_count"]
    );

    assert!(group
        .shopfloor
        .terminate()
        .await
        .is_some_and(|s| s.success()));
    assert!(replica.terminate().await.is_some_and(|s| s.success()));
    let out = crate::support::shopfloor()
        .args(["replay", "--verify", "--group"])
        .env("DATABASE_URL", &group.db.url)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "replay --verify --group: {} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for p in [&mut a, &mut b] {
        assert!(p.shopfloor.terminate().await.is_some_and(|s| s.success()));
    }
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

/// Every YAML document of `deploy/group/k8s`.
fn group_manifests() -> Vec<serde_yaml::Value> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/group/k8s");
    let mut docs = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = <serde_yaml::Value as serde::Deserialize>::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            if !value.is_null() {
                docs.push(value);
            }
        }
    }
    docs
}

#[test]
fn the_group_manifests_run_the_group_role_with_valid_settings() {
    use shopfloor::settings::{Settings, VARIABLES};
    let docs = group_manifests();
    let find = |kind: &str, name: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} in deploy/group/k8s"))
    };
    // Settings: only variables the binary reads, valid with the operator's Secret.
    let config = find("ConfigMap", "shopfloor-group-config");
    let mut env: std::collections::BTreeMap<String, String> = config["data"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let k = k.as_str().unwrap().to_string();
            assert!(VARIABLES.contains(&k.as_str()), "{k} is not a setting");
            (k, v.as_str().unwrap().to_string())
        })
        .collect();
    assert!(
        !docs.iter().any(|d| d["kind"] == "Secret"),
        "a Secret ships"
    );
    env.insert(
        "DATABASE_URL".into(),
        "postgres://shopfloor:pw@group-postgres:5432/shopfloor_group".into(),
    );
    env.insert(
        "SHOPFLOOR_ADMIN_TOKEN".into(),
        "sft_9f3c2a7d41b8e6055c1d".into(),
    );
    let settings = Settings::from_lookup(|k| env.get(k).cloned()).unwrap();
    assert!(!settings.http_addr.ip().is_loopback());
    // The role, alone, with probes and a spread over nodes.
    let deployment = find("Deployment", "shopfloor-group");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert_eq!(args, ["serve", "--role", "group"]);
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert!(container["resources"]["requests"]["cpu"].is_string());
    assert_eq!(
        pod["topologySpreadConstraints"][0]["topologyKey"],
        "kubernetes.io/hostname"
    );
    // The stream the Job creates is the documented one.
    let stream = find("ConfigMap", "shopfloor-group-stream");
    let inline: serde_json::Value =
        serde_json::from_str(stream["data"]["group-stream.json"].as_str().unwrap()).unwrap();
    let file: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/group/group-stream.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(inline, file);
    assert_eq!(inline["name"], settings.group_stream.as_str());
    find("Job", "shopfloor-group-stream");
}

/// An event of a stream no read model reads, at `position`.
fn copied_event(position: i64) -> shopfloor_eventstore::RecordedEvent {
    shopfloor_eventstore::RecordedEvent {
        position,
        stream_type: "group_test".into(),
        stream_id: "s1".into(),
        version: position as u64,
        event_id: uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, &position.to_le_bytes()),
        event_type: "noted".into(),
        schema_version: 1,
        payload: json!({ "n": position }),
        metadata: Default::default(),
        recorded_at: chrono::Utc::now(),
    }
}

#[tokio::test]
async fn the_group_copy_is_exactly_once_across_gaps_and_redeliveries() {
    use shopfloor::group::{copy, sites};
    let db = TestDb::new().await;
    let main = sqlx::PgPool::connect(&db.url).await.unwrap();
    shopfloor_eventstore::MIGRATOR.run(&main).await.unwrap();
    let options: sqlx::postgres::PgConnectOptions = db.url.parse().unwrap();
    let group = sites::Sites::open(main.clone(), options.clone(), sites::SERVE_CONNECTIONS)
        .await
        .unwrap();
    let site = sites::Site::new("sitex").unwrap();
    let pool = group.pool(&site).await.unwrap();
    let ev = |ps: &[i64]| ps.iter().map(|p| copied_event(*p)).collect::<Vec<_>>();

    // 3 arrives late: 4 waits beyond the gap, the head stops at 2.
    let s = copy::store(&pool, &ev(&[1, 2, 4])).await.unwrap();
    assert_eq!((s.inserted, s.head), (3, 2));
    // Redelivered: nothing new.
    let s = copy::store(&pool, &ev(&[1, 2])).await.unwrap();
    assert_eq!((s.inserted, s.head), (0, 2));
    // The gap filled, 4 again: one new event, the head over both.
    let s = copy::store(&pool, &ev(&[3, 4])).await.unwrap();
    assert_eq!((s.inserted, s.head), (1, 4));
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 4);
    // The copy lives in the site's schema only.
    let public: i64 = sqlx::query_scalar("SELECT count(*) FROM public.events")
        .fetch_one(&main)
        .await
        .unwrap();
    assert_eq!(public, 0);
    copy::project(&pool).await.unwrap();
    // A restart finds the site again, and the verification is clean.
    let reopened = sites::Sites::open(main, options, sites::VERIFY_CONNECTIONS)
        .await
        .unwrap();
    assert_eq!(reopened.all().await.len(), 1);
    assert_eq!(
        shopfloor::group::verify(&reopened).await.unwrap(),
        Vec::<String>::new()
    );
    // A hole below the head is found.
    sqlx::query("DELETE FROM events WHERE position = 2")
        .execute(&pool)
        .await
        .unwrap();
    let found = shopfloor::group::verify(&reopened).await.unwrap();
    assert!(
        found
            .iter()
            .any(|d| d.contains("holds 3 events up to its head 4")),
        "{found:?}"
    );
}

impl Plant {
    /// The newest calendar snapshot in the plant's own stream.
    async fn calendar_snapshot(&self) -> Option<serde_json::Value> {
        let js = async_nats::jetstream::new(
            async_nats::connect(format!("nats://127.0.0.1:{}", self.nats_port))
                .await
                .ok()?,
        );
        let stream = js.get_stream(format!("{}_EVENTS", self.site)).await.ok()?;
        let m = stream
            .get_last_raw_message_by_subject(&format!("{}.settings.calendar", self.site))
            .await
            .ok()?;
        serde_json::from_slice(&m.payload).ok()
    }

    /// Waits until the plant's stream holds a calendar snapshot that `fits`; returns it.
    async fn published(&self, fits: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self.calendar_snapshot().await.filter(|s| fits(s)) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "the relay of {} did not publish the calendar: {:?}",
                self.site,
                self.calendar_snapshot().await
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Group {
    /// Waits until `site`'s calendar at the group is the snapshot taken at `taken_at`.
    async fn calendar_at(&self, site: &str, taken_at: &serde_json::Value) {
        let want = taken_at
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .expect("a snapshot time");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let sites = self.get("/api/v1/group/sites").await;
            let held = sites.as_array().unwrap().iter().find_map(|s| {
                (s["site"] == site)
                    .then(|| s["calendar_taken_at"].as_str())
                    .flatten()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            });
            if held.is_some_and(|h| h >= want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the group's calendar of {site} is not the plant's of {want}: {sites}\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The group's KPI row of `p`'s site equals the plant's own, field by field; the
/// plant's planned production time.
async fn same_kpis(group: &Group, p: &Plant, query: &str) -> f64 {
    let plant = p
        .get(&format!("/api/v1/kpi-metrics?machine_id=m1&{query}"))
        .await;
    let plant = &plant[0];
    let rows = group
        .get(&format!("/api/v1/group/kpi-metrics?{query}&by=site"))
        .await;
    let site = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["site"] == p.site)
        .unwrap_or_else(|| panic!("no row of {} in {rows}", p.site));
    for f in [
        "planned_production_time_s",
        "run_time_s",
        "downtime_minutes",
        "good_count",
        "scrap_count",
        "total_count",
        "availability",
        "performance",
        "quality",
        "oee",
    ] {
        assert!(
            close(&site[f], &plant[f]),
            "{query}: {f}: group {} plant {}",
            site[f],
            plant[f]
        );
    }
    plant["planned_production_time_s"].as_f64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_site_calendar_follows_the_plant() {
    let (_hub, hub_port, _, mut link) = hub().await;
    let mut a = Plant::start("sitea", link.port, &["api", "relay", "projector"]).await;
    let js = async_nats::jetstream::new(
        async_nats::connect(format!("nats://127.0.0.1:{hub_port}"))
            .await
            .unwrap(),
    );
    group_stream(&js, &[a.site]).await;
    let mut group = Group::start(hub_port).await;

    // A day of production two days ago, then the plant's calendar: Berlin time, two
    // shifts of 8 h every day, and a 10-hour holiday inside the day (at least 2 h of it
    // inside a shift, wherever it falls).
    let floor = chrono::Utc::now() - chrono::Duration::days(3);
    a.state(floor, 0, "running").await;
    a.parts(floor, 10, 30, 3).await;
    a.state(floor, 5 * 3600, "down").await;
    a.state(floor, 6 * 3600, "running").await;
    a.parts(floor, 20 * 3600, 10, 2).await;
    a.ok(
        reqwest::Method::PUT,
        "/api/v1/calendar/time-zone",
        json!({ "time_zone": "Europe/Berlin" }),
    )
    .await;
    let two_shifts = json!({ "shifts": [
        { "shift_name": "early", "start_time": "06:00", "end_time": "14:00" },
        { "shift_name": "late", "start_time": "14:00", "end_time": "22:00" },
    ]});
    a.ok(
        reqwest::Method::PUT,
        "/api/v1/calendar/lines/L1/shifts",
        two_shifts,
    )
    .await;
    let before_holiday = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let local = |h: i64| {
        (floor + chrono::Duration::hours(h))
            .naive_utc()
            .format("%Y-%m-%dT%H:%M:%S")
            .to_string()
    };
    a.ok(
        reqwest::Method::POST,
        "/api/v1/calendar/non-working",
        json!({ "name": "holiday", "from": local(8), "to": local(18) }),
    )
    .await;
    let first = a
        .published(|s| {
            s["time_zone"] == "Europe/Berlin"
                && s["shifts"].as_array().map(Vec::len) == Some(2)
                && s["non_working"].as_array().map(Vec::len) == Some(1)
        })
        .await;
    a.projected().await;
    group.caught_up(&[&a]).await;
    group.calendar_at(a.site, &first["taken_at"]).await;

    let window = format!(
        "from={}&to={}",
        urlencode(&floor.to_rfc3339()),
        urlencode(&(floor + chrono::Duration::hours(24)).to_rfc3339())
    );
    let planned = same_kpis(&group, &a, &window).await;
    // 16 h of shifts less 2 to 10 h of holiday (an hour either way across DST):
    // the calendar counted, at the group as at the plant.
    assert!(
        (5.0 * 3600.0..=15.0 * 3600.0).contains(&planned),
        "{planned}"
    );
    // As of before the holiday was recorded: the shifts without it, at both.
    let then = format!("{window}&as_of={}", urlencode(&before_holiday.to_rfc3339()));
    let planned_then = same_kpis(&group, &a, &then).await;
    assert!(
        planned_then >= planned + 2.0 * 3600.0,
        "{planned_then} {planned}"
    );

    // The link is cut; the plant goes to one shift meanwhile.
    link.cut();
    a.ok(
        reqwest::Method::PUT,
        "/api/v1/calendar/lines/L1/shifts",
        json!({ "shifts": [{ "shift_name": "early", "start_time": "06:00", "end_time": "14:00" }] }),
    )
    .await;
    let second = a
        .published(|s| s["shifts"].as_array().map(Vec::len) == Some(1))
        .await;
    assert_ne!(second["taken_at"], first["taken_at"]);
    let plant_now = a
        .get(&format!("/api/v1/kpi-metrics?machine_id=m1&{window}"))
        .await;
    let one_shift = plant_now[0]["planned_production_time_s"].as_f64().unwrap();
    assert!(one_shift < planned, "{one_shift} {planned}");
    // Cut off, the group still holds the two shifts.
    let at_group = group
        .get(&format!("/api/v1/group/kpi-metrics?{window}&by=site"))
        .await;
    assert!(
        close(&at_group[0]["planned_production_time_s"], &json!(planned)),
        "{at_group}"
    );

    let restored = Instant::now();
    link.up().await;
    group.calendar_at(a.site, &second["taken_at"]).await;
    let caught_up = restored.elapsed();
    let planned = same_kpis(&group, &a, &window).await;
    assert!(close(&json!(planned), &json!(one_shift)), "{planned}");
    same_kpis(&group, &a, &then).await;
    println!(
        "GROUP calendar of {} caught up {} ms after its link was restored",
        a.site,
        caught_up.as_millis()
    );

    assert!(group
        .shopfloor
        .terminate()
        .await
        .is_some_and(|s| s.success()));
    assert!(a.shopfloor.terminate().await.is_some_and(|s| s.success()));
}

#[tokio::test]
async fn a_site_keeps_the_newest_calendar_snapshot_as_recorded() {
    use chrono::{NaiveDate, NaiveTime};
    use shopfloor::group::sites;
    use shopfloor_projections::calendar_sync::{self, Applied};
    use shopfloor_projections::query::calendar as cal;
    use shopfloor_projections::query::shift_plan::{NonWorking, ShiftSpec};

    let plant_db = TestDb::new().await;
    let plant = sqlx::PgPool::connect(&plant_db.url).await.unwrap();
    shopfloor_eventstore::MIGRATOR.run(&plant).await.unwrap();
    let t = |h, m| NaiveTime::from_hms_opt(h, m, 0).unwrap();
    let shift = |name: &str, from, to| cal::ShiftDefinition {
        line: "L1".into(),
        shift_name: name.into(),
        start_time: from,
        end_time: to,
        days: vec![1, 2, 3, 4, 5],
    };
    cal::set_plant_time_zone(&plant, "Europe/Berlin")
        .await
        .unwrap();
    cal::replace_shifts(&plant, "L1", &[shift("early", t(6, 0), t(14, 0))])
        .await
        .unwrap();
    let day = NaiveDate::from_ymd_opt(2026, 12, 24).unwrap();
    let short = ShiftSpec {
        shift: "short".into(),
        team: Some("A".into()),
        start: t(6, 0),
        end: t(10, 0),
        breaks: Vec::new(),
    };
    cal::record_exception(&plant, "L1", day, &[short], "planner")
        .await
        .unwrap();
    let holiday = |name: &str| NonWorking {
        name: name.into(),
        from: day.and_time(t(0, 0)),
        to: day.succ_opt().unwrap().and_time(t(0, 0)),
        site: None,
    };
    // A holiday of one ISA-95 site travels with its site (recorded here without the
    // hierarchy the API would check it against).
    sqlx::query(
        "INSERT INTO calendar_non_working (name, from_local, to_local, site) \
         VALUES ('north stock-take', $1, $2, 'north')",
    )
    .bind(day.and_time(t(6, 0)))
    .bind(day.and_time(t(14, 0)))
    .execute(&plant)
    .await
    .unwrap();
    cal::add_non_working(&plant, &holiday("kept"), "planner")
        .await
        .unwrap();
    let removed = cal::add_non_working(&plant, &holiday("removed"), "planner")
        .await
        .unwrap();
    assert!(cal::remove_non_working(&plant, removed).await.unwrap());
    let older = calendar_sync::take(&plant).await.unwrap();
    assert_eq!(older.non_working.len(), 3, "removed periods travel too");
    assert_eq!(
        older
            .non_working
            .iter()
            .filter_map(|n| n.site.as_deref())
            .collect::<Vec<_>>(),
        ["north"]
    );
    // A change: the fingerprint moves, a later snapshot holds it.
    cal::replace_shifts(
        &plant,
        "L1",
        &[
            shift("early", t(6, 0), t(14, 0)),
            shift("late", t(14, 0), t(22, 0)),
        ],
    )
    .await
    .unwrap();
    assert_ne!(
        calendar_sync::fingerprint(&plant).await.unwrap(),
        older.fingerprint
    );
    let newer = calendar_sync::take(&plant).await.unwrap();
    assert!(newer.taken_at > older.taken_at);

    let group_db = TestDb::new().await;
    let main = sqlx::PgPool::connect(&group_db.url).await.unwrap();
    shopfloor_eventstore::MIGRATOR.run(&main).await.unwrap();
    let group = sites::Sites::open(
        main,
        group_db.url.parse().unwrap(),
        sites::SERVE_CONNECTIONS,
    )
    .await
    .unwrap();
    let site = group
        .pool(&sites::Site::new("sitex").unwrap())
        .await
        .unwrap();
    assert_eq!(calendar_sync::applied(&site).await.unwrap(), None);
    let (_, hash) = newer.encode().unwrap();
    assert_eq!(
        calendar_sync::apply(&site, &newer, &hash).await.unwrap(),
        Applied::Replaced
    );
    // The older one, arriving late, and the same one again change nothing.
    let (_, old_hash) = older.encode().unwrap();
    assert_eq!(
        calendar_sync::apply(&site, &older, &old_hash)
            .await
            .unwrap(),
        Applied::Older
    );
    assert_eq!(
        calendar_sync::apply(&site, &newer, &hash).await.unwrap(),
        Applied::Older
    );
    assert_eq!(
        calendar_sync::applied(&site).await.unwrap(),
        Some(newer.taken_at)
    );
    // The site holds the plant's calendar row for row (times, ids and removals kept).
    let copy = calendar_sync::take(&site).await.unwrap();
    assert_eq!(copy.fingerprint, newer.fingerprint);
    assert_eq!(
        (
            &copy.time_zone,
            &copy.shifts,
            &copy.rotations,
            &copy.exceptions,
            &copy.non_working
        ),
        (
            &newer.time_zone,
            &newer.shifts,
            &newer.rotations,
            &newer.exceptions,
            &newer.non_working
        )
    );
}
