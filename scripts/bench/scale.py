#!/usr/bin/env python3
"""`make bench-scale`: does the write path stay flat as the tables grow?

Two databases of their own, each with 100 shops of 100 wallets (10,000
wallets), served by the release binary side by side:

* **empty:** one movement per wallet yesterday and nothing else;
* **scaled:** the same, plus 5,000,000 earlier movements with their journal
  (`BENCH_SCALE_MOVEMENTS`, spread over the year before, 50,000 per shop)
  and 1,000,000 live idempotency records (`BENCH_SCALE_KEYS`), all written
  by SQL (sql/bench/report_seed.sql per shop, `generate_series` for the
  keys), never over HTTP.

Both services' roll-up jobs roll every closed day first. Then, alternating
between the two databases so the machine's noise hits both: new debits and
replays (wrk, 16 connections, two rounds each), a wallet's history page
(`GET /v1/wallets/{id}/transactions`, 200 wallets) and the one-day
reconciliation (10 shops). Last, 1,000,000 expired idempotency records are
added to the scaled database and `billing-ledger cleanup` deletes them
while new debits run; their p99 is compared with the scaled database's
without the cleanup. Prints each figure with its ratio to the empty
database's, the database's size per million movements, and writes
target/bench/scale.json.

BENCH_SECONDS (default 20) sets each load run's length.
"""

import concurrent.futures
import json
import os
import re
import statistics
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(__file__))
import run as bench  # noqa: E402  (the bench's helpers: sh, psql, wrk, Api)

ROOT, OUT, BIN = bench.ROOT, bench.OUT, bench.BIN
SHOPS = 100
WALLETS_PER_SHOP = 100
MOVEMENTS = int(os.environ.get("BENCH_SCALE_MOVEMENTS", "5000000"))
KEYS = int(os.environ.get("BENCH_SCALE_KEYS", "1000000"))
REPLAY_WALLETS = 1000
HISTORY_PAGES = 200
REPORT_SHOPS = 10
ROUNDS = 2

# A stored answer of the size a debit's is (hex: psql would read JSON's colons).
BODY = ("\\x" + json.dumps({"id": str(uuid.UUID(int=0)), "type": "debit", "amount": "0.01",
                            "balance_after": "999999.99", "metadata": {}, "description": None,
                            "created_at": "2026-11-23T09:07:36.179736Z"} | {"pad": "x" * 150},
                           separators=(",", ":")).encode().hex())


def seed_keys(url, n, prefix, expires):
    """n idempotency records spread over the shops, each with its answer."""
    bench.psql(url, f"""
        INSERT INTO idempotency_keys (shop_id, key, fingerprint, response_status, response_body,
                                      response_content_type, created_at, expires_at)
        SELECT s.id, '{prefix}-' || g, sha256(g::text::bytea), 201, '{BODY}'::bytea,
               'application/json', now(), now() + interval '{expires}'
          FROM generate_series(1, {n}) g
          JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS i FROM shops) s ON s.i = g % {SHOPS}""")


class Side:
    """One database and its service."""

    def __init__(self, base_url, name, history):
        self.name, self.history = name, history
        self.url = bench.with_db(base_url, f"billing_bench_scale_{name}")
        bench.psql(base_url, f"DROP DATABASE IF EXISTS billing_bench_scale_{name} WITH (FORCE)")
        bench.psql(base_url, f"CREATE DATABASE billing_bench_scale_{name}")
        self.env = {**os.environ, "DATABASE_URL": self.url, "RATE_LIMIT_PER_SECOND": "0",
                    "RATE_LIMIT_SENSITIVE_PER_SECOND": "0", "RATE_LIMIT_IP_PER_SECOND": "0",
                    # The cleanup runs when the bench says so, not at start.
                    "IDEMPOTENCY_CLEANUP_INTERVAL": "24h"}
        bench.sh([BIN, "migrate"], env=self.env)
        self.proc = None
        self.shops = []

    def seed(self):
        def shop(i):
            out = bench.sh([BIN, "shops", "create", "--name", f"scale-{i}"], env=self.env)
            return re.search(r"shop id:\s+(\S+)", out).group(1), re.search(r"(blk_\S+)", out).group(1)

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            self.shops = list(pool.map(shop, range(SHOPS)))
        per_shop = self.history // SHOPS
        bench.log(f"{self.name}: seeding {SHOPS} shops x {WALLETS_PER_SHOP} wallets, "
                  f"{per_shop * SHOPS:,} earlier movements")
        t0 = time.time()

        def movements(s):
            bench.sh(["psql", "-X", "-q", "-v", f"shop={s[0]}", "-v", f"wallets={WALLETS_PER_SHOP}",
                      "-v", f"history={per_shop}", "-v", f"day={WALLETS_PER_SHOP}",
                      "-f", os.path.join(ROOT, "sql", "bench", "report_seed.sql"), self.url])

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            list(pool.map(movements, self.shops))
        self.seconds_movements = time.time() - t0
        self.seconds_keys = 0.0
        if self.history:
            t0 = time.time()
            seed_keys(self.url, KEYS, "live", "24 hours")
            self.seconds_keys = time.time() - t0
        bench.psql(self.url, "VACUUM ANALYZE")
        keys = dict(self.shops)
        rows = bench.psql(self.url, "SELECT shop_id, id FROM wallets ORDER BY id").split()
        self.wallets = [(keys[s], w) for s, w in (r.split("|") for r in rows)]
        self.files = {"wallets": os.path.join(OUT, f"scale-{self.name}-wallets.txt"),
                      "replay": os.path.join(OUT, f"scale-{self.name}-replay.txt")}
        with open(self.files["wallets"], "w") as f:
            f.writelines(f"{k} {w}\n" for k, w in self.wallets)
        with open(self.files["replay"], "w") as f:
            f.writelines(f"{k} {w}\n" for k, w in self.wallets[:REPLAY_WALLETS])

    def start(self, log):
        self.port = bench.free_port()
        self.proc = subprocess.Popen([BIN, "serve"], env={**self.env, "BIND_ADDR": f"127.0.0.1:{self.port}",
                                                           "DB_POOL_SIZE": bench.POOL},
                                     stdout=log, stderr=subprocess.STDOUT)
        self.api = bench.Api(self.port)
        for _ in range(300):
            try:
                bench.http.client.HTTPConnection("127.0.0.1", self.port, timeout=1).request("GET", "/healthz")
                break
            except OSError:
                time.sleep(0.1)

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.proc = None

    def rolled(self):
        return bench.psql(self.url, "SELECT count(*) = (SELECT count(*) FROM shops) AND "
                                    "coalesce(bool_and(last_day >= ((now() - interval '5 minutes') "
                                    "AT TIME ZONE 'UTC')::date - 1), false) "
                                    "FROM journal_rollup_shops").strip() == "t"

    def prime_replays(self):
        def prime(i):
            key, w = self.wallets[i - 1]
            self.api.call("POST", f"/v1/wallets/{w}/debit", key, f"replay-{i}",
                          {"amount": "0.01", "category": "usage"})

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(prime, range(1, REPLAY_WALLETS + 1)))

    def wrk(self, mode, run_id):
        return bench.wrk(self.port, 16, mode, self.files["replay" if mode == "replay" else "wallets"],
                         run_id, self.proc.pid)

    def timed(self, calls):
        times = []
        for method, path, key in calls:
            t0 = time.perf_counter()
            body = self.api.call(method, path, key)
            times.append(time.perf_counter() - t0)
            if "ok" in body and not body["ok"]:
                raise RuntimeError(f"{self.name}: report of {path}: {body['failed_checks']}")
        return {"runs": len(times), "median_ms": 1000 * statistics.median(times),
                "p90_ms": 1000 * sorted(times)[int(len(times) * 0.9)]}

    def history_pages(self):
        step = len(self.wallets) // HISTORY_PAGES
        return [("GET", f"/v1/wallets/{w}/transactions?limit=50", k) for k, w in self.wallets[::step]]

    def reports(self):
        day = bench.psql(self.url, "SELECT (now() AT TIME ZONE 'UTC')::date - 1").strip()
        return [("GET", f"/v1/reports/reconciliation?from={day}&to={day}", k)
                for _, k in self.shops[:REPORT_SHOPS]]

    def size(self):
        ledger = int(bench.psql(self.url, "SELECT sum(pg_total_relation_size(t)) FROM unnest(ARRAY["
                                          "'wallet_transactions', 'journal_transactions', 'journal_entries']"
                                          "::regclass[]) t"))
        return {"database_bytes": int(bench.psql(self.url, "SELECT pg_database_size(current_database())")),
                "ledger_tables_bytes": ledger,
                "movements": int(bench.psql(self.url, "SELECT count(*) FROM wallet_transactions")),
                "idempotency_records": int(bench.psql(self.url, "SELECT count(*) FROM idempotency_keys"))}


def main():
    os.makedirs(OUT, exist_ok=True)
    started = subprocess.run([os.path.join(ROOT, "scripts", "db.sh"), "url"],
                             capture_output=True).returncode != 0 and not os.environ.get("DATABASE_URL")
    base = bench.sh([os.path.join(ROOT, "scripts", "db.sh"), "start"]).strip()
    sides = []
    log = open(os.path.join(OUT, "scale-service.log"), "w")
    try:
        bench.log("building the release binary")
        subprocess.run(["cargo", "build", "--release", "-q"], cwd=ROOT, check=True,
                       env={**os.environ, "SQLX_OFFLINE": "true"})
        empty, scaled = Side(base, "empty", 0), Side(base, "scaled", MOVEMENTS)
        sides = [empty, scaled]
        for side in sides:
            side.seed()
            side.start(log)
        bench.log("waiting for both roll-up jobs to roll every closed day")
        t0, deadline = time.time(), time.time() + 1800
        while not all(side.rolled() for side in sides):
            if time.time() > deadline:
                raise RuntimeError("the roll-up jobs did not catch up within 30 minutes")
            time.sleep(2)
        rollup_seconds = time.time() - t0
        # Sizes as seeded and rolled up, before the load adds its own rows.
        sizes = {side.name: side.size() for side in sides}
        for side in sides:
            side.prime_replays()

        results = {"seconds_per_run": bench.DURATION, "rounds": ROUNDS,
                   "seed_seconds": {"movements": scaled.seconds_movements, "idempotency_records": scaled.seconds_keys},
                   "rollup_seconds": rollup_seconds}
        runs = {side.name: {"new": [], "replay": []} for side in sides}
        for r in range(ROUNDS):
            for mode in ("new", "replay"):
                for side in (sides if r % 2 == 0 else sides[::-1]):
                    bench.psql(side.url, "CHECKPOINT")
                    bench.log(f"round {r + 1}: {mode} debits, {side.name}")
                    out = side.wrk(mode, f"scale-{side.name}-{r}-{uuid.uuid4().hex[:6]}")
                    if out["non_2xx"]:
                        raise RuntimeError(f"{side.name} {mode}: {out['non_2xx']} answers not 2xx")
                    runs[side.name][mode].append(out)
        for side in sides:
            results[side.name] = {
                mode: {"rps": statistics.mean(o["rps"] for o in outs),
                       "p99_ms": statistics.mean(o["p99_ms"] for o in outs),
                       "runs": [round(o["rps"]) for o in outs]}
                for mode, outs in runs[side.name].items()}
        for what, calls in (("history_page", Side.history_pages), ("report_one_day", Side.reports)):
            for side in sides:
                side.timed(calls(side)[:5])  # warm the caches
            for side in sides:
                bench.log(f"{what}: {side.name}")
                results[side.name][what] = side.timed(calls(side))

        for side in sides:
            results[side.name]["size"] = sizes[side.name]
        bench.log(f"cleanup: {KEYS:,} expired records deleted while new debits run")
        seed_keys(scaled.url, KEYS, "expired", "-1 hours")
        bench.psql(scaled.url, "VACUUM ANALYZE idempotency_keys")
        bench.psql(scaled.url, "CHECKPOINT")
        t0 = time.time()
        cleanup = subprocess.Popen([BIN, "cleanup"], env=scaled.env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        during = scaled.wrk("new", f"scale-cleanup-{uuid.uuid4().hex[:6]}")
        out, _ = cleanup.communicate(timeout=1800)
        cleanup_seconds = time.time() - t0
        if cleanup.returncode != 0:
            raise RuntimeError(f"cleanup failed: {out}")
        left = int(bench.psql(scaled.url, "SELECT count(*) FROM idempotency_keys WHERE expires_at < now() "
                                          "AND key LIKE 'expired-%'"))
        results["cleanup"] = {"expired_records": KEYS, "left": left, "seconds": cleanup_seconds,
                              "finished_within_debits": cleanup_seconds <= bench.DURATION + 1,
                              "debits_during": {"rps": during["rps"], "p99_ms": during["p99_ms"],
                                                "non_2xx": during["non_2xx"]}}
    finally:
        for side in sides:
            side.stop()
        for side in sides:
            bench.psql(base, f"DROP DATABASE IF EXISTS billing_bench_scale_{side.name} WITH (FORCE)")
        if started:
            subprocess.run([os.path.join(ROOT, "scripts", "db.sh"), "stop"], check=False)

    e, s = results["empty"], results["scaled"]
    grown = s["size"]["movements"] - e["size"]["movements"]
    ratios = {
        "new_scaled_vs_empty": s["new"]["rps"] / e["new"]["rps"],
        "replay_scaled_vs_empty": s["replay"]["rps"] / e["replay"]["rps"],
        "history_page_scaled_vs_empty": s["history_page"]["median_ms"] / e["history_page"]["median_ms"],
        "report_scaled_vs_empty": s["report_one_day"]["median_ms"] / e["report_one_day"]["median_ms"],
        "p99_during_cleanup_vs_without": results["cleanup"]["debits_during"]["p99_ms"] / s["new"]["p99_ms"],
    }
    results["ratios"] = ratios
    results["size_per_million_movements"] = {
        "database_mib": (s["size"]["database_bytes"] - e["size"]["database_bytes"]) / grown * 1e6 / 2**20,
        "ledger_tables_mib": (s["size"]["ledger_tables_bytes"] - e["size"]["ledger_tables_bytes"])
        / grown * 1e6 / 2**20,
    }
    targets = {
        "new_scaled_vs_empty >= 0.85": ratios["new_scaled_vs_empty"] >= 0.85,
        "replay_scaled_vs_empty >= 0.85": ratios["replay_scaled_vs_empty"] >= 0.85,
        "history_page_scaled_vs_empty <= 2": ratios["history_page_scaled_vs_empty"] <= 2,
        "report_scaled_vs_empty <= 2": ratios["report_scaled_vs_empty"] <= 2,
        "p99_during_cleanup_vs_without <= 2": ratios["p99_during_cleanup_vs_without"] <= 2,
        "cleanup deleted every expired record": results["cleanup"]["left"] == 0,
    }
    results["targets"] = targets
    with open(os.path.join(OUT, "scale.json"), "w") as f:
        json.dump(results, f, indent=2)

    print(f"\nseeded {grown:,} movements and {KEYS:,} idempotency records in "
          f"{results['seed_seconds']['movements']:.0f} s + "
          f"{results['seed_seconds']['idempotency_records']:.0f} s; roll-ups {results['rollup_seconds']:.0f} s")
    print(f"{'':<28}{'empty':>12}{'scaled':>12}{'ratio':>8}")
    for label, a, b, ratio in (
        ("new debits/s", e["new"]["rps"], s["new"]["rps"], "new_scaled_vs_empty"),
        ("replays/s", e["replay"]["rps"], s["replay"]["rps"], "replay_scaled_vs_empty"),
        ("history page ms (median)", e["history_page"]["median_ms"], s["history_page"]["median_ms"],
         "history_page_scaled_vs_empty"),
        ("one-day report ms (median)", e["report_one_day"]["median_ms"], s["report_one_day"]["median_ms"],
         "report_scaled_vs_empty"),
    ):
        print(f"{label:<28}{a:>12.1f}{b:>12.1f}{ratios[ratio]:>8.2f}")
    c = results["cleanup"]
    print(f"cleanup of {KEYS:,} expired records: {c['seconds']:.0f} s, {c['left']} left; debits meanwhile "
          f"{c['debits_during']['rps']:.0f}/s, p99 {c['debits_during']['p99_ms']:.1f} ms vs "
          f"{s['new']['p99_ms']:.1f} ms without ({ratios['p99_during_cleanup_vs_without']:.2f})")
    per = results["size_per_million_movements"]
    print(f"size per million movements: database {per['database_mib']:.0f} MiB "
          f"(ledger tables {per['ledger_tables_mib']:.0f} MiB)")
    for name, ok in targets.items():
        print(f"  {'ok  ' if ok else 'MISS'} {name}")
    print(f"\nresults: {os.path.relpath(os.path.join(OUT, 'scale.json'), ROOT)}")


if __name__ == "__main__":
    main()
