#!/usr/bin/env bash
# Makes sure aiosmtpd (a pinned version, from PyPI) is installed, for the email tests of
# alerts (crates/alerts/tests/it): a real SMTP server on loopback that writes each message it
# receives to a maildir the test reads (and openssl, for the STARTTLS test's certificates). It goes into its own virtualenv,
# ~/.local/share/shopfloor/aiosmtpd-$VERSION, so it never touches the system's Python packages.
# Prints nothing when it is already there. Idempotent: run it as often as you like.
set -euo pipefail

VERSION=1.4.6
VENV="${SHOPFLOOR_TOOLS_DIR:-$HOME/.local/share/shopfloor}/aiosmtpd-$VERSION"
log() { echo "aiosmtpd: $*" >&2; }

# The STARTTLS test makes its CA and server certificates with the openssl command line.
if ! command -v openssl >/dev/null; then
  log "installing openssl (Debian's package)"
  if [ "$(id -u)" = 0 ]; then apt-get install -y -qq openssl >/dev/null; else sudo apt-get install -y -qq openssl >/dev/null; fi
fi

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
