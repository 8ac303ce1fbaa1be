#!/usr/bin/env bash
# A throwaway Citus cluster on loopback for `make test-citus`: a coordinator
# and two workers, each its own PostgreSQL with the citus extension.
#
#   scripts/citus.sh start   start (or reuse) it; the coordinator's DATABASE_URL is the last line
#   scripts/citus.sh stop    stop it and delete its data
#   scripts/citus.sh check   exit 0 when Citus is installed, 3 (with the reason) when not
#   scripts/citus.sh database NAME
#                            make NAME a Citus database of the running cluster (created
#                            where missing, replaced on the workers, the workers added);
#                            prints its URL. `billing-ledger citus distribute` comes next.
#
# Citus 13 for PostgreSQL 15 is not packaged for Debian 12: DEVELOPERS.md says
# how to get it onto a machine for testing. Nothing here builds or fetches it.
#
# The nodes trust loopback connections (they only listen on 127.0.0.1) so the
# coordinator reaches its workers without passwords; the cluster holds test
# data only. The data lives under /tmp (PostgreSQL refuses to run as root, so
# as root the servers run as the `postgres` system user).
set -euo pipefail

cmd=${1:-start}
top=$(cd "$(dirname "$0")/.." && pwd)
db_name=${DB_NAME:-billing_ledger}
db_user=billing

log() { printf '%s\n' "$*" >&2; }

# shellcheck source=scripts/pg-bin.sh
. "$(dirname "$0")/pg-bin.sh"

missing() {
  log "Citus is not installed: $1"
  log "make test-citus needs Citus 13 built for this PostgreSQL (see DEVELOPERS.md, 'Testing on Citus')."
  exit 3
}

bin=$(pg_bin || true)
[ -n "$bin" ] || { [ "$cmd" = stop ] && exit 0; missing "no PostgreSQL server binaries under /usr/lib/postgresql"; }
libdir=$("$bin/pg_config" --pkglibdir 2>/dev/null || echo "$(dirname "$bin")/lib")
sharedir=$("$bin/pg_config" --sharedir 2>/dev/null || echo "/usr/share/postgresql/$(basename "$(dirname "$bin")")")

installed() {
  [ -f "$libdir/citus.so" ] || missing "$libdir/citus.so not found"
  [ -f "$sharedir/extension/citus.control" ] || missing "$sharedir/extension/citus.control not found"
}

hash=$(printf '%s' "$top" | cksum | cut -d' ' -f1)
root="/tmp/billing-ledger-citus-$hash"
nodes=(coordinator worker1 worker2)

if [ "$(id -u)" -eq 0 ]; then run_as=postgres; else run_as=""; fi
as_pg() { if [ -n "$run_as" ]; then runuser -u "$run_as" -- "$@"; else "$@"; fi; }

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port_of() { cat "$root/$1/port"; }
is_running() { [ -f "$root/$1/data/postmaster.pid" ] && as_pg "$bin/pg_ctl" -D "$root/$1/data" status >/dev/null 2>&1; }
sql() { # node database statement (notices, e.g. "does not exist, skipping", are noise)
  PGOPTIONS="-c client_min_messages=warning" psql -h 127.0.0.1 -p "$(port_of "$1")" -U "$db_user" -d "$2" -v ON_ERROR_STOP=1 -Atqc "$3"
}

case "$cmd" in
  check) installed; exit 0 ;;
  stop)
    for n in "${nodes[@]}"; do
      if is_running "$n"; then as_pg "$bin/pg_ctl" -D "$root/$n/data" -m fast -w stop >/dev/null; fi
    done
    rm -rf "$root"
    exit 0 ;;
  start) installed ;;
  database)
    name=${2:?usage: $0 database NAME}
    # One at a time: adding nodes in two databases at once races on the
    # workers' shared catalogs ("tuple concurrently updated").
    exec 9>"$root/database.lock"
    flock 9
    for n in "${nodes[@]}"; do is_running "$n" || { log "the Citus cluster is not running: $0 start"; exit 1; }; done
    for w in worker1 worker2; do
      sql "$w" postgres "drop database if exists \"$name\" with (force)" >/dev/null
      sql "$w" postgres "create database \"$name\"" >/dev/null
      sql "$w" "$name" 'create extension citus' >/dev/null
    done
    if [ "$(sql coordinator postgres "select count(*) from pg_database where datname = '$name'")" = 0 ]; then
      sql coordinator postgres "create database \"$name\"" >/dev/null
    fi
    sql coordinator "$name" 'create extension if not exists citus' >/dev/null
    # citus_stat_statements reads it (which statements ran on one shard).
    sql coordinator "$name" 'create extension if not exists pg_stat_statements' >/dev/null
    sql coordinator "$name" "select citus_set_coordinator_host('127.0.0.1', $(port_of coordinator))" >/dev/null
    for w in worker1 worker2; do
      sql coordinator "$name" "select citus_add_node('127.0.0.1', $(port_of "$w"))" >/dev/null
    done
    printf 'postgres://%s@127.0.0.1:%s/%s?sslmode=disable\n' "$db_user" "$(port_of coordinator)" "$name"
    exit 0 ;;
  *) log "usage: $0 start|stop|check|database NAME"; exit 2 ;;
esac

mkdir -p "$root"
[ -n "$run_as" ] && chown "$run_as" "$root"
port=$((40000 + hash % 10000))
for n in "${nodes[@]}"; do
  dir="$root/$n"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    log "creating Citus $n in $dir"
    mkdir -p "$dir"
    [ -n "$run_as" ] && chown "$run_as" "$dir"
    as_pg "$bin/initdb" -D "$dir/data" -U "$db_user" --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
    cat >> "$dir/data/postgresql.conf" <<'EOF'
# billing-ledger Citus test node
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
max_connections = 1000
max_prepared_transactions = 1000
shared_buffers = 128MB
shared_preload_libraries = 'citus,pg_stat_statements'
# Which statements ran on one shard (citus_stat_statements.partition_key).
citus.stat_statements_track = 'all'
# Citus runs a maintenance worker per database: one per test database.
max_worker_processes = 256
# Four shards per table: several per worker, few enough for a test database each.
citus.shard_count = 4
EOF
  fi
  if ! is_running "$n"; then
    if [ ! -f "$dir/port" ] || ! port_free "$(cat "$dir/port")"; then
      while ! port_free "$port"; do port=$((port + 1)); done
      echo "$port" > "$dir/port"
    fi
    port=$(($(cat "$dir/port") + 1))
    log "starting Citus $n on 127.0.0.1:$(cat "$dir/port")"
    as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -o "-p $(cat "$dir/port")" -w -t 60 start >/dev/null || {
      tail -20 "$dir/server.log" >&2; exit 1; }
  fi
done

for n in "${nodes[@]}"; do
  for _ in $(seq 1 60); do sql "$n" postgres 'select 1' >/dev/null 2>&1 && break; sleep 0.5; done
done
if [ "$(sql coordinator postgres "select count(*) from pg_database where datname = '$db_name'")" = 0 ]; then
  "$0" database "$db_name" >/dev/null
fi
log "Citus $(sql coordinator "$db_name" "select extversion from pg_extension where extname = 'citus'"): coordinator 127.0.0.1:$(port_of coordinator), workers $(port_of worker1) and $(port_of worker2)"
printf 'postgres://%s@127.0.0.1:%s/%s?sslmode=disable\n' "$db_user" "$(port_of coordinator)" "$db_name"
