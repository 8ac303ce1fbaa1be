# Sourced by scripts/db.sh and scripts/citus.sh: the PostgreSQL server
# binaries' directory (Debian's layout), or failure when none is installed.
pg_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && { printf '%s\n' "$d"; return 0; }
  done
  return 1
}
