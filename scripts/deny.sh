#!/usr/bin/env bash
# Dependency checks with cargo-deny: licences, bans (duplicates, wildcards, OpenSSL)
# and sources, all of which work offline once crates.io's index is cached.
#
# The advisory check (`cargo deny check advisories`) needs the RustSec advisory
# database, a git repository on GitHub; where GitHub cannot be reached (as in this
# project's build environment) it is skipped with a notice. Set DENY_ADVISORIES=1 to
# make it run (and fail when it cannot fetch the database).
#
# cargo-deny is installed from crates.io when missing (`cargo install --locked`).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

if ! command -v cargo-deny >/dev/null 2>&1; then
    echo "deny.sh: installing cargo-deny from crates.io" >&2
    cargo install --locked cargo-deny
fi

cargo deny --log-level error check licenses bans sources

if [[ "${DENY_ADVISORIES:-0}" == "1" ]]; then
    cargo deny check advisories
elif timeout 5 git ls-remote https://github.com/RustSec/advisory-db HEAD >/dev/null 2>&1; then
    cargo deny check advisories
else
    echo "deny.sh: advisories skipped: github.com (RustSec advisory-db) is not reachable" >&2
fi
