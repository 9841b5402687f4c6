//! The served OpenAPI document against the server it describes: schemathesis (a pinned
//! version, installed by `scripts/schemathesis.sh`) generates requests from
//! `GET /api/v1/openapi.json` of a running `shopfloor serve` (its own database and
//! namespace), valid and invalid, for every operation, and checks every answer:
//! no server error, a status the document declares for the operation, a declared
//! content type, and a body that matches the declared schema.
//!
//! Bounded: at most [`MAX_EXAMPLES`] generated cases per operation and phase, one worker, a
//! fixed seed (reproducible; `SHOPFLOOR_SCHEMATHESIS_SEED` picks another). The live feed
//! (`/api/v1/live`, an endless event stream) is left out: it has its own tests.
//! Requests carry the admin token; how the API treats missing and wrong tokens is tested
//! by the role matrix (`crates/api/tests/it/roles.rs`), not here.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::Server;

const ADMIN: &str = "fuzz-admin-token-7hQ2kP9sLm4v";

/// Generated cases per operation and phase: enough to find what the adversarial run of
/// issue 16 found, small enough for CI (about three minutes on two cores).
const MAX_EXAMPLES: u32 = 60;

/// The schemathesis executable: `SHOPFLOOR_SCHEMATHESIS`, else the venv that
/// `scripts/schemathesis.sh` installs (its pinned version read from the script).
fn schemathesis() -> PathBuf {
    if let Some(path) = std::env::var_os("SHOPFLOOR_SCHEMATHESIS") {
        return PathBuf::from(path);
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/schemathesis.sh");
    let text = std::fs::read_to_string(&script).expect("scripts/schemathesis.sh is readable");
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("VERSION="))
        .expect("scripts/schemathesis.sh pins a VERSION")
        .trim();
    let tools = std::env::var_os("SHOPFLOOR_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
                .join(".local/share/shopfloor")
        });
    let exe = tools.join(format!("schemathesis-{version}/bin/schemathesis"));
    assert!(
        exe.exists(),
        "{} is missing: run scripts/schemathesis.sh",
        exe.display()
    );
    exe
}

#[tokio::test]
async fn the_server_answers_as_its_served_openapi_document_says() {
    let exe = schemathesis();
    let server = Server::start(&[], &[("SHOPFLOOR_ADMIN_TOKEN", ADMIN)]).await;
    let seed = std::env::var("SHOPFLOOR_SCHEMATHESIS_SEED").unwrap_or_else(|_| "16".into());
    let workdir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let run = tokio::process::Command::new(&exe)
        .current_dir(workdir.path())
        .env("NO_COLOR", "1")
        .args(["--no-color", "run"])
        .arg(server.url("/api/v1/openapi.json"))
        .args(["--header", &format!("Authorization: Bearer {ADMIN}")])
        .args(["--generation-with-security-parameters", "false"])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_schema_conformance",
        ])
        .args(["--max-examples", &MAX_EXAMPLES.to_string()])
        .args(["--exclude-path", "/api/v1/live"])
        .args(["--workers", "1", "--seed", &seed])
        .args(["--request-timeout", "30"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(900), run)
        .await
        .expect("schemathesis finished within 15 minutes")
        .expect("schemathesis runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary: String = stdout
        .lines()
        .rev()
        .take(40)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    eprintln!(
        "schemathesis (seed {seed}) took {:.0} s:\n{summary}",
        started.elapsed().as_secs_f64()
    );
    assert!(
        out.status.success(),
        "schemathesis found answers that break the OpenAPI document (seed {seed}):\n{stdout}\n{stderr}"
    );
    // A run that tested nothing must not pass as clean.
    assert!(
        stdout.contains("Tested:"),
        "no summary from schemathesis:\n{stdout}"
    );
    let operations: usize = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("Tested:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        operations >= 40,
        "schemathesis tested only {operations} operations:\n{stdout}"
    );
}
