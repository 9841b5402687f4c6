//! The `group` role (issue 18, ADR 0061): cross-plant read models on the group's own
//! PostgreSQL, fed by the hub's stream `GROUP_EVENTS`, served under `/api/v1/group/...`.
//!
//! # Layout
//! - [`sites`]: one schema per site in the group database (the site's copy of its
//!   plant's log and the standard read models), each reached through a pool whose
//!   `search_path` is that schema.
//! - [`copy`]: messages of the hub's stream into each site's copy of the log, exactly
//!   once, then the standard projections over it.
//! - [`rollup`]: the cross-plant roll-ups (pure), with the plant's rule: sums first,
//!   ratios from the sums.
//! - [`http`]: the group's API and its own tokens.
//!
//! The consumer ([`run_consumer`]) is one durable JetStream pull consumer on the hub's
//! stream. Each batch is planned, stored per site (events, and the newest calendar
//! snapshot of each site), acknowledged, and projected; a batch
//! that fails is not acknowledged and comes again (storing it again changes nothing).

pub mod copy;
pub mod http;
pub mod rollup;
pub mod sites;

use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::{self, consumer::pull, AckKind};
use futures::StreamExt;
use shopfloor_projections::calendar_sync;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use self::sites::Sites;

/// The durable consumer's name on the hub's stream.
pub const CONSUMER: &str = "shopfloor_group";

/// Most messages taken in one batch.
const BATCH: usize = 1_000;

/// How long a fetch waits for messages; also the period of the idle catch-up.
const FETCH_WAIT: Duration = Duration::from_secs(1);

/// How long to wait before retrying after an error.
const RETRY: Duration = Duration::from_secs(1);

/// Copies the hub's stream `stream` into the sites' logs and projects them, until
/// `cancel` fires.
pub async fn run_consumer(
    sites: Sites,
    nats: async_nats::Client,
    stream: String,
    cancel: CancellationToken,
) {
    let js = jetstream::new(nats);
    // Read models whose projection failed after their events were stored are
    // brought up at start and on every idle fetch.
    project_all(&sites).await;
    while !cancel.is_cancelled() {
        let consumer = match consumer(&js, &stream).await {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, stream, "the group stream is not there yet");
                if wait(&cancel, RETRY * 5).await {
                    return;
                }
                continue;
            }
        };
        info!(stream, "consuming the group stream");
        if let Err(e) = consume(&sites, &consumer, &cancel).await {
            warn!(error = %format!("{e:#}"), "group consumer failed; retrying");
            if wait(&cancel, RETRY).await {
                return;
            }
        }
    }
}

/// True when cancelled during the wait.
async fn wait(cancel: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

async fn consumer(
    js: &jetstream::Context,
    stream: &str,
) -> anyhow::Result<jetstream::consumer::Consumer<pull::Config>> {
    let stream = js.get_stream(stream).await?;
    let consumer = stream
        .get_or_create_consumer(
            CONSUMER,
            pull::Config {
                durable_name: Some(CONSUMER.to_owned()),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                max_ack_pending: 20_000,
                ..Default::default()
            },
        )
        .await?;
    Ok(consumer)
}

async fn consume(
    sites: &Sites,
    consumer: &jetstream::consumer::Consumer<pull::Config>,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    // A batch in hand is finished (stored and acknowledged) before stopping, so a
    // restart does not wait for its redelivery.
    while !cancel.is_cancelled() {
        let mut batch = consumer
            .fetch()
            .max_messages(BATCH)
            .expires(FETCH_WAIT)
            .messages()
            .await?;
        let mut messages = Vec::new();
        while let Some(m) = batch.next().await {
            messages.push(m.map_err(|e| anyhow::anyhow!("{e}"))?);
        }
        if messages.is_empty() {
            project_all(sites).await;
            continue;
        }
        match apply(sites, &messages).await {
            Ok(()) => {
                for m in &messages {
                    m.ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
                }
            }
            Err(e) => {
                for m in &messages {
                    let _ = m.ack_with(AckKind::Nak(Some(RETRY))).await;
                }
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Stores a batch in the sites' logs, then projects the sites it touched.
async fn apply(sites: &Sites, messages: &[jetstream::Message]) -> anyhow::Result<()> {
    let plan = copy::plan(
        messages
            .iter()
            .map(|m| (m.subject.as_str(), m.payload.as_ref())),
    );
    for u in &plan.unreadable {
        warn!(subject = %u.subject, reason = %u.reason, "a group message was left out");
        metrics::counter!("shopfloor_group_unreadable_total").increment(1);
    }
    for (site, events) in &plan.sites {
        let pool = sites.pool(site).await?;
        let stored = copy::store(&pool, events)
            .await
            .with_context(|| format!("storing the events of site {site}"))?;
        metrics::counter!("shopfloor_group_events_total", "site" => site.to_string())
            .increment(stored.inserted);
        metrics::gauge!("shopfloor_group_position", "site" => site.to_string())
            .set(stored.head as f64);
        copy::project(&pool)
            .await
            .with_context(|| format!("projecting the events of site {site}"))?;
    }
    for (site, calendar) in &plan.calendars {
        let pool = sites.pool(site).await?;
        let applied = calendar_sync::apply(&pool, &calendar.snapshot, &calendar.hash)
            .await
            .with_context(|| format!("applying the calendar of site {site}"))?;
        if applied == calendar_sync::Applied::Replaced {
            info!(%site, taken_at = %calendar.snapshot.taken_at, "plant calendar applied");
            metrics::counter!("shopfloor_group_calendars_total", "site" => site.to_string())
                .increment(1);
        }
    }
    Ok(())
}

/// Brings every site's read models up to its copy's head; failures are logged (the
/// next batch or idle fetch tries again).
async fn project_all(sites: &Sites) {
    for (site, pool) in sites.all().await {
        if let Err(e) = copy::project(&pool).await {
            warn!(%site, error = %e, "projecting a site failed; will retry");
        }
    }
}

/// `replay --verify --group`: for every site, the copy of the log has no gap below its
/// head and every read model equals a rebuild from that copy. Returns the differences
/// (empty: equal), one line each.
pub async fn verify(sites: &Sites) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for (site, pool) in sites.all().await {
        let (head, count, max): (i64, i64, Option<i64>) = sqlx::query_as(
            "SELECT h.position, (SELECT count(*) FROM events e WHERE e.position <= h.position), \
                    (SELECT max(position) FROM events e WHERE e.position <= h.position) \
             FROM event_log_head h WHERE h.id",
        )
        .fetch_one(&pool)
        .await?;
        if count != head || max.unwrap_or(0) != head {
            out.push(format!(
                "{site}: the copy of the log holds {count} events up to its head {head}"
            ));
        }
        for d in shopfloor_projections::verify(&pool)
            .await
            .with_context(|| format!("verifying the read models of site {site}"))?
        {
            out.push(format!("{site}: {d}"));
        }
    }
    Ok(out)
}

/// Opens the group database: migrates its public schema (the group's tokens) and
/// every site schema already there; site pools of `connections` each.
pub async fn open(settings: &crate::settings::Settings, connections: u32) -> anyhow::Result<Sites> {
    let main = crate::app::connect_postgres(settings).await?;
    crate::app::migrate(&main).await?;
    let options: sqlx::postgres::PgConnectOptions = settings
        .database_url
        .as_str()
        .parse()
        .context("invalid DATABASE_URL")?;
    let options = sqlx::ConnectOptions::disable_statement_logging(options);
    Sites::open(main, options, connections).await
}

/// `serve --role group`: the consumer and the group's API, until `cancel` fires.
pub async fn serve(
    settings: crate::settings::Settings,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    use secrecy::ExposeSecret;
    // The recorder, with every family described, before anything is recorded.
    let _ = crate::app::metrics_handle();
    let sites = open(&settings, sites::SERVE_CONNECTIONS.min(settings.db_pool))
        .await
        .context("opening the group database")?;
    let nats = crate::app::connect_nats(&settings).await?;
    let listener = tokio::net::TcpListener::bind(settings.http_addr)
        .await
        .with_context(|| format!("cannot listen on {}", settings.http_addr))?;
    let addr = listener.local_addr()?;
    let tokens = shopfloor_api::auth::Tokens::new(
        sites.main().clone(),
        settings.admin_token.as_ref().map(|t| t.expose_secret()),
    );
    let state = http::GroupState {
        sites: sites.clone(),
        tokens,
        nats: nats.clone(),
    };
    let consumer = tokio::spawn(run_consumer(
        sites,
        nats,
        settings.group_stream.clone(),
        cancel.clone(),
    ));
    info!("group API listening on http://{addr}");
    let stop = cancel.clone();
    axum::serve(listener, http::router(state))
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
        .context("serving the group API")?;
    cancel.cancel();
    let _ = consumer.await;
    Ok(())
}
