#!/usr/bin/env bash
# Makes sure PostgreSQL, NATS with JetStream and Mosquitto run on loopback, installing
# them from Debian's packages where they are missing, and that the database role and
# database of DATABASE_URL exist. Idempotent: run it as often as you like.
set -euo pipefail

DATABASE_URL=${DATABASE_URL:-postgres://root@127.0.0.1:5432/shopfloor}
log() { echo "services: $*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}
as_postgres() {
  if [ "$(id -un)" = postgres ]; then "$@"
  elif [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"
  else sudo -u postgres "$@"; fi
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {
  local port=$1 name=$2
  for _ in $(seq 1 100); do
    port_open "$port" && return 0
    sleep 0.1
  done
  log "$name did not start listening on 127.0.0.1:$port"; exit 1
}

# --- install what is missing -------------------------------------------------------
missing=()
[ -x /usr/bin/pg_ctlcluster ] || missing+=(postgresql)
[ -x /usr/sbin/nats-server ] || command -v nats-server >/dev/null || missing+=(nats-server)
[ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null || missing+=(mosquitto)
command -v psql >/dev/null || missing+=(postgresql-client)
command -v curl >/dev/null || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# --- PostgreSQL --------------------------------------------------------------------
if ! port_open 5432; then
  version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$version" ]; then
    version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
    log "creating PostgreSQL $version cluster"
    as_root pg_createcluster "$version" main >/dev/null
  fi
  log "starting PostgreSQL $version"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start
fi
wait_port 5432 PostgreSQL

# The role and database named by DATABASE_URL (postgres://USER@HOST:PORT/DB).
rest=${DATABASE_URL#*://}
userinfo=${rest%%@*}
db_user=${userinfo%%:*}
db_name=${rest##*/}
db_name=${db_name%%\?*}
[ "$userinfo" = "$rest" ] && db_user=$(id -un)

if ! psql "$DATABASE_URL" -w -Atc 'select 1' >/dev/null 2>&1; then
  if ! as_postgres psql -d postgres -Atc "select 1 from pg_roles where rolname = '$db_user'" | grep -q 1; then
    log "creating role $db_user"
    as_postgres psql -q -d postgres -c "CREATE ROLE \"$db_user\" LOGIN SUPERUSER"
  fi
  if ! as_postgres psql -d postgres -Atc "select 1 from pg_database where datname = '$db_name'" | grep -q 1; then
    log "creating database $db_name"
    as_postgres psql -q -d postgres -c "CREATE DATABASE \"$db_name\" OWNER \"$db_user\""
  fi
  if ! psql "$DATABASE_URL" -w -Atc 'select 1' >/dev/null 2>&1; then
    # A fresh Debian cluster asks for a password on TCP: trust loopback instead,
    # as on the development machines this project targets.
    hba=$(as_postgres psql -d postgres -Atc 'show hba_file')
    if ! as_root grep -q '# shopfloor: trust loopback' "$hba"; then
      log "trusting loopback connections in $hba"
      as_root sed -i '1i # shopfloor: trust loopback\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
      as_postgres psql -q -d postgres -c 'select pg_reload_conf()' >/dev/null
    fi
  fi
  psql "$DATABASE_URL" -w -Atc 'select 1' >/dev/null || { log "cannot connect to $DATABASE_URL"; exit 1; }
fi

# The test suite runs many processes at once (plants, group replicas, HA pairs), each with
# its pool: PostgreSQL's default of 100 connections is too few. Raise it once (a restart).
min_connections=300
current=$(psql "$DATABASE_URL" -w -Atc 'show max_connections')
if [ "$current" -lt "$min_connections" ]; then
  log "raising PostgreSQL max_connections from $current to $min_connections (restart)"
  as_postgres psql -q -d postgres -c "ALTER SYSTEM SET max_connections = $min_connections"
  version=$(psql "$DATABASE_URL" -w -Atc 'show server_version_num')
  version=$(( version / 10000 ))
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main restart
  wait_port 5432 PostgreSQL
  for _ in $(seq 1 50); do psql "$DATABASE_URL" -w -Atc 'select 1' >/dev/null 2>&1 && break; sleep 0.2; done
fi

# --- NATS with JetStream -----------------------------------------------------------
if ! port_open 4222; then
  log "starting nats-server with JetStream"
  as_root mkdir -p /var/lib/nats-server
  nats=$(command -v nats-server || echo /usr/sbin/nats-server)
  as_root start-stop-daemon --start --oknodo --background --exec "$nats" -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
fi
wait_port 4222 NATS

# --- Mosquitto ---------------------------------------------------------------------
# A plant's broker must hold bursts for a subscriber that acknowledges after commit:
# Mosquitto's defaults (20 in flight, 1000 queued per client) drop QoS 1 messages
# under load (DESIGN.md trap 9; docs/operations.md). Raise them once, and restart a
# broker that runs with the old limits.
conf=/etc/mosquitto/mosquitto.conf
if [ -f "$conf" ] && ! grep -q '^# shopfloor: ingest limits' "$conf"; then
  log "raising Mosquitto's queue limits in $conf"
  printf '\n# shopfloor: ingest limits (scripts/services.sh)\nmax_inflight_messages 1000\nmax_queued_messages 1000000\n' \
    | as_root tee -a "$conf" >/dev/null
  if port_open 1883; then
    log "restarting mosquitto with the new limits"
    as_root pkill -x mosquitto || true
    for _ in $(seq 1 100); do port_open 1883 || break; sleep 0.1; done
  fi
fi
if ! port_open 1883; then
  log "starting mosquitto"
  # Mosquitto exits at once, listening on nothing, without its run directory.
  as_root mkdir -p /run/mosquitto
  as_root chown mosquitto: /run/mosquitto 2>/dev/null || true
  mosq=$(command -v mosquitto || echo /usr/sbin/mosquitto)
  as_root "$mosq" -d -c /etc/mosquitto/mosquitto.conf
fi
wait_port 1883 Mosquitto

log "PostgreSQL, NATS (JetStream) and Mosquitto are up on 127.0.0.1"
