#!/usr/bin/env bash
# Brings up PostgreSQL, NATS (JetStream) and Mosquitto, builds Shopfloor, applies
# the migrations and runs every role, printing the URL and an admin token.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

scripts/services.sh
cargo build --release --locked

export DATABASE_URL=${DATABASE_URL:-postgres://root@127.0.0.1:5432/shopfloor}
export SHOPFLOOR_HTTP_ADDR=${SHOPFLOOR_HTTP_ADDR:-127.0.0.1:8080}
# One admin token per checkout, kept in .shopfloor/ (git-ignored).
mkdir -p .shopfloor
if [ -z "${SHOPFLOOR_ADMIN_TOKEN:-}" ]; then
  [ -s .shopfloor/admin-token ] || head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > .shopfloor/admin-token
  SHOPFLOOR_ADMIN_TOKEN=$(cat .shopfloor/admin-token)
fi
export SHOPFLOOR_ADMIN_TOKEN

./target/release/shopfloor migrate
cat <<MSG

  Shopfloor is starting at http://${SHOPFLOOR_HTTP_ADDR}  (dashboard, API under /api/v1, docs at /api/v1/docs)
  Admin token: ${SHOPFLOOR_ADMIN_TOKEN}
  Try: curl -H "Authorization: Bearer ${SHOPFLOOR_ADMIN_TOKEN}" http://${SHOPFLOOR_HTTP_ADDR}/api/v1/machines
  A simulated demo plant publishes to MQTT (set SHOPFLOOR_DEMO=off to skip it).
  Stop with Ctrl-C.

MSG
./target/release/shopfloor serve &
server=$!
trap 'kill -TERM $server ${sim:-} 2>/dev/null; wait' INT TERM EXIT
if [ "${SHOPFLOOR_DEMO:-on}" != off ] && [ "${MQTT_URL:-}" != off ]; then
  # Wait until the API (and the MQTT subscription) is ready, then start the plant.
  for _ in $(seq 1 300); do
    curl -fsS "http://${SHOPFLOOR_HTTP_ADDR}/readyz" >/dev/null 2>&1 && break
    kill -0 $server 2>/dev/null || exit 1
    sleep 0.2
  done
  ./target/release/shopfloor simulate --machines "${SHOPFLOOR_DEMO_MACHINES:-6}" --rate 1 &
  sim=$!
fi
wait $server
