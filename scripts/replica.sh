#!/usr/bin/env bash
# A streaming read replica of a PostgreSQL primary (the private cluster of
# scripts/db.sh, or any server that allows replication connections), for
# REPORTS_DATABASE_URL and the tests that prove reports read it.
#
#   scripts/replica.sh start PRIMARY_URL   pg_basebackup -R, start it; prints "DIR PORT"
#   scripts/replica.sh stop DIR            stop it and remove DIR
#
# PRIMARY_URL's user needs the REPLICATION attribute (the private cluster's
# user is its superuser) and pg_hba must allow it (initdb's default does, on
# 127.0.0.1). As root the replica runs as the `postgres` system user, like
# the private cluster, because PostgreSQL refuses to run as root.
set -euo pipefail

log() { printf '%s\n' "$*" >&2; }

bin=""
for d in /usr/lib/postgresql/*/bin; do
  [ -x "$d/pg_basebackup" ] && bin=$d
done
[ -n "$bin" ] || { log "PostgreSQL server binaries not found (scripts/db.sh start installs them)"; exit 1; }

as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

case "${1:-}" in
  start)
    primary=${2:?usage: $0 start PRIMARY_URL}
    dir=$(mktemp -d /tmp/billing-ledger-replica.XXXXXX)
    [ "$(id -u)" -eq 0 ] && chown postgres "$dir"
    chmod 700 "$dir"
    # -R writes standby.signal and primary_conninfo; -X stream copies the
    # WAL written during the copy; -c fast does not wait for a checkpoint.
    if ! as_pg "$bin/pg_basebackup" -d "$primary" -D "$dir/data" -R -X stream -c fast >&2; then
      rm -rf "$dir"; exit 1
    fi
    # Above Linux's default ephemeral range (32768-60999), so no outgoing
    # connection already holds the port.
    port=$((61000 + RANDOM % 4000))
    while ! port_free "$port"; do port=$((port + 1)); done
    if ! as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -o "-p $port" -w -t 120 start >&2; then
      tail -20 "$dir/server.log" >&2; rm -rf "$dir"; exit 1
    fi
    printf '%s %s\n' "$dir" "$port"
    ;;
  stop)
    dir=${2:?usage: $0 stop DIR}
    case "$dir" in /tmp/billing-ledger-replica.*) ;; *) log "not a replica directory: $dir"; exit 2 ;; esac
    if [ -f "$dir/data/postmaster.pid" ]; then
      as_pg "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >&2 || true
    fi
    rm -rf "$dir"
    ;;
  *)
    log "usage: $0 start PRIMARY_URL | stop DIR"; exit 2 ;;
esac
