#!/usr/bin/env python3
"""`make bench-schema`: what each piece of the debit's write path costs.

On a database of its own (the project's migrations, 1,000 funded wallets of
4 shops, written by SQL), pgbench runs the fixed yardstick
(sql/bench/yardstick.sql: the rows of one idempotent debit, a statement
each) with every index, foreign key and trigger that a debit's writes pay
for removed in turn, and restored before the next, then without each row that
another row might carry instead (the audit row, the stored answer: the
yardstick without the statement that writes it). After a warm-up run, a
baseline with nothing removed runs before the first piece and after each
one; a piece's cost is the yardstick's rate without it over the mean of
the two baselines around it, so the machine's drift during the run cancels
out. Prints the table
(with what each piece serves) and writes target/bench/schema.json.

BENCH_SECONDS (default 10) sets each run's length. Needs pgbench and a
PostgreSQL (scripts/db.sh starts the private one when none is running).
"""

import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
import run as bench  # noqa: E402  (the bench's helpers: sh, psql, pgbench)

ROOT = bench.ROOT
DB = "billing_bench_schema"

# The tables one debit writes, as the yardstick does.
TABLES = ("idempotency_keys", "wallets", "journal_transactions", "journal_entries",
          "wallet_transactions", "audit_log")

# What each piece is for: the query or the guarantee that would lose it.
SERVES = {
    "idempotency_keys_expires_at": "idempotency cleanup: expired keys in batches",
    "journal_entries_system": "trial balance and roll-ups of system accounts",
    "journal_entries_wallet": "a wallet's journal balance (report drift check)",
    "journal_transactions_shop_time": "reconciliation: a shop's journal in a period; roll-ups",
    "journal_transactions_time": "roll-ups across shops by day",
    "wallet_transactions_idempotency_key": "one movement per request key (a guarantee)",
    "wallet_transactions_refund_of": "a movement's refunds (refunded_amount); not written by a debit",
    "wallet_transactions_shop_id_wallet_id_wallet_version_key":
        "one movement per wallet version (a guarantee); history pages",
    "wallet_transactions_shop_time": "reconciliation: a shop's movements in a period",
    "wallet_transactions_wallet_time": "report opening balances (last movement before a day)",
    "audit_log_shop_entity": "an entity's audit trail",
    "wallets_customer_ref": "GET /v1/wallets?customer_ref= (a debit's update is HOT: unused)",
    "wallets_shop_id_id_currency_key": "target of the journal's wallet+currency foreign key",
    "journal_entries_shop_id_wallet_id_currency_fkey": "an entry's wallet exists, in its currency",
    "wallet_transactions_shop_id_wallet_id_fkey": "a movement's wallet exists",
    "journal_balanced": "every journal transaction sums to zero per currency (deferred, at commit)",
}

# Rows a debit writes that another row might carry instead: the yardstick
# without the statement that writes each one (its first words), what it
# serves, and what a merge would give up.
ROWS = {
    "audit row": ("INSERT INTO audit_log",
                  "who (api key), which request and what, for every mutation in one table"),
    "stored answer": ("UPDATE idempotency_keys",
                      "a retry's replay of the first answer, byte for byte"),
}


def without_statement(script, start):
    """The pgbench script without the statement beginning with `start`
    (up to its semicolon at a line's end)."""
    at = script.index(start)
    end = script.index(";\n", at) + 2
    return script[:at] + script[end:]


def psql(url, sql):
    return bench.psql(url, sql)


def pieces(url):
    """Every secondary index (primary keys stay: they are the rows'
    identity), foreign key and non-internal trigger firing on INSERT or
    UPDATE, of the tables a debit writes."""
    tables = ",".join(f"'{t}'" for t in TABLES)
    found = []
    rows = psql(url, f"""
        SELECT i.relname, c.relname, coalesce(k.conname, ''), pg_get_indexdef(i.oid)
          FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class c ON c.oid = x.indrelid
          LEFT JOIN pg_constraint k ON k.conindid = i.oid AND k.contype IN ('u', 'p')
         WHERE c.relname IN ({tables}) AND NOT x.indisprimary ORDER BY 2, 1""")
    for line in rows.splitlines():
        name, table, constraint, definition = line.split("|", 3)
        found.append({"kind": "index", "name": name, "table": table, "constraint": constraint,
                      "definition": definition})
    rows = psql(url, f"""
        SELECT conname, conrelid::regclass, pg_get_constraintdef(oid) FROM pg_constraint
         WHERE contype = 'f' AND conrelid::regclass::text IN ({tables})
           AND conrelid::regclass::text <> 'wallets' ORDER BY 2, 1""")
    # (A debit only updates its wallet, keeping the keys: the wallet's own
    # foreign key is never checked on that path.)
    for line in rows.splitlines():
        name, table, definition = line.split("|", 2)
        found.append({"kind": "foreign key", "name": name, "table": table, "definition": definition})
    # Triggers that fire on INSERT (bit 2) or UPDATE (bit 4): the append-only
    # guards fire on UPDATE/DELETE of the append-only tables, which a debit
    # never does, so only the wallet's and the journal's remain.
    rows = psql(url, f"""
        SELECT t.tgname, t.tgrelid::regclass FROM pg_trigger t
         WHERE NOT t.tgisinternal AND t.tgrelid::regclass::text IN ({tables})
           AND (t.tgtype & 4 <> 0 OR (t.tgtype & 16 <> 0 AND t.tgrelid::regclass::text = 'wallets'))
         ORDER BY 2, 1""")
    for line in rows.splitlines():
        name, table = line.split("|", 1)
        found.append({"kind": "trigger", "name": name, "table": table})
    return found


def dependents(url, piece):
    """Foreign keys that need a unique index (dropped with it, restored after)."""
    if piece["kind"] != "index" or not piece["constraint"]:
        return []
    rows = psql(url, f"""
        SELECT conname, conrelid::regclass, pg_get_constraintdef(oid) FROM pg_constraint
         WHERE contype = 'f' AND conindid = (SELECT oid FROM pg_class WHERE relname = '{piece['name']}')""")
    return [dict(zip(("name", "table", "definition"), line.split("|", 2))) for line in rows.splitlines()]


def remove(url, piece):
    t, n = piece["table"], piece["name"]
    if piece["kind"] == "index":
        if piece["constraint"]:
            psql(url, f'ALTER TABLE {t} DROP CONSTRAINT "{piece["constraint"]}" CASCADE')
        else:
            psql(url, f'DROP INDEX "{n}"')
    elif piece["kind"] == "foreign key":
        psql(url, f'ALTER TABLE {t} DROP CONSTRAINT "{n}"')
    else:
        psql(url, f'ALTER TABLE {t} DISABLE TRIGGER "{n}"')


def restore(url, piece, deps):
    t, n = piece["table"], piece["name"]
    if piece["kind"] == "index":
        psql(url, piece["definition"])
        if piece["constraint"]:
            psql(url, f'ALTER TABLE {t} ADD CONSTRAINT "{piece["constraint"]}" UNIQUE USING INDEX "{n}"')
    elif piece["kind"] == "foreign key":
        psql(url, f'ALTER TABLE {t} ADD CONSTRAINT "{n}" {piece["definition"]}')
    else:
        psql(url, f'ALTER TABLE {t} ENABLE TRIGGER "{n}"')
    for d in deps:
        psql(url, f'ALTER TABLE {d["table"]} ADD CONSTRAINT "{d["name"]}" {d["definition"]}')


def main():
    started = subprocess.run([os.path.join(ROOT, "scripts", "db.sh"), "url"],
                             capture_output=True).returncode != 0 and not os.environ.get("DATABASE_URL")
    base = bench.sh([os.path.join(ROOT, "scripts", "db.sh"), "start"]).strip()
    url = bench.with_db(base, DB)
    yardstick = ["-f", os.path.join(ROOT, "sql", "bench", "yardstick.sql")]
    try:
        bench.log("building the release binary (for its migrations)")
        subprocess.run(["cargo", "build", "--release", "-q"], cwd=ROOT, check=True,
                       env={**os.environ, "SQLX_OFFLINE": "true"})
        psql(base, f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        psql(base, f"CREATE DATABASE {DB}")
        bench.sh([os.path.join(ROOT, "target", "release", "billing-ledger"), "migrate"],
                 env={**os.environ, "DATABASE_URL": url})
        psql(url, """
            INSERT INTO shops (id, name) SELECT gen_random_uuid(), 'bench-' || n FROM generate_series(1, 4) n;
            INSERT INTO wallets (shop_id, id, customer_ref, currency, balance)
            SELECT (SELECT id FROM shops ORDER BY id OFFSET n % 4 LIMIT 1), gen_random_uuid(), 'c' || n, 'USD',
                   1000000000
              FROM generate_series(1, 1000) n;
            CREATE TABLE bench_wallets (n int PRIMARY KEY, prefix text NOT NULL, wallet_id uuid NOT NULL);
            INSERT INTO bench_wallets SELECT row_number() OVER (ORDER BY id), 'x', id FROM wallets;
            ANALYZE""")
        found = pieces(url)
        bench.log(f"{len(found)} pieces and {len(ROWS)} rows on the debit's write path; "
                  f"{bench.DURATION} s of the yardstick each")
        script = open(yardstick[1]).read()
        os.makedirs(bench.OUT, exist_ok=True)

        def measure(label, args=yardstick):
            psql(url, "CHECKPOINT")
            r = bench.pgbench(url, args)
            if r["failed"]:
                raise RuntimeError(f"{label}: {r['failed']} failed transactions")
            bench.log(f"  {label}: {r['tps']:.0f} tps")
            return r["tps"]

        measure("warm-up")
        baselines = [measure("baseline")]
        results = []
        for piece in found:
            deps = dependents(url, piece)
            remove(url, piece)
            try:
                tps = measure(f"without {piece['kind']} {piece['name']}")
            finally:
                restore(url, piece, deps)
            baselines.append(measure("baseline"))
            around = (baselines[-2] + baselines[-1]) / 2
            results.append({**piece, "tps_without": tps, "baseline_tps": around,
                            "gain": tps / around - 1, "serves": SERVES.get(piece["name"], "")})
        for name, (start, serves) in ROWS.items():
            variant = os.path.join(bench.OUT, "yardstick-without-" + name.replace(" ", "-") + ".sql")
            with open(variant, "w") as f:
                f.write(without_statement(script, start))
            tps = measure(f"without the {name}", ["-f", variant])
            baselines.append(measure("baseline"))
            around = (baselines[-2] + baselines[-1]) / 2
            results.append({"kind": "row", "name": name, "table": start.split()[-1], "tps_without": tps,
                            "baseline_tps": around, "gain": tps / around - 1, "serves": serves})
        # Every piece at once: what the schema's weight is in all, beside
        # what the rows themselves cost (uuid keys, numeric, row widths).
        # Foreign keys and triggers go first and come back last, so no
        # unique index is dropped under a foreign key still on the list.
        order = sorted(found, key=lambda p: p["kind"] == "index")
        outside = []
        for piece in order:
            outside += [d for d in dependents(url, piece) if d["name"] not in {p["name"] for p in found}]
            remove(url, piece)
        try:
            bare = measure("without every piece")
        finally:
            for piece in reversed(order):
                restore(url, piece, [])
            for d in outside:
                psql(url, f'ALTER TABLE {d["table"]} ADD CONSTRAINT "{d["name"]}" {d["definition"]}')
        baselines.append(measure("baseline"))
        around = (baselines[-2] + baselines[-1]) / 2
        every = {"kind": "all", "name": f"{len(found)} pieces at once", "table": "", "tps_without": bare,
                 "baseline_tps": around, "gain": bare / around - 1, "serves": "(the schema's whole weight)"}
        base_tps = sum(baselines) / len(baselines)
        results.sort(key=lambda r: -r["gain"])
        results.append(every)
        out = {"baselines_tps": baselines, "baseline_tps": base_tps, "seconds_per_run": bench.DURATION,
               "pieces": [{k: r[k] for k in ("kind", "name", "table", "tps_without", "baseline_tps", "gain",
                                          "serves")}
                          for r in results]}
        with open(os.path.join(bench.OUT, "schema.json"), "w") as f:
            json.dump(out, f, indent=2)
        print(f"\nyardstick baseline: {base_tps:.0f} tps over {len(baselines)} runs "
              f"({min(baselines):.0f}-{max(baselines):.0f})")
        print(f"{'piece':<68}{'with':>6}{'without':>9}{'cost':>8}  serves")
        for r in results:
            print(f"{r['kind'] + ' ' + r['name']:<68}{r['baseline_tps']:>6.0f}{r['tps_without']:>9.0f}"
                  f"{100 * r['gain']:>7.1f}%  {r['serves']}")
        print(f"\nresults: {os.path.relpath(os.path.join(bench.OUT, 'schema.json'), ROOT)}")
    finally:
        psql(base, f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        if started:
            subprocess.run([os.path.join(ROOT, "scripts", "db.sh"), "stop"], check=False)


if __name__ == "__main__":
    main()
