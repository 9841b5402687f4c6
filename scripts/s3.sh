#!/usr/bin/env bash
# Makes sure the tools of the report tests are installed:
# - moto (pinned, from PyPI) in server mode: an S3-compatible server that the report
#   storage test starts on a free loopback port (crates/api/tests/it/reports.rs). It goes
#   into its own virtualenv, ~/.local/share/shopfloor/moto-$VERSION.
# - pdftotext and pdftoppm (Debian's poppler-utils), which check the text and the layout
#   of the rendered PDF reports.
# Prints nothing when everything is there. Idempotent: run it as often as you like.
set -euo pipefail

VERSION=5.2.5
VENV="${SHOPFLOOR_TOOLS_DIR:-$HOME/.local/share/shopfloor}/moto-$VERSION"
log() { echo "s3: $*" >&2; }

if ! command -v pdftotext >/dev/null || ! command -v pdftoppm >/dev/null; then
  log "installing poppler-utils (pdftotext, pdftoppm)"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get install -y -qq poppler-utils >/dev/null || {
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq poppler-utils >/dev/null
  }
fi

if [ -x "$VENV/bin/moto_server" ] && "$VENV/bin/pip" show moto 2>/dev/null | grep -q "^Version: $VERSION$"; then
  exit 0
fi
command -v python3 >/dev/null || { log "python3 is missing (apt-get install python3 python3-venv)"; exit 1; }
log "installing moto[server] $VERSION into $VENV"
rm -rf "$VENV"
mkdir -p "$(dirname "$VENV")"
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$VERSION"
"$VENV/bin/moto_server" --help >/dev/null
