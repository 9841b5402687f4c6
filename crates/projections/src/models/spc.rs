//! Projection `spc` (ADR 0056): SPC characteristics (`rm_spc_characteristics`, one row each
//! with the limits in force and a signal count), every point (`rm_spc_points`, the full
//! history; the aggregate keeps only the last 1,000) and every signal (`rm_spc_signals`,
//! keyed by the event's position).
//!
//! A sample is one event per inspection or gauge reading, not a machine's stream of parts, so
//! the chunk is applied event by event with one small statement each, like `people`. Every
//! value comes from the event (ADR 0030), so a replay gives the same rows.

use serde_json::json;
use shopfloor_domain::spc::{ChartPart, SpcEvent};
use shopfloor_eventstore::RecordedEvent;
use sqlx::PgConnection;

use super::{count, json_text, last_updates, pg_ts};
use crate::error::ApplyError;
use crate::live::LiveUpdate;

fn characteristic_id(e: &SpcEvent) -> &str {
    match e {
        SpcEvent::SpcCharacteristicDefined {
            characteristic_id, ..
        }
        | SpcEvent::SpcSampleRecorded {
            characteristic_id, ..
        }
        | SpcEvent::SpcControlLimitsFrozen {
            characteristic_id, ..
        }
        | SpcEvent::SpcSignalRaised {
            characteristic_id, ..
        } => characteristic_id.as_str(),
    }
}

fn update(event: &RecordedEvent, e: &SpcEvent) -> LiveUpdate {
    let id = characteristic_id(e);
    LiveUpdate {
        topic: format!("spc:{id}"),
        data: json!({
            "characteristic_id": id,
            "event_type": event.event_type,
            "position": event.position,
        }),
    }
}

fn finite(v: f64) -> Result<f64, ApplyError> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(super::poison("a value that is not a finite number"))
    }
}

/// Applies one event.
async fn apply(
    conn: &mut PgConnection,
    event: &RecordedEvent,
    e: &SpcEvent,
) -> Result<(), ApplyError> {
    let id = characteristic_id(e);
    match e {
        SpcEvent::SpcCharacteristicDefined {
            name,
            chart,
            subgroup_size,
            spec,
            rules,
            source,
            machine_id,
            at,
            ..
        } => {
            let product = match source {
                shopfloor_domain::spc::SampleSource::Inspections { product_id } => {
                    product_id.as_ref().map(|p| p.as_str())
                }
                _ => None,
            };
            let rules = json_text(&json!(rules.iter().map(|r| r.as_str()).collect::<Vec<_>>()))?;
            sqlx::query(
                "INSERT INTO rm_spc_characteristics (characteristic_id, name, chart, \
                     subgroup_size, source_kind, product_id, machine_id, lsl, usl, target, rules, \
                     defined_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12, $12) \
                 ON CONFLICT (characteristic_id) DO NOTHING",
            )
            .bind(id)
            .bind(name.as_str())
            .bind(chart.as_str())
            .bind(i32::try_from(*subgroup_size).map_err(|_| super::poison("subgroup size"))?)
            .bind(source.as_str())
            .bind(product)
            .bind(machine_id.as_ref().map(|m| m.as_str()))
            .bind(spec.lsl)
            .bind(spec.usl)
            .bind(spec.target)
            .bind(rules)
            .bind(pg_ts(at)?)
            .execute(&mut *conn)
            .await?;
        }
        SpcEvent::SpcSampleRecorded {
            index,
            subgroup,
            order_id,
            inspection_id,
            limits_version,
            z,
            at,
            ..
        } => {
            let at = pg_ts(at)?;
            sqlx::query(
                "INSERT INTO rm_spc_points (characteristic_id, idx, value, spread, size, count, \
                     limits_version, z, order_id, inspection_id, at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT (characteristic_id, idx) DO NOTHING",
            )
            .bind(id)
            .bind(count(*index)?)
            .bind(finite(subgroup.value)?)
            .bind(subgroup.spread.map(finite).transpose()?)
            .bind(count(subgroup.size)?)
            .bind(subgroup.count.map(count).transpose()?)
            .bind(limits_version.map(|v| v as i32))
            .bind(z.map(finite).transpose()?)
            .bind(order_id.as_ref().map(|o| o.as_str()))
            .bind(inspection_id.as_ref().map(|i| i.as_str()))
            .bind(at)
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "UPDATE rm_spc_characteristics SET samples = GREATEST(samples, $2), \
                     updated_at = GREATEST(updated_at, $3) WHERE characteristic_id = $1",
            )
            .bind(id)
            .bind(count(*index)?)
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        SpcEvent::SpcControlLimitsFrozen {
            version,
            limits,
            at,
            ..
        } => {
            sqlx::query(
                "UPDATE rm_spc_characteristics SET limits_version = $2, center = $3, ucl = $4, \
                     lcl = $5, process_sigma = $6, updated_at = GREATEST(updated_at, $7) \
                 WHERE characteristic_id = $1 AND (limits_version IS NULL OR limits_version < $2)",
            )
            .bind(id)
            .bind(*version as i32)
            .bind(finite(limits.primary.center)?)
            .bind(finite(limits.primary.ucl)?)
            .bind(finite(limits.primary.lcl)?)
            .bind(limits.process_sigma.map(finite).transpose()?)
            .bind(pg_ts(at)?)
            .execute(&mut *conn)
            .await?;
        }
        SpcEvent::SpcSignalRaised {
            rule,
            part,
            index,
            value,
            z,
            limits_version,
            machine_id,
            at,
            ..
        } => {
            let at = pg_ts(at)?;
            let part = match part {
                ChartPart::Primary => "primary",
                ChartPart::Spread => "spread",
            };
            let inserted = sqlx::query(
                "INSERT INTO rm_spc_signals (position, characteristic_id, idx, rule, part, value, \
                     z, limits_version, machine_id, at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (position) DO NOTHING",
            )
            .bind(event.position)
            .bind(id)
            .bind(count(*index)?)
            .bind(rule.as_str())
            .bind(part)
            .bind(finite(*value)?)
            .bind(finite(*z)?)
            .bind(*limits_version as i32)
            .bind(machine_id.as_ref().map(|m| m.as_str()))
            .bind(at)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            if inserted > 0 {
                sqlx::query(
                    "UPDATE rm_spc_characteristics SET signals = signals + 1, \
                         last_signal_at = GREATEST(last_signal_at, $2), \
                         updated_at = GREATEST(updated_at, $2) WHERE characteristic_id = $1",
                )
                .bind(id)
                .bind(at)
                .execute(&mut *conn)
                .await?;
            }
        }
    }
    Ok(())
}

/// Applies a chunk, event by event in position order.
pub(crate) async fn apply_chunk(
    conn: &mut PgConnection,
    items: &[(&RecordedEvent, &SpcEvent)],
) -> Result<Vec<LiveUpdate>, ApplyError> {
    for (event, e) in items {
        apply(conn, event, e).await?;
    }
    Ok(last_updates(
        items,
        |e| Some(characteristic_id(e)),
        |event, e| Some(update(event, e)),
    ))
}
