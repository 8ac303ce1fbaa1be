#!/usr/bin/env python3
"""`make chaos`: the project's own bank test.

Starts a throwaway PostgreSQL and N service instances (3) on loopback, runs a
bounded mixed workload from 32 clients (credits, debits, transfers, holds
captured or released, invoices paid by bank transfer and from wallets), with
about a fifth of the operations re-sent under the same Idempotency-Key
(concurrently to another instance, after a 50 ms client timeout, or at the
end), while it kills an instance with kill -9 and restarts it, restarts
PostgreSQL and terminates backends. Clients retry 5xx, 429, 409
idempotency_key_in_use and unanswered requests with the same key until the
answer is definite. Then the checker proves from the answers, the API and SQL
that every acknowledged key was applied exactly once (see checker.py), prints
a summary and exits 1 on any anomaly.

--self-test runs a small workload, damages the books on purpose (a balance,
a journal entry, a movement applied twice, a stored answer, a wallet's
reserved, a grant, an event, a period billed twice, a movement's journal
transaction) and exits 0 only if the checker catches every damage.

Python 3.11 standard library only; psql for SQL. Logs and summary.json in
target/chaos/.
"""

import argparse
import json
import math
import os
import random
import secrets
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from decimal import Decimal

sys.dont_write_bytecode = True  # no __pycache__ in the checkout
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from checker import Checker  # noqa: E402
from cluster import ROOT, Instance, Postgres, log  # noqa: E402
from workload import Budget, Engine, Faults, Http, Op, Stats, Worker, fault_plan  # noqa: E402

OUT = os.path.join(ROOT, "target", "chaos")
# Per shop: (currency, overdraft limit, seed credit).
WALLETS = [("USD", "0", "200.00"), ("USD", "0", "200.00"), ("USD", "0", "200.00"),
           ("USD", "25.00", "200.00"), ("USD", "50.00", "100.00"), ("USD", "0", "50.00"),
           ("JPY", "0", "20000"), ("JPY", "1000", "20000"), ("JPY", "0", "5000")]


def env_int(name, default):
    v = os.environ.get(name)
    return int(v) if v not in (None, "") else default


def parse_args():
    p = argparse.ArgumentParser(description="The project's own bank test (docs/chaos.md).")
    p.add_argument("--ops", type=int, default=env_int("CHAOS_OPS", 0),
                   help="operations of the workload (default 1500; 300 for --self-test); CHAOS_OPS")
    p.add_argument("--instances", type=int, default=env_int("CHAOS_INSTANCES", 3))
    p.add_argument("--clients", type=int, default=env_int("CHAOS_CLIENTS", 32))
    p.add_argument("--shops", type=int, default=3)
    p.add_argument("--resend", type=float, default=0.2, help="share of operations re-sent under the same key")
    p.add_argument("--fault-rounds", type=int, default=None,
                   help="rounds of (kill -9, terminate backends, PostgreSQL restart); default max(2, ops/3000), "
                        "1 for --self-test; 0 for none")
    p.add_argument("--deadline", type=float, default=120.0,
                   help="seconds an operation may take to get a definite answer before it is an anomaly")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--self-test", action="store_true", default=os.environ.get("CHAOS_SELFTEST", "") not in ("", "0"))
    p.add_argument("--binary", default=os.path.join(ROOT, "target", "debug", "billing-ledger"))
    p.add_argument("--keep", action="store_true", default=os.environ.get("CHAOS_KEEP", "") not in ("", "0"),
                   help="keep the PostgreSQL cluster (stopped) for a post-mortem; CHAOS_KEEP=1")
    a = p.parse_args()
    if not a.ops:
        a.ops = 300 if a.self_test else 1500
    if a.fault_rounds is None:
        a.fault_rounds = 1 if a.self_test else max(2, math.ceil(a.ops / 3000))
    if a.seed is None:
        a.seed = random.randrange(10 ** 6)
    return a


class World:
    """The shops and wallets the workload uses."""

    def __init__(self):
        self.shops = []
        self.wallets = {}


def admin_post(ports, admin_key, path, key, body):
    c = Http(ports)
    end = time.monotonic() + 60
    while True:
        try:
            st, _, data = c.send(0, "POST", path, {"Authorization": f"Bearer {admin_key}", "Idempotency-Key": key,
                                                   "Content-Type": "application/json"},
                                 json.dumps(body).encode(), 15)
            if st < 300:
                c.close()
                return json.loads(data)
            if st < 500 and st != 429:
                raise RuntimeError(f"POST {path}: {st} {data[:300]!r}")
        except OSError:
            pass
        if time.monotonic() > end:
            raise RuntimeError(f"POST {path}: no answer")
        time.sleep(0.2)


def setup(args, tag, ports, admin_key, engine, ops):
    """Shops through the admin API, then wallets and their seed credits as
    operations like the others (no re-sends, no faults yet)."""
    world = World()
    for i in range(args.shops):
        shop = admin_post(ports, admin_key, "/v1/admin/shops", f"{tag}-shop-{i}", {"name": f"chaos {tag} {i}"})
        world.shops.append({"id": shop["id"], "token": shop["api_key"]["secret"],
                            "wallets": {"USD": [], "JPY": []}})
    rng = random.Random(args.seed)

    def run(op):
        c = Http(ports)
        engine.execute(c, op, rng)
        c.close()
        if not op.ok():
            raise RuntimeError(f"setup {op.kind} failed: {op.first}")
        return op

    creates = []
    for s, shop in enumerate(world.shops):
        for n, (cur, limit, _) in enumerate(WALLETS):
            body = {"customer_ref": f"cust-{s}-{n}", "currency": cur, "overdraft_limit": limit}
            creates.append((shop, n, Op(tag, shop, "wallet_create", "/v1/wallets", body, {}, {(201, None)}, "setup")))
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda x: run(x[2]), creates))
    credits = []
    for shop, n, op in creates:
        ops.append(op)
        cur, limit, seed = WALLETS[n]
        w = op.json()["id"]
        shop["wallets"][cur].append(w)
        world.wallets[w] = {"shop": shop["id"], "token": shop["token"], "currency": cur,
                            "overdraft": Decimal(limit), "customer_ref": op.json()["customer_ref"]}
        credits.append(Op(tag, shop, "credit", f"/v1/wallets/{w}/credit", {"amount": seed, "category": "top_up"},
                          {"wallet": w, "amount": Decimal(seed)}, {(201, None)}, "setup"))
    with ThreadPoolExecutor(8) as pool:
        ops.extend(pool.map(run, credits))
    # One approved monthly contract per shop started two months back, so
    # every run (the self-test's short one too) has periods for the billing
    # jobs to bill while instances die.
    starts_on = (datetime.now(timezone.utc).date() - timedelta(days=60)).isoformat()
    for s, shop in enumerate(world.shops):
        body = {"customer_ref": f"cust-{s}-0", "title": "Plan", "currency": "USD", "amount": "10.00",
                "billing_interval": "monthly", "starts_on": starts_on}
        created = run(Op(tag, shop, "contract_create", "/v1/contracts", body, {}, {(201, None)}, "setup"))
        ops.append(created)
        cid = created.json()["id"]
        for action, if_match in (("submit", None), ("approve", '"2"')):
            ops.append(run(Op(tag, shop, f"contract_{action}", f"/v1/contracts/{cid}/{action}", {},
                              {"contract": cid}, {(200, None)}, "setup", if_match)))
    return world


def scan_logs(instances):
    """Panics in the instances' logs (a panic is answered 500 and logged)."""
    found = []
    for inst in instances:
        with open(inst.log_path, errors="replace") as f:
            for line in f:
                if "panicked" in line or '"level":"ERROR"' in line and "panic" in line:
                    found.append(f"instance {inst.index}: {line.strip()[:300]}")
    return found


def start_everything(args, tag):
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        if f.startswith("instance-") and f.endswith(".log"):
            os.unlink(os.path.join(OUT, f))
    if not os.path.exists(args.binary):
        raise SystemExit(f"{args.binary} is missing: run cargo build (make chaos does)")
    # A copy, so a build during the run cannot swap the binary a killed
    # instance restarts with.
    binary = os.path.join(OUT, "billing-ledger")
    shutil.copy2(args.binary, binary)
    log("starting a throwaway PostgreSQL cluster")
    pg = Postgres()
    pg.init()
    log(f"PostgreSQL {pg.psql('SHOW server_version').strip()} on 127.0.0.1:{pg.port}, data in {pg.data}")
    admin_key = secrets.token_hex(24)
    env = {**os.environ, "DATABASE_URL": pg.url(), "ADMIN_API_KEY": admin_key, "LOG_FORMAT": "json",
           # Quotas off: the run is about exactly-once, not the limiter.
           "RATE_LIMIT_PER_SECOND": "0", "RATE_LIMIT_SENSITIVE_PER_SECOND": "0", "RATE_LIMIT_IP_PER_SECOND": "0",
           "RATE_LIMIT_INSTANCES": str(args.instances), "SHUTDOWN_GRACE": "5s",
           # Grants expire mid-run: every instance's job races the debits.
           "GRANT_EXPIRY_INTERVAL": "2s",
           # Every instance's billing job bills the workload's contracts
           # while instances die.
           "BILLING_INTERVAL": "1s"}
    env.pop("REPORTS_DATABASE_URL", None)
    env.pop("RUST_LOG", None)
    subprocess.run([binary, "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
    instances, taken = [], {pg.port}
    for i in range(args.instances):
        inst = Instance(i, binary, env, OUT, taken)
        taken.add(inst.port)
        instances.append(inst)
        inst.start()
    for inst in instances:
        inst.wait_ready()
    log(f"{args.instances} instances on ports {', '.join(str(i.port) for i in instances)}")
    return pg, instances, admin_key


def workload(args, tag, world, engine, instances, pg, ops, seed_base, n_ops, rounds, phase="workload"):
    plan = fault_plan(n_ops, len(instances), rounds) if rounds else []
    budget = Budget(n_ops, [at for at, _, _ in plan])
    done = threading.Event()
    faults = Faults(plan, budget, pg, instances, done)
    workers = [Worker(i, world, engine, budget, ops, tag, args.resend, seed_base + i, phase)
               for i in range(args.clients)]
    t0 = time.time()
    faults.start()
    for w in workers:
        w.start()
    stop_progress = threading.Event()

    def progress():
        while not stop_progress.wait(10):
            log(f"{budget.taken}/{n_ops} operations started, {time.time() - t0:.0f}s")

    threading.Thread(target=progress, daemon=True).start()
    for w in workers:
        w.join()
    done.set()
    faults.join()
    stop_progress.set()
    errors = [w.error for w in workers if w.error] + ([faults.error] if faults.error else [])
    if errors:
        raise RuntimeError(f"the chaos script itself failed: {errors[0]!r}")
    return faults, time.time() - t0


def all_up(instances):
    for inst in instances:
        if not inst.alive():
            log(f"instance {inst.index} is down after the workload: restarting it")
            inst.start()
        inst.wait_ready()


def summarize(args, stats, ops, faults, checker, anomalies, wall, work_time, panics, extra=None):
    work_ops = [o for o in ops if o.phase == "workload"]
    resent = {m: stats.c[f"resent_{m}"] for m in ("concurrent", "timeout", "later")}
    fivexx = {s: n for s, n in sorted(stats.statuses.items()) if s >= 500}
    acked = sum(1 for o in work_ops if o.answers)
    by_kind = {}
    for o in work_ops:
        by_kind[o.kind] = by_kind.get(o.kind, 0) + 1
    kinds = {"kill": "kill -9 + restart", "pg_restart": "PostgreSQL restart", "terminate": "backends terminated"}
    fault_text = ", ".join(f"{kinds[k]} {n}" for k, n in sorted(faults.injected.items())) or "none"
    s = {
        "operations": len(work_ops),
        "setup_operations": len(ops) - len(work_ops),
        "operations_by_kind": by_kind,
        "acknowledged": acked,
        "resent": sum(resent.values()),
        "resent_by_mode": resent,
        "faults_injected": sum(faults.injected.values()),
        "faults_by_kind": dict(faults.injected),
        "backend_sessions_terminated": faults.terminated_backends,
        "fault_events": [e[4] for e in faults.events],
        "requests": stats.c["requests"],
        "statuses": {str(k): v for k, v in sorted(stats.statuses.items())},
        "count_5xx": sum(fivexx.values()),
        "count_429": stats.statuses.get(429, 0),
        "key_in_use_409": stats.c["key_in_use_409"],
        "connection_errors": stats.c["connection_errors"],
        "client_timeouts": stats.c["client_timeouts"],
        "panics_logged": len(panics),
        "checked": checker.figures,
        "anomalies": len(anomalies),
        "anomaly_list": [f"{c}: {m}" for c, m in anomalies],
        "workload_seconds": round(work_time, 1),
        "wall_seconds": round(wall, 1),
        "seed": args.seed,
        "instances": args.instances,
        "clients": args.clients,
    }
    if extra:
        s.update(extra)
    print()
    print(f"chaos: {s['operations']} operations (+{s['setup_operations']} setup) from {args.clients} clients on "
          f"{args.instances} instances, seed {args.seed}")
    print(f"  acknowledged      {acked} / {s['operations']}")
    mix = {}
    for o in work_ops:
        k = mix.setdefault(o.kind, {})
        label = str(o.status) + (f" {o.code()}" if o.code() else "") if o.answers else "none"
        k[label] = k.get(label, 0) + 1
    print("  mix               " + "; ".join(
        f"{kind} {sum(v.values())} ({', '.join(f'{n} {st}' for st, n in sorted(v.items()))})"
        for kind, v in mix.items()))
    s["answers_by_kind"] = mix
    print(f"  re-sent           {s['resent']} (concurrently to another instance {resent['concurrent']}, after a "
          f"50 ms timeout {resent['timeout']}, later {resent['later']})")
    print(f"  faults injected   {s['faults_injected']}: {fault_text} ({faults.terminated_backends} sessions)")
    for e in faults.events:
        print(f"                      at op {e[1]}: {e[4]}")
    print(f"  requests          {s['requests']}: 5xx {s['count_5xx']} {fivexx or ''}, 429 {s['count_429']}, "
          f"409 in use {s['key_in_use_409']}, connection errors {s['connection_errors']}, "
          f"client timeouts {s['client_timeouts']}")
    f = checker.figures
    print(f"  checked           {f.get('movement_rows')} movement rows for {f.get('acknowledged_movements')} "
          f"acknowledged movements, {f.get('journal_transactions')} journal transactions, "
          f"{f.get('request_keys_checked', 0)} request keys on their rows, {f.get('stored_answers_checked')} stored "
          f"answers, reconciliation ok {f.get('reconciliation_ok')}")
    print(f"  grants            {f.get('grants')} grants, {f.get('grant_expiries')} expiries (by the job or the "
          "money path), every grant invariant checked")
    print(f"  panics logged     {len(panics)}")
    print(f"  anomalies         {len(anomalies)}")
    shown = {}
    for c, m in anomalies:
        shown[c] = shown.get(c, 0) + 1
        if shown[c] <= 10:
            print(f"    {c}: {m}")
    for c, n in shown.items():
        if n > 10:
            print(f"    {c}: ... {n - 10} more")
    print(f"  time              workload {work_time:.1f}s, wall {wall:.1f}s")
    with open(os.path.join(OUT, "summary.json"), "w") as fp:
        json.dump(s, fp, indent=2)
    return s


# --- the self-test's damage ----------------------------------------------

def damage(pg, world, ops):
    """Damages the books nine ways, mostly each on another wallet, as the database
    owner with triggers off (session_replication_role = replica, the way a
    faulty migration or a hand-made fix would). Returns, per damage, the
    checks that must catch it and a text the anomaly must name."""
    replica = "SET session_replication_role = replica; "
    used = set()
    shops = world.shops
    done = []

    def pick_wallet(cur, pred=lambda w: True):
        for s in shops:
            for w in s["wallets"][cur]:
                if w not in used and pred(w):
                    used.add(w)
                    return w
        raise RuntimeError("no wallet left to damage")

    # 1. A balance changed behind the ledger's back.
    w1 = pick_wallet("USD")
    pg.psql(replica + f"UPDATE wallets SET balance = balance + 1 WHERE id = '{w1}'")
    done.append(("balance +1.00 on a wallet", {"balance", "wallet_vs_journal"}, w1))

    # 2. One journal entry deleted (the revenue side of a debit).
    row = pg.rows("SELECT t.journal_transaction_id AS j, t.wallet_id AS w FROM wallet_transactions t "
                  "WHERE t.category IN ('usage', 'purchase', 'fee', 'adjustment') AND t.type = 'debit' "
                  f"AND t.wallet_id NOT IN ({','.join(repr(u) for u in used)}) LIMIT 1")[0]
    used.add(row["w"])
    n = pg.psql(replica + f"DELETE FROM journal_entries WHERE journal_transaction_id = '{row['j']}' "
                "AND account = 'revenue' RETURNING 1")
    assert n.strip(), "no journal entry deleted"
    done.append(("a journal entry deleted", {"journal_unbalanced", "conservation"}, row["j"]))

    # 3. A credit applied twice, consistently: a second history row, journal
    #    transaction and balance change, so only exactly-once can see it.
    credit = next(o for o in ops if o.kind == "credit" and o.phase == "workload" and o.ok()
                  and o.info["wallet"] not in used)
    w3, amount = credit.info["wallet"], credit.info["amount"]
    used.add(w3)
    shop = world.wallets[w3]["shop"]
    cur = world.wallets[w3]["currency"]
    s, w = f"'{shop}'::uuid", f"'{w3}'::uuid"
    pg.psql(replica + f"""
        WITH j AS (INSERT INTO journal_transactions (shop_id, id, kind)
                   VALUES ({s}, gen_random_uuid(), 'wallet.credit') RETURNING id),
             e AS (INSERT INTO journal_entries (shop_id, journal_transaction_id, line, account, wallet_id,
                                                currency, amount)
                   SELECT {s}, j.id, 1::smallint, 'external_payments', NULL::uuid, '{cur}', -{amount} FROM j
                   UNION ALL SELECT {s}, j.id, 2::smallint, 'wallet', {w}, '{cur}', {amount} FROM j),
             w AS (UPDATE wallets SET balance = balance + {amount}, version = version + 1
                   WHERE shop_id = {s} AND id = {w} RETURNING version, balance)
        INSERT INTO wallet_transactions (shop_id, id, wallet_id, wallet_version, type, category, amount,
                                         balance_after, journal_transaction_id)
        SELECT {s}, gen_random_uuid(), {w}, w.version, 'credit', 'top_up', {amount}, w.balance, j.id
          FROM w, j""")
    done.append(("a credit applied twice (consistent journal and history)",
                 {"unacknowledged_movement", "journal_count"}, w3))

    # 4. A stored answer altered: its replay is no longer the first answer.
    debit = next(o for o in ops if o.kind == "debit" and o.status == 201 and o.info["wallet"] not in used)
    used.add(debit.info["wallet"])
    n = pg.psql(f"""UPDATE idempotency_keys
                       SET response_body = convert_to(replace(convert_from(response_body, 'UTF8'),
                                                              '"amount":"', '"amount":"9'), 'UTF8')
                     WHERE shop_id = '{debit.shop['id']}' AND key = '{debit.key}' RETURNING 1""")
    assert n.strip(), "no stored answer altered"
    done.append(("a stored answer altered", {"stored_answer", "replay_differs"}, debit.key))

    # 5. A wallet's reserved raised without a hold.
    w5 = pick_wallet("JPY", lambda w: True)
    pg.psql(replica + f"UPDATE wallets SET reserved = reserved + 1, overdraft_limit = overdraft_limit + 1 "
                      f"WHERE id = '{w5}'")
    done.append(("reserved +1 without a hold", {"reserved_holds", "reserved_model"}, w5))

    # 6. Credit taken from a grant twice (its remaining lowered without a
    # movement): the grants no longer hold the balance.
    n = pg.psql("UPDATE credit_grants SET remaining = remaining - 0.01 WHERE id = "
                "(SELECT id FROM credit_grants WHERE remaining - held >= 0.01 ORDER BY id LIMIT 1) RETURNING 1")
    assert n.strip(), "no grant to damage"
    done.append(("a grant's credit taken without a movement", {"grants"}, "wallets_not_matching_grants"))

    # 7. A committed debit's event lost (the outbox row deleted).
    n = pg.psql("DELETE FROM events WHERE id = (SELECT id FROM events WHERE type = 'wallet.debited' "
                "ORDER BY id LIMIT 1) RETURNING 1")
    assert n.strip(), "no event to delete"
    done.append(("a committed debit's event deleted", {"events"}, "wallet.debited"))
    # 8. A period billed twice: a second invoice for one period of a
    #    contract (as a job without the period's key would make).
    row = pg.rows("SELECT invoice_id AS i, contract_id AS c FROM contract_periods ORDER BY invoice_id LIMIT 1")
    assert row, "no billed period to damage"
    pg.psql(replica + f"""
        INSERT INTO invoices
        SELECT (json_populate_record(i, json_build_object('id', gen_random_uuid(),
                                                          'number', i.number + 1000000))).*
          FROM invoices i WHERE i.id = '{row[0]['i']}'""")
    done.append(("a period billed twice", {"billing"}, row[0]["c"]))
    # 9. A movement's journal transaction lost (its header row deleted; no
    #    foreign key guards the link, its writer does).
    n = pg.psql(replica + "DELETE FROM journal_transactions WHERE id = (SELECT journal_transaction_id "
                "FROM wallet_transactions WHERE category IN ('usage', 'purchase', 'fee', 'adjustment') "
                "AND type = 'debit' ORDER BY id LIMIT 1) RETURNING 1")
    assert n.strip(), "no journal transaction to delete"
    done.append(("a movement's journal transaction deleted", {"links"}, "movements_without_transaction"))
    return done, [debit]


def settle_grants(pg, limit=90):
    """Waits until no grant is left to expire: the workload's grants expire up
    to a few seconds after the last request, and one expiring while the
    checker reads would change a balance between its SQL and its API reads."""
    end = time.monotonic() + limit
    while True:
        left = pg.psql("SELECT count(*) FROM credit_grants WHERE remaining > held AND expires_at IS NOT NULL").strip()
        if left == "0" or time.monotonic() > end:
            if left != "0":
                log(f"{left} grant(s) still not expired after {limit}s; the checker will say which")
            return
        time.sleep(1)


def settle_billing(pg, limit=90):
    """Waits until the billing jobs have billed every elapsed period (a
    contract approved at the end of the run is billed within a second or
    two of it)."""
    end = time.monotonic() + limit
    while True:
        left = pg.psql("SELECT count(*) FROM contracts WHERE status IN ('approved', 'past_due') "
                       "AND next_period_on <= (now() AT TIME ZONE 'UTC')::date").strip()
        if left == "0" or time.monotonic() > end:
            if left != "0":
                log(f"{left} contract(s) still due after {limit}s; the checker will say which")
            return
        time.sleep(1)


def main():
    args = parse_args()
    t_start = time.time()
    tag = f"chaos{int(t_start)}-{random.randrange(10 ** 4):04d}"
    first_day = datetime.now(timezone.utc).date().isoformat()
    what = "self-test" if args.self_test else "run"
    log(f"{what}: {args.ops} operations, {args.instances} instances, {args.clients} clients, "
        f"{args.fault_rounds} fault round(s), seed {args.seed}")
    pg = instances = None
    code = 1
    try:
        pg, instances, admin_key = start_everything(args, tag)
        ports = [i.port for i in instances]
        stats = Stats()
        engine = Engine(ports, stats, args.deadline)
        ops = []
        world = setup(args, tag, ports, admin_key, engine, ops)
        log(f"{len(world.shops)} shops, {len(world.wallets)} wallets funded; the workload starts")
        engine.later.clear()
        faults, work_time = workload(args, tag, world, engine, instances, pg, ops, args.seed, args.ops,
                                     args.fault_rounds)
        all_up(instances)
        log(f"workload done in {work_time:.1f}s; re-sending {len(engine.later)} operations later")
        engine.resend_later(engine.later)
        settle_grants(pg)
        settle_billing(pg)
        log("checking")
        checker = Checker(world, ops, pg, ports, first_day, args.deadline)
        anomalies = checker.run()
        panics = scan_logs(instances)
        anomalies += [("panic", p) for p in panics]
        if not args.self_test:
            summarize(args, stats, ops, faults, checker, anomalies, time.time() - t_start, work_time, panics)
            code = 1 if anomalies else 0
            print(f"chaos: {'FAILED' if anomalies else 'passed'}")
        else:
            # The self-test tests the checker: each damage must add an
            # anomaly naming what was damaged that the undamaged books did
            # not already show. (Anomalies of the undamaged books are
            # printed, and are the plain run's business.)
            baseline = set(anomalies)
            if anomalies:
                log(f"the undamaged books already show {len(anomalies)} anomalies (listed below); "
                    "each damage must add its own")
            log("damaging the books on purpose")
            damages, resend = damage(pg, world, ops)
            engine.resend_later(resend)
            checker2 = Checker(world, ops, pg, ports, first_day, args.deadline)
            found = checker2.run()
            new = [a for a in found if a not in baseline]
            caught = []
            for name, checks, needle in damages:
                hits = [f"{c}: {m}" for c, m in new if c in checks and needle in m]
                caught.append((name, hits))
            extra = {"self_test": [{"damage": n, "caught_by": h} for n, h in caught],
                     "undamaged_anomalies": [f"{c}: {m}" for c, m in anomalies]}
            summarize(args, stats, ops, faults, checker2, found, time.time() - t_start, work_time, panics, extra)
            if anomalies:
                print(f"\n  (of these, {len(anomalies)} were there before the damage)")
            print("\nchaos self-test: damage done on purpose, and what caught it:")
            for name, hits in caught:
                print(f"  {'CAUGHT' if hits else 'MISSED'}  {name}")
                for h in hits[:4]:
                    print(f"            {h[:160]}")
            missed = [n for n, h in caught if not h]
            code = 1 if missed else 0
            print("chaos self-test: " + (f"FAILED: not caught: {', '.join(missed)}" if missed
                                          else "passed (every damage caught)"))
        return code
    finally:
        for inst in instances or []:
            inst.stop()
        if pg is not None:
            pg.destroy(keep=args.keep)


if __name__ == "__main__":
    sys.exit(main())
