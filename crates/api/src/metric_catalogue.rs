//! Every metric family Shopfloor records, described in one place, so that `/metrics`
//! carries a `# HELP` line for each (Prometheus' `promtool check metrics` requires it).
//!
//! The metrics are recorded where they happen, across the crates, with the `metrics`
//! macros; [`describe_all`] gives the installed recorder their kinds and help texts.
//! Call it once, right after the recorder is installed (a description given before
//! that is lost). A test scans the workspace's sources for `counter!`, `gauge!` and
//! `histogram!` and fails on any name missing here, so a new metric cannot ship without
//! its description.

/// What kind of metric a family is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric family: its name, kind and help text (labels are named in the text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricInfo {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
}

const fn counter(name: &'static str, help: &'static str) -> MetricInfo {
    MetricInfo {
        name,
        kind: Kind::Counter,
        help,
    }
}

const fn gauge(name: &'static str, help: &'static str) -> MetricInfo {
    MetricInfo {
        name,
        kind: Kind::Gauge,
        help,
    }
}

const fn histogram(name: &'static str, help: &'static str) -> MetricInfo {
    MetricInfo {
        name,
        kind: Kind::Histogram,
        help,
    }
}

/// Every metric family, by area.
pub const METRICS: &[MetricInfo] = &[
    // HTTP edge (crates/api).
    counter(
        "shopfloor_http_requests_total",
        "HTTP requests answered, by method, route (the matched template) and status.",
    ),
    histogram(
        "shopfloor_http_request_duration_seconds",
        "Time to produce an HTTP answer, in seconds, by method and route.",
    ),
    counter(
        "shopfloor_http_connections_refused_total",
        "Connections answered 503 and closed because the connection limit was reached.",
    ),
    counter(
        "shopfloor_http_request_timeouts_total",
        "Requests answered 503 because they were not answered within the request timeout.",
    ),
    counter(
        "shopfloor_http_bodies_drained_total",
        "Request bodies read to their end after an answer was given without them (e.g. 413), so that the client could read the answer.",
    ),
    counter(
        "shopfloor_http_rate_limited_total",
        "Requests answered 429 by a rate limit (per token, or failed authentications per client address).",
    ),
    counter(
        "shopfloor_http_idempotent_replays_total",
        "Requests answered from the stored first answer of their Idempotency-Key.",
    ),
    counter(
        "shopfloor_machine_events_accepted_total",
        "Machine events accepted by POST /api/v1/machines/events.",
    ),
    // Command side (crates/commands).
    counter(
        "shopfloor_commands_total",
        "Commands handled, by aggregate and outcome (accepted, rejected, duplicate).",
    ),
    counter(
        "shopfloor_command_conflicts_total",
        "Appends that met a concurrent write to the same stream (optimistic-lock conflicts), by aggregate.",
    ),
    counter(
        "shopfloor_process_failures_total",
        "Failures of the process manager's loop (retried).",
    ),
    counter(
        "shopfloor_process_rejections_total",
        "Follow-up commands of the process manager that the domain refused (recorded in process_rejections).",
    ),
    gauge(
        "shopfloor_process_position",
        "Global log position up to which the process manager has handled events.",
    ),
    // Alerts (crates/alerts).
    counter(
        "shopfloor_alerts_raised_total",
        "Alerts raised, by kind (counted once, when the evaluator reads AlertRaised).",
    ),
    counter(
        "shopfloor_alert_evaluator_failures_total",
        "Failures of the alert evaluator's loop (retried from its checkpoint).",
    ),
    gauge(
        "shopfloor_alert_evaluator_position",
        "Global log position up to which the alert evaluator has handled events.",
    ),
    counter(
        "shopfloor_alert_deliveries_total",
        "Alert delivery attempts by outcome: delivered, retry (failed, tried again later) or dead (failed for good).",
    ),
    histogram(
        "shopfloor_alert_delivery_latency_seconds",
        "From the commit of an alert event to its delivery's 2xx (or accepted email).",
    ),
    // Event store (crates/eventstore).
    histogram(
        "shopfloor_group_commit_batch_size",
        "Commands committed together in one group-commit transaction.",
    ),
    // Relay and projections (crates/projections).
    counter(
        "shopfloor_relay_published_total",
        "Events published to JetStream by the relay.",
    ),
    counter(
        "shopfloor_relay_failures_total",
        "Failures of the relay's loop (retried from its checkpoint).",
    ),
    counter(
        "shopfloor_relay_publish_retries_total",
        "Batches the active relay published again while JetStream failed (a stream leader election), keeping its lock.",
    ),
    gauge(
        "shopfloor_leader",
        "1 while this process holds the leader lock named by `lock` (relay, process_manager), else 0; summed over a deployment it must be 1 per lock.",
    ),
    counter(
        "shopfloor_relay_calendar_published_total",
        "Snapshots of the plant calendar the relay published on `{ns}.settings.calendar` (at start and on each change; for the plant group, ADR 0061).",
    ),
    counter(
        "shopfloor_relay_calendar_failures_total",
        "Failed attempts to publish the plant calendar (retried; events are not held up).",
    ),
    counter(
        "shopfloor_relay_rewinds_total",
        "Times the relay republished from an earlier position because JetStream lost its tail.",
    ),
    gauge(
        "shopfloor_relay_position",
        "Global log position up to which the relay has published.",
    ),
    counter(
        "shopfloor_projection_events_total",
        "Events applied to a read model, by projection.",
    ),
    counter(
        "shopfloor_projection_failures_total",
        "Failures of a projector (retried), by projection.",
    ),
    counter(
        "shopfloor_projection_parked_total",
        "Events a projection could not apply and set aside, by projection.",
    ),
    counter(
        "shopfloor_projection_slow_chunks_total",
        "Chunks of events applied one by one after the set-based apply failed, by projection.",
    ),
    counter(
        "shopfloor_projection_gap_filled_total",
        "Events read from the store to fill a gap in what JetStream delivered, by projection.",
    ),
    // The plant (crates/api plant_metrics, ADR 0059, 0062): labels site, area, line and machine.
    gauge(
        "shopfloor_machine_state",
        "1 for a machine's current state, 0 for its other states, by site, area, line, machine and state (running, idle, down, unknown).",
    ),
    gauge(
        "shopfloor_machine_shift_oee",
        "OEE of the machine over its line's running shift (as /kpi-metrics), by site, area, line and machine; NaN without a value.",
    ),
    gauge(
        "shopfloor_machine_shift_availability",
        "Availability of the machine over its line's running shift, by site, area, line and machine; NaN without a value.",
    ),
    gauge(
        "shopfloor_machine_shift_performance",
        "Performance of the machine over its line's running shift, by site, area, line and machine; NaN without a value.",
    ),
    gauge(
        "shopfloor_machine_shift_quality",
        "Quality (good / total) of the machine over its line's running shift, by site, area, line and machine; NaN without a value.",
    ),
    counter(
        "shopfloor_machine_parts_good_total",
        "Good parts the machine reported over its life, by site, area, line and machine.",
    ),
    counter(
        "shopfloor_machine_parts_scrap_total",
        "Scrap parts the machine reported over its life, by site, area, line and machine.",
    ),
    gauge(
        "shopfloor_plant_metrics_refreshed_timestamp_seconds",
        "When this process last refreshed the per-machine families (Unix time, seconds).",
    ),
    gauge(
        "shopfloor_projection_position",
        "Global log position up to which a read model is up to date, by projection.",
    ),
    counter(
        "shopfloor_live_updates_total",
        "Read-model changes sent to the live feed.",
    ),
    // MQTT ingest (crates/ingest).
    counter(
        "shopfloor_ingest_messages_total",
        "MQTT messages received, by payload format (json, sparkplug, unknown).",
    ),
    counter(
        "shopfloor_ingest_rejected_total",
        "MQTT messages set aside as not understood, by reason category.",
    ),
    counter(
        "shopfloor_ingest_filtered_total",
        "MQTT reports or samples filtered out as noise, by reason.",
    ),
    counter(
        "shopfloor_ingest_duplicates_total",
        "Ingest commands found done before (a redelivered message) that appended nothing.",
    ),
    counter(
        "shopfloor_ingest_repeats_total",
        "MQTT messages recognised as repeats (a DUP redelivery or a repeated msg_id), applied once and listed as notices.",
    ),
    counter(
        "shopfloor_ingest_sparkplug_ignored_metrics_total",
        "Unmapped Sparkplug metrics with a non-numeric datatype, ignored.",
    ),
    counter(
        "shopfloor_ingest_conflicts_total",
        "Ingest batches that met a concurrent write and were retried.",
    ),
    counter(
        "shopfloor_ingest_events_total",
        "Events appended by the MQTT ingest.",
    ),
    counter(
        "shopfloor_ingest_telemetry_samples_total",
        "Telemetry samples stored by the MQTT ingest.",
    ),
    counter(
        "shopfloor_ingest_predictive_alerts_total",
        "Sensors found drifting outside their learned baseline.",
    ),
    counter(
        "shopfloor_ingest_predictive_tasks_total",
        "Predictive maintenance tasks scheduled by the MQTT ingest.",
    ),
    counter(
        "shopfloor_ingest_sparkplug_seq_gaps_total",
        "Gaps in a Sparkplug edge node's message sequence numbers.",
    ),
    counter(
        "shopfloor_opcua_data_changes_total",
        "OPC UA data change notifications processed through the ingest (ADR 0046).",
    ),
    counter(
        "shopfloor_opcua_reconnects_total",
        "OPC UA sessions back after a lost connection, by server (the gap is a notice in /ingest/rejected).",
    ),
    counter(
        "shopfloor_opcua_gap_seconds_total",
        "Seconds without a connection to an OPC UA server, by server, summed over the gaps.",
    ),
    counter(
        "shopfloor_opcua_connect_failures_total",
        "Attempts to reach an OPC UA server (its endpoints) that failed, by server.",
    ),
    counter(
        "shopfloor_opcua_publish_failures_total",
        "OPC UA publish requests that failed (timed out, or a response that could not be decoded), by server.",
    ),
    gauge(
        "shopfloor_opcua_connected",
        "1 while the session to an OPC UA server is connected, 0 while it is not, by server.",
    ),
    counter(
        "shopfloor_ingest_batch_failures_total",
        "Ingest batches that failed to be stored (their messages are redelivered).",
    ),
    counter(
        "shopfloor_ingest_reconnects_total",
        "Times the MQTT connection was lost and re-established.",
    ),
    gauge(
        "shopfloor_ingest_connected",
        "1 while the MQTT subscription stands, else 0.",
    ),
    histogram(
        "shopfloor_ingest_batch_seconds",
        "Time to store one ingest batch, in seconds.",
    ),
    counter(
        "shopfloor_group_events_total",
        "Plant events copied into the group database, by site (group role, ADR 0061).",
    ),
    gauge(
        "shopfloor_group_position",
        "The group's copy of a site's log: every plant position up to this is there, by site.",
    ),
    counter(
        "shopfloor_group_unreadable_total",
        "Messages of the group stream left out: no valid site, or neither a recorded event nor a calendar snapshot.",
    ),
    counter(
        "shopfloor_group_calendars_total",
        "Plant calendar snapshots applied to a site's schema, by site (group role, ADR 0061).",
    ),
];

/// Gives the installed recorder the kind and help text of every family in [`METRICS`].
pub fn describe_all() {
    for m in METRICS {
        match m.kind {
            Kind::Counter => metrics::describe_counter!(m.name, m.help),
            Kind::Gauge => metrics::describe_gauge!(m.name, m.help),
            Kind::Histogram => metrics::describe_histogram!(m.name, m.help),
        }
    }
}

/// The metric of this name, if it is in the catalogue.
pub fn find(name: &str) -> Option<&'static MetricInfo> {
    METRICS.iter().find(|m| m.name == name)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};

    use super::*;

    /// Every `.rs` file under `dir`.
    fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// (kind, name) of every `counter!("…")`, `gauge!("…")` and `histogram!("…")` in
    /// `text`, the name possibly on the next line.
    fn recorded(text: &str) -> Vec<(Kind, String)> {
        let mut found = Vec::new();
        for (macro_name, kind) in [
            ("counter!(", Kind::Counter),
            ("gauge!(", Kind::Gauge),
            ("histogram!(", Kind::Histogram),
        ] {
            for (at, _) in text.match_indices(macro_name) {
                let preceded = text[..at].chars().next_back();
                if preceded.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    continue; // describe_counter!( and the like
                }
                let rest = text[at + macro_name.len()..].trim_start();
                let Some(rest) = rest.strip_prefix('"') else {
                    continue; // a name that is not a literal (this module)
                };
                let name = rest.find('"').map_or("", |end| &rest[..end]);
                let is_name = !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
                if is_name {
                    found.push((kind, name.to_string()));
                }
            }
        }
        found
    }

    #[test]
    fn every_recorded_metric_is_described_with_its_kind() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut files = Vec::new();
        sources(&root.join("crates"), &mut files);
        sources(&root.join("src"), &mut files);
        let mut seen = BTreeSet::new();
        let mut missing = Vec::new();
        for file in &files {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            for (kind, name) in recorded(&text) {
                match find(&name) {
                    Some(m) if m.kind == kind => {}
                    Some(m) => missing.push(format!(
                        "{name} ({}) is recorded as {kind:?} but described as {:?}",
                        file.display(),
                        m.kind
                    )),
                    None => missing.push(format!("{name} ({})", file.display())),
                }
                seen.insert(name);
            }
        }
        assert!(
            seen.len() >= 30,
            "the scan found only {} metric names: is the source tree where it should be?",
            seen.len()
        );
        assert!(
            missing.is_empty(),
            "metrics recorded without a description in metric_catalogue::METRICS:\n  {}",
            missing.join("\n  ")
        );
    }

    #[test]
    fn names_are_unique_and_follow_the_prometheus_conventions() {
        let mut names = BTreeSet::new();
        for m in METRICS {
            assert!(names.insert(m.name), "{} is described twice", m.name);
            assert!(m.name.starts_with("shopfloor_"), "{}", m.name);
            assert!(
                m.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{} is not snake_case",
                m.name
            );
            assert_eq!(
                m.name.ends_with("_total"),
                m.kind == Kind::Counter,
                "{}: counters, and only counters, end in _total",
                m.name
            );
            assert!(!m.help.is_empty() && !m.help.contains('\n'), "{}", m.name);
        }
    }
}
