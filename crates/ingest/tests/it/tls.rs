//! MQTT over TLS with a username and password: a private Mosquitto with a certificate
//! from a throwaway CA made by `openssl` in the test, anonymous access off. The ingest
//! connects with `mqtts://user:pass@127.0.0.1:port?ca=ca.pem`; a wrong password or a
//! plain connection gets nowhere.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::tokio_rustls::rustls;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use shopfloor_ingest::{run_ingest, IngestConfig};
use sqlx::PgPool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::support::*;

const USER: &str = "ingest";
/// With characters that must be percent-encoded in the URL.
const PASSWORD: &str = "s3cr:t@pw";
const PASSWORD_IN_URL: &str = "s3cr%3At%40pw";

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, and a server certificate for 127.0.0.1 / localhost signed by it.
fn certificates(dir: &Path) {
    let p = |f: &str| dir.join(f);
    run(Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=shopfloor-test-ca", "-keyout"])
        .arg(p("ca.key"))
        .arg("-out")
        .arg(p("ca.pem")));
    run(Command::new("openssl")
        .args([
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(p("server.key"))
        .arg("-out")
        .arg(p("server.csr")));
    std::fs::write(
        p("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(Command::new("openssl")
        .args(["x509", "-req", "-days", "2", "-CAcreateserial", "-in"])
        .arg(p("server.csr"))
        .arg("-CA")
        .arg(p("ca.pem"))
        .arg("-CAkey")
        .arg(p("ca.key"))
        .arg("-extfile")
        .arg(p("ext.cnf"))
        .arg("-out")
        .arg(p("server.pem")));
}

struct TlsBroker {
    port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

impl TlsBroker {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        certificates(dir.path());
        run(Command::new("mosquitto_passwd")
            .args(["-c", "-b"])
            .arg(dir.path().join("passwd"))
            .args([USER, PASSWORD]));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let d = dir.path().display();
        std::fs::write(
            dir.path().join("mosquitto.conf"),
            format!(
                "listener {port} 127.0.0.1\ncafile {d}/ca.pem\ncertfile {d}/server.pem\n\
                 keyfile {d}/server.key\nallow_anonymous false\npassword_file {d}/passwd\n\
                 user root\npersistence false\n"
            ),
        )
        .unwrap();
        let child = Command::new("/usr/sbin/mosquitto")
            .arg("-c")
            .arg(dir.path().join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto starts");
        assert!(
            eventually(Duration::from_secs(10), || async move {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
            })
            .await,
            "mosquitto listens"
        );
        Self { port, dir, child }
    }

    fn ca(&self) -> std::path::PathBuf {
        self.dir.path().join("ca.pem")
    }
}

impl Drop for TlsBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_ingest(
    pool: &PgPool,
    url: &str,
    ns: &str,
) -> (
    CancellationToken,
    watch::Receiver<bool>,
    tokio::task::JoinHandle<Result<(), shopfloor_ingest::IngestError>>,
) {
    let mut config = IngestConfig::new(url.parse().expect("url"), ns);
    config.max_backoff = Duration::from_millis(300);
    let (tx, rx) = watch::channel(false);
    let cancel = CancellationToken::new();
    let handle = tokio::spawn(run_ingest(writer(pool), config, tx, cancel.clone()));
    (cancel, rx, handle)
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn ingest_over_tls_with_a_password(pool: PgPool) {
    let broker = TlsBroker::start().await;
    let ns = namespace("tls");
    register(&pool, "tls-1").await;

    // Wrong password, and plain MQTT on the TLS port: never ready.
    let wrong = format!(
        "mqtts://{USER}:nope@127.0.0.1:{}?ca={}",
        broker.port,
        broker.ca().display()
    );
    let (c1, r1, h1) = start_ingest(&pool, &wrong, &format!("{ns}w"));
    let plain = format!("mqtt://{USER}:{PASSWORD_IN_URL}@127.0.0.1:{}", broker.port);
    let (c2, r2, h2) = start_ingest(&pool, &plain, &format!("{ns}p"));

    let url = format!(
        "mqtts://{USER}:{PASSWORD_IN_URL}@127.0.0.1:{}?ca={}",
        broker.port,
        broker.ca().display()
    );
    let (cancel, mut ready, handle) = start_ingest(&pool, &url, &ns);
    tokio::time::timeout(Duration::from_secs(10), ready.wait_for(|r| *r))
        .await
        .expect("the TLS ingest is ready in time")
        .unwrap();

    // A publisher over TLS with the same credentials.
    let pem = std::fs::read(broker.ca()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut options = MqttOptions::new(format!("{ns}-pub"), "127.0.0.1", broker.port);
    options
        .set_credentials(USER, PASSWORD)
        .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(tls),
        )));
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    let acked = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    });
    client
        .publish(
            format!("{ns}/machines/tls-1/count"),
            QoS::AtLeastOnce,
            false,
            r#"{"good": 3, "scrap": 1, "timestamp": "2026-11-24T10:00:00Z"}"#,
        )
        .await
        .unwrap();
    assert!(tokio::time::timeout(Duration::from_secs(10), acked)
        .await
        .expect("PUBACK in time")
        .unwrap());
    let pool2 = pool.clone();
    assert!(
        eventually(Duration::from_secs(10), || {
            let pool = pool2.clone();
            async move {
                machine_events(&pool, "tls-1")
                    .await
                    .iter()
                    .any(|(t, p)| t == "MachinePartsProduced" && p["good"] == 3 && p["scrap"] == 1)
            }
        })
        .await,
        "the message sent over TLS was not stored"
    );
    assert!(!*r1.borrow(), "a wrong password was let in");
    assert!(!*r2.borrow(), "plain MQTT was let in on the TLS port");
    for (c, h) in [(cancel, handle), (c1, h1), (c2, h2)] {
        c.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), h).await;
    }
}
