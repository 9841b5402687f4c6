#!/usr/bin/env bash
# Runs every test against the real services (brought up first).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh
# The dashboard's end-to-end test drives a real headless Chromium.
scripts/browser.sh
# The floor app's browser test checks accessibility with axe-core (pinned, from npm).
scripts/axe.sh
# The contract test of the served OpenAPI document runs schemathesis (pinned, in a venv).
scripts/schemathesis.sh
# The email tests of alerts deliver to a real SMTP server (aiosmtpd, pinned, in a venv).
scripts/smtp.sh
# The OPC UA ingest's tests run a real OPC UA server (Python asyncua, pinned, in a venv).
scripts/opcua.sh
# The /metrics test lints a live exposition with Prometheus' promtool.
scripts/promtool.sh
# The report tests use a loopback S3 server (moto) and poppler-utils.
scripts/s3.sh
# The Azure Blob path of report storage runs against Azurite (pinned, from npm).
scripts/azurite.sh
# Every test binary runs even when one fails, so one red test never hides the others.
exec cargo test --workspace --locked --no-fail-fast "$@"
