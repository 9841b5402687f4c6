#!/usr/bin/env bash
# Soak test: a local `shopfloor serve` under a steady load of machine events over HTTP,
# sampling its memory (RSS) and the request latency every 30 s.
#
#   scripts/soak.sh                 # 10 minutes at 120 events/s (about 10 × 1M events/day)
#   SOAK_SECONDS=3600 SOAK_RATE=240 scripts/soak.sh
#
# It runs against the services on the standard loopback ports (scripts/services.sh), on a
# fresh database `soak_<time>` and namespace of its own (both left for inspection; drop
# the database with `dropdb soak_<time>`), with MQTT ingest off. The binary is
# target/release/shopfloor (built when missing) or $SHOPFLOOR_BIN.
#
# Output: one line per sample (elapsed s, RSS MiB, requests, errors, p50/p99/max latency
# ms, events stored, events behind the read model), then a summary. Exit status 1 when
# a request failed, memory grew by more than half from the first sample to the last,
# or the read model did not catch up at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

SECONDS_TOTAL="${SOAK_SECONDS:-600}"
RATE="${SOAK_RATE:-120}"
SAMPLE="${SOAK_SAMPLE_SECONDS:-30}"
PG_BASE="${SOAK_PG:-postgres://root@127.0.0.1:5432}"
BIN="${SHOPFLOOR_BIN:-target/release/shopfloor}"

if [[ ! -x "$BIN" ]]; then
    cargo build --release --locked
fi

stamp="$(date +%Y%m%d%H%M%S)"
db="soak_${stamp}"
ns="soak${stamp}"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
token="soak-admin-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
log="$(mktemp /tmp/soak-shopfloor.XXXXXX.log)"

psql "${PG_BASE}/postgres" -qc "CREATE DATABASE \"${db}\"" >/dev/null
echo "soak: database ${db}, namespace ${ns}, port ${port}, log ${log}"

DATABASE_URL="${PG_BASE}/${db}" SHOPFLOOR_NAMESPACE="$ns" SHOPFLOOR_HTTP_ADDR="127.0.0.1:${port}" \
    SHOPFLOOR_ADMIN_TOKEN="$token" MQTT_URL=off RUST_LOG=warn \
    "$BIN" serve >"$log" 2>&1 &
pid=$!
cleanup() { kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
trap cleanup EXIT

for _ in $(seq 1 300); do
    if curl -fsS "http://127.0.0.1:${port}/readyz" >/dev/null 2>&1; then break; fi
    sleep 0.1
done
curl -fsS "http://127.0.0.1:${port}/readyz" >/dev/null

SOAK_PORT="$port" SOAK_TOKEN="$token" SOAK_PID="$pid" SOAK_DB="${PG_BASE}/${db}" \
SOAK_SECONDS="$SECONDS_TOTAL" SOAK_RATE="$RATE" SOAK_SAMPLE="$SAMPLE" python3 - <<'PY'
import http.client, json, os, subprocess, sys, threading, time

port = int(os.environ["SOAK_PORT"]); token = os.environ["SOAK_TOKEN"]
pid = os.environ["SOAK_PID"]; db = os.environ["SOAK_DB"]
total = float(os.environ["SOAK_SECONDS"]); rate = float(os.environ["SOAK_RATE"])
sample = float(os.environ["SOAK_SAMPLE"])
WORKERS = 8
MACHINES = [f"soak-{i}" for i in range(WORKERS)]
headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

def conn():
    return http.client.HTTPConnection("127.0.0.1", port, timeout=30)

c = conn()
for m in MACHINES:
    c.request("POST", "/api/v1/machines", json.dumps(
        {"machine_id": m, "type": "press", "line": "soak", "ideal_cycle_time_s": 0.5}), headers)
    r = c.getresponse(); r.read()
    assert r.status == 201, r.status

lock = threading.Lock()
lat = []; errors = 0; sent = 0; good_sum = 0
stop = time.monotonic() + total
start_ts = time.time() - 3 * 86400

def worker(i):
    global errors, sent, good_sum
    c = conn(); n = 0
    period = WORKERS / rate
    nxt = time.monotonic()
    while time.monotonic() < stop:
        n += 1
        body = json.dumps({"event_type": "parts_produced", "machine_id": MACHINES[i],
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start_ts + n)),
            "good": 1, "scrap": 0})
        t0 = time.monotonic()
        try:
            c.request("POST", "/api/v1/machines/events", body, headers)
            r = c.getresponse(); r.read(); ok = r.status == 202
        except Exception:
            ok = False; c.close(); c = conn()
        dt = time.monotonic() - t0
        with lock:
            sent += 1; lat.append(dt)
            if ok: good_sum += 1
            else: errors += 1
        nxt += period
        pause = nxt - time.monotonic()
        if pause > 0: time.sleep(pause)

def rss_mib():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0

def psql(q):
    return subprocess.run(["psql", db, "-tAc", q], capture_output=True, text=True).stdout.strip()

def machines_good():
    c = conn()
    c.request("GET", "/api/v1/machines", headers={"Authorization": f"Bearer {token}"})
    r = c.getresponse(); body = json.loads(r.read())
    return sum(m.get("good_count") or 0 for m in body if m["machine_id"] in MACHINES)

threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(WORKERS)]
t_start = time.monotonic()
for t in threads: t.start()
print(f"{'t_s':>6} {'rss_mib':>8} {'reqs':>7} {'errors':>6} {'p50_ms':>7} {'p99_ms':>7} {'max_ms':>7} {'stored':>8} {'behind':>6}", flush=True)
samples = []
def take():
    with lock:
        window = sorted(lat); lat.clear(); s, e = sent, errors
    # Read model first, store second: "behind" can only overstate the lag, never hide it.
    good = machines_good()
    stored = int(psql("SELECT count(*) FROM events WHERE event_type = 'MachinePartsProduced'") or 0)
    behind = stored - good
    p = lambda q: (window[min(len(window) - 1, int(q * len(window)))] * 1000) if window else 0.0
    row = (time.monotonic() - t_start, rss_mib(), s, e, p(0.5), p(0.99), (window[-1] * 1000 if window else 0.0), stored, behind)
    samples.append(row)
    print(f"{row[0]:6.0f} {row[1]:8.1f} {row[2]:7d} {row[3]:6d} {row[4]:7.1f} {row[5]:7.1f} {row[6]:7.1f} {row[7]:8d} {row[8]:6d}", flush=True)
while time.monotonic() < stop:
    time.sleep(min(sample, max(0.0, stop - time.monotonic())))
    take()
for t in threads: t.join(timeout=40)
# Let the read model catch up (bounded), then the last sample.
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    stored = int(psql("SELECT count(*) FROM events WHERE event_type = 'MachinePartsProduced'") or 0)
    if stored == machines_good(): break
    time.sleep(0.5)
take()
last = samples[-1]; first = samples[0]
elapsed = last[0]
print(f"soak: {sent} requests ({sent / total:.1f}/s), {errors} errors, RSS {first[1]:.1f} -> {max(s[1] for s in samples):.1f} MiB (max), "
      f"p99 max {max(s[5] for s in samples):.1f} ms, worst {max(s[6] for s in samples):.1f} ms, stored {last[7]}, behind at end {last[8]}")
ok = errors == 0 and last[8] == 0 and last[1] <= first[1] * 1.5 + 16
sys.exit(0 if ok else 1)
PY
