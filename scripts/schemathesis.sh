#!/usr/bin/env bash
# Makes sure schemathesis (a pinned version, from PyPI) is installed, for the contract
# test of the served OpenAPI document (tests/e2e/openapi_fuzz.rs). It goes into its own
# virtualenv, ~/.local/share/shopfloor/schemathesis-$VERSION, so that it never touches the
# system's Python packages and a version bump installs beside the old one.
# Prints nothing when it is already there. Idempotent: run it as often as you like.
set -euo pipefail

VERSION=4.32.5
VENV="${SHOPFLOOR_TOOLS_DIR:-$HOME/.local/share/shopfloor}/schemathesis-$VERSION"
log() { echo "schemathesis: $*" >&2; }

if [ -x "$VENV/bin/schemathesis" ] && "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$VERSION"; then
  exit 0
fi
command -v python3 >/dev/null || { log "python3 is missing (apt-get install python3 python3-venv)"; exit 1; }
log "installing schemathesis $VERSION into $VENV"
rm -rf "$VENV"
mkdir -p "$(dirname "$VENV")"
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$VERSION"
"$VENV/bin/schemathesis" --version >&2
