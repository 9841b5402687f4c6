//! Runs the `shopfloor` binary on a fresh database and namespace.

use std::process::Stdio;
use std::time::Duration;

use sqlx::{Connection, PgConnection};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use uuid::Uuid;

pub fn server_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/shopfloor".to_string())
}

/// A database created for one test, dropped when the test ends.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn new() -> Self {
        let name = format!("e2e_{}", Uuid::new_v4().simple());
        let server = server_url();
        let mut conn = PgConnection::connect(&server)
            .await
            .expect("PostgreSQL is up");
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await
            .unwrap();
        let base = server.rsplit_once('/').map(|(b, _)| b).unwrap_or(&server);
        Self {
            url: format!("{base}/{name}"),
            name,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Best effort, off the async runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let mut conn = PgConnection::connect(&server_url()).await.ok()?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .execute(&mut conn)
                    .await
                    .ok()
            });
            Ok::<_, std::io::Error>(())
        })
        .join();
    }
}

/// A running `shopfloor serve`.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub db: TestDb,
    pub namespace: String,
}

pub fn shopfloor() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shopfloor"));
    cmd.env_remove("SHOPFLOOR_ADMIN_TOKEN").kill_on_drop(true);
    cmd
}

impl Server {
    /// Starts `shopfloor serve` with `args` on a fresh database and namespace, and
    /// waits until it says where it listens.
    pub async fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        let db = TestDb::new().await;
        let namespace = format!("e2e_{}", &Uuid::new_v4().simple().to_string()[..12]);
        let mut cmd = shopfloor();
        cmd.arg("serve")
            .args(args)
            .env("DATABASE_URL", &db.url)
            .env("SHOPFLOOR_HTTP_ADDR", "127.0.0.1:0")
            .env("SHOPFLOOR_NAMESPACE", &namespace)
            .env("MQTT_URL", "off")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("the binary starts");
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let base = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(i) = line.find("listening on http://") {
                    let rest = &line[i + "listening on ".len()..];
                    return rest.split_whitespace().next().unwrap().to_string();
                }
            }
            panic!("shopfloor exited before listening");
        })
        .await
        .expect("shopfloor did not start listening in time");
        // Keep draining its log so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            child,
            base,
            db,
            namespace,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends SIGTERM and waits for the exit status.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("still running").to_string();
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(killed.success());
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("shopfloor did not stop after SIGTERM")
            .unwrap()
    }
}
