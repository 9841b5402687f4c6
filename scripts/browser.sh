#!/usr/bin/env bash
# Makes sure headless Chromium and its WebDriver (chromedriver) are installed, for the
# dashboard's end-to-end test (tests/e2e/dashboard.rs). Installs Debian's `chromium` and
# `chromium-driver` packages when /usr/bin/chromium or /usr/bin/chromedriver is missing.
# Idempotent: run it as often as you like.
set -euo pipefail

log() { echo "browser: $*" >&2; }
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  exit 0
fi
log "installing chromium and chromium-driver"
as_root apt-get update -qq
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
[ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] || { log "chromium or chromedriver still missing"; exit 1; }
log "$(/usr/bin/chromium --version 2>/dev/null || echo chromium installed)"
