//! The command line: `shopfloor serve [--role ...]`, `shopfloor migrate`.
//!
//! Errors end the process with one human-readable line on stderr and exit code 1,
//! never a panic backtrace.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
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
    /// Measure the real paths on the real services (prints one JSON line last).
    Bench {
        #[command(subcommand)]
        bench: Bench,
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
    /// Turns MQTT sensor payloads into machine commands.
    Ingest,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Api, Role::Relay, Role::Projector, Role::Ingest];

    pub fn name(self) -> &'static str {
        match self {
            Role::Api => "api",
            Role::Relay => "relay",
            Role::Projector => "projector",
            Role::Ingest => "ingest",
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
            let pool = app::connect_postgres(&settings).await?;
            app::migrate(&pool).await?;
            info!("migrations applied");
            Ok(())
        }
        Command::Bench { bench } => {
            let pool = app::connect_postgres(&settings).await?;
            app::migrate(&pool).await?;
            let store = shopfloor_eventstore::EventStore::new(pool);
            let result = match bench {
                Bench::Commands {
                    aggregates,
                    commands,
                    concurrency,
                    no_group_commit,
                } => {
                    crate::bench::commands(
                        store,
                        aggregates,
                        commands,
                        concurrency,
                        !no_group_commit,
                    )
                    .await?
                }
            };
            println!("{result}");
            Ok(())
        }
        Command::Serve { roles } => {
            let roles = if roles.is_empty() {
                Role::ALL.to_vec()
            } else {
                roles
            };
            let cancel = CancellationToken::new();
            let app = Application::build(settings, &roles)
                .await
                .context("starting shopfloor")?;
            tokio::spawn(stop_on_signal(cancel.clone()));
            app.run_until_stopped(cancel).await
        }
    }
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
