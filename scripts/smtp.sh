#!/usr/bin/env bash
# Makes sure aiosmtpd (a pinned version, from PyPI) is installed, for the email tests of
# alerts (crates/alerts/tests/it): a real SMTP server on loopback that writes each message it
# receives to a maildir the test reads. It goes into its own virtualenv,
# ~/.local/share/shopfloor/aiosmtpd-$VERSION, so it never touches the system's Python packages.
# Prints nothing when it is already there. Idempotent: run it as often as you like.
set -euo pipefail

VERSION=1.4.6
VENV="${SHOPFLOOR_TOOLS_DIR:-$HOME/.local/share/shopfloor}/aiosmtpd-$VERSION"
log() { echo "aiosmtpd: $*" >&2; }

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import aiosmtpd, sys; sys.exit(aiosmtpd.__version__ != '$VERSION')" 2>/dev/null; then
  exit 0
fi
command -v python3 >/dev/null || { log "python3 is missing (apt-get install python3 python3-venv)"; exit 1; }
log "installing aiosmtpd $VERSION into $VENV"
rm -rf "$VENV"
mkdir -p "$(dirname "$VENV")"
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check "aiosmtpd==$VERSION"
"$VENV/bin/python" -c "import aiosmtpd; print('aiosmtpd', aiosmtpd.__version__)" >&2
