//! The OpenAPI 3 document (generated from the handlers' annotations with utoipa) at
//! `/api/v1/openapi.json`, and a self-contained docs page at `/api/v1/docs` that renders
//! it with a little vanilla JavaScript: no CDN, nothing loaded from another host. Neither
//! needs a token.
//!
//! # How the document is made
//! 1. Each handler declares its own path, parameters, body and answers with
//!    `#[utoipa::path]`; query-string structs derive `IntoParams` with
//!    `parameter_in = Query`.
//! 2. [`ApiDoc`] gathers every handler, the unauthenticated ones (health, readiness,
//!    metrics, the dashboard and this document) included.
//! 3. [`ErrorAnswers`] then applies what the serving layers do to every operation, so
//!    that no handler has to repeat it: every error answer is `application/problem+json`
//!    ([`crate::error::ProblemDocument`]); an operation behind a token can get 401, 403
//!    and 429; one with parameters or a body 400; one with path parameters 404; one
//!    with a body 413 and 415; a POST or PATCH 422 (an Idempotency-Key reused); and every
//!    operation 503 (request timeout, connection limit, a dependency down). Which of
//!    these an operation gets is decided by [`common_errors`], a pure function of the
//!    operation.

use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::content::Content;
use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::path::{Operation, ParameterIn, PathItem};
use utoipa::openapi::response::{Response as ApiResponse, ResponseBuilder};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ObjectBuilder, Ref, RefOr, Type};
use utoipa::{Modify, OpenApi};

use crate::error::PROBLEM_JSON;
use crate::routes::{
    alerts, audit, calendar, hierarchy, inventory, lots, machines, maintenance, orders, people,
    reads, reference, reports, spc, stops, tokens,
};
use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/openapi.json", get(openapi_json))
        .route("/api/v1/docs", get(docs_page))
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token issued by POST /api/v1/auth/tokens (or SHOPFLOOR_ADMIN_TOKEN). \
                         Missing or unknown: 401; known without the right: 403.",
                    ))
                    .build(),
            ),
        );
    }
}

/// An error answer that the serving layers give to many operations, declared once under
/// `components/responses` and referred to by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommonError {
    pub status: u16,
    /// Its name under `components/responses`.
    pub name: &'static str,
    pub description: &'static str,
    /// Whether the answer carries `Retry-After`.
    pub retry_after: bool,
}

/// Every common error answer, by status.
pub const COMMON_ERRORS: &[CommonError] = &[
    CommonError {
        status: 400,
        name: "BadRequest",
        description: "a parameter, header (Idempotency-Key, If-Match) or the body is malformed, \
            or a field is wrong (the problem names it)",
        retry_after: false,
    },
    CommonError {
        status: 401,
        name: "Unauthorized",
        description: "no bearer token, or one that is not known",
        retry_after: false,
    },
    CommonError {
        status: 403,
        name: "Forbidden",
        description: "the token's role lacks the right this operation needs",
        retry_after: false,
    },
    CommonError {
        status: 404,
        name: "NotFound",
        description: "no entity with this id",
        retry_after: false,
    },
    CommonError {
        status: 413,
        name: "PayloadTooLarge",
        description: "the body is larger than 1 MiB",
        retry_after: false,
    },
    CommonError {
        status: 415,
        name: "UnsupportedMediaType",
        description: "the body is not sent as application/json",
        retry_after: false,
    },
    CommonError {
        status: 422,
        name: "IdempotencyKeyReused",
        description: "this Idempotency-Key was already used for a different request",
        retry_after: false,
    },
    CommonError {
        status: 429,
        name: "TooManyRequests",
        description: "too many requests from this token, or too many failed authentications \
            from this address; retry after Retry-After seconds",
        retry_after: true,
    },
    CommonError {
        status: 503,
        name: "ServiceUnavailable",
        description: "not answered in time, too many connections, or a dependency is down; \
            retry after Retry-After seconds",
        retry_after: true,
    },
];

/// The statuses of [`COMMON_ERRORS`] that an operation can get, from what it declares:
/// - behind a token (it has a security requirement): 401, 403, 429;
/// - with path or query parameters or a body, or a write behind a token (its
///   Idempotency-Key and If-Match headers): 400;
/// - with path parameters: 404;
/// - with a body: 413 and 415;
/// - a POST or PATCH behind a token (idempotency applies to them): 422;
/// - any operation: 503.
pub fn common_errors(method: &str, op: &Operation) -> Vec<u16> {
    let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
    let params = op.parameters.as_deref().unwrap_or_default();
    let parsed = params
        .iter()
        .any(|p| matches!(p.parameter_in, ParameterIn::Path | ParameterIn::Query));
    let has_path_params = params.iter().any(|p| p.parameter_in == ParameterIn::Path);
    let has_body = op.request_body.is_some();
    let write = matches!(method, "post" | "patch" | "put" | "delete");
    let idempotent = matches!(method, "post" | "patch");
    let mut statuses = Vec::new();
    if parsed || has_body || (secured && write) {
        statuses.push(400);
    }
    if secured {
        statuses.extend([401, 403]);
    }
    if has_path_params {
        statuses.push(404);
    }
    if has_body {
        statuses.extend([413, 415]);
    }
    if secured && idempotent {
        statuses.push(422);
    }
    if secured {
        statuses.push(429);
    }
    statuses.push(503);
    statuses
}

/// Applies [`common_errors`] to every operation and makes every error answer
/// problem+json (see the module docs).
struct ErrorAnswers;

impl Modify for ErrorAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for common in COMMON_ERRORS {
            components
                .responses
                .insert(common.name.to_string(), RefOr::T(common_response(common)));
        }
        for item in openapi.paths.paths.values_mut() {
            for (method, op) in operations_mut(item) {
                for status in common_errors(method, op) {
                    let Some(common) = COMMON_ERRORS.iter().find(|c| c.status == status) else {
                        continue;
                    };
                    op.responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| RefOr::Ref(Ref::from_response_name(common.name)));
                }
                for (status, response) in op.responses.responses.iter_mut() {
                    let is_error = status.starts_with('4') || status.starts_with('5');
                    if let (true, RefOr::T(response)) = (is_error, response) {
                        as_problem(response);
                        let retry = COMMON_ERRORS
                            .iter()
                            .any(|c| c.retry_after && c.status.to_string() == *status);
                        if retry {
                            response
                                .headers
                                .entry("Retry-After".to_string())
                                .or_insert_with(retry_after_header);
                        }
                    }
                }
            }
        }
    }
}

/// Every operation of a path item, with its method in lower case.
fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    [
        ("get", &mut item.get),
        ("put", &mut item.put),
        ("post", &mut item.post),
        ("delete", &mut item.delete),
        ("options", &mut item.options),
        ("head", &mut item.head),
        ("patch", &mut item.patch),
        ("trace", &mut item.trace),
    ]
    .into_iter()
    .filter_map(|(method, op)| op.as_mut().map(|op| (method, op)))
}

fn problem_content() -> Content {
    Content::new(Some(RefOr::Ref(Ref::from_schema_name("ProblemDocument"))))
}

/// A handler's own error answer, served as problem+json whatever it declared.
fn as_problem(response: &mut ApiResponse) {
    let schema = response
        .content
        .shift_remove("application/json")
        .and_then(|c| c.schema);
    response.content.clear();
    let content = match schema {
        Some(schema) => Content::new(Some(schema)),
        None => problem_content(),
    };
    response.content.insert(PROBLEM_JSON.to_string(), content);
}

fn common_response(common: &CommonError) -> ApiResponse {
    let mut builder = ResponseBuilder::new()
        .description(common.description)
        .content(PROBLEM_JSON, problem_content());
    if common.retry_after {
        builder = builder.header("Retry-After", retry_after_header());
    }
    builder.build()
}

fn retry_after_header() -> Header {
    HeaderBuilder::new()
        .schema(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0)),
        )
        .description(Some("seconds to wait before retrying"))
        .build()
}

/// The OpenAPI document of the whole API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Shopfloor API",
        description = "Manufacturing operations: machines, production orders, maintenance, \
            inventory, KPIs and the audit log. Errors are application/problem+json. POST and \
            PATCH accept an Idempotency-Key header (a replay returns the first answer and \
            changes nothing) and an optional If-Match with the expected stream version."
    ),
    modifiers(&BearerAuth, &ErrorAnswers),
    paths(
        crate::health::healthz, crate::health::readyz, crate::health::metrics,
        crate::dashboard::index, crate::dashboard::asset, crate::dashboard::floor, openapi_json, docs_page,
        machines::register, machines::get_machine, machines::events,
        orders::create, orders::get_order, orders::assign, orders::start, orders::hold,
        orders::resume, orders::complete, orders::cancel, orders::inspections,
        orders::record_inspection,
        people::register, people::list, people::get_operator, people::update, people::deactivate,
        people::reactivate, people::clock_on, people::clock_off, people::operator_labour,
        people::order_labour, stops::unclassified, stops::classify,
        maintenance::schedule, maintenance::get_task, maintenance::start,
        maintenance::complete, maintenance::cancel, maintenance::acknowledge,
        inventory::update, inventory::get_item,
        tokens::issue, tokens::list, tokens::revoke, tokens::me,
        audit::log, audit::stream_events, audit::stream_state,
        reference::reason_codes, reference::define_reason_code, reference::retire_reason_code,
        reference::scrap_reason_codes, calendar::calendar, calendar::set_time_zone, calendar::set_shifts, calendar::set_rotation, calendar::set_exception, calendar::add_non_working, calendar::remove_non_working,
        reads::machines, reads::machine_states, reads::orders, reads::tasks,
        reads::inventory, reads::movements, reads::kpi_metrics, reads::downtime, reads::kpi_catalogue, reads::changeovers,
        reads::scrap,
        reads::ingest_rejected, reads::process_rejections, reads::telemetry, reads::projections, crate::routes::live::live,
        reports::create, reports::list, reports::get_one, reports::content, reports::verify,
        reports::create_schedule, reports::list_schedules,
        alerts::define_rule, alerts::list_rules, alerts::redefine_rule, alerts::disable_rule, alerts::list_alerts,
        alerts::acknowledge, alerts::resolve, alerts::alert_deliveries, alerts::list_deliveries,
        spc::define, spc::list, spc::chart, spc::record_sample, spc::freeze_limits, spc::signals,
        lots::receive, lots::list, lots::get_lot, lots::backward, lots::forward, lots::split,
        lots::move_lot, lots::merge, lots::hold, lots::release, lots::scrap, lots::set_rule,
        hierarchy::tree, hierarchy::create_node, hierarchy::move_node, hierarchy::rename_node,
        hierarchy::place_machine,
    ),
    components(schemas(crate::error::ProblemDocument, machines::MachineEventBody)),
    tags(
        (name = "machines"), (name = "production orders"), (name = "people"), (name = "maintenance"),
        (name = "inventory"), (name = "kpi"), (name = "audit"), (name = "auth"),
        (name = "reference"), (name = "ingest"), (name = "operations"), (name = "dashboard"),
        (name = "reports"),
        (name = "alerts"),
        (name = "spc"),
        (name = "lots"),
        (name = "hierarchy"),
    )
)]
pub struct ApiDoc;

/// The OpenAPI document of every endpoint.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// This document (the namespace of the deployment in `info.x-namespace`).
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "the OpenAPI 3.1 document", body = Object)))]
pub async fn openapi_json(State(state): State<AppState>) -> Response {
    let mut doc = document();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc.info.extensions = None;
    let mut value = serde_json::to_value(&doc).unwrap_or_default();
    if let Some(info) = value.get_mut("info").and_then(|i| i.as_object_mut()) {
        info.insert(
            "x-namespace".into(),
            serde_json::Value::String(state.namespace.clone()),
        );
    }
    Json(value).into_response()
}

/// A page that renders this document (self-contained: loads nothing from another host).
#[utoipa::path(get, path = "/api/v1/docs", tag = "operations",
    responses((status = 200, description = "the docs page", content_type = "text/html", body = String)))]
pub async fn docs_page() -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "no-cache")], Html(DOCS_HTML))
}

/// The docs page: fetches `openapi.json` from this server and lists every operation with
/// its parameters, body and answers. Self-contained (no external scripts, fonts or styles).
const DOCS_HTML: &str = r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Shopfloor API</title>
<style>
  body { font: 15px/1.45 system-ui, sans-serif; margin: 0; color: #1d2430; background: #f6f7f9; }
  header { background: #1d2430; color: #fff; padding: 16px 24px; }
  header h1 { margin: 0; font-size: 20px; }
  header p { margin: 4px 0 0; opacity: .8; max-width: 70em; }
  main { padding: 16px 24px; max-width: 1100px; }
  h2 { margin: 28px 0 8px; text-transform: capitalize; }
  details { background: #fff; border: 1px solid #d9dde3; border-radius: 6px; margin: 6px 0; }
  summary { cursor: pointer; padding: 8px 12px; display: flex; gap: 12px; align-items: baseline; }
  .m { font: bold 12px monospace; padding: 2px 8px; border-radius: 4px; color: #fff; min-width: 52px; text-align: center; }
  .get { background: #2f7d32; } .post { background: #1565c0; } .patch { background: #8e24aa; }
  .delete { background: #c62828; } .put { background: #ef6c00; }
  .p { font-family: monospace; }
  .s { color: #5b6472; }
  .body { padding: 4px 16px 12px; border-top: 1px solid #eef0f3; }
  pre { background: #f0f2f5; padding: 8px; border-radius: 4px; overflow: auto; font-size: 13px; }
  table { border-collapse: collapse; } td, th { padding: 2px 10px 2px 0; text-align: left; vertical-align: top; }
  #err { color: #c62828; }
</style>
</head>
<body>
<header><h1 id="title">Shopfloor API</h1><p id="desc"></p></header>
<main><p id="err"></p><p>Machine-readable: <a href="openapi.json">openapi.json</a></p><div id="ops"></div></main>
<script>
(function () {
  "use strict";
  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    (children || []).forEach(function (c) {
      e.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return e;
  }
  function resolve(doc, s, depth) {
    if (!s || depth > 6) return s;
    if (s.$ref) {
      var name = s.$ref.split("/").pop();
      return resolve(doc, (doc.components.schemas || {})[name], depth + 1);
    }
    return s;
  }
  function example(doc, s, depth) {
    s = resolve(doc, s, depth || 0);
    if (!s || (depth || 0) > 6) return null;
    if (s.oneOf) return example(doc, s.oneOf[0], (depth || 0) + 1);
    if (s.allOf) return example(doc, s.allOf[0], (depth || 0) + 1);
    var t = Array.isArray(s.type) ? s.type.filter(function (x) { return x !== "null"; })[0] : s.type;
    if (s.enum) return s.enum[0];
    if (t === "object" || s.properties) {
      var o = {};
      Object.keys(s.properties || {}).forEach(function (k) {
        o[k] = example(doc, s.properties[k], (depth || 0) + 1);
      });
      return o;
    }
    if (t === "array") return [example(doc, s.items, (depth || 0) + 1)];
    if (t === "integer") return 0;
    if (t === "number") return 0.0;
    if (t === "boolean") return false;
    if (s.format === "date-time") return "2025-01-31T08:00:00Z";
    return t === "string" ? "string" : null;
  }
  fetch("openapi.json").then(function (r) { return r.json(); }).then(function (doc) {
    document.getElementById("title").textContent = doc.info.title + " " + doc.info.version;
    document.getElementById("desc").textContent = doc.info.description || "";
    var byTag = {};
    Object.keys(doc.paths).sort().forEach(function (path) {
      var item = doc.paths[path];
      ["get", "post", "put", "patch", "delete"].forEach(function (m) {
        var op = item[m];
        if (!op) return;
        var tag = (op.tags || ["other"])[0];
        (byTag[tag] = byTag[tag] || []).push({ path: path, method: m, op: op });
      });
    });
    var ops = document.getElementById("ops");
    Object.keys(byTag).forEach(function (tag) {
      ops.appendChild(el("h2", {}, [tag]));
      byTag[tag].forEach(function (x) {
        var body = el("div", { "class": "body" }, []);
        if (x.op.description) body.appendChild(el("p", {}, [x.op.description]));
        var params = x.op.parameters || [];
        if (params.length) {
          var rows = params.map(function (p) {
            return el("tr", {}, [el("td", { "class": "p" }, [p.name]), el("td", {}, [p["in"]]),
              el("td", {}, [p.required ? "required" : "optional"]), el("td", {}, [p.description || ""])]);
          });
          body.appendChild(el("h4", {}, ["Parameters"]));
          body.appendChild(el("table", {}, rows));
        }
        var rb = x.op.requestBody && x.op.requestBody.content && x.op.requestBody.content["application/json"];
        if (rb) {
          body.appendChild(el("h4", {}, ["Body (example)"]));
          body.appendChild(el("pre", {}, [JSON.stringify(example(doc, rb.schema), null, 2)]));
        }
        body.appendChild(el("h4", {}, ["Answers"]));
        var rows2 = Object.keys(x.op.responses || {}).map(function (code) {
          var resp = x.op.responses[code];
          if (resp.$ref) resp = (doc.components.responses || {})[resp.$ref.split("/").pop()] || {};
          return el("tr", {}, [el("td", { "class": "p" }, [code]), el("td", {}, [resp.description || ""])]);
        });
        body.appendChild(el("table", {}, rows2));
        var ok = Object.keys(x.op.responses || {}).filter(function (c) { return c[0] === "2"; })[0];
        var content = ok && x.op.responses[ok].content && x.op.responses[ok].content["application/json"];
        if (content) {
          body.appendChild(el("h4", {}, [ok + " (example)"]));
          body.appendChild(el("pre", {}, [JSON.stringify(example(doc, content.schema), null, 2)]));
        }
        var auth = x.op.security ? "Bearer token" : "no token";
        ops.appendChild(el("details", {}, [
          el("summary", {}, [el("span", { "class": "m " + x.method }, [x.method.toUpperCase()]),
            el("span", { "class": "p" }, [x.path]), el("span", { "class": "s" }, [x.op.summary || ""]),
            el("span", { "class": "s" }, ["· " + auth])]),
          body
        ]));
      });
    });
  }).catch(function (e) {
    document.getElementById("err").textContent = "Could not load openapi.json: " + e;
  });
})();
</script>
</body>
</html>
"##;
