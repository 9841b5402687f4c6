//! `docs/openapi.json` is the OpenAPI document the code generates, checked in so that
//! people and tools can read the API without running it. These tests fail when the two
//! differ, so the file cannot drift from the handlers' annotations.
//!
//! After changing an endpoint, regenerate the file and commit it:
//!
//! ```sh
//! UPDATE_OPENAPI=1 cargo test -p shopfloor-api --test it openapi
//! ```

use std::path::PathBuf;

use reqwest::Method;
use serde_json::Value;
use sqlx::PgPool;

use crate::support::TestApp;

const REGENERATE: &str = "UPDATE_OPENAPI=1 cargo test -p shopfloor-api --test it openapi";

fn checked_in_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json")
}

/// The document as `GET /api/v1/openapi.json` serves it, without the deployment's
/// namespace (`info.x-namespace`), which is not a property of the code.
fn generated() -> Value {
    let mut doc = shopfloor_api::routes::docs::document();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc.info.extensions = None;
    serde_json::to_value(&doc).expect("the OpenAPI document serializes")
}

fn pretty(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).expect("JSON");
    text.push('\n');
    text
}

/// Up to `max` JSON pointers where `a` and `b` differ, for the failure message.
fn differences(a: &Value, b: &Value, at: String, out: &mut Vec<String>, max: usize) {
    if out.len() >= max || a == b {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let path = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                match (x.get(k), y.get(k)) {
                    (Some(v), Some(w)) => differences(v, w, path, out, max),
                    (Some(_), None) => out.push(format!("{path}: only in the code")),
                    (None, Some(_)) => out.push(format!("{path}: only in docs/openapi.json")),
                    (None, None) => {}
                }
                if out.len() >= max {
                    return;
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                differences(v, w, format!("{at}/{i}"), out, max);
            }
        }
        _ => out.push(format!(
            "{}: differs",
            if at.is_empty() { "/" } else { &at }
        )),
    }
}

#[test]
fn docs_openapi_json_is_the_document_the_code_generates() {
    let path = checked_in_path();
    let generated = generated();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, pretty(&generated)).expect("docs/openapi.json is writable");
        eprintln!("wrote {}", path.display());
        return;
    }
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}). Generate it with:\n    {REGENERATE}",
            path.display()
        )
    });
    let checked_in: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!("docs/openapi.json is not JSON ({e}). Regenerate it with:\n    {REGENERATE}")
    });
    let mut diff = Vec::new();
    differences(&generated, &checked_in, String::new(), &mut diff, 20);
    assert!(
        diff.is_empty(),
        "docs/openapi.json differs from the OpenAPI document the code generates \
         (the API changed without the document). Regenerate it and commit the result:\n    \
         {REGENERATE}\nFirst differences (JSON pointers):\n  {}",
        diff.join("\n  ")
    );
    assert!(
        text == pretty(&checked_in),
        "docs/openapi.json has the right content but not the generated formatting. \
         Regenerate it:\n    {REGENERATE}"
    );
}

#[test]
fn the_openapi_document_is_generated_the_same_every_time() {
    assert_eq!(pretty(&generated()), pretty(&generated()));
}

/// The generator above must produce what the server serves, or the checked-in file
/// would describe something else.
#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn the_served_openapi_document_is_the_generated_one(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let r = app
        .send(Method::GET, "/api/v1/openapi.json", None, None, &[])
        .await;
    assert_eq!(r.status, 200);
    let mut served = r.body;
    let namespace = served["info"]
        .as_object_mut()
        .and_then(|info| info.remove("x-namespace"));
    assert!(
        namespace.is_some(),
        "the served document names its namespace"
    );
    let mut diff = Vec::new();
    differences(&generated(), &served, String::new(), &mut diff, 20);
    assert!(
        diff.is_empty(),
        "the served OpenAPI document differs from the generated one:\n  {}",
        diff.join("\n  ")
    );
}
