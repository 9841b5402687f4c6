#!/usr/bin/env bash
# Makes sure axe-core (a pinned version, from npm) is installed, for the accessibility
# checks of the floor app's browser test (tests/e2e/floor_app.rs). The test reads
# axe.min.js from here at run time and injects it into the page under test; it is never
# part of the app. It goes to ~/.local/share/shopfloor/axe-core-$VERSION (or
# $SHOPFLOOR_TOOLS_DIR). Prints nothing when it is already there. Idempotent.
set -euo pipefail

VERSION=4.11.0
DIR="${SHOPFLOOR_TOOLS_DIR:-$HOME/.local/share/shopfloor}/axe-core-$VERSION"
FILE="$DIR/node_modules/axe-core/axe.min.js"
log() { echo "axe: $*" >&2; }

if [ -s "$FILE" ]; then
  exit 0
fi
command -v npm >/dev/null || { log "npm is missing (apt-get install npm)"; exit 1; }
log "installing axe-core $VERSION into $DIR"
mkdir -p "$DIR"
npm install --prefix "$DIR" --no-audit --no-fund --silent "axe-core@$VERSION" >&2
[ -s "$FILE" ] || { log "axe.min.js is missing after the install"; exit 1; }
