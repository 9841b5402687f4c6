//! The plant group's transport (issue 18, docs/operations.md "Plant group"): two
//! plants, each its own database, its own nats-server with a JetStream domain and the
//! real `shopfloor` binary (api + relay), connected as leafnodes to a hub nats-server
//! whose stream `GROUP_EVENTS` sources both plants' event streams through their
//! domains. The site is in every subject (the plant's namespace is its site).
//!
//! Plant A's leafnode runs through a proxy the test cuts: while cut, both plants keep
//! taking writes; once restored, the hub's stream holds every event of both plants
//! exactly once. Prints one `GROUP ...` line.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::services::{free_port, Shopfloor};
use crate::support::TestDb;

const ADMIN: &str = "group-admin-token-R7vQ2kX9mW";

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

/// One plant: its database, its NATS (domain = site) and a shopfloor (api + relay).
struct Plant {
    site: &'static str,
    db: TestDb,
    http: u16,
    _nats: Node,
    shopfloor: Shopfloor,
}

impl Plant {
    async fn start(site: &'static str, leaf_port: u16) -> Self {
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
            ("NATS_URL", format!("nats://127.0.0.1:{nats_port}")),
            ("MQTT_URL", "off".into()),
            ("SHOPFLOOR_HTTP_ADDR", format!("127.0.0.1:{http}")),
            ("SHOPFLOOR_NAMESPACE", site.into()),
            ("SHOPFLOOR_ADMIN_TOKEN", ADMIN.into()),
        ];
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let shopfloor = Shopfloor::start(
            &["--role", "api", "--role", "relay"],
            &env,
            "listening on http://",
        )
        .await;
        let plant = Self {
            site,
            db,
            http,
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

/// (site, position) of every message of the hub's group stream.
async fn group_messages(js: &async_nats::jetstream::Context) -> Vec<(String, String)> {
    let Ok(mut stream) = js.get_stream("GROUP_EVENTS").await else {
        return Vec::new();
    };
    let last = stream.info().await.unwrap().state.last_sequence;
    let mut out = Vec::new();
    for seq in 1..=last {
        let m = stream.get_raw_message(seq).await.unwrap();
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
    let (hub_port, hub_leaf) = (free_port(), free_port());
    let _hub = Node::start(
        hub_port,
        &format!(
            "server_name: hq\njetstream {{ store_dir: \"STORE\", domain: hq }}\n\
             leafnodes {{ listen: \"127.0.0.1:{hub_leaf}\" }}\n"
        ),
    );
    let mut link_a = Link::new(hub_leaf);
    link_a.up().await;
    let mut a = Plant::start("sitea", link_a.port).await;
    let mut b = Plant::start("siteb", hub_leaf).await;
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
