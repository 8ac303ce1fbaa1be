#!/usr/bin/env bash
# The project's private PostgreSQL for development, tests and benchmarks.
#
#   scripts/db.sh start   start (or reuse) the cluster; print DATABASE_URL on stdout
#   scripts/db.sh stop    stop it
#   scripts/db.sh url     print DATABASE_URL of the running cluster
#
# With DATABASE_URL already set, nothing is started: `start` and `url` echo it.
#
# The cluster lives in `.local/pg` (git-ignored). PostgreSQL refuses to run as
# root, so as root the server runs as the `postgres` system user; that user
# cannot enter a checkout inside a root-only folder (/root, a mktemp -d), so
# the data then lives under /tmp and `.local/pg` is a symlink to it. The
# port is derived from the checkout's path, so two checkouts never share one.
set -euo pipefail

cmd=${1:-start}
top=$(cd "$(dirname "$0")/.." && pwd)
local_dir="$top/.local"
db_name=${DB_NAME:-billing_ledger}
db_user=billing

log() { printf '%s\n' "$*" >&2; }

if [ -n "${DATABASE_URL:-}" ]; then
  case "$cmd" in
    start|url) printf '%s\n' "$DATABASE_URL"; exit 0 ;;
    stop) log "DATABASE_URL is set: not stopping an external server"; exit 0 ;;
  esac
fi

# shellcheck source=scripts/pg-bin.sh
. "$(dirname "$0")/pg-bin.sh"

bin=$(pg_bin || true)
if [ -z "$bin" ]; then
  if [ "$cmd" = stop ]; then exit 0; fi
  log "PostgreSQL server binaries not found: installing Debian's postgresql package"
  if [ "$(id -u)" -ne 0 ]; then log "run as root (or install postgresql) first"; exit 1; fi
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
  # Debian's package starts its own cluster on 5432; ours is separate.
  bin=$(pg_bin)
fi

hash=$(printf '%s' "$top" | cksum | cut -d' ' -f1)
mkdir -p "$local_dir"
chmod 700 "$local_dir"

if [ "$(id -u)" -eq 0 ]; then
  run_as=postgres
  data_root="/tmp/billing-ledger-pg-$hash"
  if [ ! -L "$local_dir/pg" ]; then
    rm -rf "$local_dir/pg"
    ln -s "$data_root" "$local_dir/pg"
  fi
else
  run_as=""
  data_root="$local_dir/pg"
fi
data="$data_root/data"

as_pg() {
  if [ -n "$run_as" ]; then runuser -u "$run_as" -- "$@"; else "$@"; fi
}

port_file="$data_root/port"
pw_file="$data_root/password"

is_running() { [ -f "$data/postmaster.pid" ] && as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; }

url() {
  printf 'postgres://%s:%s@127.0.0.1:%s/%s\n' "$db_user" "$(cat "$pw_file")" "$(cat "$port_file")" "$db_name"
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

case "$cmd" in
  stop)
    if is_running; then as_pg "$bin/pg_ctl" -D "$data" -m fast -w stop >&2; fi
    exit 0 ;;
  url)
    is_running || { log "private PostgreSQL is not running (scripts/db.sh start)"; exit 1; }
    url; exit 0 ;;
  start) ;;
  *) log "usage: $0 start|stop|url"; exit 2 ;;
esac

if [ ! -f "$data/PG_VERSION" ]; then
  log "creating a private PostgreSQL cluster in $data"
  rm -rf "$data"
  mkdir -p "$data_root"
  [ -n "$run_as" ] && chown "$run_as" "$data_root"
  chmod 700 "$data_root"
  head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$pw_file"
  chmod 600 "$pw_file"
  pwtmp="$data_root/pw.tmp"
  cat "$pw_file" > "$pwtmp"
  [ -n "$run_as" ] && chown "$run_as" "$pwtmp"
  as_pg "$bin/initdb" -D "$data" -U "$db_user" --pwfile="$pwtmp" \
    --auth-local=scram-sha-256 --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
  rm -f "$pwtmp"
  cat >> "$data/postgresql.conf" <<'EOF'
# billing-ledger private cluster
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
max_connections = 300
shared_buffers = 256MB
shared_preload_libraries = 'pg_stat_statements'
EOF
fi

if ! is_running; then
  if [ ! -f "$port_file" ] || ! port_free "$(cat "$port_file")"; then
    port=$((20000 + hash % 20000))
    while ! port_free "$port"; do port=$((port + 1)); done
    echo "$port" > "$port_file"
  fi
  port=$(cat "$port_file")
  log "starting private PostgreSQL on 127.0.0.1:$port"
  as_pg "$bin/pg_ctl" -D "$data" -l "$data_root/server.log" -o "-p $port" -w -t 60 start >/dev/null || {
    tail -20 "$data_root/server.log" >&2; exit 1; }
fi

export PGPASSWORD
PGPASSWORD=$(cat "$pw_file")
port=$(cat "$port_file")
for _ in $(seq 1 60); do
  psql -h 127.0.0.1 -p "$port" -U "$db_user" -d postgres -Atqc 'select 1' >/dev/null 2>&1 && break
  sleep 0.5
done
if ! psql -h 127.0.0.1 -p "$port" -U "$db_user" -d postgres -Atqc \
    "select 1 from pg_database where datname = '$db_name'" | grep -q 1; then
  psql -h 127.0.0.1 -p "$port" -U "$db_user" -d postgres -qc "create database $db_name" >&2
fi
url
