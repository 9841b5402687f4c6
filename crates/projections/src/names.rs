//! Names in JetStream. Everything is prefixed by the namespace, so two Shopfloor
//! instances on one NATS server never see each other's data.

/// The JetStream stream that holds the event log: `{namespace}_EVENTS`.
pub fn events_stream(namespace: &str) -> String {
    format!("{namespace}_EVENTS")
}

/// Every subject of the event log: `{namespace}.events.>`.
pub fn events_wildcard(namespace: &str) -> String {
    format!("{namespace}.events.>")
}

/// Every settings subject of a plant: `{namespace}.settings.>` (in the same stream
/// as its events, so the plant group's stream sources both; projectors consume
/// `{namespace}.events.>` only).
pub fn settings_wildcard(namespace: &str) -> String {
    format!("{namespace}.settings.>")
}

/// The subject of the plant's calendar snapshot: `{namespace}.settings.calendar`
/// ([`crate::calendar_sync`]).
pub fn calendar_subject(namespace: &str) -> String {
    format!("{namespace}.settings.calendar")
}

/// The subjects of the stream `{namespace}_EVENTS`: events and settings.
pub fn stream_subjects(namespace: &str) -> Vec<String> {
    vec![events_wildcard(namespace), settings_wildcard(namespace)]
}

/// The subject of one event: `{namespace}.events.{stream_type}.{stream_id}`.
pub fn event_subject(namespace: &str, stream_type: &str, stream_id: &str) -> String {
    format!(
        "{namespace}.events.{}.{}",
        subject_token(stream_type),
        subject_token(stream_id)
    )
}

/// A subject token for any string: characters that NATS gives a meaning to (`.`,
/// `*`, `>`, white space) or that are not plain ASCII are percent-encoded, so ids
/// like `press.01` stay one token.
pub fn subject_token(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.is_empty() {
        out.push_str("%00");
    }
    out
}

/// The durable JetStream consumer of one projector: `{namespace}_{projection}`.
pub fn projector_consumer(namespace: &str, projection: &str) -> String {
    format!("{namespace}_{projection}")
}

/// Makes sure the event stream of `namespace` exists with `replicas` replicas and
/// its [`stream_subjects`]: created with them when missing, updated to them when it
/// has another count or lacks a subject (a stream made before the settings subject;
/// JetStream moves a clustered stream between R1 and R3 in place; when it
/// refuses, the stream is used as it is and a warning says so).
pub async fn ensure_events_stream(
    jetstream: &async_nats::jetstream::Context,
    namespace: &str,
    replicas: usize,
) -> Result<async_nats::jetstream::stream::Stream, String> {
    use async_nats::jetstream::stream;
    let config = stream::Config {
        name: events_stream(namespace),
        subjects: stream_subjects(namespace),
        storage: stream::StorageType::File,
        duplicate_window: std::time::Duration::from_secs(120),
        num_replicas: replicas.max(1),
        ..Default::default()
    };
    let mut stream = jetstream
        .get_or_create_stream(config)
        .await
        .map_err(|e| e.to_string())?;
    let current = stream.cached_info().config.clone();
    let mut subjects = current.subjects.clone();
    for s in stream_subjects(namespace) {
        if !subjects.contains(&s) {
            subjects.push(s);
        }
    }
    if current.num_replicas.max(1) != replicas.max(1) || subjects != current.subjects {
        let wanted = stream::Config {
            num_replicas: replicas.max(1),
            subjects,
            ..current.clone()
        };
        match jetstream.update_stream(wanted).await {
            Ok(_) => {
                tracing::info!(stream = %current.name, from = current.num_replicas, to = replicas, "stream replicas and subjects updated");
                stream = jetstream
                    .get_stream(&current.name)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Err(e) => {
                tracing::warn!(stream = %current.name, replicas = current.num_replicas, asked = replicas, error = %e, "stream replicas or subjects cannot be changed; using the stream as it is")
            }
        }
    }
    Ok(stream)
}

/// Header carrying the event's global position.
pub const POSITION_HEADER: &str = "Shopfloor-Position";
/// Header carrying the event type.
pub const EVENT_TYPE_HEADER: &str = "Shopfloor-Event-Type";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_with_subject_characters_stay_one_token() {
        assert_eq!(
            event_subject("sf", "machine", "M-1"),
            "sf.events.machine.M-1"
        );
        assert_eq!(
            event_subject("sf", "machine", "press.01 *>"),
            "sf.events.machine.press%2E01%20%2A%3E"
        );
        assert_eq!(subject_token("Prüf"), "Pr%C3%BCf");
        assert_eq!(subject_token(""), "%00");
    }
}
