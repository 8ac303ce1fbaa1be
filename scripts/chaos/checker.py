"""The chaos run's checker: proves from the answers, the API and SQL that
every acknowledged operation was applied exactly once and the books hold.

Each check has a name; an anomaly is (check, message). The self-test damages
the books and requires particular checks to fire.
"""

import calendar
import hashlib
import json
import os
import time
from collections import Counter, defaultdict
from datetime import date, datetime, timezone
from decimal import ROUND_HALF_UP
from decimal import Decimal

from workload import DECIMALS, Http, problem_code

# Journal transaction kinds the workload posts, by operation.
GRANT_CHECKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "sql", "checks", "grants.sql")
LINK_CHECKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "sql", "checks", "links.sql")

KIND_OF = {"credit": "wallet.credit", "debit": "wallet.debit", "transfer": "wallet.transfer",
           "capture": "reservation.capture", "finalize": "invoice.finalize", "pay": "invoice.payment",
           "pay_same_ref": "invoice.payment", "refund": "wallet.refund", "payment_refund": "payment.refund",
           "credit_note": "credit_note"}


def settled(total, credited, paid):
    """An issued invoice's status from its amounts (as the service says)."""
    if total > 0 and credited == total:
        return "credited"
    return "paid" if credited + paid == total else "open"


def add_months(d, n):
    """`d` plus `n` calendar months, clamped to the month's last day (the
    billing rule, counted from the anchor every time)."""
    y, m = divmod(d.month - 1 + n, 12)
    y, m = d.year + y, m + 1
    return date(y, m, min(d.day, calendar.monthrange(y, m)[1]))


def period_start(anchor, interval, k):
    return add_months(anchor, k * (12 if interval == "yearly" else 1))


class AnyRow:
    """An expected row id the answer does not name (any one row will do)."""

    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False

    def __repr__(self):
        return "its row"


def D(x):
    return Decimal(str(x))


def ts(s):
    return datetime.fromisoformat(s)


class Checker:
    def __init__(self, world, ops, pg, ports, first_day, deadline):
        self.world = world
        self.ops = ops
        self.pg = pg
        self.http = Http(ports)
        self.first_day = first_day
        self.deadline = deadline
        self.anomalies = []
        self.figures = {}

    def add(self, check, msg):
        self.anomalies.append((check, msg))

    def get(self, token, path):
        """A GET through the API, retried while the service is unavailable;
        None (and an anomaly) if it does not answer 200."""
        end = time.monotonic() + 60
        inst = 0
        while True:
            try:
                status, _, body = self.http.send(inst, "GET", path, {"Authorization": f"Bearer {token}"}, None, 30)
                if status == 200:
                    return json.loads(body)
                if status < 500 and status != 429:
                    self.add("api_error", f"GET {path}: {status} {body[:300]!r}")
                    return None
            except (OSError, ValueError):
                pass
            if time.monotonic() > end:
                self.add("api_error", f"GET {path}: no answer within 60s")
                return None
            inst = (inst + 1) % len(self.http.ports)
            time.sleep(0.2)

    def run(self):
        self.check_answers()
        self.build_model()
        self.check_sql()
        self.check_billing()
        self.check_events()
        self.check_api()
        self.http.close()
        return self.anomalies

    # --- the answers themselves ----------------------------------------

    def check_answers(self):
        acknowledged = 0
        for op in self.ops:
            if not op.answers:
                self.add("unanswered", f"{op.key} ({op.kind}) got no definite answer within {self.deadline}s")
                continue
            acknowledged += 1
            status, body = op.answers[0][:2]
            expected = (status, problem_code(body) if status >= 400 else None) in op.expect
            if not expected:
                self.add("unexpected_answer", f"{op.key} ({op.kind}): {status} {body[:300]!r}")
            for st, b, replayed, label, inst in op.answers[1:]:
                if (st, b) != (status, body):
                    self.add("replay_differs",
                             f"{op.key} ({op.kind}): the {label} answer (instance {inst}) differs from the first: "
                             f"{status} {body[:160]!r} then {st} {b[:160]!r}")
                elif label == "later" and expected and replayed != "true":
                    self.add("replay_not_marked", f"{op.key} ({op.kind}): a later re-send was answered "
                                                  "without Idempotent-Replayed: true (executed again?)")
        self.figures["acknowledged"] = acknowledged

    # --- the model: what the acknowledged answers say happened ----------

    def build_model(self):
        self.balance = defaultdict(Decimal)
        self.reserved = defaultdict(Decimal)
        self.moves = {}  # wallet transaction id -> (wallet, type, category, amount, key or None, op key)
        self.refunded = defaultdict(Decimal)  # movement id -> refunded
        self.pay_refunded = defaultdict(Decimal)  # payment id -> refunded
        self.by_note = set()  # credit notes that refunded wallet payments (movements not in their answer)
        self.kinds = Counter()  # (shop id, journal kind)
        self.holds = {}  # reservation id -> dict
        self.invoices = {}  # invoice id -> dict
        for op in self.ops:
            if not op.answers or not op.ok():
                continue
            j, i, shop = op.json(), op.info, op.shop["id"]
            posts = op.kind in ("credit", "debit", "transfer", "capture", "finalize", "refund", "credit_note") or (
                op.kind in ("pay", "pay_same_ref", "payment_refund") and op.status == 201)  # 200: found by ref
            if posts:
                self.kinds[(shop, KIND_OF[op.kind])] += 1
            if op.kind == "credit":
                self.balance[i["wallet"]] += i["amount"]
                self.moves[j["id"]] = (i["wallet"], "credit", j["category"], i["amount"], op.key, op.key)
            elif op.kind == "debit":
                self.balance[i["wallet"]] -= i["amount"]
                self.moves[j["id"]] = (i["wallet"], "debit", j["category"], i["amount"], op.key, op.key)
            elif op.kind == "transfer":
                self.balance[i["from"]] -= i["amount"]
                self.balance[i["to"]] += i["amount"]
                self.moves[j["debit"]["id"]] = (i["from"], "debit", "transfer_out", i["amount"], op.key, op.key)
                self.moves[j["credit"]["id"]] = (i["to"], "credit", "transfer_in", i["amount"], None, op.key)
            elif op.kind == "batch":
                self.batch(op, j, i, shop)
            elif op.kind == "reserve":
                self.reserved[i["wallet"]] += i["amount"]
                self.holds[j["id"]] = {"wallet": i["wallet"], "amount": i["amount"], "status": "active",
                                       "captured": Decimal(0), "wtx": None, "key": op.key}
            elif op.kind in ("capture", "release"):
                h = self.holds[i["reservation"]]
                self.reserved[h["wallet"]] -= h["amount"]
                if op.kind == "capture":
                    self.balance[h["wallet"]] -= i["amount"]
                    h.update(status="captured", captured=i["amount"], wtx=j.get("wallet_transaction_id"))
                    self.moves[j["wallet_transaction_id"]] = (h["wallet"], "debit", "reservation_capture",
                                                              i["amount"], None, op.key)
                    if D(j["captured_amount"]) != i["amount"]:
                        self.add("answer_amount", f"{op.key}: captured_amount {j['captured_amount']} "
                                                  f"for a capture of {i['amount']}")
                else:
                    h["status"] = "released"
            elif op.kind == "refund":
                amount = D(j["amount"])
                self.balance[i["wallet"]] += amount
                self.moves[j["id"]] = (i["wallet"], "credit", "refund", amount, op.key, op.key)
                self.refunded[i["of"]] += amount
            elif op.kind == "payment_refund":
                if op.status == 200:
                    continue  # a provider refund found by its external_ref: nothing new
                inv = self.invoices[i["invoice"]]
                amount = D(j["refund"]["amount"])
                self.pay_refunded[i["payment"]] += amount
                inv["paid"] -= amount
                inv["status"] = settled(inv["total"], inv["credited"], inv["paid"])
                if i["wallet"]:
                    self.balance[i["wallet"]] += amount
                    self.moves[j["refund"]["wallet_transaction_id"]] = (i["wallet"], "credit", "refund", amount,
                                                                        None, op.key)
            elif op.kind == "credit_note":
                self.credit_note(op, j, i, shop)
            elif op.kind == "invoice_create":
                self.invoices[j["id"]] = {"shop": shop, "total": D(j["total"]), "paid": Decimal(0),
                                          "credited": Decimal(0), "status": "draft", "payments": [],
                                          "ids": [], "key": op.key}
            elif op.kind == "finalize":
                self.invoices[i["invoice"]]["status"] = "open"
            elif op.kind in ("pay", "pay_same_ref"):
                if op.status == 200:
                    continue  # an external_ref already recorded: nothing new
                inv = self.invoices[i["invoice"]]
                inv["paid"] += i["amount"]
                inv["payments"].append((i["method"], i["amount"], i["external_ref"]))
                inv["ids"].append((j["payment"]["id"], i["amount"], i["wallet"]))
                inv["status"] = settled(inv["total"], inv["credited"], inv["paid"])
                if i["method"] == "wallet":
                    self.balance[i["wallet"]] -= i["amount"]
                    wtx = (j.get("payment") or {}).get("wallet_transaction_id") if isinstance(j, dict) else None
                    if wtx:
                        self.moves[wtx] = (i["wallet"], "debit", "invoice_payment", i["amount"], None, op.key)
        for tid, amount in self.refunded.items():
            if tid in self.moves and amount > self.moves[tid][3]:
                self.add("over_refund", f"movement {tid}: acknowledged refunds {amount} exceed its "
                                        f"{self.moves[tid][3]}")
        self.figures["acknowledged_movements"] = len(self.moves)

    def batch(self, op, j, i, shop):
        """An applied atomic batch: each item as its single request, its
        movements under the item's own key; an item answered from an
        earlier batch's record moved nothing again."""
        for item, result in zip(i["items"], j["items"]):
            b = result["body"]
            if item.get("earlier"):
                if not result["replayed"]:
                    self.add("batch_item", f"{op.key}: item {item['key']}, applied before, was not replayed")
                continue
            if item["op"] == "transfer":
                self.kinds[(shop, "wallet.transfer")] += 1
                self.balance[item["from"]] -= item["amount"]
                self.balance[item["to"]] += item["amount"]
                self.moves[b["debit"]["id"]] = (item["from"], "debit", "transfer_out", item["amount"], item["key"],
                                                op.key)
                self.moves[b["credit"]["id"]] = (item["to"], "credit", "transfer_in", item["amount"], None, op.key)
            else:
                self.kinds[(shop, KIND_OF[item["op"]])] += 1
                sign = 1 if item["op"] == "credit" else -1
                self.balance[item["wallet"]] += sign * item["amount"]
                self.moves[b["id"]] = (item["wallet"], item["op"], b["category"], item["amount"], item["key"],
                                       op.key)

    def credit_note(self, op, j, i, shop):
        """A credit note's effects: what it credits, and the overpayment it
        makes refunded to the wallet, to the payments newest first, or
        kept as customer credit."""
        inv = self.invoices[i["invoice"]]
        amount = D(j["amount"])
        inv["credited"] += amount
        over = max(Decimal(0), inv["paid"] + inv["credited"] - inv["total"])
        if over and i["mode"] == "wallet":
            self.balance[i["wallet"]] += over
            self.moves[j["wallet_transaction_id"]] = (i["wallet"], "credit", "refund", over, None, op.key)
            self.kinds[(shop, "credit_note")] += 1  # the wallet's credit posts its own
        elif over and i["mode"] == "original":
            left = over
            for pid, paid, wallet in reversed(inv["ids"]):
                take = min(paid - self.pay_refunded[pid], left)
                if take <= 0:
                    continue
                left -= take
                self.pay_refunded[pid] += take
                self.kinds[(shop, "payment.refund")] += 1
                if wallet:
                    self.balance[wallet] += take
                    self.by_note.add(j["id"])
                if not left:
                    break
        inv["paid"] -= over
        inv["status"] = settled(inv["total"], inv["credited"], inv["paid"])

    def billing_model(self):
        """The billing job's invoices are no client's operation: each period
        row is the job's acknowledgement of one (an open invoice of the
        contract's amount, posted receivables -> revenue); check_billing
        proves there is one per elapsed period. An immediate cancellation's
        credit note follows from its acknowledged answer and the proration
        rule: the unused days of the billed period holding the cancellation
        day, half-up to the currency's minor unit."""
        self.cancel_notes = {}  # cancel op key -> invoice credited
        by_contract = defaultdict(list)
        for p in self.pg.rows("SELECT shop_id, contract_id, period_start, period_end, invoice_id, amount "
                              "FROM contract_periods"):
            self.invoices[p["invoice_id"]] = {"shop": p["shop_id"], "total": D(p["amount"]), "paid": Decimal(0),
                                              "credited": Decimal(0), "status": "open", "payments": [],
                                              "ids": [], "key": None}
            self.kinds[(p["shop_id"], "invoice.finalize")] += 1
            by_contract[p["contract_id"]].append(p)
        for op in self.ops:
            if op.kind != "contract_cancel" or not op.answers or op.status != 200 or not op.info["immediately"]:
                continue
            day = op.json()["cancelled_at"][:10]
            for p in by_contract[op.info["contract"]]:
                if not p["period_start"] <= day < p["period_end"]:
                    continue
                start, end, on = (date.fromisoformat(x) for x in (p["period_start"], p["period_end"], day))
                unit = Decimal(1).scaleb(-DECIMALS[op.info["currency"]])
                inv = self.invoices[p["invoice_id"]]
                credit = (inv["total"] * (end - on).days / (end - start).days).quantize(unit, ROUND_HALF_UP)
                credit = min(credit, inv["total"] - inv["credited"])
                if credit > 0:
                    inv["credited"] += credit
                    inv["status"] = settled(inv["total"], inv["credited"], inv["paid"])
                    self.kinds[(op.shop["id"], "credit_note")] += 1
                    self.cancel_notes[op.key] = p["invoice_id"]

    def check_billing(self):
        """Recurring billing: every approved recurring contract has exactly
        its elapsed periods billed (a cancelled one at most those), numbered
        0..n-1 from its anchor by the calendar rule, each with exactly one
        invoice of the contract's amount and one invoice.finalized event."""
        pg, add = self.pg, self.add
        today = datetime.now(timezone.utc).date()
        periods = defaultdict(list)
        for p in pg.rows("SELECT contract_id, seq, period_start, period_end, invoice_id, amount "
                         "FROM contract_periods ORDER BY contract_id, seq"):
            periods[p["contract_id"]].append(p)
        invoices = Counter((r["c"], r["p"]) for r in pg.rows(
            "SELECT metadata->>'contract_id' AS c, metadata->>'period_start' AS p FROM invoices "
            "WHERE metadata ? 'period_start'"))
        finalized = Counter(r["i"] for r in pg.rows(
            "SELECT data->>'id' AS i FROM events WHERE type = 'invoice.finalized'"))
        billed = 0
        for c in pg.rows("SELECT id, starts_on, billing_interval, status, amount, next_period_on FROM contracts "
                         "WHERE billing_interval <> 'one_time' AND approved_at IS NOT NULL"):
            anchor = date.fromisoformat(c["starts_on"])
            elapsed = 0
            while period_start(anchor, c["billing_interval"], elapsed) <= today:
                elapsed += 1
            got = periods.get(c["id"], [])
            billed += len(got)
            if c["status"] in ("approved", "past_due") and len(got) != elapsed:
                add("billing", f"contract {c['id']} ({c['status']}): {len(got)} periods billed, {elapsed} elapsed")
            if len(got) > elapsed:
                add("billing", f"contract {c['id']}: {len(got)} periods billed, only {elapsed} elapsed")
            for k, p in enumerate(got):
                want = (k, period_start(anchor, c["billing_interval"], k).isoformat(),
                        period_start(anchor, c["billing_interval"], k + 1).isoformat(), D(c["amount"]))
                if (p["seq"], p["period_start"], p["period_end"], D(p["amount"])) != want:
                    add("billing", f"contract {c['id']} period {k}: {p['seq']} {p['period_start']}.."
                                   f"{p['period_end']} of {p['amount']}, expected {want}")
                n = invoices[(c["id"], p["period_start"])]
                if n != 1:
                    add("billing", f"contract {c['id']} period {p['period_start']}: {n} invoices")
                if finalized[p["invoice_id"]] != 1:
                    add("billing", f"contract {c['id']} period {p['period_start']}: "
                                   f"{finalized[p['invoice_id']]} invoice.finalized events")
        self.figures["periods_billed"] = billed

    # --- SQL -------------------------------------------------------------

    def check_sql(self):
        pg, add = self.pg, self.add
        shops = {s["id"] for s in self.world.shops}
        wallets = {w["id"]: w for w in pg.rows(
            "SELECT id, shop_id, currency, balance, reserved, overdraft_limit, version FROM wallets")}
        for wid in self.world.wallets:
            if wid not in wallets:
                add("wallet_missing", f"wallet {wid} is not in the database")
        for wid, w in wallets.items():
            if w["shop_id"] in shops and wid not in self.world.wallets:
                add("unacknowledged_wallet", f"wallet {wid} matches no acknowledged wallet creation")
        rows = pg.rows("SELECT id, shop_id, wallet_id, wallet_version, type, category, amount, balance_after, "
                       "idempotency_key, created_at FROM wallet_transactions ORDER BY wallet_id, wallet_version")
        self.figures["movement_rows"] = len(rows)
        # Grant expiries are no client's operation: the job and the money
        # path write them. Each must be a grant's remainder at or after its
        # deadline (the grant invariants below); the model takes them as
        # they are, once each.
        expiries = [r for r in rows if r["category"] == "grant_expired"]
        self.figures["grant_expiries"] = len(expiries)
        for r in expiries:
            self.balance[r["wallet_id"]] -= D(r["amount"])
            self.kinds[(r["shop_id"], "grant.expire")] += 1
        holds = {h["id"]: h for h in pg.rows(
            "SELECT id, wallet_id, status, amount, captured_amount, wallet_transaction_id FROM credit_reservations")}
        invoices = {v["id"]: v for v in pg.rows(
            "SELECT id, shop_id, status, total, amount_paid, amount_credited FROM invoices")}
        payments = pg.rows("SELECT id, invoice_id, method, amount, external_ref, wallet_id, wallet_transaction_id, "
                           "amount_refunded FROM invoice_payments")
        self.billing_model()

        # Exactly once: every history row is an acknowledged movement, and
        # every acknowledged movement is there once.
        explained = set(self.moves) | {r["id"] for r in expiries}
        by_invoice = defaultdict(list)
        for p in payments:
            by_invoice[p["invoice_id"]].append(p)
        for iid, inv in self.invoices.items():
            got = sorted((p["method"], D(p["amount"]), p["external_ref"]) for p in by_invoice.get(iid, []))
            want = sorted(inv["payments"])
            if got != want:
                add("payments", f"invoice {iid}: payments {fmt_list(got)} in the database, "
                                f"acknowledged {fmt_list(want)}")
            else:
                explained |= {p["wallet_transaction_id"] for p in by_invoice.get(iid, []) if p["wallet_transaction_id"]}
        for iid in by_invoice:
            if iid not in self.invoices:
                add("payments", f"invoice {iid} has payments but no acknowledged invoice")
        for p in payments:
            if D(p["amount_refunded"]) != self.pay_refunded[p["id"]]:
                add("payment_refunded", f"payment {p['id']}: {p['amount_refunded']} refunded in the database, "
                                        f"{self.pay_refunded[p['id']]} acknowledged")
            if D(p["amount_refunded"]) > D(p["amount"]):
                add("over_refund", f"payment {p['id']}: {p['amount_refunded']} refunded of {p['amount']}")
        # A credit note's refunds to wallet payments are movements its answer
        # does not list: explained by the refund rows of acknowledged notes
        # (their amounts are checked through the balances).
        if self.by_note:
            explained |= {r["w"] for r in pg.rows(
                "SELECT wallet_transaction_id AS w, credit_note_id::text AS c FROM payment_refunds "
                "WHERE credit_note_id IS NOT NULL AND wallet_transaction_id IS NOT NULL")
                if r["c"] in self.by_note}
        seen = set()
        keys = Counter()
        for r in rows:
            seen.add(r["id"])
            if r["idempotency_key"] is not None:
                keys[(r["shop_id"], r["idempotency_key"])] += 1
            m = self.moves.get(r["id"])
            if m is None:
                if r["id"] not in explained:
                    add("unacknowledged_movement",
                        f"{r['category']} {r['type']} of {r['amount']} on wallet {r['wallet_id']} (version "
                        f"{r['wallet_version']}, key {r['idempotency_key']}) matches no acknowledged operation "
                        "(applied twice, or applied without an answer)")
                continue
            wallet, typ, cat, amount, key, _ = m
            if (r["wallet_id"], r["type"], r["category"], D(r["amount"])) != (wallet, typ, cat, amount) \
                    or (key is not None and r["idempotency_key"] != key):
                add("movement_differs", f"movement {r['id']}: {r['wallet_id']} {r['type']} {r['category']} "
                                        f"{r['amount']} key {r['idempotency_key']}; acknowledged {wallet} {typ} "
                                        f"{cat} {amount} key {key}")
        for mid, m in self.moves.items():
            if mid not in seen:
                add("lost_movement", f"acknowledged {m[2]} of {m[3]} on wallet {m[0]} ({m[5]}) is not in the "
                                     "database")
        for (shop, key), n in keys.items():
            if n > 1:
                add("key_applied_twice", f"idempotency key {key} is on {n} movements")
        # Each posting once: journal transactions per shop and kind equal
        # the acknowledged operations that post them.
        got_kinds = Counter((r["shop_id"], r["kind"]) for r in pg.rows(
            "SELECT shop_id, kind FROM journal_transactions"))
        for shop_kind in set(got_kinds) | set(self.kinds):
            got, want = got_kinds.get(shop_kind, 0), self.kinds.get(shop_kind, 0)
            if shop_kind[0] in shops and got != want:
                add("journal_count", f"shop {shop_kind[0]}: {got} journal transactions of kind {shop_kind[1]}, "
                                     f"{want} acknowledged")
        self.figures["journal_transactions"] = sum(got_kinds.values())

        # Balances against the model, the journal and the history.
        by_wallet = defaultdict(list)
        for r in rows:
            by_wallet[r["wallet_id"]].append(r)
        self.history = by_wallet
        hold_count = Counter()
        freed_count = Counter()
        active_sum = defaultdict(Decimal)
        for h in holds.values():
            hold_count[h["wallet_id"]] += 1
            if h["status"] in ("released", "expired"):
                freed_count[h["wallet_id"]] += 1
            if h["status"] == "active":
                active_sum[h["wallet_id"]] += D(h["amount"])
        for wid, w in wallets.items():
            balance, reserved, limit = D(w["balance"]), D(w["reserved"]), D(w["overdraft_limit"])
            if wid in self.world.wallets:
                if balance != self.balance[wid]:
                    add("balance", f"wallet {wid}: balance {balance} in the database, {self.balance[wid]} "
                                   "from the acknowledged answers")
                if reserved != self.reserved[wid]:
                    add("reserved_model", f"wallet {wid}: reserved {reserved} in the database, "
                                          f"{self.reserved[wid]} from the acknowledged answers")
            if reserved != active_sum[wid]:
                add("reserved_holds", f"wallet {wid}: reserved {reserved}, active holds sum to {active_sum[wid]}")
            if balance - reserved < -limit:
                add("overdraft", f"wallet {wid}: available {balance - reserved} below -{limit}")
            history = by_wallet.get(wid, [])
            prev, prev_at = Decimal(0), None
            for r in history:
                amount, after = D(r["amount"]), D(r["balance_after"])
                expect = prev + amount if r["type"] == "credit" else prev - amount
                if after != expect:
                    add("history_chain", f"wallet {wid} version {r['wallet_version']}: balance_after {after}, "
                                         f"previous {prev} {r['type']} {amount} gives {expect}")
                if after < -limit:
                    add("overdraft", f"wallet {wid} version {r['wallet_version']}: balance_after {after} "
                                     f"below its overdraft limit -{limit}")
                at = ts(r["created_at"])
                if prev_at is not None and at < prev_at:
                    add("history_time", f"wallet {wid} version {r['wallet_version']}: created_at {r['created_at']}"
                                        " is earlier than the previous version's")
                prev, prev_at = after, at
            if prev != balance:
                add("history_chain", f"wallet {wid}: last balance_after {prev}, balance {balance}")
            versions = 1 + len(history) + hold_count[wid] + freed_count[wid]
            if int(w["version"]) != versions:
                add("wallet_version", f"wallet {wid}: version {w['version']}, but {len(history)} movements, "
                                      f"{hold_count[wid]} holds and {freed_count[wid]} freed holds make {versions}")

        # Credit grants: every invariant of sql/checks/grants.sql holds; and
        # every link of sql/checks/links.sql (no foreign key checks them).
        for check, what, path in (("grants", "grant invariant", GRANT_CHECKS), ("links", "link", LINK_CHECKS)):
            with open(path) as f:
                broken = pg.rows(f.read())[0]
            for name, n in broken.items():
                if int(n) != 0:
                    add(check, f"{what} {name}: {n} rows break it")
        self.figures["grants"] = int(pg.rows("SELECT count(*) AS n FROM credit_grants")[0]["n"])

        # The journal: balanced per transaction, per shop and currency, and
        # each wallet equal to its entries.
        for r in pg.rows("SELECT shop_id, journal_transaction_id AS id, currency, sum(amount) AS total "
                         "FROM journal_entries GROUP BY 1, 2, 3 HAVING sum(amount) <> 0"):
            add("journal_unbalanced", f"journal transaction {r['id']} sums to {r['total']} {r['currency']}")
        for r in pg.rows("SELECT t.shop_id, t.id, t.kind, count(e.line) AS n FROM journal_transactions t "
                         "LEFT JOIN journal_entries e ON e.shop_id = t.shop_id AND e.journal_transaction_id = t.id "
                         "GROUP BY t.shop_id, t.id, t.kind HAVING count(e.line) < 2"):
            add("journal_unbalanced", f"journal transaction {r['id']} ({r['kind']}) has {r['n']} entries")
        for r in pg.rows("SELECT shop_id, currency, sum(amount) AS total FROM journal_entries "
                         "GROUP BY 1, 2 HAVING sum(amount) <> 0"):
            add("conservation", f"shop {r['shop_id']} {r['currency']}: all accounts sum to {r['total']}, not 0")
        for r in pg.rows("SELECT w.id, w.balance, coalesce(sum(e.amount), 0) AS journal FROM wallets w "
                         "LEFT JOIN journal_entries e ON e.shop_id = w.shop_id AND e.wallet_id = w.id "
                         "GROUP BY w.shop_id, w.id, w.balance HAVING w.balance <> coalesce(sum(e.amount), 0)"):
            add("wallet_vs_journal", f"wallet {r['id']}: balance {r['balance']}, its journal entries {r['journal']}")
        receivable = pg.rows(
            "SELECT s.shop_id, s.currency, s.total AS receivables, coalesce(o.due, 0) AS due FROM "
            "(SELECT shop_id, currency, sum(amount) AS total FROM journal_entries WHERE account = 'receivables' "
            " GROUP BY 1, 2) s LEFT JOIN (SELECT shop_id, currency, sum(total - amount_credited - amount_paid) AS due "
            " FROM invoices "
            " WHERE status = 'open' GROUP BY 1, 2) o USING (shop_id, currency) "
            "WHERE -s.total <> coalesce(o.due, 0)")
        for r in receivable:
            add("receivables", f"shop {r['shop_id']} {r['currency']}: receivables {-D(r['receivables'])}, "
                               f"open invoices due {r['due']}")

        # Holds and invoices against the model.
        for rid, h in self.holds.items():
            s = holds.get(rid)
            if s is None:
                add("hold", f"acknowledged hold {rid} ({h['key']}) is not in the database")
                continue
            if (s["status"], D(s["captured_amount"]), s["wallet_transaction_id"]) != \
                    (h["status"], h["captured"], h["wtx"]):
                add("hold", f"hold {rid}: {s['status']} captured {s['captured_amount']} in the database, "
                            f"acknowledged {h['status']} captured {h['captured']}")
        for rid, s in holds.items():
            if rid not in self.holds:
                add("hold", f"hold {rid} on wallet {s['wallet_id']} ({s['status']}) matches no acknowledged hold")
        for iid, inv in self.invoices.items():
            s = invoices.get(iid)
            if s is None:
                add("invoice", f"acknowledged invoice {iid} is not in the database")
            elif (s["status"], D(s["amount_paid"]), D(s["amount_credited"]), D(s["total"])) != \
                    (inv["status"], inv["paid"], inv["credited"], inv["total"]):
                add("invoice", f"invoice {iid}: {s['status']} paid {s['amount_paid']} credited "
                               f"{s['amount_credited']} of {s['total']} in the database, acknowledged "
                               f"{inv['status']} paid {inv['paid']} credited {inv['credited']} of {inv['total']}")
        for iid in invoices:
            if iid not in self.invoices:
                add("invoice", f"invoice {iid} matches no acknowledged invoice")

        self.check_request_keys()

        # The stored answers are the first answers, byte for byte.
        stored = {(r["shop_id"], r["key"]): r for r in pg.rows(
            "SELECT shop_id, key, response_status, md5(response_body) AS h FROM idempotency_keys")}
        n = 0
        for op in self.ops:
            if not op.answers:
                continue
            status, body = op.answers[0][:2]
            if (status, problem_code(body) if status >= 400 else None) not in op.expect:
                continue
            if status == 422 and problem_code(body) == "validation_failed":
                continue  # invalid input is answered, never stored (docs/idempotency.md)
            n += 1
            r = stored.get((op.shop["id"], op.key))
            if r is None:
                self.add("stored_answer", f"{op.key} ({op.kind}): no stored outcome for an acknowledged key")
            elif (r["response_status"], r["h"]) != (status, hashlib.md5(body).hexdigest()):
                self.add("stored_answer", f"{op.key} ({op.kind}): the stored outcome ({r['response_status']}) "
                                          f"is not the first answer ({status}) byte for byte")
        self.figures["stored_answers_checked"] = n

    # The event type each audited change writes (src/events/mod.rs), for
    # the changes that move money or settle a hold. Payments and payment
    # refunds are counted by their rows instead: a payment or refund that
    # found the one already recorded (the API and the provider's webhook
    # both telling it) is audited but changed nothing, so has no event.
    EVENT_OF = {
        "wallet.credit": "wallet.credited", "wallet.refund": "wallet.credited",
        "webhook.credits_purchased": "wallet.credited", "wallet.debit": "wallet.debited",
        "wallet.transfer": "transfer.created", "reservation.capture": "reservation.captured",
        "reservation.expire": "reservation.expired", "grant.expire": "grant.expired",
    }

    def check_events(self):
        """The outbox: every committed money change (its audit row, written
        in the same statement) has exactly one event, and no event names a
        movement that did not commit."""
        pg, add = self.pg, self.add
        mapping = ", ".join(f"('{a}', '{t}')" for a, t in self.EVENT_OF.items())
        types = ", ".join(f"'{t}'" for t in set(self.EVENT_OF.values()))
        types += ", 'invoice.paid', 'payment.refunded', 'credit_note.created'"
        counts = pg.rows(f"""
            WITH m(action, type) AS (VALUES {mapping}),
                 a AS (SELECT l.shop_id, m.type, count(*) AS n FROM audit_log l JOIN m USING (action)
                        GROUP BY 1, 2
                       UNION ALL
                       SELECT shop_id, 'invoice.paid', count(*) FROM invoice_payments GROUP BY 1
                       UNION ALL
                       SELECT shop_id, 'credit_note.created', count(*) FROM credit_notes GROUP BY 1
                       UNION ALL
                       SELECT shop_id, 'payment.refunded', count(*) FROM payment_refunds
                        WHERE credit_note_id IS NULL GROUP BY 1),
                 e AS (SELECT shop_id, type, count(*) AS n FROM events WHERE type IN ({types}) GROUP BY 1, 2)
            SELECT coalesce(a.shop_id, e.shop_id) AS shop_id, coalesce(a.type, e.type) AS type,
                   coalesce(a.n, 0) AS changes, coalesce(e.n, 0) AS events
              FROM a FULL JOIN e ON a.shop_id = e.shop_id AND a.type = e.type""")
        total = 0
        for r in counts:
            total += r["events"]
            if r["changes"] != r["events"]:
                add("events", f"shop {r['shop_id']}: {r['changes']} committed {r['type']} changes, "
                              f"{r['events']} events")
        self.figures["money_events"] = total
        # A movement's event carries the movement itself: each names one
        # committed movement, and no movement has two.
        for r in pg.rows("""
            SELECT e.type, e.data->>'id' AS movement, count(*) AS n, bool_and(t.id IS NOT NULL) AS committed
              FROM events e
              LEFT JOIN wallet_transactions t ON t.shop_id = e.shop_id AND t.id::text = e.data->>'id'
             WHERE e.type IN ('wallet.credited', 'wallet.debited', 'grant.expired')
             GROUP BY 1, 2 HAVING count(*) > 1 OR NOT bool_and(t.id IS NOT NULL)"""):
            add("events", f"{r['type']} event of movement {r['movement']}: {r['n']} events"
                          + ("" if r["committed"] else ", and no such committed movement"))

    def check_request_keys(self):
        """Where the schema keeps the request key on a money movement's own
        row (migration 0013: payments, holds, their settlement, finalize),
        each acknowledged key is on exactly the row its answer names, and no
        row carries a key that no acknowledged operation sent."""
        have = {(r["t"], r["c"]) for r in self.pg.rows(
            "SELECT table_name AS t, column_name AS c FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND (table_name, column_name) IN "
            "(('invoice_payments', 'idempotency_key'), ('invoices', 'finalize_key'), "
            "('credit_reservations', 'idempotency_key'), ('credit_reservations', 'settle_key'), "
            "('payment_refunds', 'idempotency_key'), ('credit_notes', 'idempotency_key'))")}
        if not have:
            return
        want = {}  # (table, column) -> {key: row id or (invoice id, amount)}
        for op in self.ops:
            if not op.answers or op.status not in (200, 201):
                continue
            i = op.info
            if op.kind == "reserve":
                want.setdefault(("credit_reservations", "idempotency_key"), {})[op.key] = op.json()["id"]
            elif op.kind in ("capture", "release"):
                want.setdefault(("credit_reservations", "settle_key"), {})[op.key] = i["reservation"]
            elif op.kind == "finalize":
                want.setdefault(("invoices", "finalize_key"), {})[op.key] = i["invoice"]
            elif op.kind in ("pay", "pay_same_ref") and op.status == 201:
                want.setdefault(("invoice_payments", "idempotency_key"), {})[op.key] = \
                    (i["invoice"], i["amount"])
            elif op.kind == "payment_refund" and op.status == 201:
                want.setdefault(("payment_refunds", "idempotency_key"), {})[op.key] = op.json()["refund"]["id"]
            elif op.kind == "credit_note":
                want.setdefault(("credit_notes", "idempotency_key"), {})[op.key] = op.json()["id"]
            elif op.kind == "contract_cancel" and op.key in self.cancel_notes:
                want.setdefault(("credit_notes", "idempotency_key"), {})[op.key] = AnyRow()
        checked = 0
        for table, column in sorted(have):
            target = "invoice_id, amount" if table == "invoice_payments" else "id"
            rows = self.pg.rows(f"SELECT {column} AS key, {target} FROM {table} WHERE {column} IS NOT NULL")
            expected = want.get((table, column), {})
            seen = Counter()
            for r in rows:
                seen[r["key"]] += 1
                got = (r["invoice_id"], D(r["amount"])) if table == "invoice_payments" else r["id"]
                if r["key"] not in expected:
                    self.add("request_key", f"{table}.{column} {r['key']} (on {got}) matches no acknowledged "
                                            "success under that key")
                elif expected[r["key"]] != got:
                    self.add("request_key", f"{table}.{column} {r['key']} is on {got}, its answer named "
                                            f"{expected[r['key']]}")
            for key, n in seen.items():
                if n > 1:
                    self.add("key_applied_twice", f"{table}.{column} {key} is on {n} rows")
            for key in expected:
                if key not in seen:
                    self.add("request_key", f"{table}.{column}: acknowledged {key} is on no row")
            checked += len(expected)
        self.figures["request_keys_checked"] = checked

    # --- the API ---------------------------------------------------------

    def check_api(self):
        for wid, w in self.world.wallets.items():
            got = self.get(w["token"], f"/v1/wallets/{wid}")
            if got is not None and (D(got["balance"]), D(got["reserved"])) != (self.balance[wid], self.reserved[wid]):
                self.add("api_wallet", f"wallet {wid}: API says balance {got['balance']} reserved "
                                       f"{got['reserved']}, acknowledged {self.balance[wid]} / {self.reserved[wid]}")
            # The wallet's history as the API pages it: the same movements
            # as in the database, newest (highest version) first.
            ids, after = [], ""
            while True:
                page = self.get(w["token"], f"/v1/wallets/{wid}/transactions?limit=100{after}")
                if page is None:
                    break
                ids += [t["id"] for t in page["data"]]
                if not page["has_more"] or not page["data"]:
                    break
                after = f"&starting_after={page['data'][-1]['id']}"
            want = [r["id"] for r in reversed(self.history.get(wid, []))]
            if page is not None and ids != want:
                self.add("api_history", f"wallet {wid}: the API lists {len(ids)} movements, the database has "
                                        f"{len(want)}{'' if len(ids) != len(want) else ' in another order'}")
        tokens = {s["id"]: s["token"] for s in self.world.shops}
        for iid, inv in self.invoices.items():
            got = self.get(tokens[inv["shop"]], f"/v1/invoices/{iid}")
            if got is not None and (got["status"], D(got["amount_paid"]), D(got["amount_due"])) != \
                    (inv["status"], inv["paid"], inv["total"] - inv["credited"] - inv["paid"]):
                self.add("api_invoice", f"invoice {iid}: API says {got['status']} paid {got['amount_paid']} due "
                                        f"{got['amount_due']}, acknowledged {inv['status']} paid {inv['paid']}")
        today = datetime.now(timezone.utc).date().isoformat()
        oks = 0
        for s in self.world.shops:
            rep = self.get(s["token"], f"/v1/reports/reconciliation?from={self.first_day}&to={today}")
            if rep is None:
                continue
            if rep.get("ok") is not True:
                self.add("reconciliation", f"shop {s['id']}: the reconciliation report is not ok: failed "
                                           f"{rep.get('failed_checks')}")
            else:
                oks += 1
        self.figures["reconciliation_ok"] = f"{oks}/{len(self.world.shops)} shops"


def fmt_list(items):
    return "[" + ", ".join(f"{m} {a}{' ' + r if r else ''}" for m, a, r in items) + "]"
