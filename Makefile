# The README's two commands are `make run` and `make test`. Without
# DATABASE_URL both start the project's private PostgreSQL (scripts/db.sh).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
# Builds read the committed .sqlx/ query data, never a live database.
export SQLX_OFFLINE := true
DB := scripts/db.sh
SQLX_CLI_VERSION := 0.8.6
BIN := target/debug/billing-ledger

.PHONY: run test test-citus readme lint fmt build db-start db-stop migrate prepare sqlx-cli openapi bench conformance chaos bench-schema bench-scale

build:
	cargo build

db-start:
	@$(DB) start >/dev/null

db-stop:
	@$(DB) stop

migrate: build
	DATABASE_URL=$$($(DB) start) $(BIN) migrate

# Private database (or DATABASE_URL), migrations, a demo shop with a printed
# key and curl line, then the server on BIND_ADDR (default 127.0.0.1:8080).
run: build
	@url=$$($(DB) start); \
	DATABASE_URL=$$url $(BIN) migrate; \
	DATABASE_URL=$$url $(BIN) shops seed-demo; \
	DATABASE_URL=$$url exec $(BIN) serve

# sqlx-cli checks that the committed .sqlx/ data matches the queries.
sqlx-cli:
	@command -v cargo-sqlx >/dev/null 2>&1 || cargo install sqlx-cli --version '~0.8' --locked \
	  --no-default-features --features postgres,rustls

test: sqlx-cli
	@scripts/ensure-chromium.sh
	@url=$$($(DB) start); export DATABASE_URL=$$url; \
	cargo run -q -- migrate >/dev/null; \
	SQLX_OFFLINE=false cargo sqlx prepare --check -- --all-targets; \
	cargo test --all-targets; \
	cargo test --doc

# The integration tests and the conformance flows on a throwaway Citus
# cluster (scripts/citus.sh: a coordinator and two workers on loopback),
# every test database distributed by shop (docs/scale-out.md). Where Citus
# is not installed it says so and passes (DEVELOPERS.md says how to get it).
test-citus: sqlx-cli build
	@if ! scripts/citus.sh check; then echo "test-citus: SKIPPED: Citus is not installed"; exit 0; fi; \
	scripts/citus.sh stop; \
	url=$$(scripts/citus.sh start | tail -1); \
	trap 'scripts/citus.sh stop' EXIT; \
	BILLING_LEDGER_TEST_CITUS=1 DATABASE_URL=$$url cargo test --test api; \
	CITUS=1 DATABASE_URL=$$url scripts/conformance/run.sh

# Check the README's walk-through against a server started like `make run`
# (its own instance on a free port, stopped afterwards): every ```sh block runs
# in order, each answer's status and shown fields are checked. A few seconds.
readme: build
	python3 scripts/readme/check.py

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

fmt:
	cargo fmt --all

# Regenerate .sqlx/ after changing a query or a migration.
prepare: sqlx-cli
	@url=$$($(DB) start); export DATABASE_URL=$$url; \
	cargo sqlx migrate run >/dev/null; \
	SQLX_OFFLINE=false cargo sqlx prepare -- --all-targets

# Real clients against the committed spec and a live server (a few minutes,
# loopback only): spec lint, schemathesis, the generated Python client and
# the TypeScript types. Tools install on first use into .local/venv and
# scripts/conformance/ts/node_modules (both git-ignored).
conformance: build
	scripts/conformance/run.sh

# Rewrite openapi.yaml from the code.
openapi:
	cargo run -q -- openapi > openapi.yaml

# The project's own bank test (docs/chaos.md): 3 instances on a
# throwaway PostgreSQL, 32 clients, re-sends, kill -9, PostgreSQL restarts,
# terminated backends; then a checker over the answers, the API and SQL.
# OPS=10000 for the long run; SELFTEST=1 damages the books on purpose and
# passes only if that is caught. Logs and summary.json in target/chaos.
chaos: build
	python3 scripts/chaos/run.py $(if $(OPS),--ops $(OPS)) $(if $(filter-out 0,$(SELFTEST)),--self-test)

# The idempotent debit path against pgbench on the same database (a few
# minutes; loopback only). Results in target/bench/results.json.
# BENCH_BASELINE=<git revision> also runs that revision's service (2b).
bench:
	@command -v wrk >/dev/null 2>&1 || { DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
	@command -v pgbench >/dev/null 2>&1 || { echo "pgbench missing (Debian package postgresql)"; exit 1; }
	python3 scripts/bench/run.py

# What each index, foreign key and trigger on a debit's write path costs, and
# the audit row and the stored answer:
# the fixed yardstick with each removed in turn (a few minutes; pgbench
# only). Results in target/bench/schema.json.
bench-schema:
	@command -v pgbench >/dev/null 2>&1 || { echo "pgbench missing (Debian package postgresql)"; exit 1; }
	python3 scripts/bench/schema.py

# Flat as it grows: debits, replays, a history page and the one-day report
# on 5,000,000 seeded movements and 1,000,000 live idempotency records
# beside an empty database, and the cleanup of 1,000,000 expired records
# while debits run (about 20 minutes plus a release build). Results in
# target/bench/scale.json.
bench-scale:
	@command -v wrk >/dev/null 2>&1 || { DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
	@command -v pgbench >/dev/null 2>&1 || { echo "pgbench missing (Debian package postgresql)"; exit 1; }
	python3 scripts/bench/scale.py
