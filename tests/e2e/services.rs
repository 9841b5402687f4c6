//! Private services for one test: its own PostgreSQL cluster, nats-server and Mosquitto,
//! each on a free loopback port with its own storage in a temporary directory, each
//! restartable, each killed when dropped. The shared services on the standard ports are
//! never touched. Also [`Shopfloor`]: the binary as a child process whose log is kept,
//! killable with SIGKILL and restartable with the same settings.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits (bounded) until something accepts TCP connections on the loopback port.
fn wait_port(port: u16, what: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A command run as the `postgres` user.
fn as_postgres(bin: &str) -> Command {
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", "postgres", "--"])
        .arg(format!("{PG_BIN}/{bin}"));
    cmd
}

/// A PostgreSQL 15 cluster of the test's own: trust authentication, listening on
/// 127.0.0.1 only, with the database `shopfloor`.
pub struct PrivatePg {
    pub port: u16,
    dir: tempfile::TempDir,
    running: bool,
}

impl PrivatePg {
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("sf-pg-")
            .tempdir_in("/tmp")
            .unwrap();
        run(
            Command::new("chown")
                .arg("postgres:postgres")
                .arg(dir.path()),
            "chown",
        );
        let mut pg = Self {
            port: free_port(),
            dir,
            running: false,
        };
        run(
            as_postgres("initdb").arg("-D").arg(pg.data()).args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            ]),
            "initdb",
        );
        pg.start_again();
        run(
            Command::new(format!("{PG_BIN}/createdb"))
                .args(["-h", "127.0.0.1", "-p", &pg.port.to_string()])
                .args(["-U", "postgres", "shopfloor"]),
            "createdb",
        );
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/shopfloor", self.port)
    }

    /// Starts the stopped cluster on the same port and data.
    pub fn start_again(&mut self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        run(
            as_postgres("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .arg("-l")
                .arg(self.dir.path().join("log"))
                .args(["-w", "-t", "60", "-o", &options, "start"]),
            "pg_ctl start",
        );
        self.running = true;
        wait_port(self.port, "PostgreSQL", Duration::from_secs(30));
    }

    /// Stops it: `immediate` is a crash (recovery at the next start), `fast` a clean stop.
    pub fn stop(&mut self, mode: &str) {
        if !self.running {
            return;
        }
        run(
            as_postgres("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .args(["-m", mode, "-w", "-t", "60", "stop"]),
            "pg_ctl stop",
        );
        self.running = false;
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        if self.running {
            let _ = as_postgres("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .args(["-m", "immediate", "-w", "stop"])
                .output();
        }
    }
}

/// A nats-server with JetStream of the test's own.
pub struct PrivateNats {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl PrivateNats {
    pub fn start() -> Self {
        let mut n = Self {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        n.start_again();
        n
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn start_again(&mut self) {
        let child = Command::new("/usr/sbin/nats-server")
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server runs");
        self.child = Some(child);
        wait_port(self.port, "nats-server", Duration::from_secs(20));
    }

    /// SIGKILL: what JetStream had not yet written is lost (DESIGN trap 10).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A JetStream cluster of the test's own: `n` nats-server nodes (`n1`, `n2`, ...)
/// routed to each other on free loopback ports, each with its own storage; each
/// node killable and restartable.
pub struct PrivateNatsCluster {
    pub ports: Vec<u16>,
    cluster_ports: Vec<u16>,
    dir: tempfile::TempDir,
    children: Vec<Option<Child>>,
}

impl PrivateNatsCluster {
    pub fn start(n: usize) -> Self {
        let mut c = Self {
            ports: (0..n).map(|_| free_port()).collect(),
            cluster_ports: (0..n).map(|_| free_port()).collect(),
            dir: tempfile::tempdir().unwrap(),
            children: (0..n).map(|_| None).collect(),
        };
        for i in 0..n {
            c.start_node(i);
        }
        c
    }

    /// The server name of node `i`.
    pub fn name(i: usize) -> String {
        format!("n{}", i + 1)
    }

    /// Every node's URL, separated by commas (the form `NATS_URL` takes).
    pub fn urls(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn start_node(&mut self, i: usize) {
        let routes: Vec<String> = self
            .cluster_ports
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, p)| format!("\"nats-route://127.0.0.1:{p}\""))
            .collect();
        let store = self.dir.path().join(Self::name(i));
        let config = format!(
            "server_name: {name}\nlisten: \"127.0.0.1:{port}\"\n\
             jetstream {{ store_dir: \"{store}\" }}\n\
             cluster {{ name: sfha, listen: \"127.0.0.1:{cport}\", routes: [{routes}] }}\n",
            name = Self::name(i),
            port = self.ports[i],
            store = store.display(),
            cport = self.cluster_ports[i],
            routes = routes.join(", "),
        );
        let path = self.dir.path().join(format!("{}.conf", Self::name(i)));
        std::fs::write(&path, config).unwrap();
        let child = Command::new("/usr/sbin/nats-server")
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server runs");
        self.children[i] = Some(child);
        wait_port(self.ports[i], "nats-server", Duration::from_secs(20));
    }

    /// SIGKILL node `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateNatsCluster {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill(i);
        }
    }
}

/// A Mosquitto of the test's own, with persistence (so a restart keeps sessions and
/// queued messages).
pub struct PrivateMosquitto {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl PrivateMosquitto {
    pub fn start() -> Self {
        Self::start_with("")
    }

    /// With extra configuration lines (TLS, authentication) appended.
    pub fn start_with(extra: &str) -> Self {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let conf = format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n\
             persistence_location {}/\nuser root\nmax_queued_messages 100000\n\
             max_inflight_messages 1000\n{extra}\n",
            dir.path().display()
        );
        std::fs::write(dir.path().join("mosquitto.conf"), conf).unwrap();
        let mut m = Self {
            port,
            dir,
            child: None,
        };
        m.start_again();
        m
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    pub fn start_again(&mut self) {
        let child = Command::new("/usr/sbin/mosquitto")
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto runs");
        self.child = Some(child);
        wait_port(self.port, "mosquitto", Duration::from_secs(20));
    }

    /// SIGTERM: Mosquitto writes its persistence file and exits.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateMosquitto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The `shopfloor` binary as a child process; its log lines are kept.
pub struct Shopfloor {
    args: Vec<String>,
    env: Vec<(String, String)>,
    child: Option<tokio::process::Child>,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Shopfloor {
    /// Starts `shopfloor serve <args>` with `env` (on top of a clean environment for
    /// the settings), and waits until it logs `ready_line`.
    pub async fn start(args: &[&str], env: &[(&str, &str)], ready_line: &str) -> Self {
        let mut s = Self {
            args: args.iter().map(|a| a.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
            log: Arc::default(),
        };
        s.start_again(ready_line).await;
        s
    }

    pub async fn start_again(&mut self, ready_line: &str) {
        let mut cmd = crate::support::shopfloor();
        cmd.arg("serve")
            .args(&self.args)
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("the binary starts");
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let log = self.log.clone();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = tx.send(line.clone());
                log.lock().unwrap().push(line);
            }
        });
        self.child = Some(child);
        let ready = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = rx.recv().await {
                if line.contains(ready_line) {
                    return true;
                }
            }
            false
        })
        .await;
        assert!(
            matches!(ready, Ok(true)),
            "shopfloor did not log {ready_line:?}: {}",
            self.log.lock().unwrap().join("\n")
        );
    }

    /// SIGKILL, and wait for it to be gone.
    pub async fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
    }

    /// SIGTERM and the exit status.
    pub async fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let pid = c.id()?.to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        tokio::time::timeout(Duration::from_secs(40), c.wait())
            .await
            .ok()?
            .ok()
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}
