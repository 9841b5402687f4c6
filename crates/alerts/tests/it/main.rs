//! Alerts against real parts: PostgreSQL (a fresh database per test), the real command
//! service, evaluator and delivery worker, a real HTTP receiver on loopback that checks the
//! signature, and a real SMTP server (aiosmtpd, installed by `scripts/smtp.sh`) whose maildir
//! the tests read.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use chrono::{DateTime, Utc};
use serde_json::Value;
use shopfloor_alerts::outbox::{signature, SIGNATURE_HEADER};
use shopfloor_alerts::{AlertSettings, SmtpSettings};
use shopfloor_commands::{CommandContext, CommandService, Target};
use shopfloor_domain::alert::{
    AcknowledgeAlert, AlertCommand, AlertKind, AlertRuleCommand, Channel, DefineRule, Escalation,
    RuleSpec, Severity,
};
use shopfloor_domain::machine::{
    ChangeState, ClassifyStop, MachineCommand, MachineStatus, RegisterMachine,
};
use shopfloor_domain::values::*;
use shopfloor_eventstore::{EventStore, Source};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "s3cret-of-the-receiver";

/// A webhook receiver: checks the signature, answers 500 to the first `fail_first`
/// attempts (all of them when `None`), then 200; records every body it accepted.
#[derive(Clone, Default)]
struct Receiver {
    attempts: Arc<Mutex<usize>>,
    bad_signatures: Arc<Mutex<usize>>,
    accepted: Arc<Mutex<Vec<Value>>>,
    fail_first: Option<usize>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let sig = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if sig != signature(SECRET, &body) {
        *r.bad_signatures.lock().unwrap() += 1;
        return StatusCode::UNAUTHORIZED;
    }
    let n = {
        let mut a = r.attempts.lock().unwrap();
        *a += 1;
        *a
    };
    match r.fail_first {
        Some(k) if n > k => {
            let v: Value = serde_json::from_slice(&body).unwrap();
            r.accepted.lock().unwrap().push(v);
            StatusCode::OK
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl Receiver {
    async fn start(fail_first: Option<usize>) -> (Self, String) {
        let r = Receiver {
            fail_first,
            ..Default::default()
        };
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(r.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (r, format!("http://{addr}/hook"))
    }

    fn attempts(&self) -> usize {
        *self.attempts.lock().unwrap()
    }

    fn accepted(&self) -> Vec<Value> {
        self.accepted.lock().unwrap().clone()
    }
}

/// aiosmtpd on a free loopback port, writing to a maildir.
struct Smtp {
    child: tokio::process::Child,
    dir: tempfile::TempDir,
    port: u16,
}

fn aiosmtpd_python() -> PathBuf {
    if let Ok(p) = std::env::var("SHOPFLOOR_AIOSMTPD_PYTHON") {
        return p.into();
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/smtp.sh");
    let text = std::fs::read_to_string(&script).expect("scripts/smtp.sh");
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("VERSION="))
        .expect("VERSION= in scripts/smtp.sh");
    let tools = std::env::var("SHOPFLOOR_TOOLS_DIR")
        .unwrap_or_else(|_| format!("{}/.local/share/shopfloor", std::env::var("HOME").unwrap()));
    PathBuf::from(format!("{tools}/aiosmtpd-{version}/bin/python"))
}

/// A private CA and a server certificate for 127.0.0.1 it signed, made with the `openssl`
/// command line (a plant's own mail relay): `(ca.pem, server.pem, server.key)` in `dir`.
fn private_ca(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("the openssl command line");
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=Test Plant CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

impl Smtp {
    async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// An SMTP server that requires STARTTLS (aiosmtpd refuses mail before it), with a
    /// certificate of a private CA; returns the CA's file too.
    async fn start_tls() -> (Self, PathBuf, tempfile::TempDir) {
        let certs = tempfile::tempdir().unwrap();
        let (ca, cert, key) = private_ca(certs.path());
        let (cert, key) = (cert.display().to_string(), key.display().to_string());
        let smtp = Self::start_with(&["--tlscert", &cert, "--tlskey", &key]).await;
        (smtp, ca, certs)
    }

    async fn start_with(extra: &[&str]) -> Self {
        let python = aiosmtpd_python();
        assert!(
            python.exists(),
            "{} is missing: run scripts/smtp.sh",
            python.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let child = tokio::process::Command::new(python)
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(extra)
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            // A path that does not exist yet: Maildir creates it with its subfolders.
            .arg(dir.path().join("maildir"))
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "aiosmtpd did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Smtp { child, dir, port }
    }

    fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// The messages delivered so far, as text.
    fn messages(&self) -> Vec<String> {
        let new = self.dir.path().join("maildir").join("new");
        let Ok(entries) = std::fs::read_dir(new) else {
            return vec![];
        };
        entries
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
            .collect()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn settings(smtp: Option<&Smtp>, max_attempts: i32) -> AlertSettings {
    AlertSettings {
        tick: Duration::from_millis(50),
        poll: Duration::from_millis(50),
        backoff: Duration::from_millis(50),
        backoff_max: Duration::from_millis(200),
        max_attempts,
        retry: Duration::from_millis(100),
        smtp: smtp.map(|s| SmtpSettings {
            url: s.url().into(),
            from: "shopfloor@plant.example".into(),
            ca_file: None,
        }),
        ..AlertSettings::default()
    }
}

/// The real roles: one command service, the evaluator and a delivery worker.
struct Plant {
    service: CommandService,
    pool: PgPool,
    cancel: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
    settings: AlertSettings,
}

impl Plant {
    fn new(pool: PgPool, settings: AlertSettings) -> Self {
        let service = CommandService::new(EventStore::new(pool.clone()));
        let mut plant = Plant {
            service,
            pool,
            cancel: CancellationToken::new(),
            task: None,
            settings,
        };
        plant.start();
        plant
    }

    fn start(&mut self) {
        self.cancel = CancellationToken::new();
        let (service, settings, cancel) = (
            self.service.clone(),
            self.settings.clone(),
            self.cancel.clone(),
        );
        self.task = Some(tokio::spawn(async move {
            shopfloor_alerts::run(service, settings, cancel)
                .await
                .unwrap()
        }));
    }

    /// Stops the roles as a shutdown would, then starts new ones (a restart).
    async fn restart(&mut self) {
        self.cancel.cancel();
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
        // A new process: a new command service (no cache), same database.
        self.service = CommandService::new(EventStore::new(self.pool.clone()));
        self.start();
    }

    async fn run(&self, target: Target) {
        let ctx = CommandContext::new("tester", Source::Api);
        self.service.execute(target, &ctx).await.unwrap();
    }

    async fn register(&self, id: &str) {
        self.run(Target::Machine {
            machine_id: MachineId::new(id).unwrap(),
            command: MachineCommand::RegisterMachine(RegisterMachine {
                machine_id: MachineId::new(id).unwrap(),
                machine_type: MachineType::new("press").unwrap(),
                line: LineId::new("L1").unwrap(),
                ideal_cycle_time_s: CycleTime::new(2.0).unwrap(),
                at: Utc::now() - chrono::TimeDelta::hours(2),
            }),
        })
        .await;
    }

    async fn state(&self, id: &str, state: MachineStatus, at: DateTime<Utc>) {
        self.run(Target::Machine {
            machine_id: MachineId::new(id).unwrap(),
            command: MachineCommand::ChangeState(ChangeState {
                state,
                reason: None,
                planned: Some(false),
                at,
            }),
        })
        .await;
    }

    async fn rule(
        &self,
        id: &str,
        machine: &str,
        after: f64,
        channels: Vec<Channel>,
        escalation: Option<Escalation>,
    ) {
        self.run(Target::AlertRule {
            rule_id: AlertRuleId::new(id).unwrap(),
            command: AlertRuleCommand::DefineRule(DefineRule {
                rule_id: AlertRuleId::new(id).unwrap(),
                spec: RuleSpec {
                    kind: AlertKind::MachineDown,
                    machine_id: Some(MachineId::new(machine).unwrap()),
                    line: None,
                    after_minutes: after,
                    severity: Severity::Critical,
                    channels,
                    escalation,
                    target: None,
                    item_id: None,
                    metric: None,
                },
                by: Actor::new("supervisor-1").unwrap(),
                at: Utc::now(),
            }),
        })
        .await;
    }

    async fn alerts(&self, machine: &str) -> Vec<(String, String)> {
        sqlx::query_as("SELECT alert_id, state FROM alerts WHERE machine_id = $1 ORDER BY alert_id")
            .bind(machine)
            .fetch_all(&self.pool)
            .await
            .unwrap()
    }

    async fn deliveries(&self, alert: &str) -> Vec<(String, String, String, i32)> {
        sqlx::query_as(
            "SELECT stage, channel_type, state, attempts FROM alert_deliveries WHERE alert_id = $1 \
             ORDER BY delivery_id",
        )
        .bind(alert)
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }
}

/// Polls `check` until it returns `Some` (the condition awaited), failing after 20 s.
async fn until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
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

fn webhook(url: &str) -> Channel {
    Channel::Webhook {
        url: url.to_string(),
        secret: SECRET.to_string(),
    }
}

fn ago(minutes: i64) -> DateTime<Utc> {
    Utc::now() - chrono::TimeDelta::minutes(minutes)
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_stop_longer_than_the_threshold_raises_one_alert_and_one_email(pool: PgPool) {
    let smtp = Smtp::start().await;
    let plant = Plant::new(pool, settings(Some(&smtp), 5));
    plant.register("M-1").await;
    plant.register("M-2").await;
    plant
        .rule(
            "R-1",
            "M-1",
            0.05,
            vec![Channel::Email {
                to: vec!["andon@plant.example".into()],
            }],
            None,
        )
        .await;
    // M-2 is out of the rule's scope. M-1 stops now; its rule waits 3 s of floor time.
    plant.state("M-2", MachineStatus::Down, ago(30)).await;
    plant.state("M-1", MachineStatus::Down, Utc::now()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        plant.alerts("M-1").await.is_empty(),
        "raised before the threshold"
    );
    // The same stop goes on (another down report): still one stop, one cause.
    plant.state("M-1", MachineStatus::Down, Utc::now()).await;
    let alerts = until("the alert", || async {
        let a = plant.alerts("M-1").await;
        (!a.is_empty()).then_some(a)
    })
    .await;
    let delivery: (String, Option<String>) = until("the email's delivery", || async {
        sqlx::query_as::<_, (String, Option<String>)>(
            "SELECT state, last_error FROM alert_deliveries WHERE state <> 'pending'",
        )
        .fetch_optional(&plant.pool)
        .await
        .unwrap()
    })
    .await;
    assert_eq!(delivery, ("delivered".into(), None));
    let mail = until("the email", || async {
        let m = smtp.messages();
        (!m.is_empty()).then_some(m)
    })
    .await;
    // Let the evaluator tick many times more: nothing is raised or sent twice.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(plant.alerts("M-1").await.len(), 1);
    assert_eq!(alerts[0].1, "open");
    assert_eq!(smtp.messages().len(), 1, "{mail:?}");
    assert!(mail[0].contains("machine_down"), "{}", mail[0]);
    assert!(mail[0].contains("andon@plant.example"));
    assert!(mail[0].contains(&alerts[0].0));
    assert!(plant.alerts("M-2").await.is_empty());
    let d = plant.deliveries(&alerts[0].0).await;
    assert_eq!(
        d,
        vec![("raised".into(), "email".into(), "delivered".into(), 1)]
    );
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_webhook_that_fails_three_times_is_delivered_on_the_fourth_attempt(pool: PgPool) {
    let (receiver, url) = Receiver::start(Some(3)).await;
    let plant = Plant::new(pool, settings(None, 10));
    plant.register("M-1").await;
    plant
        .rule("R-1", "M-1", 1.0, vec![webhook(&url)], None)
        .await;
    plant.state("M-1", MachineStatus::Down, ago(2)).await;
    let body = until("the webhook", || async {
        receiver.accepted().first().cloned()
    })
    .await;
    assert_eq!(receiver.attempts(), 4);
    assert_eq!(*receiver.bad_signatures.lock().unwrap(), 0);
    for field in ["alert_id", "kind", "machine_id", "state", "raised_at"] {
        assert!(
            body.get(field).is_some_and(|v| !v.is_null()),
            "{field} in {body}"
        );
    }
    assert_eq!(body["kind"], "machine_down");
    assert_eq!(body["state"], "open");
    let alert = body["alert_id"].as_str().unwrap();
    // The receipt comes before the worker records it: await the record.
    let log = until("the delivery log", || async {
        let d = plant.deliveries(alert).await;
        d.iter().all(|r| r.2 != "pending").then_some(d)
    })
    .await;
    assert_eq!(
        log,
        vec![("raised".into(), "webhook".into(), "delivered".into(), 4)]
    );
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_webhook_that_always_fails_lands_in_the_dead_letter_list(pool: PgPool) {
    let (receiver, url) = Receiver::start(None).await;
    let plant = Plant::new(pool, settings(None, 3));
    plant.register("M-1").await;
    plant
        .rule("R-1", "M-1", 1.0, vec![webhook(&url)], None)
        .await;
    plant.state("M-1", MachineStatus::Down, ago(2)).await;
    let dead: Vec<(String, i32, Option<String>)> = until("the dead letter", || async {
        let rows: Vec<(String, i32, Option<String>)> = sqlx::query_as(
            "SELECT alert_id, attempts, last_error FROM alert_deliveries WHERE state = 'dead'",
        )
        .fetch_all(&plant.pool)
        .await
        .unwrap();
        (!rows.is_empty()).then_some(rows)
    })
    .await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].1, 3);
    assert_eq!(dead[0].2.as_deref(), Some("HTTP 500 Internal Server Error"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.attempts(), 3, "a dead delivery is not tried again");
    // The alert itself stands: a failing channel loses nothing.
    assert_eq!(plant.alerts("M-1").await[0].1, "open");
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn acknowledging_stops_the_escalation(pool: PgPool) {
    let (first, first_url) = Receiver::start(Some(0)).await;
    let (next, next_url) = Receiver::start(Some(0)).await;
    let plant = Plant::new(pool, settings(None, 5));
    plant.register("M-1").await;
    plant.register("M-2").await;
    // Escalate after 3 s without an acknowledgement.
    for (rule, machine) in [("R-1", "M-1"), ("R-2", "M-2")] {
        plant
            .rule(
                rule,
                machine,
                1.0,
                vec![webhook(&first_url)],
                Some(Escalation {
                    after_minutes: 0.05,
                    channels: vec![webhook(&next_url)],
                }),
            )
            .await;
    }
    plant.state("M-1", MachineStatus::Down, ago(2)).await;
    plant.state("M-2", MachineStatus::Down, ago(2)).await;
    let raised = until("both raises", || async {
        let a = first.accepted();
        (a.len() == 2).then_some(a)
    })
    .await;
    let acked = raised.iter().find(|b| b["machine_id"] == "M-1").unwrap()["alert_id"]
        .as_str()
        .unwrap()
        .to_string();
    plant
        .run(Target::Alert {
            alert_id: AlertId::new(&acked).unwrap(),
            command: AlertCommand::AcknowledgeAlert(AcknowledgeAlert {
                by: Actor::new("operator-7").unwrap(),
                at: Utc::now(),
            }),
        })
        .await;
    // M-2's alert escalates to the next recipient; M-1's, acknowledged, never does.
    let escalated = until("the escalation", || async {
        let a = next.accepted();
        (!a.is_empty()).then_some(a)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let escalated_all = next.accepted();
    assert_eq!(escalated_all.len(), 1, "{escalated_all:?}");
    assert_eq!(escalated[0]["machine_id"], "M-2");
    assert_eq!(escalated[0]["stage"], "escalated");
    let acked_stages: Vec<Value> = first
        .accepted()
        .into_iter()
        .filter(|b| b["alert_id"] == acked.as_str())
        .map(|b| b["stage"].clone())
        .collect();
    assert_eq!(acked_stages, vec!["raised", "acknowledged"]);
    let (state, by): (String, Option<String>) =
        sqlx::query_as("SELECT state, acknowledged_by FROM alerts WHERE alert_id = $1")
            .bind(&acked)
            .fetch_one(&plant.pool)
            .await
            .unwrap();
    assert_eq!(
        (state.as_str(), by.as_deref()),
        ("acknowledged", Some("operator-7"))
    );
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_restart_mid_alert_neither_loses_nor_repeats_it(pool: PgPool) {
    let (receiver, url) = Receiver::start(Some(0)).await;
    let mut plant = Plant::new(pool, settings(None, 5));
    plant.register("M-1").await;
    plant.register("M-2").await;
    plant
        .rule("R-1", "M-1", 1.0, vec![webhook(&url)], None)
        .await;
    plant
        .rule("R-2", "M-2", 1.0, vec![webhook(&url)], None)
        .await;
    plant.state("M-1", MachineStatus::Down, ago(2)).await;
    until("the first alert", || async {
        (receiver.accepted().len() == 1).then_some(())
    })
    .await;
    // Stop the roles; while they are down, M-2 passes its threshold and M-1 comes back.
    plant.cancel.cancel();
    plant.task.take().unwrap().await.unwrap();
    plant.state("M-2", MachineStatus::Down, ago(2)).await;
    plant.state("M-1", MachineStatus::Running, Utc::now()).await;
    // Rewind the evaluator as if it crashed before saving its checkpoint: it sees it all again.
    sqlx::query("UPDATE process_checkpoints SET position = 0 WHERE name = 'alert-evaluator'")
        .execute(&plant.pool)
        .await
        .unwrap();
    plant.restart().await;
    let bodies = until("M-2's alert and M-1's resolution", || async {
        let a = receiver.accepted();
        (a.len() >= 3).then_some(a)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let all = receiver.accepted();
    assert_eq!(all.len(), 3, "{all:#?}");
    let stages: Vec<(Value, Value)> = bodies
        .iter()
        .map(|b| (b["machine_id"].clone(), b["stage"].clone()))
        .collect();
    assert!(stages.contains(&("M-1".into(), "raised".into())));
    assert!(stages.contains(&("M-1".into(), "resolved".into())));
    assert!(stages.contains(&("M-2".into(), "raised".into())));
    assert_eq!(plant.alerts("M-1").await.len(), 1);
    assert_eq!(plant.alerts("M-2").await.len(), 1);
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_late_event_reclassifying_the_stop_as_planned_resolves_the_alert(pool: PgPool) {
    let (receiver, url) = Receiver::start(Some(0)).await;
    let plant = Plant::new(pool, settings(None, 5));
    plant.register("M-1").await;
    plant
        .rule("R-1", "M-1", 5.0, vec![webhook(&url)], None)
        .await;
    let stop_at = ago(20);
    plant.state("M-1", MachineStatus::Down, stop_at).await;
    until("the raise", || async {
        (receiver.accepted().len() == 1).then_some(())
    })
    .await;
    plant
        .run(Target::Machine {
            machine_id: MachineId::new("M-1").unwrap(),
            command: MachineCommand::ClassifyStop(ClassifyStop {
                stop_at,
                reason_code: ReasonCode::new("planned.maintenance").unwrap(),
                by: Actor::new("supervisor-1").unwrap(),
                at: Utc::now(),
            }),
        })
        .await;
    let resolved = until("the resolution", || async {
        receiver.accepted().get(1).cloned()
    })
    .await;
    assert_eq!(resolved["state"], "resolved");
    assert_eq!(resolved["stage"], "resolved");
    assert_eq!(plant.alerts("M-1").await[0].1, "resolved");
    // The planned stop raises nothing new.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(plant.alerts("M-1").await.len(), 1);
}

/// Email over STARTTLS to a relay whose certificate a private CA signed
/// (`SHOPFLOOR_SMTP_CA_FILE`): the server refuses mail before STARTTLS, so a delivered
/// message went over TLS. Without the CA the certificate is refused and the delivery is
/// not marked delivered.
#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn an_email_goes_over_starttls_to_a_relay_with_a_private_ca(pool: PgPool) {
    let (smtp, ca, _certs) = Smtp::start_tls().await;
    let tls = |ca_file: Option<PathBuf>| {
        let mut s = settings(None, 1000);
        s.smtp = Some(SmtpSettings {
            url: format!("smtp://127.0.0.1:{}?tls=required", smtp.port).into(),
            from: "shopfloor@plant.example".into(),
            ca_file,
        });
        s
    };
    // First without the CA: the server's certificate is not trusted, nothing is delivered.
    let mut plant = Plant::new(pool, tls(None));
    plant.register("M-1").await;
    let email = vec![Channel::Email {
        to: vec!["maintenance@plant.example".into()],
    }];
    plant.rule("R-1", "M-1", 0.01, email, None).await;
    plant.state("M-1", MachineStatus::Down, ago(5)).await;
    let error: String = until("a failed attempt", || async {
        sqlx::query_scalar::<_, Option<String>>(
            "SELECT last_error FROM alert_deliveries WHERE attempts > 0 AND last_error IS NOT NULL",
        )
        .fetch_optional(&plant.pool)
        .await
        .unwrap()
        .flatten()
    })
    .await;
    assert!(
        smtp.messages().is_empty(),
        "mail went out without trust: {error}"
    );
    // With the CA: the retry is delivered, over STARTTLS.
    plant.settings = tls(Some(ca));
    plant.restart().await;
    let mail = until("the email", || async {
        let m = smtp.messages();
        (!m.is_empty()).then_some(m)
    })
    .await;
    assert_eq!(mail.len(), 1);
    assert!(mail[0].contains("maintenance@plant.example"), "{}", mail[0]);
    assert!(mail[0].contains("machine_down"), "{}", mail[0]);
    let state: String = until("the delivery's state", || async {
        sqlx::query_scalar::<_, String>(
            "SELECT state FROM alert_deliveries WHERE state = 'delivered'",
        )
        .fetch_optional(&plant.pool)
        .await
        .unwrap()
    })
    .await;
    assert_eq!(state, "delivered");
}
