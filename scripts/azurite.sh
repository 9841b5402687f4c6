#!/usr/bin/env bash
# Makes sure Azurite (Microsoft's Azure Storage emulator, a pinned version, from npm) is
# installed, for the report storage test of the Azure Blob path (crates/api/tests/it/reports.rs):
# the test starts its blob service on a free loopback port, in memory. It goes to
# ~/.local/share/shopfloor/azurite-$VERSION (or $SHOPFLOOR_TOOLS_DIR).
# Prints nothing when it is already there. Idempotent: run it as often as you like.
set -euo pipefail

VERSION=3.37.0
DIR="${SHOPFLOOR_TOOLS_DIR:-$HOME/.local/share/shopfloor}/azurite-$VERSION"
BIN="$DIR/node_modules/.bin/azurite-blob"
log() { echo "azurite: $*" >&2; }

if [ -x "$BIN" ] && grep -q "\"version\": \"$VERSION\"" "$DIR/node_modules/azurite/package.json" 2>/dev/null; then
  exit 0
fi
command -v npm >/dev/null || { log "npm is missing (apt-get install npm)"; exit 1; }
log "installing azurite $VERSION into $DIR"
mkdir -p "$DIR"
npm install --prefix "$DIR" --no-audit --no-fund --silent "azurite@$VERSION" >&2
"$BIN" --help >/dev/null
