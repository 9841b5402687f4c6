//! The shape of the OpenAPI document, operation by operation (issue 16, item 7): every
//! parameter is where the server reads it, every error answer is problem+json, the
//! errors that the serving layers give are declared, and every route that the router
//! serves is in the document. Schemathesis checks the same document against a running
//! server (`tests/e2e/openapi_fuzz.rs`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

fn document() -> Value {
    serde_json::to_value(shopfloor_api::routes::docs::document()).expect("the document serializes")
}

/// (method, path, operation) of every operation.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                out.push((method.to_string(), path.clone(), op.clone()));
            }
        }
    }
    out
}

/// A response, with a `$ref` to `components/responses` resolved.
fn resolve<'a>(doc: &'a Value, response: &'a Value) -> &'a Value {
    match response["$ref"].as_str() {
        Some(r) => {
            let name = r.rsplit('/').next().unwrap_or_default();
            &doc["components"]["responses"][name]
        }
        None => response,
    }
}

fn template_names(path: &str) -> BTreeSet<String> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_parameter_is_where_the_server_reads_it() {
    let doc = document();
    let mut wrong = Vec::new();
    for (method, path, op) in operations(&doc) {
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        let mut declared_path = BTreeSet::new();
        for p in &params {
            let name = p["name"].as_str().unwrap_or_default().to_string();
            match p["in"].as_str() {
                Some("path") => {
                    if p["required"] != true {
                        wrong.push(format!(
                            "{method} {path}: path parameter {name} not required"
                        ));
                    }
                    declared_path.insert(name);
                }
                Some("query") => {
                    if p["required"] == true {
                        wrong.push(format!("{method} {path}: query parameter {name} required"));
                    }
                }
                Some("header") => {}
                other => wrong.push(format!("{method} {path}: {name} in {other:?}")),
            }
        }
        if declared_path != template_names(&path) {
            wrong.push(format!(
                "{method} {path}: path parameters {declared_path:?}, template {:?}",
                template_names(&path)
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "misplaced parameters:\n  {}",
        wrong.join("\n  ")
    );
}

#[test]
fn every_error_answer_is_problem_json() {
    let doc = document();
    let mut wrong = Vec::new();
    for (method, path, op) in operations(&doc) {
        for (status, response) in op["responses"].as_object().expect("responses") {
            if !(status.starts_with('4') || status.starts_with('5')) {
                continue;
            }
            let content = resolve(&doc, response)["content"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            let types: Vec<&String> = content.keys().collect();
            if types != ["application/problem+json"] {
                wrong.push(format!("{method} {path} {status}: {types:?}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "error answers not problem+json:\n  {}",
        wrong.join("\n  ")
    );
}

#[test]
fn the_errors_of_the_serving_layers_are_declared() {
    let doc = document();
    let mut missing = Vec::new();
    for (method, path, op) in operations(&doc) {
        let responses = op["responses"].as_object().expect("responses");
        let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
        let body = op.get("requestBody").is_some();
        let mut expected = vec!["503"];
        if secured {
            expected.extend(["401", "403", "429"]);
        }
        if body {
            expected.extend(["400", "413", "415"]);
        }
        if secured && (method == "post" || method == "patch") {
            expected.push("422");
        }
        if path.contains('{') {
            expected.extend(["400", "404"]);
        }
        for status in expected {
            if !responses.contains_key(status) {
                missing.push(format!("{method} {path}: {status}"));
            }
        }
        for status in ["429", "503"] {
            if let Some(r) = responses.get(status) {
                if resolve(&doc, r)["headers"].get("Retry-After").is_none() {
                    missing.push(format!("{method} {path}: Retry-After on {status}"));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "undeclared answers:\n  {}",
        missing.join("\n  ")
    );
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir)
        .expect("readable source dir")
        .flatten()
    {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `(path, handlers)` of every `.route("path", handlers)` call in `text`, however it
/// is laid out.
fn route_calls(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (at, _) in text.match_indices(".route(") {
        let rest = text[at + ".route(".len()..].trim_start();
        let Some(rest) = rest.strip_prefix('"') else {
            continue;
        };
        let Some(end) = rest.find('"') else { continue };
        let mut depth = 1;
        let mut stop = rest.len();
        for (i, c) in rest[end..].char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                stop = end + i;
                break;
            }
        }
        out.push((rest[..end].to_string(), rest[end..stop].to_string()));
    }
    out
}

/// The contract: "the OpenAPI 3 document of every endpoint". Every `.route("…", …)` of
/// the API crate, with each of its methods, is in the document.
#[test]
fn every_route_the_router_serves_is_documented() {
    let doc = document();
    let mut files = Vec::new();
    sources(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    let mut routes = 0;
    let mut missing = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (path, handlers) in route_calls(&text) {
            routes += 1;
            for method in METHODS {
                let registered = handlers.contains(&format!("{method}("));
                if registered && doc["paths"][&path].get(method).is_none() {
                    missing.push(format!(
                        "{} {path} ({})",
                        method.to_uppercase(),
                        file.display()
                    ));
                }
            }
        }
    }
    assert!(routes >= 35, "found only {routes} routes in the sources");
    assert!(
        missing.is_empty(),
        "routes missing from the OpenAPI document:\n  {}",
        missing.join("\n  ")
    );
}
