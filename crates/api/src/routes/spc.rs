//! Statistical process control (ADR 0056): characteristics under control charts, their
//! samples, frozen limits, charts and signals.
//!
//! Definitions and limits are plant settings (`Settings`: supervisor, admin); samples are
//! production reports (`Production`: operator, supervisor, admin); everyone reads. A chart
//! is answered from the characteristic's aggregate (read-your-writes, its last 1,000
//! points); the list and the signals from the `spc` read model.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shopfloor_domain::process::Target;
use shopfloor_domain::spc::{
    Band, Characteristic, ChartKind, ChartPart, DefineCharacteristic, FreezeLimits, FrozenLimits,
    LimitsBasis, Point, RecordSample, Rule, RuleSet, SampleData, SampleSource, Signal, SpcCommand,
    SpecLimits, Standard,
};
use shopfloor_domain::values::{Actor, CharacteristicId, InspectionId, MachineId, OrderId, Text};
use shopfloor_domain::SpcCharacteristic;
use shopfloor_projections::query::spc::{self as q, CharacteristicRow, SignalQuery, SignalRow};
use utoipa::ToSchema;

use crate::auth::{perm, Auth};
use crate::error::{ApiError, FieldContext, ProblemDocument};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Ctx};
use crate::routes::machines::not_in_future;
use crate::routes::{generated_id, load_seen, now, require_machine, Seen};
use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/spc/characteristics", get(list).post(define))
        .route(
            "/api/v1/spc/characteristics/{characteristic_id}",
            get(chart),
        )
        .route(
            "/api/v1/spc/characteristics/{characteristic_id}/samples",
            post(record_sample),
        )
        .route(
            "/api/v1/spc/characteristics/{characteristic_id}/limits",
            post(freeze_limits),
        )
        .route("/api/v1/spc/signals", get(signals))
}

/// The run rules of a definition: a published set by name, or a list of rules.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RulesBody {
    Set(RuleSet),
    List(Vec<Rule>),
}

/// `POST /api/v1/spc/characteristics`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct DefineBody {
    /// Generated (`CH-…`) when left out. Inspections name it in their `measurements`.
    pub characteristic_id: Option<String>,
    pub name: String,
    /// `xbar_r`, `xbar_s`, `imr`, `p`, `np`, `c` or `u`.
    #[schema(value_type = String)]
    pub chart: ChartKind,
    /// Values per subgroup (X̄ charts 2 to 25; np: the constant sample size; p and u: the
    /// nominal sample size). Defaults to 1 for `imr` and `c`; required otherwise.
    pub subgroup_size: Option<u32>,
    pub lsl: Option<f64>,
    pub usl: Option<f64>,
    pub target: Option<f64>,
    /// `"western_electric"` (the default), `"nelson"`, or a list of rule names
    /// (`beyond_limits`, `two_of_three_beyond_2_sigma`, `four_of_five_beyond_1_sigma`,
    /// `eight_on_one_side`, `nine_on_one_side`, `six_trending`, `fourteen_alternating`,
    /// `fifteen_within_1_sigma`, `eight_beyond_1_sigma`).
    #[schema(value_type = Object)]
    pub rules: Option<RulesBody>,
    /// `{"kind": "measurements"}` (the default for variables charts: inspections that name
    /// the characteristic), `{"kind": "inspections", "product_id"?: str}` (the default for
    /// attribute charts: every inspection's sample size and defects), or `{"kind": "manual"}`
    /// (samples posted here only). Any characteristic accepts posted samples.
    #[schema(value_type = Object)]
    pub source: Option<SampleSource>,
    /// The machine it is made on: scopes `spc_signal` alert rules.
    pub machine_id: Option<String>,
}

/// A centre line and its limits.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BandView {
    pub center: f64,
    pub ucl: f64,
    pub lcl: f64,
    /// One sigma of the plotted statistic (a zone of the run rules).
    pub sigma: f64,
}

impl From<Band> for BandView {
    fn from(b: Band) -> Self {
        Self {
            center: b.center,
            ucl: b.ucl,
            lcl: b.lcl,
            sigma: b.sigma,
        }
    }
}

/// A point of a baseline flagged by a rule under the limits frozen from it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FlagView {
    pub index: u64,
    pub rule: String,
    pub part: String,
}

/// A version of the control limits.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LimitsView {
    pub version: u32,
    /// `baseline` or `standard`.
    pub basis: String,
    pub baseline_from: Option<u64>,
    pub baseline_to: Option<u64>,
    /// The first sample judged against them.
    pub from_sample: u64,
    /// The subgroup size the primary band is for.
    pub size: u64,
    /// X̄, X, p, np, c or u chart.
    pub primary: BandView,
    /// R, S or MR chart.
    pub spread: Option<BandView>,
    /// σ̂ of the individual values (variables charts).
    pub process_sigma: Option<f64>,
    pub baseline_flags: Vec<FlagView>,
    pub frozen_by: String,
    pub frozen_at: DateTime<Utc>,
}

fn part_name(part: ChartPart) -> &'static str {
    match part {
        ChartPart::Primary => "primary",
        ChartPart::Spread => "spread",
    }
}

impl From<&FrozenLimits> for LimitsView {
    fn from(f: &FrozenLimits) -> Self {
        let (basis, from, to) = match f.basis {
            LimitsBasis::Baseline {
                from_index,
                to_index,
            } => ("baseline", Some(from_index), Some(to_index)),
            LimitsBasis::Standard(_) => ("standard", None, None),
        };
        Self {
            version: f.version,
            basis: basis.to_string(),
            baseline_from: from,
            baseline_to: to,
            from_sample: f.from_sample,
            size: f.limits.size,
            primary: f.limits.primary.into(),
            spread: f.limits.spread.map(Into::into),
            process_sigma: f.limits.process_sigma,
            baseline_flags: f
                .baseline_flags
                .iter()
                .map(|g| FlagView {
                    index: g.index,
                    rule: g.rule.as_str().to_string(),
                    part: part_name(g.part).to_string(),
                })
                .collect(),
            frozen_by: f.by.to_string(),
            frozen_at: f.at,
        }
    }
}

/// Process capability against the specification limits.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CapabilityView {
    pub mean: f64,
    pub sigma: f64,
    pub cp: Option<f64>,
    pub cpk: Option<f64>,
    pub cpu: Option<f64>,
    pub cpl: Option<f64>,
}

/// A characteristic: its definition, the limits in force and its capability.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CharacteristicView {
    pub characteristic_id: String,
    pub name: String,
    pub chart: String,
    pub subgroup_size: u32,
    pub lsl: Option<f64>,
    pub usl: Option<f64>,
    pub target: Option<f64>,
    pub rules: Vec<String>,
    /// `measurements`, `inspections` or `manual`.
    pub source: String,
    pub product_id: Option<String>,
    pub machine_id: Option<String>,
    pub defined_by: String,
    pub defined_at: DateTime<Utc>,
    /// Samples recorded (the last one's number).
    pub samples: u64,
    /// The stream's version.
    pub version: u64,
    /// The limits in force; none until frozen.
    pub limits: Option<LimitsView>,
    /// Cp, Cpk (variables charts with limits and a spec).
    pub capability: Option<CapabilityView>,
}

impl CharacteristicView {
    fn new(c: &Characteristic, version: u64) -> Self {
        let product_id = match &c.source {
            SampleSource::Inspections { product_id } => product_id.as_ref().map(|p| p.to_string()),
            _ => None,
        };
        Self {
            characteristic_id: c.characteristic_id.to_string(),
            name: c.name.to_string(),
            chart: c.chart.as_str().to_string(),
            subgroup_size: c.subgroup_size,
            lsl: c.spec.lsl,
            usl: c.spec.usl,
            target: c.spec.target,
            rules: c.rules.iter().map(|r| r.as_str().to_string()).collect(),
            source: c.source.as_str().to_string(),
            product_id,
            machine_id: c.machine_id.as_ref().map(ToString::to_string),
            defined_by: c.defined_by.to_string(),
            defined_at: c.defined_at,
            samples: c.samples,
            version,
            limits: c.current_limits().map(LimitsView::from),
            capability: c.capability().map(|k| CapabilityView {
                mean: k.mean,
                sigma: k.sigma,
                cp: k.cp,
                cpk: k.cpk,
                cpu: k.cpu,
                cpl: k.cpl,
            }),
        }
    }
}

/// A point of a chart, with the band it was judged against.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PointView {
    /// The sample number, from 1.
    pub index: u64,
    /// x̄, x, p, np, c or u.
    pub value: f64,
    /// R, s or the moving range.
    pub spread: Option<f64>,
    pub size: u64,
    pub count: Option<u64>,
    pub limits_version: Option<u32>,
    /// Where the point fell, in sigmas from the centre line.
    pub z: Option<f64>,
    /// The band of the limits it was judged against (p and u: for its own size).
    pub band: Option<BandView>,
    pub order_id: Option<String>,
    pub inspection_id: Option<String>,
    pub at: DateTime<Utc>,
}

fn point_view(c: &Characteristic, p: &Point) -> PointView {
    let band = p.limits_version.and_then(|v| {
        c.limits
            .iter()
            .find(|f| f.version == v)
            .map(|f| BandView::from(f.limits.band_at(p.subgroup.size)))
    });
    PointView {
        index: p.index,
        value: p.subgroup.value,
        spread: p.subgroup.spread,
        size: p.subgroup.size,
        count: p.subgroup.count,
        limits_version: p.limits_version,
        z: p.z,
        band,
        order_id: p.order_id.as_ref().map(ToString::to_string),
        inspection_id: p.inspection_id.as_ref().map(ToString::to_string),
        at: p.at,
    }
}

/// A signal: a run rule's pattern completed by a point.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SignalView {
    pub rule: String,
    /// The rule in plain words.
    pub description: String,
    /// `primary` (X̄, X, p, np, c, u) or `spread` (R, S, MR).
    pub part: String,
    pub index: u64,
    pub value: f64,
    pub z: f64,
    pub limits_version: u32,
    pub at: DateTime<Utc>,
}

impl From<&Signal> for SignalView {
    fn from(s: &Signal) -> Self {
        Self {
            rule: s.rule.as_str().to_string(),
            description: s.rule.describe().to_string(),
            part: part_name(s.part).to_string(),
            index: s.index,
            value: s.value,
            z: s.z,
            limits_version: s.limits_version,
            at: s.at,
        }
    }
}

/// A chart: the characteristic, every version of its limits, its last points and signals.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChartView {
    pub characteristic: CharacteristicView,
    pub limit_versions: Vec<LimitsView>,
    pub points: Vec<PointView>,
    pub signals: Vec<SignalView>,
}

fn characteristic_id(raw: &str) -> Result<CharacteristicId, ApiError> {
    CharacteristicId::new(raw)
        .map_err(|_| ApiError::not_found(format!("characteristic {raw} does not exist")))
}

async fn loaded(
    state: &AppState,
    id: &CharacteristicId,
    seen: Seen,
) -> Result<(Characteristic, u64), ApiError> {
    let (a, version) = load_seen::<SpcCharacteristic>(state, id.as_str(), seen).await?;
    a.characteristic()
        .cloned()
        .map(|c| (c, version))
        .ok_or_else(|| ApiError::not_found(format!("characteristic {id} does not exist")))
}

async fn run(
    state: &AppState,
    ctx: &Ctx,
    id: &CharacteristicId,
    command: SpcCommand,
) -> Result<u64, ApiError> {
    let target = Target::SpcCharacteristic {
        characteristic_id: id.clone(),
        command,
    };
    let outcome = state
        .commands
        .execute(target, &ctx.command(Some(now())))
        .await?;
    Ok(outcome.stream_version)
}

fn finite(v: Option<f64>, field: &str) -> Result<Option<f64>, ApiError> {
    match v {
        Some(x) if !x.is_finite() => Err(ApiError::invalid_field(field, "must be a finite number")),
        other => Ok(other),
    }
}

/// Defines a characteristic under statistical process control.
#[utoipa::path(post, path = "/api/v1/spc/characteristics", tag = "spc",
    request_body = DefineBody,
    responses((status = 201, body = CharacteristicView), (status = 400, body = ProblemDocument),
        (status = 409, description = "the id is taken", body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn define(
    State(state): State<AppState>,
    _: Auth<perm::Settings>,
    ctx: Ctx,
    ApiJson(body): ApiJson<DefineBody>,
) -> Result<(StatusCode, Json<CharacteristicView>), ApiError> {
    let id = match body.characteristic_id.filter(|s| !s.trim().is_empty()) {
        Some(raw) => CharacteristicId::new(raw).field("characteristic_id")?,
        None => CharacteristicId::new(generated_id("CH", ctx.command_id().as_deref()))
            .field("characteristic_id")?,
    };
    let subgroup_size = match (body.subgroup_size, body.chart) {
        (Some(n), _) => n,
        (None, ChartKind::Imr | ChartKind::C) => 1,
        (None, _) => {
            return Err(ApiError::invalid_field(
                "subgroup_size",
                "is required for this chart",
            ))
        }
    };
    let machine_id = body
        .machine_id
        .map(MachineId::new)
        .transpose()
        .field("machine_id")?;
    if let Some(m) = &machine_id {
        require_machine(&state, m).await?;
    }
    let source = body.source.unwrap_or(if body.chart.is_variables() {
        SampleSource::Measurements
    } else {
        SampleSource::Inspections { product_id: None }
    });
    let rules = match body.rules {
        None => RuleSet::WesternElectric.rules(),
        Some(RulesBody::Set(set)) => set.rules(),
        Some(RulesBody::List(list)) => list,
    };
    let command = SpcCommand::DefineCharacteristic(DefineCharacteristic {
        characteristic_id: id.clone(),
        name: Text::new(body.name).field("name")?,
        chart: body.chart,
        subgroup_size,
        spec: SpecLimits {
            lsl: finite(body.lsl, "lsl")?,
            usl: finite(body.usl, "usl")?,
            target: finite(body.target, "target")?,
        },
        rules,
        source,
        machine_id,
        by: Actor::new(&ctx.principal.name).field("by")?,
        at: now(),
    });
    let version = run(&state, &ctx, &id, command).await?;
    let (c, v) = loaded(&state, &id, Seen::AtLeast(version)).await?;
    Ok((StatusCode::CREATED, Json(CharacteristicView::new(&c, v))))
}

/// `GET /api/v1/spc/characteristics` filters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    pub machine_id: Option<String>,
}

/// The characteristics, with the limits in force and their signal counts (read model).
#[utoipa::path(get, path = "/api/v1/spc/characteristics", tag = "spc",
    params(ListQuery),
    responses((status = 200, description = "characteristics", body = [Object])),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    _: Auth<perm::Read>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Vec<CharacteristicRow>>, ApiError> {
    Ok(Json(
        q::list_characteristics(&state.pool, query.machine_id.as_deref()).await?,
    ))
}

/// `GET …/{characteristic_id}` options.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChartQuery {
    /// The most recent points to show (default 200, at most 1000).
    pub last: Option<usize>,
}

/// A characteristic's chart: its limits (every version), its last points with the band
/// each was judged against, its signals, and Cp/Cpk (read-your-writes).
#[utoipa::path(get, path = "/api/v1/spc/characteristics/{characteristic_id}", tag = "spc",
    params(("characteristic_id" = String, Path), ChartQuery),
    responses((status = 200, body = ChartView), (status = 404, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn chart(
    State(state): State<AppState>,
    _: Auth<perm::Read>,
    ApiPath(raw): ApiPath<String>,
    ApiQuery(query): ApiQuery<ChartQuery>,
) -> Result<Json<ChartView>, ApiError> {
    let id = characteristic_id(&raw)?;
    let (c, version) = loaded(&state, &id, Seen::Now).await?;
    let last = query
        .last
        .unwrap_or(200)
        .clamp(1, shopfloor_domain::spc::RETAINED);
    let skip = c.points.len().saturating_sub(last);
    let first = c.points.get(skip).map_or(0, |p| p.index);
    Ok(Json(ChartView {
        characteristic: CharacteristicView::new(&c, version),
        limit_versions: c.limits.iter().map(LimitsView::from).collect(),
        points: c
            .points
            .iter()
            .skip(skip)
            .map(|p| point_view(&c, p))
            .collect(),
        signals: c
            .signals
            .iter()
            .filter(|s| s.index >= first)
            .map(SignalView::from)
            .collect(),
    }))
}

/// `POST …/samples`: measured values, or a count among a size.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SampleBody {
    /// The subgroup's measured values (variables charts).
    pub values: Option<Vec<f64>>,
    /// Defectives or defects (attribute charts) ...
    pub count: Option<u64>,
    /// ... among this many parts or units (default: the subgroup size).
    pub size: Option<u64>,
    pub order_id: Option<String>,
    pub inspection_id: Option<String>,
    /// When it was measured on the floor (RFC 3339); defaults to now.
    pub timestamp: Option<DateTime<Utc>>,
}

/// A sample recorded: its point and the signals it raised.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SampleRecorded {
    pub point: PointView,
    pub signals: Vec<SignalView>,
}

/// Records a sample (one point) of a characteristic; once limits are frozen the answer
/// lists the run-rule signals it raised (each also an `SpcSignalRaised` event).
#[utoipa::path(post, path = "/api/v1/spc/characteristics/{characteristic_id}/samples", tag = "spc",
    params(("characteristic_id" = String, Path)), request_body = SampleBody,
    responses((status = 201, body = SampleRecorded), (status = 400, body = ProblemDocument),
        (status = 404, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn record_sample(
    State(state): State<AppState>,
    _: Auth<perm::Production>,
    ctx: Ctx,
    ApiPath(raw): ApiPath<String>,
    ApiJson(body): ApiJson<SampleBody>,
) -> Result<(StatusCode, Json<SampleRecorded>), ApiError> {
    let id = characteristic_id(&raw)?;
    let data = match (body.values, body.count) {
        (Some(values), None) => SampleData::Values { values },
        (None, Some(count)) => {
            let size = match body.size {
                Some(s) => s,
                None => u64::from(loaded(&state, &id, Seen::Now).await?.0.subgroup_size),
            };
            SampleData::Count { count, size }
        }
        _ => {
            return Err(ApiError::invalid_field(
                "values",
                "give either values, or a count (and a size)",
            ))
        }
    };
    let command = SpcCommand::RecordSample(RecordSample {
        data,
        order_id: body
            .order_id
            .map(OrderId::new)
            .transpose()
            .field("order_id")?,
        inspection_id: body
            .inspection_id
            .map(InspectionId::new)
            .transpose()
            .field("inspection_id")?,
        at: not_in_future(body.timestamp.unwrap_or_else(now), now())?,
    });
    let version = run(&state, &ctx, &id, command).await?;
    let (c, _) = loaded(&state, &id, Seen::AtLeast(version)).await?;
    let point = c
        .points
        .back()
        .ok_or_else(|| ApiError::internal("recorded sample not found"))?;
    Ok((
        StatusCode::CREATED,
        Json(SampleRecorded {
            point: point_view(&c, point),
            signals: c
                .signals
                .iter()
                .filter(|s| s.index == point.index)
                .map(SignalView::from)
                .collect(),
        }),
    ))
}

/// `POST …/limits`: a baseline of samples, or known parameters.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LimitsBody {
    /// The first sample of the baseline ...
    pub from_index: Option<u64>,
    /// ... and its last (default: the latest sample).
    pub to_index: Option<u64>,
    /// Or known parameters: the centre (process mean; p, n·p, c or u) ...
    pub center: Option<f64>,
    /// ... and the process sigma (variables charts).
    pub sigma: Option<f64>,
}

/// Freezes new control limits (a new version) from a baseline of the characteristic's
/// samples or from known parameters; later samples are judged against them.
#[utoipa::path(post, path = "/api/v1/spc/characteristics/{characteristic_id}/limits", tag = "spc",
    params(("characteristic_id" = String, Path)), request_body = LimitsBody,
    responses((status = 201, body = LimitsView), (status = 400, body = ProblemDocument),
        (status = 404, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn freeze_limits(
    State(state): State<AppState>,
    _: Auth<perm::Settings>,
    ctx: Ctx,
    ApiPath(raw): ApiPath<String>,
    ApiJson(body): ApiJson<LimitsBody>,
) -> Result<(StatusCode, Json<LimitsView>), ApiError> {
    let id = characteristic_id(&raw)?;
    let basis = match (body.from_index, body.center) {
        (Some(from_index), None) => {
            let to_index = match body.to_index {
                Some(t) => t,
                None => loaded(&state, &id, Seen::Now).await?.0.samples,
            };
            LimitsBasis::Baseline {
                from_index,
                to_index,
            }
        }
        (None, Some(center)) => LimitsBasis::Standard(Standard {
            center,
            sigma: finite(body.sigma, "sigma")?,
        }),
        _ => {
            return Err(ApiError::invalid_field(
                "from_index",
                "give either from_index (and to_index), or center (and sigma)",
            ))
        }
    };
    let command = SpcCommand::FreezeLimits(FreezeLimits {
        basis,
        by: Actor::new(&ctx.principal.name).field("by")?,
        at: now(),
    });
    let version = run(&state, &ctx, &id, command).await?;
    let (c, _) = loaded(&state, &id, Seen::AtLeast(version)).await?;
    let limits = c
        .current_limits()
        .ok_or_else(|| ApiError::internal("frozen limits not found"))?;
    Ok((StatusCode::CREATED, Json(LimitsView::from(limits))))
}

/// `GET /api/v1/spc/signals` filters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SignalsQuery {
    pub characteristic_id: Option<String>,
    pub machine_id: Option<String>,
    /// Floor-time window `[from, to)` (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// At most this many, newest first (default 100, at most 1000).
    pub limit: Option<i64>,
}

/// Run-rule signals, newest first (read model).
#[utoipa::path(get, path = "/api/v1/spc/signals", tag = "spc",
    params(SignalsQuery),
    responses((status = 200, description = "signals", body = [Object])),
    security(("bearer" = [])))]
pub async fn signals(
    State(state): State<AppState>,
    _: Auth<perm::Read>,
    ApiQuery(query): ApiQuery<SignalsQuery>,
) -> Result<Json<Vec<SignalRow>>, ApiError> {
    let q = SignalQuery {
        characteristic_id: query.characteristic_id,
        machine_id: query.machine_id,
        from: query.from,
        to: query.to,
        limit: query.limit.unwrap_or(100).clamp(1, 1000),
    };
    Ok(Json(q::list_signals(&state.pool, &q).await?))
}
