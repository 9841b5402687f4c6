#!/usr/bin/env bash
# Builds the release binary exactly as the Dockerfile's build stage does: the same
# cargo command (tests/e2e/deploy.rs fails when the two differ). CI runs this to prove
# the image's build step, since no container engine runs there.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --bin shopfloor
echo "built $(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release/shopfloor"
