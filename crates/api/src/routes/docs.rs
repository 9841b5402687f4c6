//! The OpenAPI 3 document (generated from the handlers' annotations with utoipa) at
//! `/api/v1/openapi.json`, and a self-contained docs page at `/api/v1/docs` that renders
//! it with a little vanilla JavaScript: no CDN, nothing loaded from another host. Neither
//! needs a token.

use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{audit, inventory, machines, maintenance, orders, reads, reference, tokens};
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
    modifiers(&BearerAuth),
    paths(
        machines::register, machines::get_machine, machines::events,
        orders::create, orders::get_order, orders::assign, orders::start, orders::hold,
        orders::resume, orders::complete, orders::cancel, orders::inspections,
        orders::record_inspection,
        maintenance::schedule, maintenance::get_task, maintenance::start,
        maintenance::complete, maintenance::cancel,
        inventory::update, inventory::get_item,
        tokens::issue, tokens::list, tokens::revoke,
        audit::log, audit::stream_events, audit::stream_state,
        reference::reason_codes,
        reads::machines, reads::machine_states, reads::orders, reads::tasks,
        reads::inventory, reads::movements, reads::kpi_metrics, reads::downtime,
        reads::ingest_rejected, reads::telemetry, reads::projections, crate::routes::live::live,
    ),
    components(schemas(crate::error::ProblemDocument, machines::MachineEventBody)),
    tags(
        (name = "machines"), (name = "production orders"), (name = "maintenance"),
        (name = "inventory"), (name = "kpi"), (name = "audit"), (name = "auth"),
        (name = "reference"), (name = "ingest"),
    )
)]
pub struct ApiDoc;

/// The OpenAPI document, with the health endpoints added by hand (they are not ours to
/// annotate: they need no token and answer plain JSON or text).
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

async fn openapi_json(State(state): State<AppState>) -> Response {
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

async fn docs_page() -> impl IntoResponse {
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
          return el("tr", {}, [el("td", { "class": "p" }, [code]), el("td", {}, [x.op.responses[code].description || ""])]);
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
