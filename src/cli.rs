//! The command line: `shopfloor serve [--role ...]`, `shopfloor migrate`.
//!
//! Errors end the process with one human-readable line on stderr and exit code 1,
//! never a panic backtrace.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::app::{self, Application};
use crate::settings::Settings;

#[derive(Debug, Parser)]
#[command(
    name = "shopfloor",
    version,
    about = "Manufacturing operations: production, machines, maintenance, inventory and KPIs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run Shopfloor: every role, or only those given with --role (repeatable).
    Serve {
        #[arg(long = "role", value_enum)]
        roles: Vec<Role>,
    },
    /// Apply pending database migrations, then exit.
    Migrate,
    /// Rebuild read models from the event store alone; with --verify, rebuild them
    /// into a scratch schema, compare with the live ones, print the differences and
    /// exit 0 only when they are equal.
    Replay {
        /// One read model only (machines, machine_history, orders, maintenance, inventory).
        #[arg(long)]
        projection: Option<String>,
        /// Compare instead of replacing (all read models).
        #[arg(long)]
        verify: bool,
        /// The group database (`DATABASE_URL` of the `group` role): with --verify,
        /// check every site's copy of its log and its read models (ADR 0061).
        #[arg(long, requires = "verify")]
        group: bool,
    },
    /// Check the event log's hash chain (tamper evidence); exits 0 only when intact.
    Verify,
    /// Write a consistent, compressed export of the event store (gzip JSON lines).
    Backup {
        /// Where to write it (`-` for stdout).
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Restore an export into an empty event store, then rebuild the read models.
    Restore {
        /// The export written by `shopfloor backup` (`-` for stdin).
        #[arg(long)]
        from: std::path::PathBuf,
    },
    /// Publish a simulated plant to the MQTT broker (registering its machines first).
    Simulate {
        #[arg(long, default_value_t = 6)]
        machines: usize,
        /// Ticks per second per machine.
        #[arg(long, default_value_t = 1.0)]
        rate: f64,
        /// Publish Sparkplug B instead of the JSON topics.
        #[arg(long)]
        sparkplug: bool,
        /// Stop after this many ticks (default: until Ctrl-C).
        #[arg(long)]
        ticks: Option<u64>,
    },
    /// Reports (ADR 0041).
    Report {
        #[command(subcommand)]
        report: ReportCommand,
    },
    /// Measure the real paths on the real services (prints one JSON line last).
    Bench {
        #[command(subcommand)]
        bench: Bench,
    },
}

#[derive(Debug, Subcommand)]
enum ReportCommand {
    /// Regenerate a report at its recorded log position and compare it with the stored
    /// file (or with FILE, e.g. a downloaded copy); exits 0 only when identical.
    Verify {
        /// The report id (`RPT-…`).
        id: String,
        /// Compare with this file instead of the stored one.
        #[arg(long)]
        file: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// Machine commands through the command path: decide, append, durable.
    Commands {
        #[arg(long, default_value_t = 1000)]
        aggregates: usize,
        #[arg(long, default_value_t = 20000)]
        commands: usize,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// One transaction per command instead of group commit.
        #[arg(long)]
        no_group_commit: bool,
    },
    /// MQTT telemetry, then state/count messages, through the broker and the real
    /// ingest until durable; reads the broker's dropped counter.
    Ingest {
        #[arg(long, default_value_t = 50000)]
        messages: usize,
        #[arg(long, default_value_t = 100)]
        machines: usize,
    },
    /// From command accepted to visible in the read model, at a steady rate.
    E2e {
        #[arg(long, default_value_t = 1000.0)]
        rate: f64,
        #[arg(long, default_value_t = 20.0)]
        secs: f64,
    },
    /// The HTTP write path as a client meets it: the real binary (`serve --role
    /// api`) as a child process, driven over keep-alive connections: single machine
    /// events, batches of 50, order creation, and 4 writers on one hot machine.
    Http {
        #[arg(long, default_value_t = 1000)]
        machines: usize,
        #[arg(long, default_value_t = 32)]
        connections: usize,
        /// Seconds per workload.
        #[arg(long, default_value_t = 10.0)]
        secs: f64,
        /// API processes started (connections spread over them round-robin), to
        /// compare N API replicas with one on the same database.
        #[arg(long, default_value_t = 1)]
        processes: usize,
    },
    /// Alert latency: N machines × R machine_down rules with webhook channels, the real
    /// evaluator and delivery worker under a steady command load; from the triggering
    /// commit to the webhook's receipt, with missed and duplicated alerts.
    Alerts {
        #[arg(long, default_value_t = 1000)]
        machines: usize,
        #[arg(long, default_value_t = 5)]
        rules: usize,
        /// Background machine commands per second through the same writer.
        #[arg(long, default_value_t = 2000.0)]
        load_rate: f64,
    },
    /// OPC UA data changes through to durable telemetry: an in-process OPC UA server
    /// changing N Double nodes every period, the real OPC UA ingest subscribed to
    /// all of them (issue 21).
    Opcua {
        /// Monitored items.
        #[arg(long, default_value_t = 10000)]
        nodes: usize,
        /// Machines the nodes are spread over.
        #[arg(long, default_value_t = 100)]
        machines: usize,
        /// Change, sampling and publishing interval.
        #[arg(long, default_value_t = 100)]
        period_ms: u64,
        /// Seconds of load.
        #[arg(long, default_value_t = 20.0)]
        secs: f64,
    },
    /// Rebuild every read model from at least this many events.
    Replay {
        #[arg(long, default_value_t = 500000)]
        events: i64,
    },
    /// Shift reports of a line of N machines, in each format, over a generated history.
    Reports {
        #[arg(long, default_value_t = 20)]
        machines: usize,
        /// Shift reports per format.
        #[arg(long, default_value_t = 9)]
        shifts: usize,
    },
    /// Backward and forward lot traces over a depth-6 tree of 10,005 lots made through the
    /// writer (ADR 0057): read model query plus the answer's JSON.
    Genealogy {
        /// Traces timed each way.
        #[arg(long, default_value_t = 50)]
        iterations: usize,
    },
    /// GET /api/v1/kpi-metrics under load over a generated history.
    Query {
        #[arg(long, default_value_t = 100)]
        machines: usize,
        #[arg(long, default_value_t = 30)]
        days: u32,
        #[arg(long, default_value_t = 500.0)]
        rate: f64,
        #[arg(long, default_value_t = 20.0)]
        secs: f64,
    },
}

/// A part of Shopfloor that can run, and scale, on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum Role {
    /// The HTTP API (and health, readiness, metrics).
    Api,
    /// Publishes the committed event log to NATS JetStream.
    Relay,
    /// Builds the read models from JetStream.
    Projector,
    /// Turns MQTT sensor payloads into machine commands (and, with
    /// `SHOPFLOOR_OPCUA_CONFIG`, OPC UA data changes too).
    Ingest,
    /// Only the OPC UA client (`SHOPFLOOR_OPCUA_CONFIG`), through the ingest's path.
    Opcua,
    /// The plant group's cross-plant read models and API, on the group's own
    /// PostgreSQL and the hub's NATS (ADR 0061); runs alone.
    Group,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Api, Role::Relay, Role::Projector, Role::Ingest];

    pub fn name(self) -> &'static str {
        match self {
            Role::Api => "api",
            Role::Relay => "relay",
            Role::Projector => "projector",
            Role::Ingest => "ingest",
            Role::Opcua => "opcua",
            Role::Group => "group",
        }
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    app::init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(anyhow::Error::new(e).context("starting the async runtime")),
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

fn fail(e: anyhow::Error) -> ExitCode {
    let line = format!("{e:#}").replace('\n', " ");
    eprintln!("shopfloor: error: {line}");
    ExitCode::FAILURE
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    match cli.command {
        Command::Migrate => {
            migrated_pool(&settings).await?;
            info!("migrations applied");
            Ok(())
        }
        Command::Replay { group: true, .. } => verify_group(&settings).await,
        Command::Replay {
            projection, verify, ..
        } => replay(&migrated_pool(&settings).await?, projection, verify).await,
        Command::Verify => verify_chain(&migrated_pool(&settings).await?).await,
        Command::Backup { out } => backup(&migrated_pool(&settings).await?, &out).await,
        Command::Restore { from } => {
            restore(&migrated_pool(&settings).await?, &settings, &from).await
        }
        Command::Simulate {
            machines,
            rate,
            sparkplug,
            ticks,
        } => simulate(&settings, machines, rate, sparkplug, ticks).await,
        Command::Report {
            report: ReportCommand::Verify { id, file },
        } => verify_report(migrated_pool(&settings).await?, &settings, &id, file).await,
        Command::Bench { bench } => {
            run_bench(migrated_pool(&settings).await?, &settings, bench).await
        }
        Command::Serve { roles } => serve(settings, roles).await,
    }
}

/// A pool on `DATABASE_URL`, with the migrations applied.
async fn migrated_pool(settings: &Settings) -> anyhow::Result<PgPool> {
    let pool = app::connect_postgres(settings).await?;
    app::migrate(&pool).await?;
    Ok(pool)
}

/// `replay`: rebuilds the read models from the log, or (`--verify`) compares them.
async fn replay(pool: &PgPool, projection: Option<String>, verify: bool) -> anyhow::Result<()> {
    if verify {
        let differences = shopfloor_projections::verify(pool)
            .await
            .context("verifying the read models")?;
        for d in &differences {
            println!("{d}");
        }
        if differences.is_empty() {
            println!("read models equal the event store's replay");
            return Ok(());
        }
        anyhow::bail!(
            "{} differences between the live read models and a replay of the event store",
            differences.len()
        );
    }
    let started = std::time::Instant::now();
    let replayed = shopfloor_projections::replay(pool, projection.as_deref(), progress_bar)
        .await
        .context("replaying the read models")?;
    eprintln!();
    for r in &replayed {
        println!(
            "{}: rebuilt up to position {} ({} parked) in {:.1} s",
            r.projection,
            r.position,
            r.parked,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// `replay --verify --group`: every site's copy of its log and its read models.
async fn verify_group(settings: &Settings) -> anyhow::Result<()> {
    let sites = crate::group::open(settings, crate::group::sites::VERIFY_CONNECTIONS).await?;
    let differences = crate::group::verify(&sites)
        .await
        .context("verifying the group's read models")?;
    for d in &differences {
        println!("{d}");
    }
    let n = sites.all().await.len();
    if differences.is_empty() {
        println!("the read models of {n} sites equal the replay of their copied logs");
        return Ok(());
    }
    anyhow::bail!(
        "{} differences between the group's read models and a replay of the copied logs",
        differences.len()
    );
}

/// `verify`: checks the log's hash chain.
async fn verify_chain(pool: &PgPool) -> anyhow::Result<()> {
    let report = shopfloor_eventstore::chain::verify(pool)
        .await
        .context("verifying the hash chain")?;
    println!("{}", serde_json::to_string(&report)?);
    match report.broken {
        None => {
            info!(events = report.events, head = %report.head_hash, "the event log's hash chain is intact");
            Ok(())
        }
        Some(b) => anyhow::bail!(
            "the event log is broken at position {}: {}",
            b.position,
            b.reason
        ),
    }
}

/// `backup`: writes the log to a file (or `-`, stdout).
async fn backup(pool: &PgPool, out: &std::path::Path) -> anyhow::Result<()> {
    let report = if out.as_os_str() == "-" {
        shopfloor_eventstore::archive::export(pool, std::io::stdout().lock()).await
    } else {
        let file =
            std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
        shopfloor_eventstore::archive::export(pool, std::io::BufWriter::new(file)).await
    }
    .context("writing the backup")?;
    info!(
        events = report.events,
        head = report.head_position,
        "backup written"
    );
    Ok(())
}

/// `restore`: reads a backup into an empty log and rebuilds the read models.
async fn restore(pool: &PgPool, settings: &Settings, from: &std::path::Path) -> anyhow::Result<()> {
    let report = if from.as_os_str() == "-" {
        shopfloor_eventstore::archive::import(pool, std::io::stdin().lock()).await
    } else {
        let file =
            std::fs::File::open(from).with_context(|| format!("opening {}", from.display()))?;
        shopfloor_eventstore::archive::import(pool, std::io::BufReader::new(file)).await
    }
    .context("restoring the backup")?;
    info!(
        events = report.events,
        "event store restored; rebuilding the read models"
    );
    shopfloor_projections::replay(pool, None, progress_bar)
        .await
        .context("rebuilding the read models")?;
    eprintln!();
    app::mark_restored(pool, &settings.namespace, report.head_position).await?;
    info!(
        "restore done: read models rebuilt, relay and process manager start after the restored log"
    );
    Ok(())
}

/// `simulate`: a plant of simulated machines publishing to MQTT.
async fn simulate(
    settings: &Settings,
    machines: usize,
    rate: f64,
    sparkplug: bool,
    ticks: Option<u64>,
) -> anyhow::Result<()> {
    let url = settings
        .mqtt_url
        .clone()
        .context("MQTT_URL is off: the simulator needs a broker")?;
    let pool = app::connect_postgres(settings).await?;
    app::migrate(&pool).await?;
    let mut config =
        shopfloor_ingest::SimulatorConfig::new(url, settings.namespace.clone(), machines, rate);
    config.sparkplug = sparkplug;
    config.ticks = ticks;
    app::register_simulated(&pool, &config).await?;
    let cancel = CancellationToken::new();
    tokio::spawn(stop_on_signal(cancel.clone()));
    app::demo_calendar(&pool, &config).await?;
    if !sparkplug {
        // Orders, operators and late stop classification (JSON counts name the order).
        let floor = std::sync::Arc::new(shopfloor_ingest::DemoFloor::new(machines));
        config.floor = Some(floor.clone());
        tokio::spawn(shopfloor_ingest::demo::direct(
            app::command_service(&pool),
            shopfloor_ingest::simulated_machines(&config),
            floor,
            shopfloor_ingest::demo::Pace::default(),
            cancel.clone(),
        ));
    }
    let report = shopfloor_ingest::simulate(config, cancel)
        .await
        .context("simulating")?;
    info!(
        ticks = report.ticks,
        published = report.published,
        "simulation ended"
    );
    Ok(())
}

/// `report verify`: regenerates a stored report at its position and compares.
async fn verify_report(
    pool: PgPool,
    settings: &Settings,
    id: &str,
    file: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let store = shopfloor_reports::ReportStore::open(&settings.reports_storage)?;
    let reports = shopfloor_reports::Reports::new(pool, store, settings.plant_name.clone());
    let mut v = reports.verify(id).await?;
    if let Some(path) = file {
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        v.stored_sha256 = shopfloor_reports::service::sha256_hex(&bytes);
        v.identical = v.stored_sha256 == v.regenerated_sha256
            && v.regenerated_sha256 == v.sha256
            && v.chain_hash_matches != Some(false);
    }
    println!("{}", serde_json::to_string(&v)?);
    anyhow::ensure!(
        v.identical,
        "report {id} is not identical to its regeneration at position {}",
        v.position
    );
    info!(report = %id, position = v.position, "the report is identical to its regeneration");
    Ok(())
}

/// `bench …`: runs one benchmark and prints its figures as JSON.
async fn run_bench(pool: PgPool, settings: &Settings, bench: Bench) -> anyhow::Result<()> {
    let store = shopfloor_eventstore::EventStore::new(pool);
    let result = match bench {
        Bench::Commands {
            aggregates,
            commands,
            concurrency,
            no_group_commit,
        } => {
            crate::bench::commands(store, aggregates, commands, concurrency, !no_group_commit)
                .await?
        }
        Bench::Ingest { messages, machines } => {
            crate::bench::ingest(settings, store.pool().clone(), messages, machines).await?
        }
        Bench::E2e { rate, secs } => {
            let nats = app::connect_nats(settings).await?;
            crate::bench::e2e(settings, store.pool().clone(), nats, rate, secs).await?
        }
        Bench::Http {
            machines,
            connections,
            secs,
            processes,
        } => crate::bench_http::http(settings, machines, connections, secs, processes).await?,
        Bench::Alerts {
            machines,
            rules,
            load_rate,
        } => crate::bench_alerts::alerts(settings, machines, rules, load_rate).await?,
        Bench::Opcua {
            nodes,
            machines,
            period_ms,
            secs,
        } => {
            let run = crate::bench_opcua::OpcuaBench {
                nodes,
                machines,
                period_ms,
                secs,
            };
            crate::bench_opcua::opcua(settings, store.pool().clone(), run).await?
        }
        Bench::Replay { events } => crate::bench::replay(store.pool().clone(), events).await?,
        Bench::Reports { machines, shifts } => {
            crate::bench_reports::reports(store.pool().clone(), machines, shifts).await?
        }
        Bench::Genealogy { iterations } => {
            crate::bench_genealogy::genealogy(store.pool().clone(), iterations).await?
        }
        Bench::Query {
            machines,
            days,
            rate,
            secs,
        } => {
            crate::bench::query(settings, store.pool().clone(), machines, days, rate, secs).await?
        }
    };
    println!("{result}");
    Ok(())
}

/// `serve`: runs the given roles (all of them when none is named) until a signal.
async fn serve(settings: Settings, roles: Vec<Role>) -> anyhow::Result<()> {
    let roles = if roles.is_empty() {
        Role::ALL.to_vec()
    } else {
        roles
    };
    let cancel = CancellationToken::new();
    if roles.contains(&Role::Group) {
        anyhow::ensure!(
            roles.iter().all(|r| *r == Role::Group),
            "--role group runs alone, on the group's own database and the hub's NATS"
        );
        tokio::spawn(stop_on_signal(cancel.clone()));
        return crate::group::serve(settings, cancel)
            .await
            .context("starting the group role");
    }
    let app = Application::build(settings, &roles)
        .await
        .context("starting shopfloor")?;
    tokio::spawn(stop_on_signal(cancel.clone()));
    app.run_until_stopped(cancel).await
}

/// Draws `[#####.....] 42% 4200/10000` on stderr, at most every 1 %.
fn progress_bar(done: i64, total: i64) {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST: AtomicI64 = AtomicI64::new(-1);
    let pct = if total > 0 {
        (done * 100 / total).clamp(0, 100)
    } else {
        100
    };
    if LAST.swap(pct, Ordering::Relaxed) == pct {
        return;
    }
    let filled = (pct / 5) as usize;
    eprint!(
        "\r[{}{}] {pct:3}% {done}/{total}",
        "#".repeat(filled),
        ".".repeat(20 - filled)
    );
}

/// Cancels on Ctrl-C or SIGTERM: every loop then finishes its work in flight and ends.
async fn stop_on_signal(cancel: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    info!("stopping: finishing work in flight");
    cancel.cancel();
}
