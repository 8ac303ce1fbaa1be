#!/usr/bin/env bash
# API conformance of the committed openapi.yaml and the server built from
# this checkout (meant for `make conformance`, after a build):
#
#   1. spec lint       openapi-spec-validator, as OpenAPI 3.1; then
#                      spec_contract.py: operationIds, Idempotency-Key,
#                      problem+json errors, stateful links
#   2. Python client   openapi-python-client generates with no warnings
#   3. TS types        openapi-typescript generates; ts/flow.ts type-checks
#   4. server          BIN on a free loopback port, in a fresh database
#                      (created on DATABASE_URL's server, dropped afterwards),
#                      migrated, seeded with a shop through the admin API
#   5. Python flow     client_flow.py through the generated client
#   6. TS flow         ts/flow.ts through openapi-fetch
#   7. schemathesis    every operation, all phases (stateful included),
#                      fixed seed, bounded examples, five conformance checks
#
# Every step runs even when an earlier independent one failed; the summary
# lists them and the exit status is 1 if any failed. Tools install on first
# use: a venv in .local/venv (requirements.txt + constraints.txt) and npm
# packages in scripts/conformance/ts/node_modules (package-lock.json).
#
# Environment (all optional):
#   BIN           server binary             (default target/debug/billing-ledger)
#   DATABASE_URL  PostgreSQL to create the throwaway database on
#                 (default: scripts/db.sh start, the private cluster)
#   SPEC          OpenAPI document           (default openapi.yaml)
#   MAX_EXAMPLES  schemathesis examples per operation and phase (default 50)
#   SEED          schemathesis seed          (default 20251124)
#   PHASES        schemathesis phases        (default examples,coverage,fuzzing,stateful)
#   KEEP_DB=1     keep the database for inspection (its name is printed)
#   PYTHON        interpreter for the venv  (default python3; 3.10+)
#   CITUS=1       DATABASE_URL is the coordinator of scripts/citus.sh: the
#                 database is made on every node and distributed by shop
#                 (`billing-ledger citus distribute`) after migrating
#
# Output (server log, generated clients, schemathesis JUnit/HAR reports) goes
# to .local/conformance/ (git-ignored), replaced on every run.
set -Eeuo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/../.." && pwd)
SPEC=$(realpath "${SPEC:-$top/openapi.yaml}")
BIN=${BIN:-$top/target/debug/billing-ledger}
MAX_EXAMPLES=${MAX_EXAMPLES:-50}
SEED=${SEED:-20251124}
PHASES=${PHASES:-examples,coverage,fuzzing,stateful}
CHECKS=not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance

venv=$top/.local/venv
ts=$here/ts
work=$top/.local/conformance

log() { printf '\n==> %s\n' "$*" >&2; }

# --- cleanup: only what this run started --------------------------------------
server_pid=""
child_pid=""
db_name=""
admin_db_url=""
cleanup() {
  local rc=$?
  if [ -n "$child_pid" ] && kill -0 "$child_pid" 2>/dev/null; then
    kill -TERM "$child_pid" 2>/dev/null || true
    wait "$child_pid" 2>/dev/null || true
  fi
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [ -n "$db_name" ]; then
    if [ "${KEEP_DB:-}" = 1 ]; then
      printf 'kept database %s\n' "$db_name" >&2
    else
      psql "$admin_db_url" -qAt -v ON_ERROR_STOP=1 \
        -c "DROP DATABASE IF EXISTS \"$db_name\" WITH (FORCE)" >/dev/null 2>&1 ||
        printf 'warning: could not drop database %s\n' "$db_name" >&2
    fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- results ------------------------------------------------------------------
declare -a results=()
failed=0
record() { # name status
  results+=("$(printf '%-14s %s' "$1" "$2")")
  [ "$2" = ok ] || failed=1
}
# Long commands run in the background and are waited for, so that a signal
# to this script is handled at once (bash defers traps until a foreground
# child exits) and cleanup can stop them.
bg() {
  "$@" &
  child_pid=$!
  local rc=0
  wait "$child_pid" || rc=$?
  child_pid=""
  return "$rc"
}
run_step() { # name command... (output is shown; status recorded)
  local name=$1; shift
  log "$name"
  if "$@"; then record "$name" ok; else record "$name" FAILED; fi
}

# --- tools --------------------------------------------------------------------
bootstrap_python() {
  local want have=""
  want=$(cat "$here/requirements.txt" "$here/constraints.txt" | sha256sum | cut -d' ' -f1)
  [ -f "$venv/.conformance-stamp" ] && have=$(cat "$venv/.conformance-stamp")
  if [ -x "$venv/bin/python" ] && [ "$have" = "$want" ]; then return 0; fi
  log "installing Python tools into $venv"
  [ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check \
    -r "$here/requirements.txt" -c "$here/constraints.txt"
  echo "$want" > "$venv/.conformance-stamp"
}

bootstrap_node() {
  if [ -f "$ts/node_modules/.package-lock.json" ] &&
     ! [ "$ts/package-lock.json" -nt "$ts/node_modules/.package-lock.json" ] &&
     [ -x "$ts/node_modules/.bin/tsc" ]; then
    return 0
  fi
  log "installing npm packages into $ts/node_modules"
  (cd "$ts" && npm ci --no-audit --no-fund --loglevel=error)
}

# --- offline steps -----------------------------------------------------------
spec_lint() {
  # The validator prints the whole document with some errors: keep lines short.
  "$venv/bin/openapi-spec-validator" --schema 3.1 --validation-errors all "$SPEC" 2>&1 | cut -c1-400 || return 1
  # The committed spec is exactly what the code generates (also a cargo test).
  if [ "$SPEC" = "$top/openapi.yaml" ] && [ -x "$BIN" ]; then
    if ! "$BIN" openapi | cmp -s - "$SPEC"; then
      "$BIN" openapi | diff -u "$SPEC" - | head -40 || true
      log "openapi.yaml differs from what the code generates (run make openapi)"
      return 1
    fi
  fi
}

python_client() {
  local out=$work/python-client/billing_ledger_client output rc=0
  rm -rf "$work/python-client"
  mkdir -p "$work/python-client"
  # ruff (a dependency) must be on PATH, or the generator warns about it.
  output=$(PATH="$venv/bin:$PATH" "$venv/bin/openapi-python-client" generate \
    --path "$SPEC" --meta none --output-path "$out" --fail-on-warning 2>&1) || rc=$?
  printf '%s\n' "$output"
  if [ "$rc" -ne 0 ] || grep -qi 'warning' <<<"$output"; then
    echo "openapi-python-client: warnings or errors (exit $rc)" >&2
    return 1
  fi
}

ts_types() {
  local output rc=0
  rm -rf "$ts/generated" "$ts/dist"
  mkdir -p "$ts/generated"
  output=$("$ts/node_modules/.bin/openapi-typescript" "$SPEC" -o "$ts/generated/api.d.ts" 2>&1) || rc=$?
  printf '%s\n' "$output"
  if [ "$rc" -ne 0 ] || grep -qiE 'warn|⚠|✘' <<<"$output"; then
    echo "openapi-typescript: warnings or errors (exit $rc)" >&2
    return 1
  fi
  (cd "$ts" && node_modules/.bin/tsc --noEmit -p tsconfig.json) || return 1
  (cd "$ts" && node_modules/.bin/tsc -p tsconfig.json --noEmit false --outDir dist)
}

# --- live steps ---------------------------------------------------------------
with_db_name() { # url name -> url with the database replaced
  "$venv/bin/python" -c 'import sys, urllib.parse as u
p = u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/" + sys.argv[2])))' "$1" "$2"
}

start_server() {
  [ -x "$BIN" ] || { echo "no server binary at $BIN (build first, or set BIN)" >&2; return 1; }
  if [ -z "${DATABASE_URL:-}" ]; then
    DATABASE_URL=$("$top/scripts/db.sh" start) || return 1
  fi
  admin_db_url=$DATABASE_URL
  local name="conformance_$$_$(date +%s)"
  if [ "${CITUS:-}" = 1 ]; then
    DATABASE_URL= "$top/scripts/citus.sh" database "$name" >/dev/null || return 1
  else
    psql "$admin_db_url" -qAt -v ON_ERROR_STOP=1 -c "CREATE DATABASE \"$name\"" >/dev/null || return 1
  fi
  db_name=$name
  db_url=$(with_db_name "$DATABASE_URL" "$db_name")
  echo "database $db_name"

  # A copy, so that a rebuild during the run cannot swap the binary.
  cp "$BIN" "$work/billing-ledger" || return 1
  DATABASE_URL=$db_url "$work/billing-ledger" migrate || return 1
  if [ "${CITUS:-}" = 1 ]; then
    DATABASE_URL=$db_url "$work/billing-ledger" citus distribute || return 1
  fi

  local port
  port=$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  base_url="http://127.0.0.1:$port"
  admin_key="conformance-admin-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
  # Rate limits high enough for the flows' bursts; schemathesis may still
  # meet a 429 now and then, which the spec documents. The Python flow's
  # webhook receiver listens on loopback; its recurring contract is billed
  # within a second.
  DATABASE_URL=$db_url ADMIN_API_KEY=$admin_key BIND_ADDR=127.0.0.1:$port \
    SHUTDOWN_GRACE=2s LOG_FORMAT=json ENDPOINT_ALLOWED_HOSTS=127.0.0.1 BILLING_INTERVAL=1s \
    RATE_LIMIT_PER_SECOND=1000 RATE_LIMIT_BURST=2000 \
    RATE_LIMIT_SENSITIVE_PER_SECOND=200 RATE_LIMIT_SENSITIVE_BURST=400 \
    RATE_LIMIT_IP_PER_SECOND=200 RATE_LIMIT_IP_BURST=400 \
    "$work/billing-ledger" serve >"$work/server.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 150); do
    if ! kill -0 "$server_pid" 2>/dev/null; then
      echo "the server exited:" >&2; tail -20 "$work/server.log" >&2; return 1
    fi
    if curl -fsS "$base_url/readyz" >/dev/null 2>&1; then break; fi
    sleep 0.2
  done
  curl -fsS "$base_url/readyz" >/dev/null || { echo "the server is not ready" >&2; tail -20 "$work/server.log" >&2; return 1; }
  echo "server pid $server_pid on $base_url"

  local seeded
  seeded=$("$venv/bin/python" "$here/seed.py" "$base_url" "$admin_key") || return 1
  eval "$seeded"
  export CONFORMANCE_BASE_URL=$base_url CONFORMANCE_ADMIN_KEY=$admin_key \
    CONFORMANCE_SHOP_KEY CONFORMANCE_TRANSFER_WALLETS CONFORMANCE_SHOP_ID CONFORMANCE_WEBHOOK_SECRET
  echo "seeded shop $CONFORMANCE_SHOP_ID"
}

python_flow() {
  PYTHONPATH="$work/python-client" bg timeout 300 "$venv/bin/python" "$here/client_flow.py"
}

ts_flow() {
  bg env -C "$ts" timeout 300 node dist/flow.js
}

schemathesis_run() {
  mkdir -p "$work/schemathesis"
  # From inside .local: Hypothesis writes a .hypothesis/ folder into the
  # working directory whatever the example database setting. One worker:
  # deterministic with the seed, and CPython 3.11 before 3.11.8 can fail
  # with "AST constructor recursion depth mismatch" under several threads
  # (python/cpython#106905); the run takes well under a minute anyway.
  SCHEMATHESIS_HOOKS="$here/schemathesis_hooks.py" bg env -C "$work/schemathesis" timeout 900 \
      "$venv/bin/schemathesis" --config-file "$here/schemathesis.toml" run "$SPEC" \
      --url "$CONFORMANCE_BASE_URL" \
      --checks "$CHECKS" \
      --phases "$PHASES" \
      --max-examples "$MAX_EXAMPLES" \
      --seed "$SEED" \
      --workers 1 \
      --no-color \
      --report junit,har --report-dir "$work/schemathesis"
}

# --- main ---------------------------------------------------------------------
rm -rf "$work"
mkdir -p "$work"
echo "spec: $SPEC"
echo "server binary: $BIN"

bootstrap_python
bootstrap_node

run_step "spec lint" spec_lint
run_step "spec contract" "$venv/bin/python" "$here/spec_contract.py" "$SPEC"
run_step "python client" python_client
python_ok=${results[-1]##* }
run_step "ts types" ts_types
ts_ok=${results[-1]##* }

run_step "server" start_server
if [ "${results[-1]##* }" = ok ]; then
  if [ "$python_ok" = ok ]; then run_step "python flow" python_flow; else record "python flow" "skipped (no client)"; fi
  if [ "$ts_ok" = ok ]; then run_step "ts flow" ts_flow; else record "ts flow" "skipped (no types)"; fi
  # After the flows, so that list responses also carry metadata, transfers
  # and replays for the response schemas to be checked against.
  run_step "schemathesis" schemathesis_run
  if ! kill -0 "$server_pid" 2>/dev/null; then
    record "server alive" FAILED
    tail -20 "$work/server.log" >&2
  fi
else
  for s in "python flow" "ts flow" "schemathesis"; do record "$s" "skipped (no server)"; done
fi

printf '\n==> conformance summary (reports in %s)\n' "${work#"$top"/}"
printf '  %s\n' "${results[@]}"
if [ "$failed" -ne 0 ]; then
  echo "conformance: FAILED"
  exit 1
fi
echo "conformance: ok"
