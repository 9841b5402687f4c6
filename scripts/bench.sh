#!/usr/bin/env bash
# Runs every benchmark in docs/benchmarks.md, ours and the postgres-es peer, on
# scratch databases of the local server, and prints one JSON line per run (progress
# goes to stderr). Usage: scripts/bench.sh [quick]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
scripts/services.sh
cargo build --release --locked -q
target=${CARGO_TARGET_DIR:-target}
CARGO_TARGET_DIR="$target/peer" cargo build --release -q --manifest-path bench/peer/Cargo.toml

server=${DATABASE_URL:-postgres://root@127.0.0.1:5432/shopfloor}
base=${server%/*}
fresh() { # a new, empty scratch database; prints its URL
  psql "$base/postgres" -qc "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1" >/dev/null 2>&1
  echo "$base/$1"
}
bench() { DATABASE_URL=$(fresh "$1") "$target/release/shopfloor" bench "${@:2}" 2>/dev/null | tail -n 1; }
peer() { DATABASE_URL="$server" "$target/peer/release/shopfloor-peer-bench" "$@" 2>/dev/null | tail -n 1; }

if [ "${1:-}" = quick ]; then
  bench sf_bench_commands commands --aggregates 1000 --commands 20000 --concurrency 32
  peer 1000 20000 32
  exit 0
fi

# The headline comparison, side by side: A=1000, N=20000, C=32.
bench sf_bench_commands commands --aggregates 1000 --commands 20000 --concurrency 32
peer 1000 20000 32
# How the cost grows: concurrency, aggregates, stream length (N/A events per stream).
for c in 8 64 128; do
  bench sf_bench_commands commands --aggregates 1000 --commands 20000 --concurrency "$c"
  peer 1000 20000 "$c"
done
for a in 100 10000; do
  bench sf_bench_commands commands --aggregates "$a" --commands 20000 --concurrency 32
  peer "$a" 20000 32
done
bench sf_bench_commands commands --aggregates 10 --commands 20000 --concurrency 32
peer 10 20000 32
bench sf_bench_commands commands --aggregates 1000 --commands 20000 --concurrency 32 --no-group-commit
# The other paths.
bench sf_bench_ingest ingest --messages 50000 --machines 100
bench sf_bench_http http --machines 1000 --connections 32 --secs 10
bench sf_bench_e2e e2e --rate 1000 --secs 20
bench sf_bench_alerts alerts --machines 1000 --rules 5 --load-rate 2000
bench sf_bench_replay replay --events 500000
bench sf_bench_query query --machines 100 --days 30 --rate 500 --secs 20
bench sf_bench_reports reports --machines 20 --shifts 30
bench sf_bench_reports reports --machines 100 --shifts 9
bench sf_bench_opcua opcua --nodes 10000 --secs 20
