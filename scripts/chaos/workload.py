"""The chaos workload: clients that move money through the API while faults
are injected, re-send about a fifth of their operations under the same key,
and retry every operation until it has a definite answer.

Every operation is one Idempotency-Key. Its answers (status, body bytes,
`Idempotent-Replayed`) are all kept: the checker requires them to be
identical and models the books from the first one.
"""

import datetime
import http.client
import itertools
import json
import random
import threading
import time
from collections import Counter
from decimal import Decimal

from cluster import log

DECIMALS = {"USD": 2, "JPY": 0}
RESEND_MODES = ("concurrent", "timeout", "later")


def fmt(currency, amount):
    return str(amount.quantize(Decimal(1).scaleb(-DECIMALS[currency])))


def rand_amount(rng, currency, lo, hi):
    """A random amount in [lo, hi] major units (JPY counts in hundreds, so
    both currencies move similar numbers of steps)."""
    if currency == "JPY":
        return Decimal(rng.randint(int(lo * 100), int(hi * 100)))
    return Decimal(rng.randint(max(1, int(lo * 100)), int(hi * 100))) / 100


def problem_code(body):
    try:
        return json.loads(body).get("code")
    except (ValueError, AttributeError):
        return None


def definite(status, body):
    """Whether an answer settles the key. Not: 5xx (nothing stored, rolled
    back), 429 (refused before the key was claimed), 408 (the body did not
    arrive in time; nothing stored) and 409 idempotency_key_in_use (the
    first request still runs): all are retried with the same key."""
    if status >= 500 or status in (408, 429):
        return False
    if status == 409 and problem_code(body) == "idempotency_key_in_use":
        return False
    return True


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.c = Counter()
        self.statuses = Counter()

    def inc(self, name, n=1):
        with self.lock:
            self.c[name] += n

    def status(self, status):
        with self.lock:
            self.statuses[status] += 1


class Op:
    """One operation: one Idempotency-Key, one request, all its answers."""

    _seq = itertools.count(1)

    def __init__(self, tag, shop, kind, path, body, info, expect, phase="workload", if_match=None):
        self.n = next(Op._seq)
        self.if_match = if_match
        self.key = f"{tag}-{self.n:06d}-{kind}"
        self.shop = shop
        self.kind = kind
        self.path = path
        self.body = json.dumps(body, separators=(",", ":")).encode()
        self.info = info
        self.expect = expect  # {(status, problem code or None)}
        self.phase = phase
        self.resend = None
        self.answers = []  # (status, body bytes, Idempotent-Replayed, label, instance)
        self.lock = threading.Lock()
        self.unanswered = False

    def record(self, status, headers, body, label, inst):
        with self.lock:
            self.answers.append((status, body, headers.get("idempotent-replayed"), label, inst))

    @property
    def first(self):
        return self.answers[0] if self.answers else None

    @property
    def status(self):
        return self.answers[0][0] if self.answers else None

    def json(self):
        return json.loads(self.answers[0][1]) if self.answers else None

    def code(self):
        return problem_code(self.answers[0][1]) if self.answers and self.answers[0][0] >= 400 else None

    def ok(self):
        return self.status is not None and 200 <= self.status < 300


class Http:
    """Keep-alive connections of one client thread, one per instance."""

    def __init__(self, ports):
        self.ports = ports
        self.conns = {}

    def send(self, inst, method, path, headers, body, timeout):
        conn = self.conns.pop(inst, None)
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", self.ports[inst], timeout=timeout)
        else:
            conn.timeout = timeout
            if conn.sock is not None:
                conn.sock.settimeout(timeout)
        try:
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            data = r.read()
        except BaseException:
            conn.close()
            raise
        if r.will_close:
            conn.close()
        else:
            self.conns[inst] = conn
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data

    def close(self):
        for c in self.conns.values():
            c.close()
        self.conns = {}


class Engine:
    """Sends operations: retries until a definite answer, re-sends some."""

    def __init__(self, ports, stats, deadline, timeout=15.0, short_timeout=0.05):
        self.ports = ports
        self.stats = stats
        self.deadline = deadline
        self.timeout = timeout
        self.short_timeout = short_timeout
        self.later = []
        self.later_lock = threading.Lock()

    def headers(self, op):
        h = {"Authorization": f"Bearer {op.shop['token']}", "Content-Type": "application/json",
             "Idempotency-Key": op.key}
        if op.if_match:
            h["If-Match"] = op.if_match
        return h

    def send_until_definite(self, client, op, inst, label, once_timeout=None):
        """Sends op until it has a definite answer (True), or once with a
        short timeout (once_timeout), or until the deadline (False)."""
        end = time.monotonic() + self.deadline
        attempt = 0
        n = len(self.ports)
        while True:
            self.stats.inc("requests")
            try:
                status, headers, body = client.send(inst, "POST", op.path, self.headers(op), op.body,
                                                    once_timeout or self.timeout)
            except TimeoutError:
                self.stats.inc("client_timeouts")
            except (OSError, http.client.HTTPException):
                self.stats.inc("connection_errors")
            else:
                self.stats.status(status)
                if definite(status, body):
                    op.record(status, headers, body, label, inst)
                    return True
                if status == 409:
                    self.stats.inc("key_in_use_409")
            if once_timeout is not None:
                return False
            attempt += 1
            if time.monotonic() > end:
                op.unanswered = True
                return False
            self.stats.inc("retries")
            time.sleep(min(0.05 * 2 ** min(attempt, 5), 1.0) * random.uniform(0.5, 1.0))
            inst = (inst + 1) % n

    def execute(self, client, op, rng):
        n = len(self.ports)
        inst = rng.randrange(n)
        if op.resend == "concurrent":
            other = (inst + 1 + rng.randrange(n - 1)) % n if n > 1 else inst

            def duplicate():
                c = Http(self.ports)
                try:
                    self.send_until_definite(c, op, other, "concurrent")
                finally:
                    c.close()

            t = threading.Thread(target=duplicate)
            t.start()
            self.send_until_definite(client, op, inst, "original")
            t.join()
        elif op.resend == "timeout":
            self.send_until_definite(client, op, inst, "original", once_timeout=self.short_timeout)
            self.send_until_definite(client, op, (inst + 1) % n, "after-timeout")
        else:
            self.send_until_definite(client, op, inst, "original")
            if op.resend == "later":
                with self.later_lock:
                    self.later.append(op)
        if op.resend:
            self.stats.inc(f"resent_{op.resend}")

    def resend_later(self, ops, threads=8):
        """The `later` re-sends, after the workload and the faults."""
        queue = list(ops)
        lock = threading.Lock()

        def work():
            c = Http(self.ports)
            rng = random.Random()
            while True:
                with lock:
                    if not queue:
                        break
                    op = queue.pop()
                self.send_until_definite(c, op, rng.randrange(len(self.ports)), "later")
            c.close()

        ts = [threading.Thread(target=work) for _ in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()


class Stop(Exception):
    """The operation budget is spent."""


class Abort(Exception):
    """This scenario cannot go on (an operation got no usable answer)."""


class Budget:
    """OPS operations in all; `gates` are operation counts at which the
    workload waits until the fault planned there has started, so every
    fault happens with work still to do."""

    def __init__(self, total, gates=()):
        self.total = total
        self.taken = 0
        self.gates = sorted(gates)
        self.cond = threading.Condition()

    def take(self):
        with self.cond:
            while self.gates and self.taken >= self.gates[0]:
                self.cond.wait(0.5)
            if self.taken >= self.total:
                return False
            self.taken += 1
            self.cond.notify_all()
            return True

    def wait_for(self, count, done):
        with self.cond:
            while self.taken < count and not done.is_set():
                self.cond.wait(0.2)

    def open_gate(self):
        with self.cond:
            self.gates.pop(0)
            self.cond.notify_all()


class Worker(threading.Thread):
    """One of the clients: picks scenarios until the budget is spent."""

    SCENARIOS = (("credit", 25), ("debit", 25), ("transfer", 22), ("hold", 12), ("invoice", 7), ("batch", 6),
                 ("contract", 2))

    def __init__(self, index, world, engine, budget, ops, tag, resend_rate, seed, phase="workload"):
        super().__init__(name=f"client-{index}")
        self.world = world
        self.engine = engine
        self.budget = budget
        self.ops = ops
        self.tag = tag
        self.resend_rate = resend_rate
        self.rng = random.Random(seed)
        self.phase = phase
        self.http = Http(engine.ports)
        self.error = None

    def run(self):
        names = [s for s, _ in self.SCENARIOS]
        weights = [w for _, w in self.SCENARIOS]
        try:
            while True:
                shop = self.rng.choice(self.world.shops)
                try:
                    getattr(self, self.rng.choices(names, weights)[0])(shop)
                except Abort:
                    pass
        except Stop:
            pass
        except Exception as e:  # a bug in this script: reported, fails the run
            self.error = e
            import traceback
            traceback.print_exc()
        finally:
            self.http.close()

    # --- one operation -------------------------------------------------

    def do(self, shop, kind, path, body, info, expect, if_match=None):
        if not self.budget.take():
            raise Stop
        op = Op(self.tag, shop, kind, path, body, info, expect, self.phase, if_match)
        if self.rng.random() < self.resend_rate:
            op.resend = self.rng.choice(RESEND_MODES)
        self.ops.append(op)
        self.engine.execute(self.http, op, self.rng)
        if not op.answers:
            raise Abort
        return op

    def wallet(self, shop, currency=None):
        currency = currency or self.rng.choice(("USD", "USD", "JPY"))
        return self.rng.choice(shop["wallets"][currency]), currency

    # --- scenarios -----------------------------------------------------

    def credit(self, shop):
        w, cur = self.wallet(shop)
        amount = rand_amount(self.rng, cur, 0.01, 40)
        body = {"amount": fmt(cur, amount), "category": self.rng.choice(("top_up", "grant", "refund", "adjustment"))}
        if self.rng.random() < 0.3:
            body["description"] = "chaos credit"
        expect = {(201, None)}
        if self.rng.random() < 0.4:
            body["priority"] = self.rng.randint(0, 100)
        if self.rng.random() < 0.35:
            # Grants that expire mid-run, raced by the debits on their
            # wallet. A retry that reaches the server after the deadline is
            # refused (the deadline is no longer in the future).
            at = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=self.rng.uniform(1, 12))
            body["expires_at"] = at.isoformat()
            expect.add((422, "validation_failed"))
        self.do(shop, "credit", f"/v1/wallets/{w}/credit", body, {"wallet": w, "amount": amount}, expect)

    def debit(self, shop):
        w, cur = self.wallet(shop)
        big = self.rng.random() < 0.1
        amount = rand_amount(self.rng, cur, 100, 600) if big else rand_amount(self.rng, cur, 0.01, 40)
        body = {"amount": fmt(cur, amount), "category": self.rng.choice(("usage", "purchase", "fee", "adjustment"))}
        op = self.do(shop, "debit", f"/v1/wallets/{w}/debit", body, {"wallet": w, "amount": amount},
                     {(201, None), (422, "insufficient_funds")})
        if op.status == 201 and body["category"] != "adjustment" and self.rng.random() < 0.35:
            self.refund_movement(shop, op, w, cur, amount)

    def refund_movement(self, shop, debit, w, cur, amount):
        """One or two refunds of an acknowledged debit, in full or in part,
        the second sometimes beyond what is left (refused), while the client
        re-sends the debit itself: its replay never moves money again."""
        tid = debit.json()["id"]
        unit = Decimal(1).scaleb(-DECIMALS[cur])

        def resend_debit():
            c = Http(self.engine.ports)
            try:
                self.engine.send_until_definite(c, debit, random.randrange(len(self.engine.ports)), "race-refund")
            finally:
                c.close()

        race = threading.Thread(target=resend_debit)
        race.start()
        try:
            for _ in range(self.rng.randint(1, 2)):
                body = {}
                if self.rng.random() < 0.7:
                    body["amount"] = fmt(cur, unit * self.rng.randint(1, int(amount / unit)))
                if self.rng.random() < 0.3:
                    body["reason"] = "chaos refund"
                self.do(shop, "refund", f"/v1/wallets/{w}/transactions/{tid}/refund", body,
                        {"wallet": w, "of": tid}, {(201, None), (422, "refund_exceeds_remaining")})
        finally:
            race.join()

    def transfer(self, shop):
        if self.rng.random() < 0.08:
            # Across currencies: refused (currency_mismatch), never moved.
            a, _ = self.wallet(shop, "USD")
            b, _ = self.wallet(shop, "JPY")
            amount = Decimal(self.rng.randint(1, 5))
            text = str(amount)
            expect = {(422, "currency_mismatch"), (422, "insufficient_funds")}
        else:
            cur = self.rng.choice(("USD", "USD", "JPY"))
            a, b = self.rng.sample(shop["wallets"][cur], 2)
            amount = rand_amount(self.rng, cur, 0.01, 40)
            text = fmt(cur, amount)
            expect = {(201, None), (422, "insufficient_funds")}
        self.do(shop, "transfer", "/v1/transfers", {"from_wallet_id": a, "to_wallet_id": b, "amount": text},
                {"from": a, "to": b, "amount": amount}, expect)

    def batch(self, shop):
        """An atomic batch of 2-5 credits, debits and transfers in one
        currency, each item under its own key; one in four also carries an
        item already applied by an earlier batch of this client (answered
        from its record). Refused as a whole when a debit or transfer would
        overdraw."""
        cur = self.rng.choice(("USD", "USD", "JPY"))
        items, info = [], []
        for n in range(self.rng.randint(2, 5)):
            kind = self.rng.choice(("credit", "debit", "debit", "transfer"))
            amount = rand_amount(self.rng, cur, 0.01, 40)
            key = f"{self.tag}-item-{self.rng.getrandbits(64):016x}"
            if kind == "transfer":
                a, b = self.rng.sample(shop["wallets"][cur], 2)
                items.append({"op": "transfer", "idempotency_key": key, "from_wallet_id": a, "to_wallet_id": b,
                              "amount": fmt(cur, amount)})
                info.append({"op": kind, "key": key, "from": a, "to": b, "amount": amount})
            else:
                w = self.rng.choice(shop["wallets"][cur])
                items.append({"op": kind, "idempotency_key": key, "wallet_id": w, "amount": fmt(cur, amount),
                              "category": "top_up" if kind == "credit" else "usage"})
                info.append({"op": kind, "key": key, "wallet": w, "amount": amount})
        # Items applied by this client's earlier batches on the same shop.
        applied = self.__dict__.setdefault("applied_items", {})
        earlier = applied.get(shop["id"], [])
        if earlier and self.rng.random() < 0.25:
            item, item_info = self.rng.choice(earlier)
            if all(i["idempotency_key"] != item["idempotency_key"] for i in items):
                items.append(item)
                info.append({**item_info, "earlier": True})
        op = self.do(shop, "batch", "/v1/batches", {"items": items}, {"items": info},
                     {(201, None), (422, "insufficient_funds")})
        if op.status == 201:
            applied[shop["id"]] = (earlier + [(x, i) for x, i in zip(items, info) if not i.get("earlier")])[-50:]

    def hold(self, shop):
        w, cur = self.wallet(shop)
        amount = rand_amount(self.rng, cur, 0.01, 40)
        op = self.do(shop, "reserve", f"/v1/wallets/{w}/reservations",
                     {"amount": fmt(cur, amount), "expires_in_seconds": 3600},
                     {"wallet": w, "amount": amount}, {(201, None), (422, "insufficient_funds")})
        if op.status != 201:
            return
        rid = op.json()["id"]
        r = self.rng.random()
        if r < 0.35:
            self.do(shop, "capture", f"/v1/reservations/{rid}/capture", {},
                    {"reservation": rid, "wallet": w, "amount": amount}, {(200, None)})
        elif r < 0.65:
            unit = Decimal(1).scaleb(-DECIMALS[cur])
            part = unit * self.rng.randint(1, int(amount / unit))
            self.do(shop, "capture", f"/v1/reservations/{rid}/capture", {"amount": fmt(cur, part)},
                    {"reservation": rid, "wallet": w, "amount": part}, {(200, None)})
        elif r < 0.9:
            self.do(shop, "release", f"/v1/reservations/{rid}/release", {},
                    {"reservation": rid, "wallet": w}, {(200, None)})
        # else: left active, so `reserved` is not zero at the end

    def contract(self, shop):
        """A monthly (or yearly) contract started up to five months back,
        approved: the instances' billing jobs (every second) bill its elapsed
        periods while instances die; some are cancelled, at period end or
        immediately (a credit note for the unused days)."""
        cur = self.rng.choice(("USD", "USD", "JPY"))
        w = self.rng.choice(shop["wallets"][cur])
        interval = "monthly" if self.rng.random() < 0.8 else "yearly"
        starts_on = datetime.datetime.now(datetime.timezone.utc).date() - datetime.timedelta(days=self.rng.randint(0, 150))
        amount = rand_amount(self.rng, cur, 1, 50)
        op = self.do(shop, "contract_create", "/v1/contracts",
                     {"customer_ref": self.world.wallets[w]["customer_ref"], "title": "Plan", "currency": cur,
                      "amount": fmt(cur, amount), "billing_interval": interval, "starts_on": starts_on.isoformat()},
                     {}, {(201, None)})
        if op.status != 201:
            return
        cid = op.json()["id"]
        op = self.do(shop, "contract_submit", f"/v1/contracts/{cid}/submit", {}, {"contract": cid}, {(200, None)})
        if op.status != 200:
            return
        op = self.do(shop, "contract_approve", f"/v1/contracts/{cid}/approve", {}, {"contract": cid},
                     {(200, None)}, if_match='"2"')
        if op.status != 200 or self.rng.random() >= 0.4:
            return
        immediately = self.rng.random() < 0.5
        self.do(shop, "contract_cancel", f"/v1/contracts/{cid}/cancel", {"at_period_end": not immediately},
                {"contract": cid, "currency": cur, "immediately": immediately}, {(200, None)}, if_match='"3"')

    def invoice(self, shop):
        w, cur = self.wallet(shop)
        customer = self.world.wallets[w]["customer_ref"]
        lines = [{"description": f"item {i}", "quantity": str(self.rng.randint(1, 3)),
                  "unit_amount": fmt(cur, rand_amount(self.rng, cur, 0.01, 30))}
                 for i in range(self.rng.randint(1, 2))]
        op = self.do(shop, "invoice_create", "/v1/invoices",
                     {"customer_ref": customer, "currency": cur, "lines": lines}, {}, {(201, None)})
        if op.status != 201:
            return
        inv = op.json()
        iid, total = inv["id"], Decimal(inv["total"])
        op = self.do(shop, "finalize", f"/v1/invoices/{iid}/finalize", {}, {"invoice": iid}, {(200, None)})
        if op.status != 200:
            return
        unit = Decimal(1).scaleb(-DECIMALS[cur])
        due = total
        payments = []  # {id, method, amount, refunded}, oldest first

        def pay(method, amount=None, ref=None, kind="pay", expect=None):
            nonlocal due
            body = {"method": method}
            if amount is not None:
                body["amount"] = fmt(cur, amount)
            if method == "wallet":
                body["wallet_id"] = w
            if ref:
                body["external_ref"] = ref
            paid = amount if amount is not None else due
            expect = expect or ({(201, None), (422, "insufficient_funds")} if method == "wallet" else {(201, None)})
            op = self.do(shop, kind, f"/v1/invoices/{iid}/pay", body,
                         {"invoice": iid, "method": method, "amount": paid,
                          "wallet": w if method == "wallet" else None, "external_ref": ref}, expect)
            if op.status == 201:
                due -= paid
                if kind == "pay":
                    payments.append({"id": op.json()["payment"]["id"], "method": method, "amount": paid,
                                     "refunded": Decimal(0)})
            return op

        def partial():
            return total - unit * self.rng.randint(1, int(total / unit) - 1) if total > unit else None

        ref = f"pay-{self.tag}-{iid}"
        r = self.rng.random()
        if r < 0.05:
            return  # left open: receivables are not zero at the end
        if r < 0.3:
            pay("bank_transfer", None if self.rng.random() < 0.5 else total)
        elif r < 0.5:
            part = partial()
            op = pay("bank_transfer", part, ref)
            if op.status == 201 and self.rng.random() < 0.4:
                # The same provider payment again under a new key: found by
                # its external_ref (200), never paid twice.
                pay("bank_transfer", part, ref, kind="pay_same_ref", expect={(200, None)})
            if due > 0:
                pay("bank_transfer", due)
        elif r < 0.75:
            op = pay("wallet", None if self.rng.random() < 0.5 else total)
            if op.status != 201 and due > 0:
                pay("bank_transfer", due, ref)
        else:
            op = pay("wallet", partial())
            if due > 0:
                pay("bank_transfer", due if self.rng.random() < 0.5 else None, ref)
        if self.rng.random() < 0.4:
            self.give_back(shop, iid, cur, w, total, payments)

    def give_back(self, shop, iid, cur, w, total, payments):
        """A refund of one of the invoice's payments (sometimes beyond what
        is left, refused; a provider refund recorded again by its
        external_ref), or a credit note refunded to the wallet, to the
        payments, or kept as customer credit."""
        unit = Decimal(1).scaleb(-DECIMALS[cur])
        if payments and self.rng.random() < 0.5:
            p = self.rng.choice(payments)
            body = {}
            if self.rng.random() < 0.7:
                body["amount"] = fmt(cur, unit * self.rng.randint(1, int(p["amount"] / unit) + 1))
            ref = None
            if p["method"] != "wallet" and self.rng.random() < 0.5:
                ref = body["external_ref"] = f"re-{self.tag}-{p['id']}"
            path = f"/v1/invoices/{iid}/payments/{p['id']}/refund"
            info = {"invoice": iid, "payment": p["id"], "wallet": w if p["method"] == "wallet" else None}
            op = self.do(shop, "payment_refund", path, body, info,
                         {(201, None), (422, "refund_exceeds_remaining")})
            if op.status == 201 and ref and self.rng.random() < 0.4:
                self.do(shop, "payment_refund_same_ref", path, body, info, {(200, None)})
            return
        mode = self.rng.choice(("none", "wallet", "original"))
        body = {"amount": fmt(cur, unit * self.rng.randint(1, int(total / unit) + 1)), "reason": "chaos credit",
                "refund": mode}
        if mode == "wallet":
            body["wallet_id"] = w
        self.do(shop, "credit_note", f"/v1/invoices/{iid}/credit-notes", body,
                {"invoice": iid, "mode": mode, "wallet": w},
                {(201, None), (422, "credit_exceeds_remaining")})


class Faults(threading.Thread):
    """Kills an instance (kill -9, restarted after a moment), restarts
    PostgreSQL (immediate = a crash, or fast) and terminates backends, at
    planned points of the workload."""

    def __init__(self, plan, budget, pg, instances, done):
        super().__init__(name="faults")
        self.plan = plan  # [(operation count, kind, arg)]
        self.budget = budget
        self.pg = pg
        self.instances = instances
        self.done = done
        self.injected = Counter()
        self.events = []
        self.error = None
        self.terminated_backends = 0

    def run(self):
        try:
            for at, kind, arg in self.plan:
                self.budget.wait_for(at, self.done)
                if self.done.is_set():
                    self.events.append((time.time(), at, kind, arg, "skipped: the workload ended"))
                    continue
                self.budget.open_gate()
                self.inject(at, kind, arg)
        except Exception as e:
            self.error = e
            import traceback
            traceback.print_exc()
            while self.budget.gates:
                self.budget.open_gate()

    def inject(self, at, kind, arg):
        t0 = time.time()
        if kind == "kill":
            inst = self.instances[arg]
            log(f"fault at op {at}: kill -9 instance {arg} (pid {inst.proc.pid}), restart in 1 s")
            inst.kill9()
            time.sleep(1.0)
            inst.start()
            inst.wait_ready()
            what = f"kill -9 instance {arg}"
        elif kind == "pg_restart":
            log(f"fault at op {at}: restart PostgreSQL (-m {arg})")
            self.pg.restart(arg)
            what = f"PostgreSQL restart -m {arg}"
        elif kind == "terminate":
            n = int(self.pg.psql(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) AS t FROM pg_stat_activity "
                f"WHERE datname = '{self.pg.DB}' AND pid <> pg_backend_pid() "
                "AND backend_type = 'client backend' AND random() < 0.6) x WHERE t").strip() or 0)
            self.terminated_backends += n
            log(f"fault at op {at}: terminated {n} backends")
            what = f"pg_terminate_backend x{n}"
        else:
            raise ValueError(kind)
        self.injected[kind] += 1
        self.events.append((t0, at, kind, arg, f"{what} ({time.time() - t0:.1f}s)"))


def fault_plan(ops, instances, rounds):
    """`rounds` times: kill an instance, terminate backends, restart
    PostgreSQL (alternately -m immediate and -m fast), spread evenly from
    8 % to 85 % of the operations."""
    kinds = []
    for r in range(rounds):
        kinds += [("kill", r % instances), ("terminate", None),
                  ("pg_restart", "immediate" if r % 2 == 0 else "fast")]
    n = len(kinds)
    return [(int(ops * (0.08 + 0.77 * i / max(n - 1, 1))), k, a) for i, (k, a) in enumerate(kinds)]
