#!/usr/bin/env bash
# Runs every test against the real services (brought up first).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh
# The dashboard's end-to-end test drives a real headless Chromium.
scripts/browser.sh
exec cargo test --workspace --locked "$@"
