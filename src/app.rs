//! The application: connects to the services, applies migrations, and runs the
//! chosen roles until its cancellation token fires.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{anyhow, Context};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use shopfloor_api::{AppState, Readiness};
use shopfloor_commands::process::ProcessManager;
use shopfloor_commands::CommandService;
use shopfloor_eventstore::{EventStore, LeaderFlag, MIGRATOR};
use shopfloor_ingest::{run_ingest, IngestConfig, Mapping};
use shopfloor_projections::{run_projectors_with, LiveHub, ProjectorOptions, Relay};
use shopfloor_reports::{ReportStore, Reports};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::cli::Role;
use crate::settings::{redact, Settings};

/// How often the report scheduler looks for due reports.
const REPORT_TICK: Duration = Duration::from_secs(30);

/// How long a service may take to answer at start before we give up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// The process-wide Prometheus recorder (installed once), with every metric family
/// described (`shopfloor_api::metric_catalogue`).
pub fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new().install_recorder().ok();
            if handle.is_some() {
                shopfloor_api::metric_catalogue::describe_all();
            }
            handle
        })
        .clone()
}

/// Connects to PostgreSQL, failing fast with the real reason when it cannot.
pub async fn connect_postgres(settings: &Settings) -> anyhow::Result<PgPool> {
    let shown = settings.database_display();
    let options: PgConnectOptions = settings
        .database_url
        .as_str()
        .parse()
        .with_context(|| format!("invalid DATABASE_URL {shown}"))?;
    let options = options.disable_statement_logging();
    // One direct connection first: its error says why (refused, no such database, ...).
    let probe = tokio::time::timeout(CONNECT_TIMEOUT, sqlx::PgConnection::connect_with(&options))
        .await
        .map_err(|_| {
            anyhow!("cannot reach PostgreSQL at {shown}: no answer in {CONNECT_TIMEOUT:?}")
        })?
        .map_err(|e| anyhow!("cannot reach PostgreSQL at {shown}: {e}"))?;
    let _ = probe.close().await;
    PgPoolOptions::new()
        .max_connections(settings.db_pool)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .map_err(|e| anyhow!("cannot reach PostgreSQL at {shown}: {e}"))
}

pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR
        .run(pool)
        .await
        .context("applying database migrations")
}

/// Connects to NATS, failing fast when it cannot; reconnects by itself afterwards.
pub async fn connect_nats(settings: &Settings) -> anyhow::Result<async_nats::Client> {
    let shown = settings.nats_display();
    // Every server of the list is tried (in random order) before giving up, so a
    // process whose first node is down at start connects to another one.
    let servers = settings
        .nats_urls
        .iter()
        .map(|u| u.as_str().parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("invalid NATS_URL {shown}: {e}"))?;
    async_nats::ConnectOptions::new()
        .connection_timeout(CONNECT_TIMEOUT)
        .name(format!("{}-shopfloor", settings.namespace))
        .connect(servers)
        .await
        .map_err(|e| anyhow!("cannot reach NATS at {shown}: {e}"))
}

/// Checks that the MQTT broker accepts TCP connections.
async fn probe_mqtt(url: &url::Url) -> anyhow::Result<()> {
    let shown = redact(url);
    let host = url.host_str().unwrap_or("127.0.0.1");
    let port = url
        .port()
        .unwrap_or(if url.scheme() == "mqtts" { 8883 } else { 1883 });
    tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio::net::TcpStream::connect((host, port)),
    )
    .await
    .map_err(|_| {
        anyhow!("cannot reach the MQTT broker at {shown}: no answer in {CONNECT_TIMEOUT:?}")
    })?
    .map_err(|e| anyhow!("cannot reach the MQTT broker at {shown}: {e}"))?;
    Ok(())
}

/// After a restore the log's follow-up commands and publications already happened:
/// the process manager and the relay start after the restored events.
pub async fn mark_restored(pool: &PgPool, namespace: &str, head: i64) -> anyhow::Result<()> {
    shopfloor_commands::process::mark_restored(pool, head).await?;
    shopfloor_projections::relay::mark_restored(pool, namespace, head).await?;
    Ok(())
}

/// A command service on `pool` with group commit (for the demo director).
pub fn command_service(pool: &PgPool) -> CommandService {
    CommandService::new(EventStore::new(pool.clone())).with_group_commit(64)
}

/// Gives each line of the simulated plant a shift calendar that begins now, so the demo's
/// first screen counts no time before it started as downtime.
pub async fn demo_calendar(
    pool: &PgPool,
    config: &shopfloor_ingest::SimulatorConfig,
) -> anyhow::Result<()> {
    let mut lines: Vec<String> = shopfloor_ingest::simulated_machines(config)
        .into_iter()
        .map(|m| m.line)
        .collect();
    lines.dedup();
    let now = chrono::Utc::now();
    for line in lines {
        shopfloor_projections::query::shifts_from_now(pool, &line, now)
            .await
            .context("setting the demo's shift calendar")?;
    }
    info!("the demo's shifts begin now");
    Ok(())
}

/// Registers the simulator's machines (those already registered are left as they are).
pub async fn register_simulated(
    pool: &PgPool,
    config: &shopfloor_ingest::SimulatorConfig,
) -> anyhow::Result<()> {
    use shopfloor_commands::{CommandContext, CommandError, RejectionKind, Target};
    use shopfloor_domain::machine::{MachineCommand, RegisterMachine};
    use shopfloor_domain::values::{CycleTime, LineId, MachineId, MachineType};

    let service = CommandService::new(EventStore::new(pool.clone()));
    let ctx = CommandContext::new("simulator", shopfloor_eventstore::Source::System);
    for m in shopfloor_ingest::simulated_machines(config) {
        let machine_id = MachineId::new(&m.machine_id).context("machine id")?;
        let command = MachineCommand::RegisterMachine(RegisterMachine {
            machine_id: machine_id.clone(),
            machine_type: MachineType::new(&m.machine_type).context("machine type")?,
            line: LineId::new(&m.line).context("line")?,
            ideal_cycle_time_s: CycleTime::new(m.ideal_cycle_time_s).context("cycle time")?,
            at: chrono::Utc::now(),
        });
        match service
            .execute(
                Target::Machine {
                    machine_id,
                    command,
                },
                &ctx,
            )
            .await
        {
            Ok(_) => info!(machine = %m.machine_id, "registered a simulated machine"),
            Err(CommandError::Rejected {
                kind: RejectionKind::Conflict,
                ..
            }) => {}
            Err(e) => return Err(e).context("registering a simulated machine"),
        }
    }
    Ok(())
}

/// A built application: connected, migrated, its HTTP port bound.
pub struct Application {
    settings: Settings,
    roles: Vec<Role>,
    store: EventStore,
    nats: Option<async_nats::Client>,
    listener: Option<TcpListener>,
    http_addr: Option<SocketAddr>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("roles", &self.roles)
            .field("http_addr", &self.http_addr)
            .finish_non_exhaustive()
    }
}

impl Application {
    pub async fn build(settings: Settings, roles: &[Role]) -> anyhow::Result<Self> {
        let pool = connect_postgres(&settings).await?;
        migrate(&pool).await?;
        let store = EventStore::new(pool);
        let needs_nats = roles
            .iter()
            .any(|r| matches!(r, Role::Api | Role::Relay | Role::Projector));
        let nats = if needs_nats {
            Some(connect_nats(&settings).await?)
        } else {
            None
        };
        if roles.contains(&Role::Ingest) {
            if let Some(url) = &settings.mqtt_url {
                probe_mqtt(url).await?;
            }
        }
        let (listener, http_addr) = if roles.contains(&Role::Api) {
            let l = TcpListener::bind(settings.http_addr)
                .await
                .with_context(|| format!("cannot listen on {}", settings.http_addr))?;
            let addr = l.local_addr()?;
            (Some(l), Some(addr))
        } else {
            (None, None)
        };
        let mut roles = roles.to_vec();
        roles.dedup();
        Ok(Self {
            settings,
            roles,
            store,
            nats,
            listener,
            http_addr,
        })
    }

    /// Where the API listens (when it runs here).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    pub fn store(&self) -> &EventStore {
        &self.store
    }

    /// The OPC UA client's task, when the ingest or opcua role runs here and
    /// `SHOPFLOOR_OPCUA_CONFIG` is set (the opcua role without it is an error).
    fn opcua_task(
        &self,
        commands: &CommandService,
        cancel: &CancellationToken,
    ) -> anyhow::Result<Option<impl std::future::Future<Output = anyhow::Result<()>>>> {
        let wanted = self.roles.contains(&Role::Opcua);
        let Some(path) = &self.settings.opcua_config else {
            anyhow::ensure!(!wanted, "--role opcua needs SHOPFLOOR_OPCUA_CONFIG");
            return Ok(None);
        };
        if !wanted && !self.roles.contains(&Role::Ingest) {
            return Ok(None);
        }
        let config = shopfloor_opcua::OpcuaConfig::load(path)
            .with_context(|| format!("reading the OPC UA mapping {}", path.display()))?;
        let mapping = match &self.settings.ingest_mapping {
            Some(p) => Mapping::load(p)
                .with_context(|| format!("reading the ingest mapping {}", p.display()))?,
            None => Mapping::default(),
        };
        let (commands, cancel) = (commands.clone(), cancel.clone());
        let namespace = self.settings.namespace.clone();
        info!(servers = config.servers.len(), "OPC UA ingest on");
        Ok(Some(async move {
            let (progress, _) = watch::channel(shopfloor_opcua::Progress::default());
            shopfloor_opcua::run_opcua(
                commands,
                &namespace,
                std::sync::Arc::new(mapping),
                std::sync::Arc::new(config),
                progress,
                cancel,
            )
            .await
            .context("OPC UA ingest")
        }))
    }

    /// Runs every role until `cancel` fires, then waits for them to finish.
    pub async fn run_until_stopped(self, cancel: CancellationToken) -> anyhow::Result<()> {
        let mut tasks: JoinSet<anyhow::Result<()>> = JoinSet::new();
        let pool = self.store.pool().clone();
        let shared = Shared {
            // The one writer of this process: the API, the process managers and the
            // ingest all append through it, so they share its turns, its aggregate
            // cache and its group commits (ADR 0035).
            commands: CommandService::new(self.store.clone()).with_group_commit(256),
            // Read-model changes, shared by the projectors and the API's live feed.
            live: self.roles.contains(&Role::Projector).then(LiveHub::default),
            reports: self.open_reports(&pool),
            pool,
        };
        let mut mqtt_ready = None;
        // What this process leads, for `/readyz` and the gauge `shopfloor_leader`.
        let mut leaders = Vec::new();
        for role in &self.roles {
            match role {
                // Served below, once the listener is moved out.
                Role::Api => {}
                Role::Relay => self.spawn_relay(&mut tasks, &mut leaders, &cancel),
                Role::Projector => self.spawn_read_side(&mut tasks, &mut leaders, &shared, &cancel),
                // Started below, once, for the ingest role or on its own.
                Role::Opcua => {}
                // Runs alone (`crate::group::serve`), never with the plant's roles.
                Role::Group => {}
                Role::Ingest => {
                    mqtt_ready = self.spawn_ingest(&mut tasks, &shared.commands, &cancel)?;
                }
            }
        }
        if let Some(opcua) = self.opcua_task(&shared.commands, &cancel)? {
            tasks.spawn(opcua);
        }
        let readiness = Readiness {
            nats: self.nats.clone(),
            mqtt: mqtt_ready,
            timeout: None,
            leaders,
        };
        self.spawn_api(&mut tasks, shared, readiness, &cancel);
        join_roles(tasks, &cancel).await
    }

    /// Report storage (ADR 0041); storage that cannot be opened (a read-only folder) turns
    /// reports off (503) rather than the whole process.
    fn open_reports(&self, pool: &PgPool) -> Option<Reports> {
        match ReportStore::open(&self.settings.reports_storage) {
            Ok(store) => {
                info!(storage = store.describe(), "reports are stored here");
                Some(Reports::new(
                    pool.clone(),
                    store,
                    self.settings.plant_name.clone(),
                ))
            }
            Err(e) => {
                warn!(error = %e, "report storage unavailable: reports are off");
                None
            }
        }
    }

    fn spawn_relay(
        &self,
        tasks: &mut JoinSet<anyhow::Result<()>>,
        leaders: &mut Vec<LeaderFlag>,
        cancel: &CancellationToken,
    ) {
        let Some(nats) = self.nats.clone() else {
            return;
        };
        let flag = LeaderFlag::new("relay");
        leaders.push(flag.clone());
        let relay = Relay::new(self.store.clone(), nats, &self.settings.namespace)
            .with_replicas(self.settings.stream_replicas)
            .with_flag(flag)
            .with_calendar();
        let cancel = cancel.clone();
        tasks.spawn(async move {
            relay.run(cancel).await;
            Ok(())
        });
    }

    /// The read side: the projectors, and beside them the process managers, the report
    /// schedules and alert evaluation and delivery (each with its own leader lock).
    fn spawn_read_side(
        &self,
        tasks: &mut JoinSet<anyhow::Result<()>>,
        leaders: &mut Vec<LeaderFlag>,
        shared: &Shared,
        cancel: &CancellationToken,
    ) {
        let Some(nats) = self.nats.clone() else {
            return;
        };
        let (pool, ns) = (shared.pool.clone(), self.settings.namespace.clone());
        let hub = shared.live.clone().unwrap_or_default();
        let options = ProjectorOptions {
            replicas: self.settings.stream_replicas,
            ..Default::default()
        };
        let projectors = cancel.clone();
        tasks.spawn(async move {
            run_projectors_with(pool, nats, &ns, hub, options, projectors).await;
            Ok(())
        });
        let flag = LeaderFlag::new("process_manager");
        leaders.push(flag.clone());
        let pm = ProcessManager::new(shared.commands.clone()).with_flag(flag);
        let pm_cancel = cancel.clone();
        tasks.spawn(async move {
            pm.run(pm_cancel).await;
            Ok(())
        });
        if let Some(reports) = shared.reports.clone() {
            let schedules = cancel.clone();
            let smtp = self.settings.alerts.smtp.clone();
            tasks.spawn(async move {
                shopfloor_reports::schedule::run(reports, REPORT_TICK, smtp, schedules).await;
                Ok(())
            });
        }
        let (alerts, settings) = (shared.commands.clone(), self.settings.alerts.clone());
        let alerts_cancel = cancel.clone();
        tasks.spawn(async move {
            shopfloor_alerts::run(alerts, settings, alerts_cancel)
                .await
                .context("alerts")
        });
    }

    /// The MQTT ingest, unless `MQTT_URL=off`; returns whether its subscription stands.
    fn spawn_ingest(
        &self,
        tasks: &mut JoinSet<anyhow::Result<()>>,
        commands: &CommandService,
        cancel: &CancellationToken,
    ) -> anyhow::Result<Option<watch::Receiver<bool>>> {
        let Some(url) = self.settings.mqtt_url.clone() else {
            info!("ingest is off (MQTT_URL=off)");
            return Ok(None);
        };
        let mut config = IngestConfig::new(url, self.settings.namespace.clone());
        if let Some(path) = &self.settings.ingest_mapping {
            let mapping = Mapping::load(path)
                .with_context(|| format!("reading the ingest mapping {}", path.display()))?;
            config = config.with_mapping(mapping);
        }
        let (tx, rx) = watch::channel(false);
        let (commands, cancel) = (commands.clone(), cancel.clone());
        tasks.spawn(async move {
            run_ingest(commands, config, tx, cancel)
                .await
                .context("MQTT ingest")
        });
        Ok(Some(rx))
    }

    /// The HTTP API, when this process listens; alerts reach its live feed from whichever
    /// process evaluates them (a trigger's pg_notify, ADR 0048).
    fn spawn_api(
        self,
        tasks: &mut JoinSet<anyhow::Result<()>>,
        shared: Shared,
        readiness: Readiness,
        cancel: &CancellationToken,
    ) {
        let (Some(listener), Some(addr)) = (self.listener, self.http_addr) else {
            return;
        };
        let mut state = AppState::new(
            shared.commands,
            readiness,
            metrics_handle(),
            self.settings.admin_token.clone(),
            self.settings.namespace.clone(),
        );
        if let Some(hub) = shared.live.clone() {
            let (pool, cancel) = (shared.pool.clone(), cancel.clone());
            tasks.spawn(async move {
                shopfloor_api::routes::live::forward_alerts(pool, hub, cancel).await;
                Ok(())
            });
        }
        if let Some(every) = self.settings.plant_metrics_every {
            let (pool, cancel) = (shared.pool.clone(), cancel.clone());
            tasks.spawn(async move {
                shopfloor_api::plant_metrics::run(pool, every, cancel).await;
                Ok(())
            });
        }
        state.live = shared.live;
        state.shutdown = cancel.clone();
        state.reports = shared.reports;
        state.tokens = state
            .tokens
            .clone()
            .with_cache_ttl(self.settings.token_cache_ttl);
        let router = shopfloor_api::router_with_limits(state, self.settings.rate_limits);
        let cancel = cancel.clone();
        info!(namespace = %self.settings.namespace, "listening on http://{addr}");
        tasks.spawn(async move {
            shopfloor_api::serve(
                listener,
                router,
                shopfloor_api::ServeLimits::default(),
                async move { cancel.cancelled().await },
            )
            .await
            .context("HTTP server")
        });
    }
}

/// What the roles of one process share.
struct Shared {
    commands: CommandService,
    live: Option<LiveHub>,
    reports: Option<Reports>,
    pool: PgPool,
}

/// Waits for every role; the first failure stops the others and is the result.
async fn join_roles(
    mut tasks: JoinSet<anyhow::Result<()>>,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    let mut first_error = None;
    while let Some(done) = tasks.join_next().await {
        let result = done.map_err(anyhow::Error::from).and_then(|r| r);
        if let Err(e) = result {
            warn!(error = %format!("{e:#}"), "a role failed; stopping the others");
            cancel.cancel();
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}
