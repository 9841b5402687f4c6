//! `shopfloor bench http`: the HTTP write path as a client meets it.
//!
//! The bench starts the real binary (`shopfloor serve --role api`, this very
//! executable) as a child process on a free port, with its own namespace and its
//! default settings, issues tokens through the API, registers machines, then
//! drives it over keep-alive HTTP/1.1 connections from this process (so client
//! and server share the machine's cores, as the targets say). Each workload runs
//! for a fixed time and reports requests per second, latency percentiles and
//! every status code it got.
//!
//! The client is a minimal HTTP/1.1 writer/reader over one `TcpStream` per
//! connection: it costs far less CPU than the server it measures.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::bench::Summary;

/// One keep-alive connection.
struct Conn {
    stream: BufReader<TcpStream>,
    host: String,
}

impl Conn {
    async fn open(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream: BufReader::with_capacity(16 * 1024, stream),
            host: addr.to_string(),
        })
    }

    /// Sends one request and reads the whole response; returns status and body.
    async fn call(
        &mut self,
        method: &str,
        path: &str,
        token: &str,
        body: &[u8],
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.host,
            body.len()
        );
        let mut request = Vec::with_capacity(head.len() + body.len());
        request.extend_from_slice(head.as_bytes());
        request.extend_from_slice(body);
        self.stream.get_mut().write_all(&request).await?;
        self.read_response().await
    }

    async fn read_response(&mut self) -> anyhow::Result<(u16, Vec<u8>)> {
        let mut head = Vec::with_capacity(512);
        loop {
            let byte = self.stream.read_u8().await?;
            head.push(byte);
            if head.ends_with(b"\r\n\r\n") {
                break;
            }
            if head.len() > 64 * 1024 {
                bail!("response head too long");
            }
        }
        let text = String::from_utf8_lossy(&head);
        let status: u16 = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .context("no status code")?;
        let length = text
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())
                    .flatten()
            })
            .context("no content-length")?;
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await?;
        Ok((status, body))
    }
}

/// The server under test: a child `shopfloor serve --role api`.
struct Server {
    _child: tokio::process::Child,
    addr: SocketAddr,
    admin: String,
}

/// `n` API processes on one database and namespace, sharing the admin token.
async fn start_servers(
    settings: &crate::settings::Settings,
    n: usize,
) -> anyhow::Result<Vec<Server>> {
    let admin = format!("bench-admin-{}", uuid::Uuid::new_v4().simple());
    let mut servers = Vec::new();
    for _ in 0..n.max(1) {
        servers.push(Server::start(settings, &admin).await?);
    }
    Ok(servers)
}

impl Server {
    async fn start(settings: &crate::settings::Settings, admin: &str) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let admin = admin.to_string();
        let exe = std::env::current_exe()?;
        let child = tokio::process::Command::new(exe)
            .args(["serve", "--role", "api"])
            .env("SHOPFLOOR_HTTP_ADDR", addr.to_string())
            .env("SHOPFLOOR_ADMIN_TOKEN", &admin)
            .env(
                "SHOPFLOOR_NAMESPACE",
                format!("{}-httpbench{}", settings.namespace, std::process::id()),
            )
            .env("MQTT_URL", "off")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting shopfloor serve --role api")?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(mut c) = Conn::open(addr).await {
                if let Ok((200, _)) = c.call("GET", "/healthz", "", b"").await {
                    break;
                }
            }
            if Instant::now() > deadline {
                bail!("the server did not answer /healthz within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Self {
            _child: child,
            addr,
            admin,
        })
    }

    async fn token(&self, role: &str) -> anyhow::Result<String> {
        let mut c = Conn::open(self.addr).await?;
        let name = format!("bench-{role}-{}", uuid::Uuid::new_v4().simple());
        let body = json!({ "name": name, "role": role }).to_string();
        let (status, body) = c
            .call("POST", "/api/v1/auth/tokens", &self.admin, body.as_bytes())
            .await?;
        anyhow::ensure!(status == 201, "issuing a token answered {status}");
        let v: Value = serde_json::from_slice(&body)?;
        v["token"]
            .as_str()
            .map(str::to_string)
            .context("no token in the answer")
    }
}

/// What one request of a workload is: method, path, token, body.
type MakeRequest = dyn Fn(u64) -> (&'static str, String, Vec<u8>) + Send + Sync;

/// Runs `connections` keep-alive connections for `secs`, each sending the
/// requests `make` gives (numbered across connections), and summarises them.
async fn drive(
    addrs: &[SocketAddr],
    token: &str,
    connections: usize,
    secs: f64,
    make: std::sync::Arc<MakeRequest>,
) -> anyhow::Result<(Summary, BTreeMap<u16, u64>)> {
    let counter = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = Instant::now() + Duration::from_secs_f64(secs);
    let mut set = tokio::task::JoinSet::new();
    for k in 0..connections {
        let addr = addrs[k % addrs.len()];
        let (make, counter, token) = (make.clone(), counter.clone(), token.to_string());
        set.spawn(async move {
            let mut conn = Conn::open(addr).await?;
            let mut latencies = Vec::new();
            let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
            while Instant::now() < stop {
                let i = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let (method, path, body) = make(i);
                let t0 = Instant::now();
                let (status, _) = conn.call(method, &path, &token, &body).await?;
                latencies.push(t0.elapsed());
                *statuses.entry(status).or_default() += 1;
            }
            Ok::<_, anyhow::Error>((latencies, statuses))
        });
    }
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    while let Some(done) = set.join_next().await {
        let (l, s) = done??;
        latencies.extend(l);
        for (k, v) in s {
            *statuses.entry(k).or_default() += v;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    Ok((
        Summary {
            ops: latencies.len(),
            secs,
            latencies,
        },
        statuses,
    ))
}

/// A machine event body at floor time `at` (ms since the epoch).
fn machine_event(machine: &str, i: u64, at: chrono::DateTime<chrono::Utc>) -> Value {
    if i % 10 == 0 {
        let state = ["running", "idle", "running", "down"][(i / 10 % 4) as usize];
        json!({"event_type": "state_changed", "machine_id": machine,
               "timestamp": at.to_rfc3339(), "state": state})
    } else {
        json!({"event_type": "parts_produced", "machine_id": machine,
               "timestamp": at.to_rfc3339(), "good": 1, "scrap": u64::from(i % 17 == 0)})
    }
}

/// Registers `n` machines through the API (32 at a time).
async fn register(server: &Server, token: &str, prefix: &str, n: usize) -> anyhow::Result<()> {
    let ids: Vec<String> = (0..n).map(|i| format!("{prefix}-{i:04}")).collect();
    let mut set = tokio::task::JoinSet::new();
    for chunk in ids.chunks(n.div_ceil(32).max(1)) {
        let (chunk, addr, token) = (chunk.to_vec(), server.addr, token.to_string());
        set.spawn(async move {
            let mut c = Conn::open(addr).await?;
            for id in chunk {
                let body = json!({"machine_id": id, "type": "press", "line": "L1",
                                  "ideal_cycle_time_s": 0.5})
                .to_string();
                let (status, _) = c
                    .call("POST", "/api/v1/machines", &token, body.as_bytes())
                    .await?;
                anyhow::ensure!(status == 201, "registering {id} answered {status}");
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    Ok(())
}

/// `bench http`: the four workloads of issue 13, one after the other.
pub async fn http(
    settings: &crate::settings::Settings,
    machines: usize,
    connections: usize,
    secs: f64,
    processes: usize,
) -> anyhow::Result<Value> {
    let servers = start_servers(settings, processes).await?;
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    let server = &servers[0];
    let operator = server.token("operator").await?;
    let supervisor = server.token("supervisor").await?;
    let prefix = format!("hb{}", std::process::id());
    eprintln!("registering {machines} machines…");
    register(server, &supervisor, &prefix, machines).await?;
    let base = chrono::Utc::now() - chrono::Duration::hours(2);
    let at = move |i: u64| base + chrono::Duration::milliseconds((i % 7_000_000) as i64);
    let ids: std::sync::Arc<Vec<String>> =
        std::sync::Arc::new((0..machines).map(|i| format!("{prefix}-{i:04}")).collect());
    let mut results = Vec::new();

    let workloads: Vec<(&str, &str, usize, std::sync::Arc<MakeRequest>)> = vec![
        (
            "single machine events, round-robin",
            operator.as_str(),
            connections,
            {
                let ids = ids.clone();
                std::sync::Arc::new(move |i| {
                    let m = &ids[(i as usize) % ids.len()];
                    (
                        "POST",
                        "/api/v1/machines/events".into(),
                        machine_event(m, i, at(i)).to_string().into_bytes(),
                    )
                })
            },
        ),
        ("batches of 50 events", operator.as_str(), connections, {
            let ids = ids.clone();
            std::sync::Arc::new(move |i| {
                let events: Vec<Value> = (0..50u64)
                    .map(|k| {
                        let n = i * 50 + k;
                        machine_event(&ids[(n as usize * 7) % ids.len()], n, at(n))
                    })
                    .collect();
                (
                    "POST",
                    "/api/v1/machines/events".into(),
                    json!({ "events": events }).to_string().into_bytes(),
                )
            })
        }),
        ("order creation", supervisor.as_str(), connections, {
            let prefix = prefix.clone();
            std::sync::Arc::new(move |i| {
                let body = json!({"order_id": format!("{prefix}-PO-{i}"), "product_id": "widget",
                                  "quantity": 100});
                (
                    "POST",
                    "/api/v1/production-orders".into(),
                    body.to_string().into_bytes(),
                )
            })
        }),
        ("4 writers on one hot machine", operator.as_str(), 4, {
            let hot = ids[0].clone();
            std::sync::Arc::new(move |i| {
                (
                    "POST",
                    "/api/v1/machines/events".into(),
                    machine_event(&hot, i, at(i)).to_string().into_bytes(),
                )
            })
        }),
    ];
    for (name, token, conns, make) in workloads {
        eprintln!("{name}: {conns} connections for {secs} s…");
        let (summary, statuses) = drive(&addrs, token, conns, secs, make).await?;
        let refused_503 = statuses.get(&503).copied().unwrap_or(0);
        let result = summary.json(json!({
            "workload": name, "connections": conns,
            "statuses": statuses.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "answers_503": refused_503,
        }));
        eprintln!("{result}");
        results.push(result);
    }
    drop(servers);
    Ok(
        json!({ "bench": "http", "machines": machines, "processes": addrs.len(), "secs_per_workload": secs, "workloads": results }),
    )
}
