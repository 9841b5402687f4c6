#!/usr/bin/env bash
# Makes sure Prometheus' `promtool` is installed, for the test that lints a live /metrics
# (tests/e2e/metrics_lint.rs). Installs Debian's `prometheus` package when it is missing.
# Idempotent: run it as often as you like.
set -euo pipefail

log() { echo "promtool: $*" >&2; }
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

if command -v promtool >/dev/null; then
  exit 0
fi
log "installing prometheus (for promtool)"
as_root apt-get update -qq
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
command -v promtool >/dev/null || { log "promtool still missing"; exit 1; }
log "$(promtool --version 2>&1 | head -1)"
