#!/usr/bin/env bash
# Runs every test against the real services (brought up first).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh
# The dashboard's end-to-end test drives a real headless Chromium.
scripts/browser.sh
# The contract test of the served OpenAPI document runs schemathesis (pinned, in a venv).
scripts/schemathesis.sh
# The /metrics test lints a live exposition with Prometheus' promtool.
scripts/promtool.sh
# Every test binary runs even when one fails, so one red test never hides the others.
exec cargo test --workspace --locked --no-fail-fast "$@"
