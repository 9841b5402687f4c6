//! Helpers: unique namespaces, a private nats-server for fault tests, waiting on
//! conditions without sleeps.

use std::future::Future;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;
use shopfloor_eventstore::{EventMetadata, EventStore, ExpectedVersion, NewEvent, StreamRef};
use uuid::Uuid;

pub const SHARED_NATS: &str = "nats://127.0.0.1:4222";

/// A namespace of its own for each test.
pub fn namespace() -> String {
    format!("t{}", &Uuid::new_v4().simple().to_string()[..12])
}

/// Appends `n` events spread over a few machine streams.
pub async fn append_events(store: &EventStore, n: usize, tag: &str) {
    for i in 0..n {
        let stream = StreamRef::new("machine", format!("M.{}", i % 4));
        let e = NewEvent {
            event_id: Uuid::new_v4(),
            event_type: "MachineTested".into(),
            schema_version: 1,
            payload: json!({ "i": i, "tag": tag }),
            metadata: EventMetadata::default(),
        };
        store
            .append(&stream, ExpectedVersion::Any, vec![e])
            .await
            .unwrap();
    }
}

/// Polls `check` until it returns Some, at most `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A nats-server of the test's own, on a free port, with its own storage.
pub struct OwnNats {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

impl OwnNats {
    pub fn start() -> Self {
        let mut n = OwnNats {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        n.spawn();
        n
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let bin = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("nats-server");
        let child = Command::new(bin)
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
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "nats-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: what was not yet fsynced is lost.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Restarts on the same port; with `wipe`, with empty storage (NATS lost all).
    pub fn restart(&mut self, wipe: bool) {
        self.kill();
        if wipe {
            self.dir = tempfile::tempdir().unwrap();
        }
        self.spawn();
    }
}

impl Drop for OwnNats {
    fn drop(&mut self) {
        self.kill();
    }
}
