//! `GET /api/v1/live`: read-model changes as Server-Sent Events, for dashboards.
//!
//! The projectors publish changes to the [`LiveHub`](shopfloor_projections::live::LiveHub),
//! which already coalesces them to a few updates per second per topic, so however
//! fast events arrive a hundred open dashboards cost almost nothing. Each SSE
//! `update` event carries `{"topic", "data"}`; `?topics=machine,kpi` keeps only
//! topics with those kinds (the part before `:`). A client too slow to keep up gets
//! a `resync` event (it should refetch what it shows) instead of a silent gap.
//! Authentication is the usual bearer header; browsers read the stream with
//! `fetch()` so that the token never travels in a URL. A feed ends when its token is
//! revoked: within a second, whichever API process revoked it ([`crate::auth::Tokens::revoked`]).
//!
//! Alerts are not a projection: [`forward_alerts`] puts the changes of the alerts table on
//! the same hub (ADR 0048), as `alert:{alert_id}` with the alert as `GET /api/v1/alerts`
//! lists it, and `alerts:reload` when changes may have been missed (read them all again).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use axum::Extension;
use axum::Router;
use futures::stream::{self, Stream};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use utoipa::IntoParams;

use shopfloor_alerts::feed::{AlertChange, AlertFeed};
use shopfloor_projections::live::LiveHub;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::auth::{perm, Auth, TokenDigest};
use crate::error::{ApiError, ProblemDocument};
use crate::extract::ApiQuery;
use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/live", get(live))
}

/// `?topics=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LiveQuery {
    /// Comma-separated topic kinds to keep (`machine`, `order`, `task`, `inventory`,
    /// `kpi`, `operator`, `alert`, `alerts`); all when absent.
    pub topics: Option<String>,
}

/// Live read-model changes (text/event-stream).
#[utoipa::path(get, path = "/api/v1/live", tag = "live", params(LiveQuery),
    responses((status = 200, description = "text/event-stream of `update` events {topic, data}",
            content_type = "text/event-stream", body = String),
        (status = 503, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn live(
    State(state): State<AppState>,
    _: Auth<perm::Read>,
    digest: Option<Extension<TokenDigest>>,
    ApiQuery(q): ApiQuery<LiveQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let hub = state
        .live
        .clone()
        .ok_or_else(|| ApiError::unavailable("no projector (live hub) runs in this process", 30))?;
    let kinds: Option<Vec<String>> = q.topics.map(|t| {
        t.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    });
    let receiver = hub.subscribe();
    let hello = Event::default().event("ready").data("{}");
    let updates = stream::unfold((receiver, kinds), |(mut rx, kinds)| async move {
        loop {
            match rx.recv().await {
                Ok(update) => {
                    let kind = update.topic.split(':').next().unwrap_or_default();
                    if kinds.as_ref().is_some_and(|k| !k.iter().any(|k| k == kind)) {
                        continue;
                    }
                    let event = Event::default()
                        .event("update")
                        .json_data(&update)
                        .unwrap_or_else(|_| Event::default().event("resync").data("{}"));
                    return Some((Ok(event), (rx, kinds)));
                }
                Err(RecvError::Lagged(_)) => {
                    let event = Event::default().event("resync").data("{}");
                    return Some((Ok(event), (rx, kinds)));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    });
    let shutdown = state.shutdown.clone();
    let tokens = state.tokens.clone();
    // The feed ends at shutdown, or when the token that opened it is revoked.
    let end = async move {
        let revoked = async {
            match digest {
                Some(Extension(d)) => tokens.revoked(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = shutdown.cancelled_owned() => {}
            () = revoked => tracing::debug!("live feed closed: its token was revoked"),
        }
    };
    let stream = futures::StreamExt::take_until(
        futures::StreamExt::chain(stream::once(async { Ok(hello) }), updates),
        end,
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// The topic of one alert's changes: `alert:{alert_id}`.
pub fn alert_topic(alert_id: &str) -> String {
    format!("alert:{alert_id}")
}

/// The topic that asks clients to read every alert again.
pub const ALERTS_RELOAD_TOPIC: &str = "alerts:reload";

/// Puts the committed changes of the alerts table on `hub` until `cancel` fires: run it in
/// every process that serves the live feed, whichever process evaluates alerts.
pub async fn forward_alerts(pool: PgPool, hub: LiveHub, cancel: CancellationToken) {
    let mut feed = AlertFeed::new(pool, cancel);
    while let Some(change) = feed.next().await {
        match change {
            AlertChange::Reload => hub.notify(ALERTS_RELOAD_TOPIC, serde_json::json!({})),
            AlertChange::Changed(alerts) => {
                for alert in alerts {
                    match serde_json::to_value(&alert) {
                        Ok(data) => hub.notify(alert_topic(&alert.alert_id), data),
                        Err(e) => tracing::warn!(error = %e, "an alert could not be serialised"),
                    }
                }
            }
        }
    }
}
