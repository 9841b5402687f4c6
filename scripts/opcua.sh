#!/usr/bin/env bash
# Makes sure Python's asyncua (a pinned version, from PyPI) is installed: the OPC UA
# server the OPC UA ingest's tests run on loopback (scripts/opcua_server.py, started by
# crates/opcua/tests). It goes into its own virtualenv,
# ~/.local/share/shopfloor/asyncua-$VERSION, never the system's Python packages.
# Prints nothing when it is already there. Idempotent: run it as often as you like.
set -euo pipefail

VERSION=2.1.0
VENV="${SHOPFLOOR_TOOLS_DIR:-$HOME/.local/share/shopfloor}/asyncua-$VERSION"
log() { echo "opcua: $*" >&2; }

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import sys, importlib.metadata as m; sys.exit(0 if m.version('asyncua') == '$VERSION' else 1)" 2>/dev/null; then
  exit 0
fi
command -v python3 >/dev/null || { log "python3 is missing (apt-get install python3 python3-venv)"; exit 1; }
log "installing asyncua $VERSION into $VENV"
rm -rf "$VENV"
mkdir -p "$(dirname "$VENV")"
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check "asyncua==$VERSION"
"$VENV/bin/python" -c "import importlib.metadata as m; print('asyncua', m.version('asyncua'))" >&2
