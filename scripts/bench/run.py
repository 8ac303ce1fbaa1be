#!/usr/bin/env python3
"""`make bench`: the idempotent debit path against the database's own limit.

Everything runs in one go on loopback, on the project's private PostgreSQL
(fsync and synchronous_commit on, as PostgreSQL ships): pgbench with the
service's exact debit statements (sql/bench/debit.sql) and with tpcb-like,
then the release service under wrk; last, the one-day reconciliation
report's time for a shop with 1,000,000 earlier movements (seeded by
sql/bench/report_seed.sql) beside a shop with none. Prints a table and writes
target/bench/results.json. Stops what it started.

BENCH_BASELINE=<git revision> also builds that revision (in a worktree under
target/bench, with its own target directory: a cold release build the first
time) and runs its service beside this one on a database of its own, so the
service CPU per 1,000 debits compares in one run (2b).
"""

import asyncio
import concurrent.futures
import datetime
import http.client
import json
import os
import platform
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "target", "bench")
BIN = os.path.join(ROOT, "target", "release", "billing-ledger")
DURATION = int(os.environ.get("BENCH_SECONDS", "20"))
POOL = os.environ.get("BENCH_POOL_SIZE", "16")
BASELINE = os.environ.get("BENCH_BASELINE")
WALLETS = 1000
REPORT_HISTORY = int(os.environ.get("BENCH_REPORT_HISTORY", "1000000"))
REPORT_RUNS = 15
SHOPS = 4
CLK_TCK = os.sysconf("SC_CLK_TCK")


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw).stdout


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def with_db(url, name):
    return url.rsplit("/", 1)[0] + "/" + name


def psql(url, sql):
    return sh(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", url, "-c", sql])


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Api:
    """A keep-alive HTTP client per thread."""

    def __init__(self, port):
        self.port = port
        self.local = threading.local()

    def call(self, method, path, key, idem=None, body=None):
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        if idem:
            headers["Idempotency-Key"] = idem
        # Compact JSON: the replay keys must carry the very bytes wrk sends.
        payload = json.dumps(body, separators=(",", ":")) if body is not None else None
        conn.request(method, path, body=payload, headers=headers)
        r = conn.getresponse()
        data = r.read()
        if r.status >= 300:
            raise RuntimeError(f"{method} {path}: {r.status} {data[:200]}")
        return json.loads(data)


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_kib(pid, field):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def pgbench(url, args):
    out = sh(["pgbench", "-n", "-c", "16", "-j", "2", "-T", str(DURATION), "-M", "prepared", *args, url])
    tps = float(re.search(r"tps = ([\d.]+) \(without initial connection time\)", out).group(1))
    lat = float(re.search(r"latency average = ([\d.]+) ms", out).group(1))
    failed = re.search(r"number of failed transactions: (\d+)", out)
    return {"tps": tps, "latency_avg_ms": lat, "failed": int(failed.group(1)) if failed else 0}


def wrk(port, conns, mode, wallets_file, run_id, pid, sample_rss=False, seconds=None):
    cpu0 = cpu_seconds(pid)
    peak = [status_kib(pid, "VmRSS")]
    stop = threading.Event()

    def sampler():
        while not stop.wait(0.1):
            peak[0] = max(peak[0], status_kib(pid, "VmRSS"))

    t = threading.Thread(target=sampler)
    t.start()
    out = sh(["wrk", "-t", "2", "-c", str(conns), "-d", f"{seconds or DURATION}s", "--timeout", "10s",
              "-s", os.path.join(ROOT, "scripts", "bench", "debit.lua"),
              f"http://127.0.0.1:{port}", "--", mode, wallets_file, run_id])
    stop.set()
    t.join()
    cpu = cpu_seconds(pid) - cpu0
    r = json.loads(out.split("BENCH_JSON ", 1)[1].splitlines()[0])
    secs = r["duration_us"] / 1e6
    return {
        "connections": conns,
        "requests": r["requests"],
        "seconds": secs,
        "rps": r["requests"] / secs,
        "p50_ms": r["p50_us"] / 1000,
        "p99_ms": r["p99_us"] / 1000,
        "non_2xx": r["non_2xx"] + r["socket_errors"],
        "pairs_per_s": r.get("pairs", 0) / secs,
        "cpu_seconds_per_1000": 1000 * cpu / max(r["requests"], 1),
        "peak_rss_mib": peak[0] / 1024 if sample_rss else None,
    }


def build_baseline(rev):
    """The release binary of `rev`, built in a worktree of its own."""
    src = os.path.join(OUT, "baseline-src")
    target = os.path.join(OUT, "baseline-target")
    if not os.path.isdir(src):
        sh(["git", "worktree", "add", "-f", "--detach", src, rev], cwd=ROOT)
    sh(["git", "checkout", "-q", "--detach", rev], cwd=src)
    log(f"building the baseline {rev} (release)")
    subprocess.run(["cargo", "build", "--release", "-q"], cwd=src, check=True,
                   env={**os.environ, "SQLX_OFFLINE": "true", "CARGO_TARGET_DIR": target})
    return os.path.join(target, "release", "billing-ledger")


class Receiver:
    """Run 6g's webhook endpoint: HTTP/1.1 with keep-alive, answering each
    delivery 200 with no body. It stands in for the shop's server, which
    runs elsewhere, so it is made as cheap as it can be on the same two
    cores: a bare asyncio protocol that frames requests by their
    Content-Length (asyncio streams cost about 0.06 ms of CPU a delivery,
    http.server about a core at 1,000 deliveries/s)."""

    OK = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"

    def __init__(self):
        self.received = 0
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        receiver = self

        class Conn(asyncio.Protocol):
            def connection_made(self, transport):
                self.transport, self.buf = transport, b""

            def data_received(self, data):
                self.buf += data
                while True:
                    head_end = self.buf.find(b"\r\n\r\n")
                    if head_end < 0:
                        return
                    at = self.buf.lower().find(b"content-length:", 0, head_end)
                    length = int(self.buf[at + 15:self.buf.index(b"\r\n", at)]) if at >= 0 else 0
                    end = head_end + 4 + length
                    if len(self.buf) < end:
                        return
                    self.buf = self.buf[end:]
                    receiver.received += 1
                    self.transport.write(Receiver.OK)

        def run():
            asyncio.set_event_loop(self.loop)
            server = self.loop.run_until_complete(self.loop.create_server(Conn, "127.0.0.1", 0))
            self.port = server.sockets[0].getsockname()[1]
            started.set()
            self.loop.run_forever()

        threading.Thread(target=run, daemon=True).start()
        started.wait()

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)


SUBSCRIBED_ROUNDS = 3


def combined(rounds):
    """One result for a load run in rounds: rates over their summed time,
    the median of their p50s, the worst of their p99s."""
    n = sum(r["requests"] for r in rounds)
    secs = sum(r["seconds"] for r in rounds)
    return {
        "connections": rounds[0]["connections"],
        "requests": n,
        "seconds": secs,
        "rps": n / secs,
        "p50_ms": sorted(r["p50_ms"] for r in rounds)[len(rounds) // 2],
        "p99_ms": max(r["p99_ms"] for r in rounds),
        "non_2xx": sum(r["non_2xx"] for r in rounds),
        "pairs_per_s": 0.0,
        "cpu_seconds_per_1000": sum(r["cpu_seconds_per_1000"] * r["requests"] for r in rounds) / max(n, 1),
        "peak_rss_mib": None,
        "rounds_rps": [round(r["rps"], 1) for r in rounds],
    }


def beside_new(service, mode, tag):
    """`mode` in SUBSCRIBED_ROUNDS rounds, each after a round of new
    debits of the same length, as 6g runs: a ratio to new debits then
    compares loads that met the same neighbours on the machine, where run 2,
    minutes earlier, may have met others. Returns (new debits, mode)."""
    seconds = max(DURATION // SUBSCRIBED_ROUNDS, 3)
    plain, other = [], []
    for i in range(SUBSCRIBED_ROUNDS):
        plain.append(service.wrk(16, "new", f"{tag}n{i}", seconds=seconds))
        other.append(service.wrk(16, mode, f"{tag}{i}", seconds=seconds))
    return combined(plain), combined(other)


def subscribed_run(service):
    """Run 2 beside itself with an endpoint per shop subscribed to
    `wallet.debited`: every subscribed debit also writes a delivery row,
    and the delivery worker posts them to a loopback receiver while the
    debits run. The two alternate in SUBSCRIBED_ROUNDS rounds of equal
    length (plain, subscribed, plain, ...), so a busy neighbour on the
    machine weighs on both sides alike instead of deciding the ratio.
    After each subscribed round the receiver gets the rest of its events
    (up to 60 s) and the endpoints are deleted, so the next plain round
    pays for none of them. Returns (plain, subscribed)."""
    receiver = Receiver()
    url = f"http://127.0.0.1:{receiver.port}/hook"
    seconds = max(DURATION // SUBSCRIBED_ROUNDS, 3)
    plain, subscribed = [], []
    try:
        for i in range(SUBSCRIBED_ROUNDS):
            plain.append(service.wrk(16, "new", f"e16r{i}", seconds=seconds))
            endpoints = [(key, service.api.call("POST", "/v1/webhook-endpoints", key, str(uuid.uuid4()),
                                                {"url": url, "event_types": ["wallet.debited"]})["id"])
                         for key in service.keys]
            try:
                before = receiver.received
                r = service.wrk(16, "new", f"d16r{i}", seconds=seconds)
                r["delivered_during_run"] = receiver.received - before
                # Every committed debit (wrk does not count those in
                # flight when it stops) has one event for its shop's
                # endpoint.
                committed = int(psql(service.env["DATABASE_URL"], "SELECT count(*) FROM wallet_transactions "
                                     f"WHERE idempotency_key LIKE 'd16r{i}-%'"))
                deadline = time.monotonic() + 60
                while receiver.received - before < committed and time.monotonic() < deadline:
                    time.sleep(0.1)
                r["delivered"] = receiver.received - before
                r["committed"] = committed
                subscribed.append(r)
            finally:
                for key, ep in endpoints:
                    service.api.call("DELETE", f"/v1/webhook-endpoints/{ep}", key, str(uuid.uuid4()))
    finally:
        receiver.stop()
    result = combined(subscribed)
    for k in ("delivered_during_run", "delivered", "committed"):
        result[k] = sum(r[k] for r in subscribed)
    return combined(plain), result


def statement_profile(service, bench_url, mode, tag, count_sql):
    """Statements and database time per committed request of a 5-second
    run of `mode` (wrk does not count the requests still in flight when it
    stops): top level (the authentication cache's refreshes, one lookup per
    key and AUTH_CACHE_TTL, and this script's own queries apart), nested in
    triggers, and PostgreSQL's foreign-key checks apart; `db_ms` is the
    top-level statements' execution time (nested time is inside it)."""
    psql(bench_url, "SELECT pg_stat_statements_reset()")
    service.wrk(16, mode, tag, seconds=5)
    requests = int(psql(bench_url, count_sql))
    counts = psql(bench_url, """
        SELECT coalesce(sum(calls) FILTER (WHERE toplevel AND query NOT LIKE '%FROM api_key%'
                                                 AND query NOT LIKE 'SELECT % FROM ONLY %'), 0) || ' ' ||
               coalesce(sum(calls) FILTER (WHERE toplevel AND query LIKE '%FROM api_key%'), 0) || ' ' ||
               coalesce(sum(calls) FILTER (WHERE NOT toplevel AND query NOT LIKE 'SELECT % FROM ONLY %'), 0) || ' ' ||
               coalesce(sum(calls) FILTER (WHERE query LIKE 'SELECT % FROM ONLY %'), 0) || ' ' ||
               coalesce(sum(total_exec_time) FILTER (WHERE toplevel AND query NOT LIKE '%FROM api_key%'), 0)
          FROM pg_stat_statements
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'billing_bench')
           AND query NOT LIKE '%pg_stat_statements%'""").split()
    n = max(requests, 1)
    top, auth, nested, fk, ms = (float(c) / n for c in counts)
    return {"requests": requests, "debits": requests, "top_level": top, "auth_refreshes": auth,
            "in_triggers": nested, "foreign_key_checks": fk, "counted": top + nested, "db_ms": ms}


def main():
    os.makedirs(OUT, exist_ok=True)
    started_db = subprocess.run([os.path.join(ROOT, "scripts", "db.sh"), "url"],
                                capture_output=True).returncode != 0 and not os.environ.get("DATABASE_URL")
    base_url = sh([os.path.join(ROOT, "scripts", "db.sh"), "start"]).strip()
    bench_url = with_db(base_url, "billing_bench")
    tpcb_url = with_db(base_url, "billing_bench_tpcb")
    services = []
    try:
        log("building the release binary")
        subprocess.run(["cargo", "build", "--release", "-q"], cwd=ROOT, check=True,
                       env={**os.environ, "SQLX_OFFLINE": "true"})
        baseline_bin = build_baseline(BASELINE) if BASELINE else None
        for db in ("billing_bench", "billing_bench_tpcb", "billing_bench_base", "billing_bench_minimal"):
            psql(base_url, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
            psql(base_url, f"CREATE DATABASE {db}")
        settings = psql(bench_url, "SELECT string_agg(name || '=' || setting, ', ') FROM pg_settings "
                                   "WHERE name IN ('fsync', 'synchronous_commit', 'shared_buffers', 'max_connections')")
        service_log = open(os.path.join(OUT, "service.log"), "w")

        def stop_server(proc):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()

        class Service:
            """A service binary on a database of its own, with funded wallets."""

            def __init__(self, binary, url, name):
                self.binary, self.name = binary, name
                # Rate limits off: the bench measures one shop at full
                # speed (MAX_IN_FLIGHT stays as in production).
                self.env = {**os.environ, "DATABASE_URL": url, "RATE_LIMIT_PER_SECOND": "0",
                            "RATE_LIMIT_SENSITIVE_PER_SECOND": "0", "RATE_LIMIT_IP_PER_SECOND": "0",
                            # Run 6g's receiver listens on loopback.
                            "ENDPOINT_ALLOWED_HOSTS": "127.0.0.1"}
                self.port = free_port()
                sh([binary, "migrate"], env=self.env)
                log(f"{name}: creating {SHOPS} shops and {WALLETS} funded wallets")
                self.keys = []
                for i in range(SHOPS):
                    out = sh([binary, "shops", "create", "--name", f"bench-{i}"], env=self.env)
                    self.keys.append(re.search(r"(blk_\S+)", out).group(1))
                self.start()
                self.api = Api(self.port)
                with concurrent.futures.ThreadPoolExecutor(8) as pool:
                    wallets = list(pool.map(self.make_wallet, range(WALLETS + 1)))
                self.hot, self.wallets = wallets[-1], wallets[:-1]
                self.files = {}
                for kind, rows in (("wallets", self.wallets), ("hot", [self.hot])):
                    self.files[kind] = os.path.join(OUT, f"{name}-{kind}.txt")
                    with open(self.files[kind], "w") as f:
                        f.writelines(f"{k} {w}\n" for k, w in rows)

            def start(self):
                self.proc = subprocess.Popen(
                    [self.binary, "serve"],
                    env={**self.env, "BIND_ADDR": f"127.0.0.1:{self.port}", "DB_POOL_SIZE": POOL},
                    stdout=service_log, stderr=subprocess.STDOUT)
                for _ in range(100):
                    try:
                        http.client.HTTPConnection("127.0.0.1", self.port, timeout=1).request("GET", "/healthz")
                        break
                    except OSError:
                        time.sleep(0.1)

            def stop(self):
                if self.proc is not None:
                    stop_server(self.proc)
                    self.proc = None

            def make_wallet(self, i):
                key = self.keys[i % SHOPS]
                w = self.api.call("POST", "/v1/wallets", key, str(uuid.uuid4()),
                                  {"customer_ref": f"c{i}", "currency": "USD"})
                self.api.call("POST", f"/v1/wallets/{w['id']}/credit", key, str(uuid.uuid4()),
                              {"amount": "1000000000.00", "category": "top_up"})
                return key, w["id"]

            def open_invoices(self, n):
                def make(i):
                    key, w = self.wallets[i]
                    inv = self.api.call("POST", "/v1/invoices", key, str(uuid.uuid4()),
                                        {"customer_ref": f"c{i}", "currency": "USD",
                                         "lines": [{"description": "bench", "quantity": "1",
                                                    "unit_amount": "100000000.00"}]})
                    self.api.call("POST", f"/v1/invoices/{inv['id']}/finalize", key, str(uuid.uuid4()), {})
                    return key, inv["id"], w

                with concurrent.futures.ThreadPoolExecutor(8) as pool:
                    rows = list(pool.map(make, range(n)))
                self.files["invoices"] = os.path.join(OUT, f"{self.name}-invoices.txt")
                with open(self.files["invoices"], "w") as f:
                    f.writelines(f"{k} {i} {w}\n" for k, i, w in rows)

            def grant_wallets(self, n):
                """n wallets holding 20 grants each: paid and granted, of
                mixed priority, half with a deadline a month or more away
                (none expires during the bench), each far larger than the
                run spends, so every debit takes from one grant while the
                wallet's lock reads all twenty."""
                def make(i):
                    key = self.keys[i % SHOPS]
                    w = self.api.call("POST", "/v1/wallets", key, str(uuid.uuid4()),
                                      {"customer_ref": f"g{i}", "currency": "USD"})
                    rnd = random.Random(i)
                    for g in range(20):
                        body = {"amount": "1000000.00", "category": rnd.choice(("top_up", "grant")),
                                "priority": rnd.randint(0, 100)}
                        if g % 2:
                            at = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=30 + rnd.randint(0, 300))
                            body["expires_at"] = at.isoformat()
                        self.api.call("POST", f"/v1/wallets/{w['id']}/credit", key, str(uuid.uuid4()), body)
                    return key, w["id"]

                with concurrent.futures.ThreadPoolExecutor(8) as pool:
                    rows = list(pool.map(make, range(n)))
                self.files["grants"] = os.path.join(OUT, f"{self.name}-grants.txt")
                with open(self.files["grants"], "w") as f:
                    f.writelines(f"{k} {w}\n" for k, w in rows)

            def debits_to_refund(self):
                def make(i):
                    key, w = self.wallets[i]
                    d = self.api.call("POST", f"/v1/wallets/{w}/debit", key, str(uuid.uuid4()),
                                      {"amount": "1000000.00", "category": "purchase"})
                    return key, w, d["id"]

                with concurrent.futures.ThreadPoolExecutor(8) as pool:
                    rows = list(pool.map(make, range(len(self.wallets))))
                self.files["refunds"] = os.path.join(OUT, f"{self.name}-refunds.txt")
                with open(self.files["refunds"], "w") as f:
                    f.writelines(f"{k} {w} {d}\n" for k, w, d in rows)

            def wrk(self, conns, mode, run_id, **kw):
                kind = ("hot" if mode == "hot" else "invoices" if mode.startswith("pay_")
                        else "refunds" if mode == "refund" else "wallets")
                if mode == "grants":
                    # Plain debits (`new`), on the wallets with 20 grants.
                    kind, mode = "grants", "new"
                return wrk(self.port, conns, mode, self.files[kind], run_id, self.proc.pid, **kw)

        service = Service(BIN, bench_url, "service")
        services.append(service)
        baseline = None
        if baseline_bin:
            baseline = Service(baseline_bin, with_db(base_url, "billing_bench_base"), "baseline")
            services.append(baseline)
        wallets, api = service.wallets, service.api
        log("service: opening 500 invoices, paid 0.01 at a time in runs 6c and 6d")
        service.open_invoices(500)
        log("service: a large debit per wallet, refunded 0.01 at a time in run 6e")
        service.debits_to_refund()
        log("service: 200 wallets of 20 mixed grants each, debited in run 6f")
        service.grant_wallets(200)

        log("priming the replay keys")

        def prime(i):
            key, w = wallets[i - 1]
            api.call("POST", f"/v1/wallets/{w}/debit", key, f"replay-{i}", {"amount": "0.01", "category": "usage"})

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(prime, range(1, WALLETS + 1)))

        psql(bench_url, "CREATE TABLE bench_wallets (n int PRIMARY KEY, prefix text NOT NULL, wallet_id uuid NOT NULL)")
        rows = ",".join(f"({n}, '{k.split('_')[1]}', '{w}')" for n, (k, w) in enumerate(wallets, 1))
        psql(bench_url, f"INSERT INTO bench_wallets VALUES {rows}; ANALYZE")

        results = {"machine": {"cpus": os.cpu_count(), "kernel": platform.release(), "postgres": settings,
                               "pool_size": int(POOL), "seconds_per_run": DURATION,
                               "postgres_version": psql(bench_url, "SHOW server_version").strip()}}
        sh(["pgbench", "-i", "-q", "-s", "16", tpcb_url])
        minimal_url = with_db(base_url, "billing_bench_minimal")
        sh(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", minimal_url,
            "-f", os.path.join(ROOT, "sql", "bench", "minimal_schema.sql")])

        def checkpoint():
            # Each run starts from a clean checkpoint, so none inherits the
            # previous run's dirty pages.
            psql(bench_url, "CHECKPOINT")

        checkpoint()
        log("1a pgbench: the service's debit statements, 16 clients")
        results["pgbench_debit_16"] = pgbench(bench_url, ["-f", os.path.join(ROOT, "sql", "bench", "debit.sql")])
        checkpoint()
        log("1c pgbench: the fixed yardstick (the rows of one debit, a statement each), 16 clients")
        results["pgbench_yardstick_16"] = pgbench(bench_url, ["-f", os.path.join(ROOT, "sql", "bench", "yardstick.sql")])
        checkpoint()
        log("1d pgbench: a minimal ledger's naive debit (one index per table, no foreign keys), 16 clients")
        results["pgbench_minimal_16"] = pgbench(minimal_url, ["-f", os.path.join(ROOT, "sql", "bench", "minimal.sql")])
        checkpoint()
        log("1b pgbench: tpcb-like, 16 clients")
        results["pgbench_tpcb_16"] = pgbench(tpcb_url, [])

        pid = service.proc.pid
        checkpoint()
        log("2 new idempotent debits over HTTP, 16 connections")
        results["http_new_16"] = service.wrk(16, "new", "n16")
        if baseline:
            checkpoint()
            log(f"2b the baseline {BASELINE}: new idempotent debits over HTTP, 16 connections")
            results["baseline_new_16"] = baseline.wrk(16, "new", "b16")
            results["baseline_new_16"]["revision"] = BASELINE
            baseline.stop()
        checkpoint()
        log("3 new idempotent debits over HTTP, 64 connections")
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")  # reset the peak-RSS watermark for this run
        results["http_new_64"] = service.wrk(64, "new", "n64", sample_rss=True)
        results["http_new_64"]["peak_rss_mib"] = max(results["http_new_64"]["peak_rss_mib"],
                                                     status_kib(pid, "VmHWM") / 1024)
        checkpoint()
        log(f"4 hot wallet, {SUBSCRIBED_ROUNDS} rounds in turn with new debits, 16 connections")
        results["http_hot_beside_16"], results["http_hot_16"] = beside_new(service, "hot", "h16")
        checkpoint()
        log(f"5 replays, {SUBSCRIBED_ROUNDS} rounds in turn with new debits, 16 connections")
        results["http_replay_beside_16"], results["http_replay_16"] = beside_new(service, "replay", "r16")
        checkpoint()
        log(f"6 transfers between random wallet pairs of a shop, {SUBSCRIBED_ROUNDS} rounds in turn with "
            "new debits, 16 connections")
        results["http_transfer_beside_16"], results["http_transfer_16"] = beside_new(service, "transfer", "t16")
        checkpoint()
        log("6b reserve + capture pairs on spread wallets, 16 connections")
        results["http_hold_16"] = service.wrk(16, "hold", "p16")
        checkpoint()
        log("6c invoice payments by bank transfer, 16 connections")
        results["http_pay_external_16"] = service.wrk(16, "pay_external", "e16")
        checkpoint()
        log("6d invoice payments from wallets, 16 connections")
        results["http_pay_wallet_16"] = service.wrk(16, "pay_wallet", "v16")
        checkpoint()
        log("6e refunds of debits (0.01 each, spread), 16 connections")
        results["http_refund_16"] = service.wrk(16, "refund", "u16")
        checkpoint()
        log("6f new debits on wallets holding 20 mixed grants each, 16 connections")
        results["http_grants_16"] = service.wrk(16, "grants", "g16")
        checkpoint()
        log(f"6g new debits, plain and with a webhook endpoint subscribed per shop, "
            f"{SUBSCRIBED_ROUNDS} rounds of each in turn, 16 connections")
        results["http_unsubscribed_16"], results["http_subscribed_16"] = subscribed_run(service)
        checkpoint()
        log("6h batches of 100 debits, 16 connections")
        results["http_batch100_16"] = service.wrk(16, "batch", "k16")
        results["http_batch100_16"]["debits_per_s"] = 100 * results["http_batch100_16"]["rps"]

        # Statements per debit, in a short run of its own on a restarted
        # service whose sessions track nested statements too (tracking them
        # costs enough to skew the timed runs above). Top level: what the
        # service sends, plus the deferred journal balance check, which
        # PostgreSQL runs at top level during COMMIT; nested: queries inside
        # triggers; PostgreSQL's own foreign-key checks are counted apart,
        # also the deferred ones, which it runs at top level during COMMIT
        # (a debit consuming a grant checks its consumption's two links).
        log("7 statements per new debit and per transfer (pg_stat_statements), 16 connections, 5 s each")
        service.stop()
        psql(bench_url, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        psql(base_url, "ALTER DATABASE billing_bench SET pg_stat_statements.track = 'all'")
        service.start()
        # Warm: the pool's sessions are open (their set-up statements are
        # not the debits') before counting starts.
        service.wrk(16, "new", "w16", seconds=1)
        results["statements_per_debit"] = statement_profile(
            service, bench_url, "new", "s16",
            "SELECT count(*) FROM wallet_transactions WHERE idempotency_key LIKE 's16-%'")
        # The same for transfers (only a transfer's debit leg carries its
        # key): the profile of their gap to new debits.
        results["statements_per_transfer"] = statement_profile(
            service, bench_url, "transfer", "x16",
            "SELECT count(*) FROM wallet_transactions WHERE idempotency_key LIKE 'x16-%'")
        psql(base_url, "ALTER DATABASE billing_bench RESET pg_stat_statements.track")

        # One shop floods (64 connections of reads) while another shop's
        # debits (4 connections) and /healthz are measured, with per-shop
        # limits on as in production (the general quota at 3000/s: above
        # what the measured shop reaches alone here, about 1,100-2,300/s,
        # and below the flood): its rate and p99 beside its unflooded run.
        log("8 one shop floods while another's debits and /healthz are measured")
        service.stop()
        service.env = {**service.env, "RATE_LIMIT_PER_SECOND": "3000", "RATE_LIMIT_BURST": "3000"}
        service.start()
        pid = service.proc.pid
        victim_key, flooder_key = service.keys[0], service.keys[1]
        for who, key in (("victim", victim_key), ("flooder", flooder_key)):
            service.files[who] = os.path.join(OUT, f"service-{who}.txt")
            with open(service.files[who], "w") as f:
                f.writelines(f"{k} {w}\n" for k, w in service.wallets if k == key)
        checkpoint()
        results["victim_alone_4"] = wrk(service.port, 4, "new", service.files["victim"], "va4", pid)
        checkpoint()
        flood, probes, stop_probe = {}, [], threading.Event()

        def flooder():
            flood.update(wrk(service.port, 64, "read", service.files["flooder"], "f64", pid))

        def prober():
            conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=10)
            while not stop_probe.is_set():
                t0 = time.perf_counter()
                conn.request("GET", "/healthz")
                conn.getresponse().read()
                probes.append(time.perf_counter() - t0)
                time.sleep(0.01)

        threads = [threading.Thread(target=flooder), threading.Thread(target=prober)]
        for t in threads:
            t.start()
        time.sleep(1)
        results["victim_flooded_4"] = wrk(service.port, 4, "new", service.files["victim"], "vf4", pid,
                                          seconds=max(DURATION - 2, 1))
        threads[0].join()
        stop_probe.set()
        threads[1].join()
        probes.sort()
        results["flood_64"] = {**flood, "limited_share": flood["non_2xx"] / max(flood["requests"], 1)}
        results["healthz_during_flood"] = {"probes": len(probes),
                                           "p50_ms": 1000 * probes[len(probes) // 2],
                                           "p99_ms": 1000 * probes[min(len(probes) - 1, int(len(probes) * 0.99))]}

        # The one-day reconciliation of a shop with 1,000,000 earlier
        # movements beside a shop with none (the same 100 wallets and the
        # same 1,000 movements that day), on a database of its own, both
        # seeded by SQL and rolled up by the service's own job; requests
        # alternate between the two shops so the machine's noise hits both.
        log(f"9 one-day reconciliation: {REPORT_HISTORY:,} earlier movements beside none")
        service.stop()
        report_url = with_db(base_url, "billing_bench_report")
        psql(base_url, "DROP DATABASE IF EXISTS billing_bench_report WITH (FORCE)")
        psql(base_url, "CREATE DATABASE billing_bench_report")
        report_env = {**service.env, "DATABASE_URL": report_url}
        sh([BIN, "migrate"], env=report_env)
        shops = {}
        for name, history in (("empty", 0), ("history", REPORT_HISTORY)):
            out = sh([BIN, "shops", "create", "--name", f"report-{name}"], env=report_env)
            shop = re.search(r"shop id:\s+(\S+)", out).group(1)
            log(f"   seeding shop {name}: {history:,} earlier movements and 1,000 yesterday")
            sh(["psql", "-X", "-q", "-v", f"shop={shop}", "-v", "wallets=100", "-v", f"history={history}",
                "-v", "day=1000", "-f", os.path.join(ROOT, "sql", "bench", "report_seed.sql"), report_url])
            shops[name] = (shop, re.search(r"(blk_\S+)", out).group(1), history)
        report_service = subprocess.Popen(
            [BIN, "serve"], env={**report_env, "BIND_ADDR": f"127.0.0.1:{(report_port := free_port())}"},
            stdout=service_log, stderr=subprocess.STDOUT)
        try:
            # The roll-up job runs at start; wait until it has rolled every
            # closed day (the same rule as the job's).
            deadline = time.time() + 900
            while psql(report_url, "SELECT coalesce(bool_and(last_day >= "
                                   "((now() - interval '5 minutes') AT TIME ZONE 'UTC')::date - 1), false) "
                                   "FROM journal_rollup_shops").strip() != "t":
                if time.time() > deadline:
                    raise RuntimeError("the roll-up job did not catch up within 15 minutes")
                time.sleep(1)
            day = psql(report_url, "SELECT (now() AT TIME ZONE 'UTC')::date - 1").strip()
            path = f"/v1/reports/reconciliation?from={day}&to={day}"
            report_api = Api(report_port)
            for name in shops:
                report_api.call("GET", path, shops[name][1])  # warm the caches
            times = {name: [] for name in shops}
            for _ in range(REPORT_RUNS):
                for name, (_, key, _) in shops.items():
                    t0 = time.perf_counter()
                    body = report_api.call("GET", path, key)
                    times[name].append(time.perf_counter() - t0)
                    if not body["ok"] or len(body["wallets"]) != 100:
                        raise RuntimeError(f"report of {name}: {body['failed_checks']}")
        finally:
            stop_server(report_service)
        for name, (shop, _, history) in shops.items():
            ts = sorted(times[name])
            results[f"report_one_day_{name}"] = {
                "earlier_movements": int(psql(report_url, f"SELECT count(*) FROM wallet_transactions "
                                                          f"WHERE shop_id = '{shop}' AND created_at < '{day}'")),
                "runs": len(ts), "median_ms": 1000 * ts[len(ts) // 2], "min_ms": 1000 * ts[0],
                "max_ms": 1000 * ts[-1]}

        new16 = results["http_new_16"]["rps"]
        ratios = {
            "new_vs_pgbench_debit": new16 / results["pgbench_debit_16"]["tps"],
            "new_vs_yardstick": new16 / results["pgbench_yardstick_16"]["tps"],
            "new_vs_minimal": new16 / results["pgbench_minimal_16"]["tps"],
            # 4, 5 and 6 against the new-debit rounds run in turn with them.
            "replay_vs_new": results["http_replay_16"]["rps"] / results["http_replay_beside_16"]["rps"],
            "hot_vs_new": results["http_hot_16"]["rps"] / results["http_hot_beside_16"]["rps"],
            "transfer_vs_new": results["http_transfer_16"]["rps"] / results["http_transfer_beside_16"]["rps"],
            # A pair is two requests and two transactions: 0.5 would be
            # parity with single debits.
            "hold_pairs_vs_new": results["http_hold_16"]["pairs_per_s"] / new16,
            "pay_external_vs_new": results["http_pay_external_16"]["rps"] / new16,
            "pay_wallet_vs_new": results["http_pay_wallet_16"]["rps"] / new16,
            "refund_vs_new": results["http_refund_16"]["rps"] / new16,
            "grants20_vs_new": results["http_grants_16"]["rps"] / new16,
            # Against its own plain rounds, run alternately with it.
            "subscribed_vs_new": results["http_subscribed_16"]["rps"] / results["http_unsubscribed_16"]["rps"],
            "batch100_debits_vs_new": results["http_batch100_16"]["debits_per_s"] / new16,
            "victim_flooded_vs_alone": results["victim_flooded_4"]["rps"] / results["victim_alone_4"]["rps"],
            "report_history_vs_empty": (results["report_one_day_history"]["median_ms"]
                                        / results["report_one_day_empty"]["median_ms"]),
        }
        if baseline:
            ratios["cpu_per_debit_vs_baseline"] = (results["http_new_16"]["cpu_seconds_per_1000"]
                                                   / results["baseline_new_16"]["cpu_seconds_per_1000"])
        targets = {
            "new_vs_yardstick >= 0.8": ratios["new_vs_yardstick"] >= 0.8,
            "new_vs_minimal >= 0.75": ratios["new_vs_minimal"] >= 0.75,
            "replay_vs_new >= 3": ratios["replay_vs_new"] >= 3,
            "hot_vs_new >= 0.4": ratios["hot_vs_new"] >= 0.4,
            "statements_per_debit <= 5": round(results["statements_per_debit"]["counted"], 2) <= 5,
            "peak_rss_64 <= 100 MiB": results["http_new_64"]["peak_rss_mib"] <= 100,
            "report_history_vs_empty <= 2": ratios["report_history_vs_empty"] <= 2,
            "grants20_vs_new >= 0.7": ratios["grants20_vs_new"] >= 0.7,
            "subscribed_vs_new >= 0.9": ratios["subscribed_vs_new"] >= 0.9,
            "batch100_debits_vs_new >= 5": ratios["batch100_debits_vs_new"] >= 5,
            "zero non-2xx": all(results[k]["non_2xx"] == 0 for k in results
                                if k.startswith("http_") or k.startswith("victim_"))
            and all(results[k]["failed"] == 0 for k in ("pgbench_debit_16", "pgbench_yardstick_16", "pgbench_minimal_16")),
        }
        if baseline:
            targets["cpu_per_debit_vs_baseline <= 0.75"] = ratios["cpu_per_debit_vs_baseline"] <= 0.75
        results["ratios"] = ratios
        results["targets_met"] = targets
        with open(os.path.join(OUT, "results.json"), "w") as f:
            json.dump(results, f, indent=2)

        print()
        print(f"{'run':<34}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}{'cpu s/1k':>10}")
        for k, label in (("pgbench_debit_16", "1a pgbench debit.sql (16 cl)"),
                         ("pgbench_tpcb_16", "1b pgbench tpcb-like (16 cl)"),
                         ("pgbench_yardstick_16", "1c pgbench yardstick (16 cl)"),
                         ("pgbench_minimal_16", "1d pgbench minimal ledger (16 cl)")):
            r = results[k]
            print(f"{label:<34}{r['tps']:>10.0f}{r['latency_avg_ms']:>9.2f}{'(avg)':>9}{r['failed']:>9}{'':>10}")
        rows = [("http_new_16", "2  HTTP new debits (16 conn)")]
        if baseline:
            rows.append(("baseline_new_16", f"2b baseline {BASELINE[:10]} (16 conn)"))
        for k, label in (*rows, ("http_new_64", "3  HTTP new debits (64 conn)"),
                         ("http_hot_beside_16", "4  HTTP new debits beside 4 (16)"),
                         ("http_hot_16", "4  HTTP hot wallet (16 conn)"),
                         ("http_replay_beside_16", "5  HTTP new debits beside 5 (16)"),
                         ("http_replay_16", "5  HTTP replays (16 conn)"),
                         ("http_transfer_beside_16", "6  HTTP new debits beside 6 (16)"),
                         ("http_transfer_16", "6  HTTP transfers (16 conn)"),
                         ("http_hold_16", "6b HTTP hold+capture reqs (16 conn)"),
                         ("http_pay_external_16", "6c HTTP invoice pay, external (16)"),
                         ("http_pay_wallet_16", "6d HTTP invoice pay, wallet (16)"),
                         ("http_refund_16", "6e HTTP refunds of debits (16)"),
                         ("http_grants_16", "6f HTTP debits, 20 grants (16)"),
                         ("http_unsubscribed_16", "6g HTTP debits, plain rounds (16)"),
                         ("http_subscribed_16", "6g HTTP debits, subscribed (16)"),
                         ("http_batch100_16", "6h HTTP batches of 100 debits (16)")):
            r = results[k]
            print(f"{label:<34}{r['rps']:>10.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['non_2xx']:>9}"
                  f"{r['cpu_seconds_per_1000']:>10.3f}")
        print(f"reserve + capture pairs per second (run 6b): {results['http_hold_16']['pairs_per_s']:.0f}")
        print(f"debits per second through batches of 100 (run 6h): {results['http_batch100_16']['debits_per_s']:.0f}")
        for k, label in (("victim_alone_4", "8a shop A debits alone (4 conn)"),
                         ("victim_flooded_4", "8b shop A debits, B flooding (4)"),
                         ("flood_64", "8b shop B flood of reads (64 conn)")):
            r = results[k]
            print(f"{label:<34}{r['rps']:>10.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['non_2xx']:>9}"
                  f"{r['cpu_seconds_per_1000']:>10.3f}")
        hz = results["healthz_during_flood"]
        print(f"/healthz during the flood: p50 {hz['p50_ms']:.2f} ms, p99 {hz['p99_ms']:.2f} ms ({hz['probes']} probes); "
              f"shop B's requests limited: {100 * results['flood_64']['limited_share']:.0f} %")
        for name, label in (("empty", "no earlier movements"), ("history", "a long history")):
            r = results[f"report_one_day_{name}"]
            print(f"9  one-day reconciliation, {label} ({r['earlier_movements']:,} earlier movements): "
                  f"median {r['median_ms']:.1f} ms (min {r['min_ms']:.1f}, max {r['max_ms']:.1f}, {r['runs']} runs)")
        print(f"\npeak RSS during the 64-connection run: {results['http_new_64']['peak_rss_mib']:.1f} MiB")
        st = results["statements_per_debit"]
        print(f"statements per new debit (pg_stat_statements, run 7, {st['debits']} debits): {st['counted']:.2f} "
              f"= {st['top_level']:.2f} top level + {st['in_triggers']:.2f} nested "
              f"(plus {st['auth_refreshes']:.3f} auth cache refreshes and "
              f"{st['foreign_key_checks']:.2f} foreign-key checks), {st['db_ms']:.3f} ms of database time")
        tr = results["statements_per_transfer"]
        print(f"statements per transfer (run 7, {tr['requests']} transfers): {tr['counted']:.2f} "
              f"= {tr['top_level']:.2f} top level + {tr['in_triggers']:.2f} nested "
              f"(plus {tr['foreign_key_checks']:.2f} foreign-key checks), {tr['db_ms']:.3f} ms of database time "
              f"({tr['db_ms'] / max(st['db_ms'], 1e-9):.2f} x a debit's)")
        for k, v in ratios.items():
            print(f"ratio {k:<24} {v:.2f}")
        for k, ok in targets.items():
            print(f"target {k:<26} {'met' if ok else 'NOT met'}")
        print(f"\nresults: {os.path.relpath(os.path.join(OUT, 'results.json'), ROOT)}")
    finally:
        for svc in services:
            svc.stop()
        if started_db:
            subprocess.run([os.path.join(ROOT, "scripts", "db.sh"), "stop"], check=False)


if __name__ == "__main__":
    main()
