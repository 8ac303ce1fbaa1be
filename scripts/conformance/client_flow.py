"""A money flow through the Python client that openapi-python-client generates
from the committed openapi.yaml, used as generated (no edits).

run.sh generates the package `billing_ledger_client` into .local/ and puts it
on PYTHONPATH, then runs:

    CONFORMANCE_BASE_URL=http://127.0.0.1:PORT CONFORMANCE_SHOP_KEY=blk_... \
        python client_flow.py

Every step asserts its result; the exit status is 1 on any failed check.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import os
import sys
import threading
import time
import uuid
from decimal import ROUND_HALF_UP, Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from billing_ledger_client import AuthenticatedClient
from billing_ledger_client.api.contracts import (
    approve_contract,
    cancel_contract,
    create_contract,
    get_contract,
    list_contract_periods,
    list_contracts,
    reject_contract,
    submit_contract,
    update_contract,
)
from billing_ledger_client.api.webhooks import (
    create_webhook_secret,
    get_webhook_event,
    list_webhook_events,
)
from billing_ledger_client.api.batches import create_batch
from billing_ledger_client.api.events import (
    create_balance_alert,
    create_webhook_endpoint,
    delete_webhook_endpoint,
    get_event,
    get_webhook_endpoint,
    list_events,
    list_webhook_deliveries,
)
from billing_ledger_client.api.reports import get_reconciliation, get_trial_balance
from billing_ledger_client.api.invoices import (
    create_credit_note,
    create_invoice,
    finalize_invoice,
    get_credit_note,
    get_invoice,
    list_credit_notes,
    list_invoice_payments,
    list_invoices,
    pay_invoice,
    refund_invoice_payment,
    void_invoice,
)
from billing_ledger_client.api.reservations import (
    capture_reservation,
    create_reservation,
    get_reservation,
    list_reservations,
    release_reservation,
)
from billing_ledger_client.api.wallets import (
    create_transfer,
    create_wallet,
    credit_wallet,
    debit_wallet,
    get_wallet,
    get_wallet_transaction,
    list_wallet_grants,
    list_wallet_transactions,
    list_wallets,
    refund_wallet_transaction,
)
from billing_ledger_client.models import (
    BatchResult,
    CreateBatch,
    BalanceAlert,
    CreateBalanceAlert,
    CreateWebhookEndpoint,
    EventView,
    PageDelivery,
    PageEventView,
    WebhookEndpoint,
    ApproveContract,
    BillingInterval,
    CancelContract,
    Contract,
    ContractStatus,
    CreateContract,
    PageContract,
    PageContractPeriod,
    RejectContract,
    UpdateContract,
    ReadFrom,
    Reconciliation,
    TrialBalanceReport,
    CreateWebhookSecret,
    EventStatus,
    PageWebhookEvent,
    Receipt,
    WebhookEvent,
    WebhookSecret,
    CaptureReservation,
    CreateCreditNote,
    CreditNote,
    PageCreditNote,
    RefundPayment,
    RefundReceipt,
    RefundRequest,
    CreateInvoice,
    Invoice,
    InvoiceStatus,
    LineInput,
    NoFields,
    PageInvoice,
    PagePayment,
    PayInvoice,
    PaymentMethod,
    PaymentReceipt,
    CreateReservation,
    CreateWallet,
    CreditCategory,
    CreditRequest,
    GrantKind,
    GrantStatus,
    DebitCategory,
    DebitRequest,
    PageReservation,
    PageCreditGrant,
    PageWallet,
    PageWalletTransaction,
    Problem,
    ReleaseReservation,
    Reservation,
    ReservationStatus,
    Transfer,
    TransferRequest,
    TransactionType,
    Wallet,
    WalletTransaction,
)
from billing_ledger_client.types import Response

failures: list[str] = []


def check(ok: bool, what: str, detail: Any = "") -> bool:
    print(f"  {'ok  ' if ok else 'FAIL'} {what}" + (f"  [{detail}]" if not ok and detail != "" else ""))
    if not ok:
        failures.append(what)
    return ok


def expect(resp: Response[Any], status: int, model: type, what: str) -> Any:
    """The response has `status` and parsed into `model`; returns the parsed body."""
    ok = check(
        resp.status_code == status and isinstance(resp.parsed, model),
        f"{what}: {status} {model.__name__}",
        f"got {int(resp.status_code)} {type(resp.parsed).__name__}: {resp.content[:300]!r}",
    )
    if not ok:
        raise SystemExit(report())
    return resp.parsed


def header(resp: Response[Any], name: str) -> str | None:
    return resp.headers.get(name)


def key() -> str:
    return str(uuid.uuid4())


def report() -> int:
    if failures:
        print(f"client_flow.py: {len(failures)} check(s) failed:")
        for f in failures:
            print(f"  - {f}")
        return 1
    print("client_flow.py: all checks passed")
    return 0


def main() -> int:
    base_url = os.environ["CONFORMANCE_BASE_URL"]
    shop_key = os.environ["CONFORMANCE_SHOP_KEY"]
    client = AuthenticatedClient(base_url=base_url, token=shop_key, raise_on_unexpected_status=False)
    run = uuid.uuid4().hex[:12]

    with client:
        print("create two USD wallets")
        ref_a = f"py-flow-{run}-a"
        resp = create_wallet.sync_detailed(
            client=client,
            idempotency_key=key(),
            body=CreateWallet.from_dict({"customer_ref": ref_a, "currency": "USD", "metadata": {"flow": "python"}}),
        )
        a = expect(resp, 201, Wallet, "createWallet A")
        check(header(resp, "Location") == f"/v1/wallets/{a.id}", "createWallet A: Location header", header(resp, "Location"))
        check(header(resp, "Idempotent-Replayed") is None, "createWallet A: not a replay")
        check((a.currency, a.balance, a.available) == ("USD", "0.00", "0.00"), "wallet A starts at 0.00 USD",
              (a.currency, a.balance, a.available))
        check(a.metadata.to_dict() == {"flow": "python"}, "wallet A metadata round-trips", a.metadata.to_dict())
        b = expect(
            create_wallet.sync_detailed(
                client=client, idempotency_key=key(), body=CreateWallet(customer_ref=f"py-flow-{run}-b", currency="USD")
            ),
            201, Wallet, "createWallet B",
        )

        print("credit A 100.00")
        tx = expect(
            credit_wallet.sync_detailed(
                a.id, client=client, idempotency_key=key(),
                body=CreditRequest(amount="100.00", category=CreditCategory.TOP_UP, description="top-up"),
            ),
            201, WalletTransaction, "creditWallet",
        )
        check((tx.type_, tx.category, tx.amount, tx.balance_after, tx.wallet_id)
              == (TransactionType.CREDIT, "top_up", "100.00", "100.00", a.id),
              "credit: type, category, amount, balance_after, wallet_id",
              (tx.type_, tx.category, tx.amount, tx.balance_after, tx.wallet_id))

        print("debit A 30.00 twice with one Idempotency-Key")
        debit_key = key()
        debit_body = DebitRequest(amount="30.00", category=DebitCategory.USAGE)
        first = debit_wallet.sync_detailed(a.id, client=client, idempotency_key=debit_key, body=debit_body)
        d1 = expect(first, 201, WalletTransaction, "debitWallet (first)")
        check(header(first, "Idempotent-Replayed") is None, "first debit is not a replay", header(first, "Idempotent-Replayed"))
        check((d1.type_, d1.amount, d1.balance_after) == (TransactionType.DEBIT, "30.00", "70.00"),
              "debit: type, amount, balance_after", (d1.type_, d1.amount, d1.balance_after))
        second = debit_wallet.sync_detailed(a.id, client=client, idempotency_key=debit_key, body=debit_body)
        d2 = expect(second, 201, WalletTransaction, "debitWallet (same key again)")
        check(header(second, "Idempotent-Replayed") == "true", "second answer has Idempotent-Replayed: true",
              header(second, "Idempotent-Replayed"))
        check(d2.id == d1.id and d2.balance_after == "70.00", "the replay is the same transaction", (d1.id, d2.id))
        w = expect(get_wallet.sync_detailed(a.id, client=client), 200, Wallet, "getWallet A")
        check((w.balance, w.available) == ("70.00", "70.00"), "A was debited once: 70.00", (w.balance, w.available))

        reused = debit_wallet.sync_detailed(
            a.id, client=client, idempotency_key=debit_key, body=DebitRequest(amount="31.00", category=DebitCategory.USAGE)
        )
        p = reused.parsed
        check(isinstance(p, Problem) and p.code == "idempotency_key_reused" and reused.status_code in (409, 422),
              "same key, other body: idempotency_key_reused problem",
              f"{int(reused.status_code)} {reused.content[:200]!r}")

        print("transfer 20.00 from A to B")
        t = expect(
            create_transfer.sync_detailed(
                client=client, idempotency_key=key(),
                body=TransferRequest(from_wallet_id=a.id, to_wallet_id=b.id, amount="20.00", description="py flow"),
            ),
            201, Transfer, "createTransfer",
        )
        check((t.from_wallet_id, t.to_wallet_id, t.amount, t.currency) == (a.id, b.id, "20.00", "USD"),
              "transfer: wallets, amount, currency")
        check((t.debit.wallet_id, t.debit.type_, t.debit.balance_after) == (a.id, TransactionType.DEBIT, "50.00"),
              "transfer debit leg on A, balance 50.00", (t.debit.wallet_id, t.debit.balance_after))
        check((t.credit.wallet_id, t.credit.type_, t.credit.balance_after) == (b.id, TransactionType.CREDIT, "20.00"),
              "transfer credit leg on B, balance 20.00", (t.credit.wallet_id, t.credit.balance_after))
        check(t.debit.transfer_id == t.id and t.credit.transfer_id == t.id, "both legs name the transfer")
        resp = create_transfer.sync_detailed(
            client=client, idempotency_key=key(),
            body=TransferRequest(from_wallet_id=a.id, to_wallet_id=uuid.uuid4(), amount="1.00"),
        )
        check(resp.status_code == 404 and isinstance(resp.parsed, Problem) and resp.parsed.code == "not_found",
              "createTransfer to an unknown wallet: documented 404 not_found problem",
              f"{int(resp.status_code)} parsed as {type(resp.parsed).__name__}")

        print("list A's transactions two at a time")
        page1 = expect(list_wallet_transactions.sync_detailed(a.id, client=client, limit=2), 200,
                       PageWalletTransaction, "listWalletTransactions page 1")
        check(len(page1.data) == 2 and page1.has_more is True, "page 1: 2 items, has_more", (len(page1.data), page1.has_more))
        page2 = expect(
            list_wallet_transactions.sync_detailed(a.id, client=client, limit=2, starting_after=page1.data[-1].id),
            200, PageWalletTransaction, "listWalletTransactions page 2",
        )
        check(len(page2.data) == 1 and page2.has_more is False, "page 2: 1 item, no more", (len(page2.data), page2.has_more))
        ids = [x.id for x in page1.data + page2.data]
        check(ids == [t.debit.id, d1.id, tx.id], "newest first: transfer, debit, credit", ids)
        check(all(x.wallet_id == a.id for x in page1.data + page2.data), "every item belongs to A")

        wallets = expect(list_wallets.sync_detailed(client=client, customer_ref=ref_a), 200, PageWallet, "listWallets by customer_ref")
        check([x.id for x in wallets.data] == [a.id] and wallets.has_more is False, "listWallets finds exactly A")

        print("grants: a promo that expires spends before paid credit")
        g = expect(
            create_wallet.sync_detailed(
                client=client, idempotency_key=key(), body=CreateWallet(customer_ref=f"py-flow-{run}-g", currency="USD")
            ),
            201, Wallet, "createWallet (grants)",
        )
        expect(credit_wallet.sync_detailed(g.id, client=client, idempotency_key=key(),
                                           body=CreditRequest(amount="10.00", category=CreditCategory.TOP_UP)),
               201, WalletTransaction, "creditWallet paid")
        deadline = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=30)
        promo = expect(credit_wallet.sync_detailed(g.id, client=client, idempotency_key=key(),
                                                   body=CreditRequest(amount="5.00", category=CreditCategory.GRANT,
                                                                      expires_at=deadline, priority=10)),
                       201, WalletTransaction, "creditWallet promo with expires_at and priority")
        promo_id = promo.granted[0].grant_id
        spent = expect(debit_wallet.sync_detailed(g.id, client=client, idempotency_key=key(),
                                                  body=DebitRequest(amount="7.00", category=DebitCategory.USAGE)),
                       201, WalletTransaction, "debitWallet across grants")
        check([(c.grant_id, c.amount) for c in spent.consumptions][0] == (promo_id, "5.00")
              and [c.amount for c in spent.consumptions] == ["5.00", "2.00"],
              "the promo first, then paid credit", [(c.grant_id, c.amount) for c in spent.consumptions])
        gw = expect(get_wallet.sync_detailed(g.id, client=client), 200, Wallet, "getWallet (grants)")
        check((gw.balance_paid, gw.balance_granted) == ("8.00", "0.00"), "balance split paid/granted",
              (gw.balance_paid, gw.balance_granted))
        active = expect(list_wallet_grants.sync_detailed(g.id, client=client, status=GrantStatus.ACTIVE), 200,
                        PageCreditGrant, "listWalletGrants active")
        check([(x.kind, x.remaining) for x in active.data] == [(GrantKind.PAID, "8.00")], "one paid grant left",
              [(x.kind, x.remaining) for x in active.data])
        depleted = expect(list_wallet_grants.sync_detailed(g.id, client=client, status=GrantStatus.DEPLETED), 200,
                          PageCreditGrant, "listWalletGrants depleted")
        check([(x.id, x.priority) for x in depleted.data] == [(promo_id, 10)], "the promo is depleted")

        print("debit more than A holds")
        resp = debit_wallet.sync_detailed(
            a.id, client=client, idempotency_key=key(), body=DebitRequest(amount="1000.00", category=DebitCategory.PURCHASE)
        )
        p = expect(resp, 422, Problem, "debitWallet beyond available")
        check(p.code == "insufficient_funds" and p.status == 422, "problem code insufficient_funds", (p.code, p.status))
        check((resp.headers.get("content-type") or "").startswith("application/problem+json"),
              "problem content type", resp.headers.get("content-type"))
        w = expect(get_wallet.sync_detailed(a.id, client=client), 200, Wallet, "getWallet A after refusal")
        check(w.balance == "50.00", "a refused debit leaves the balance alone", w.balance)

        print("hold 10.00 of A under a reservation_key, capture 4.00 of it")
        job_key = f"py-flow-{run}-job"
        resp = create_reservation.sync_detailed(
            a.id, client=client, idempotency_key=key(),
            body=CreateReservation(amount="10.00", reservation_key=job_key, description="bulk send"),
        )
        hold = expect(resp, 201, Reservation, "createReservation")
        check(header(resp, "Location") == f"/v1/reservations/{hold.id}", "createReservation: Location header",
              header(resp, "Location"))
        check((hold.status, hold.amount, hold.captured_amount, hold.wallet_id)
              == (ReservationStatus.ACTIVE, "10.00", "0.00", a.id),
              "hold: active, 10.00 held, nothing captured", (hold.status, hold.amount, hold.captured_amount))
        w = expect(get_wallet.sync_detailed(a.id, client=client), 200, Wallet, "getWallet A with a hold")
        check((w.balance, w.reserved, w.available) == ("50.00", "10.00", "40.00"), "the hold is reserved, not spent",
              (w.balance, w.reserved, w.available))
        again = expect(
            create_reservation.sync_detailed(
                a.id, client=client, idempotency_key=key(),
                body=CreateReservation(amount="10.00", reservation_key=job_key),
            ),
            200, Reservation, "createReservation, same reservation_key, another Idempotency-Key",
        )
        check(again.id == hold.id, "the same reservation_key answers with the same hold", (hold.id, again.id))
        resp = create_reservation.sync_detailed(
            a.id, client=client, idempotency_key=key(), body=CreateReservation(amount="11.00", reservation_key=job_key)
        )
        p = resp.parsed
        check(resp.status_code == 409 and isinstance(p, Problem) and p.code == "reservation_key_conflict"
              and "amount" in p.detail,
              "same reservation_key, other amount: 409 reservation_key_conflict naming amount",
              f"{int(resp.status_code)} {resp.content[:200]!r}")
        captured = expect(
            capture_reservation.sync_detailed(hold.id, client=client, idempotency_key=key(),
                                              body=CaptureReservation(amount="4.00")),
            200, Reservation, "captureReservation 4.00",
        )
        check((captured.status, captured.captured_amount) == (ReservationStatus.CAPTURED, "4.00"),
              "captured 4.00 of the hold", (captured.status, captured.captured_amount))
        w = expect(get_wallet.sync_detailed(a.id, client=client), 200, Wallet, "getWallet A after capture")
        check((w.balance, w.reserved, w.available) == ("46.00", "0.00", "46.00"), "4.00 spent, the rest freed",
              (w.balance, w.reserved, w.available))
        resp = release_reservation.sync_detailed(hold.id, client=client, idempotency_key=key(), body=ReleaseReservation())
        check(resp.status_code == 409 and isinstance(resp.parsed, Problem) and resp.parsed.code == "invalid_state",
              "releasing a captured hold: 409 invalid_state", f"{int(resp.status_code)} {resp.content[:200]!r}")
        other = expect(
            create_reservation.sync_detailed(a.id, client=client, idempotency_key=key(),
                                             body=CreateReservation(amount="6.00", expires_in_seconds=600)),
            201, Reservation, "createReservation 6.00",
        )
        released = expect(
            release_reservation.sync_detailed(other.id, client=client, idempotency_key=key(), body=ReleaseReservation()),
            200, Reservation, "releaseReservation",
        )
        check(released.status == ReservationStatus.RELEASED, "released", released.status)
        got = expect(get_reservation.sync_detailed(hold.id, client=client), 200, Reservation, "getReservation")
        check(got.wallet_transaction_id == captured.wallet_transaction_id and got.status == ReservationStatus.CAPTURED,
              "getReservation shows the capture's transaction")
        page = expect(list_reservations.sync_detailed(a.id, client=client, limit=1), 200, PageReservation,
                      "listReservations limit=1")
        check([x.id for x in page.data] == [other.id] and page.has_more is True, "newest first, has_more",
              ([x.id for x in page.data], page.has_more))
        active = expect(list_reservations.sync_detailed(a.id, client=client, status=ReservationStatus.ACTIVE), 200,
                        PageReservation, "listReservations status=active")
        check(active.data == [], "no active holds left", len(active.data))
        resp = create_reservation.sync_detailed(
            a.id, client=client, idempotency_key=key(), body=CreateReservation(amount="1000.00")
        )
        p = expect(resp, 422, Problem, "createReservation beyond available")
        check(p.code == "insufficient_funds", "hold beyond available: insufficient_funds", p.code)

        print("invoice 3 × 0.335 + 1 × 10.00, finalize, pay 5.00 by card, the rest from A")
        resp = create_invoice.sync_detailed(
            client=client, idempotency_key=key(),
            body=CreateInvoice(customer_ref=ref_a, currency="USD", lines=[
                LineInput(description="SMS", quantity="3", unit_amount="0.335"),
                LineInput(description="setup", quantity="1", unit_amount="10.00")]),
        )
        inv = expect(resp, 201, Invoice, "createInvoice")
        check([x.amount for x in inv.lines] == ["1.01", "10.00"] and inv.total == "11.01",
              "lines round half-up: 1.01 + 10.00 = 11.01", ([x.amount for x in inv.lines], inv.total))
        inv = expect(finalize_invoice.sync_detailed(inv.id, client=client, idempotency_key=key(), body=NoFields()),
                     200, Invoice, "finalizeInvoice")
        check(inv.status == InvoiceStatus.OPEN and isinstance(inv.number, str) and inv.number.startswith("INV-"),
              "open with a number", (inv.status, inv.number))
        card = PayInvoice(method=PaymentMethod.CARD, amount="5.00", external_ref=f"ch-{run}")
        r1 = expect(pay_invoice.sync_detailed(inv.id, client=client, idempotency_key=key(), body=card),
                    201, PaymentReceipt, "payInvoice by card")
        r2 = expect(pay_invoice.sync_detailed(inv.id, client=client, idempotency_key=key(), body=card),
                    200, PaymentReceipt, "payInvoice, same external_ref again")
        check(r2.payment.id == r1.payment.id and r2.existing is True, "one payment per external_ref")
        rest = expect(
            pay_invoice.sync_detailed(inv.id, client=client, idempotency_key=key(),
                                      body=PayInvoice(method=PaymentMethod.WALLET, wallet_id=a.id)),
            201, PaymentReceipt, "payInvoice from wallet A",
        )
        check((rest.payment.amount, rest.invoice.status, rest.invoice.amount_due) == ("6.01", InvoiceStatus.PAID, "0.00"),
              "the rest (6.01) from the wallet: paid", (rest.payment.amount, rest.invoice.status))
        w = expect(get_wallet.sync_detailed(a.id, client=client), 200, Wallet, "getWallet A after the invoice")
        check(w.balance == "39.99", "A paid 6.01", w.balance)
        resp = void_invoice.sync_detailed(inv.id, client=client, idempotency_key=key(), body=NoFields())
        check(resp.status_code == 409 and isinstance(resp.parsed, Problem) and resp.parsed.code == "invalid_state",
              "voiding a paid invoice: 409 invalid_state", int(resp.status_code))
        expect(get_invoice.sync_detailed(inv.id, client=client), 200, Invoice, "getInvoice")
        paid = expect(list_invoice_payments.sync_detailed(inv.id, client=client, limit=1), 200, PagePayment,
                      "listInvoicePayments, first page")
        rest_page = expect(list_invoice_payments.sync_detailed(inv.id, client=client, starting_after=paid.data[0].id),
                           200, PagePayment, "listInvoicePayments, next page")
        check(paid.has_more and len(rest_page.data) == 1 and not rest_page.has_more,
              "two payments listed, a page at a time", (len(paid.data), len(rest_page.data)))
        page = expect(list_invoices.sync_detailed(client=client, customer_ref=ref_a, status=InvoiceStatus.PAID),
                      200, PageInvoice, "listInvoices")
        check([x.id for x in page.data] == [inv.id], "listInvoices finds it", [x.id for x in page.data])

        print("refund 10.00 of the 30.00 debit twice with one Idempotency-Key; more than is left: 422")
        refund_key = key()
        refund_body = RefundRequest(amount="10.00", reason="py flow")
        first = refund_wallet_transaction.sync_detailed(a.id, d1.id, client=client, idempotency_key=refund_key,
                                                        body=refund_body)
        rf = expect(first, 201, WalletTransaction, "refundWalletTransaction")
        check(header(first, "Location") == f"/v1/wallets/{a.id}/transactions/{rf.id}",
              "refundWalletTransaction: Location header", header(first, "Location"))
        check((rf.category, rf.refund_of, rf.amount, rf.balance_after) == ("refund", d1.id, "10.00", "49.99"),
              "a refund credit of 10.00 naming the debit", (rf.category, rf.refund_of, rf.amount, rf.balance_after))
        second = refund_wallet_transaction.sync_detailed(a.id, d1.id, client=client, idempotency_key=refund_key,
                                                         body=refund_body)
        rf2 = expect(second, 201, WalletTransaction, "refundWalletTransaction (same key again)")
        check(rf2.id == rf.id and header(second, "Idempotent-Replayed") == "true", "the replay is the same refund",
              (rf.id, rf2.id, header(second, "Idempotent-Replayed")))
        orig = expect(get_wallet_transaction.sync_detailed(a.id, d1.id, client=client), 200, WalletTransaction,
                      "getWalletTransaction")
        check(orig.refunded_amount == "10.00", "the debit shows 10.00 refunded (once)", orig.refunded_amount)
        resp = refund_wallet_transaction.sync_detailed(a.id, d1.id, client=client, idempotency_key=key(),
                                                       body=RefundRequest(amount="20.01"))
        p = expect(resp, 422, Problem, "refundWalletTransaction beyond what is left")
        check(p.code == "refund_exceeds_remaining" and p.errors is not None and "amount" in p.errors.to_dict(),
              "422 refund_exceeds_remaining naming amount", p.to_dict())

        print("credit the paid invoice 3.00 back to wallet A, then refund 2.00 of the card payment")
        resp = create_credit_note.sync_detailed(
            inv.id, client=client, idempotency_key=key(),
            body=CreateCreditNote.from_dict({"amount": "3.00", "reason": "py flow", "refund": "wallet",
                                             "wallet_id": str(a.id)}),
        )
        note = expect(resp, 201, CreditNote, "createCreditNote")
        check(note.number.startswith("CN-") and (note.amount, note.refunded) == ("3.00", "3.00"),
              "a numbered credit note refunded to the wallet", (note.number, note.amount, note.refunded))
        check(header(resp, "Location") == f"/v1/credit-notes/{note.id}", "createCreditNote: Location",
              header(resp, "Location"))
        got = expect(get_invoice.sync_detailed(inv.id, client=client), 200, Invoice, "getInvoice after the note")
        check((got.status, got.amount_credited, got.amount_paid, got.amount_due) ==
              (InvoiceStatus.PAID, "3.00", "8.01", "0.00"),
              "still paid: 11.01 = 3.00 credited + 8.01 paid", (got.status, got.amount_credited, got.amount_paid))
        check([x.id for x in got.credit_notes] == [note.id], "the invoice shows its credit note")
        w = expect(get_wallet.sync_detailed(a.id, client=client), 200, Wallet, "getWallet A after the credit note")
        check(w.balance == "52.99", "A got the 10.00 refund and the 3.00 credit", w.balance)
        check(expect(get_credit_note.sync_detailed(note.id, client=client), 200, CreditNote, "getCreditNote").id
              == note.id, "getCreditNote finds it")
        notes = expect(list_credit_notes.sync_detailed(client=client, invoice_id=inv.id), 200, PageCreditNote,
                       "listCreditNotes")
        check([x.id for x in notes.data] == [note.id], "listCreditNotes by invoice", [x.id for x in notes.data])
        back = expect(
            refund_invoice_payment.sync_detailed(inv.id, r1.payment.id, client=client, idempotency_key=key(),
                                                 body=RefundPayment(amount="2.00", external_ref=f"re-{run}")),
            201, RefundReceipt, "refundInvoicePayment",
        )
        check((back.refund.amount, back.invoice.status, back.invoice.amount_due) == ("2.00", InvoiceStatus.OPEN, "2.00"),
              "a refunded payment reopens the invoice", (back.refund.amount, back.invoice.status))

        print("contract: draft, edit and submit with ETags; a stale approval 412; approve issues the invoice")
        resp = create_contract.sync_detailed(
            client=client, idempotency_key=key(),
            body=CreateContract.from_dict({"customer_ref": ref_a, "title": "Onboarding", "currency": "USD",
                                           "amount": "250.00", "billing_interval": "one_time",
                                           "starts_on": "2026-12-01"}),
        )
        c = expect(resp, 201, Contract, "createContract")
        check(header(resp, "etag") == '"1"' and c.status == ContractStatus.DRAFT, "draft at ETag \"1\"",
              header(resp, "etag"))
        resp = get_contract.sync_detailed(c.id, client=client, if_none_match='"1"')
        check(resp.status_code == 304 and header(resp, "etag") == '"1"', "getContract If-None-Match: 304",
              int(resp.status_code))
        resp = update_contract.sync_detailed(c.id, client=client, if_match='"1"', idempotency_key=key(),
                                             body=UpdateContract(amount="300.00"))
        c = expect(resp, 200, Contract, "updateContract")
        resp = submit_contract.sync_detailed(c.id, client=client, if_match=header(resp, "etag"),
                                             idempotency_key=key(), body=NoFields())
        c = expect(resp, 200, Contract, "submitContract")
        etag = header(resp, "etag")
        check(etag == '"3"' and c.status == ContractStatus.PENDING_APPROVAL, "pending at ETag \"3\"", etag)
        resp = approve_contract.sync_detailed(c.id, client=client, if_match='"2"', idempotency_key=key(),
                                              body=ApproveContract())
        p = expect(resp, 412, Problem, "approveContract with a stale ETag")
        check(p.code == "version_mismatch" and p.current_version == 3,
              "412 version_mismatch names version 3", p.to_dict())
        approval = key()
        resp = approve_contract.sync_detailed(c.id, client=client, if_match=etag, idempotency_key=approval,
                                              body=ApproveContract(note="ok"))
        c = expect(resp, 200, Contract, "approveContract")
        again = approve_contract.sync_detailed(c.id, client=client, if_match=etag, idempotency_key=approval,
                                               body=ApproveContract(note="ok"))
        check(again.status_code == 200 and header(again, "idempotent-replayed") == "true"
              and header(again, "etag") == header(resp, "etag") == '"4"' and again.content == resp.content,
              "a replayed approval repeats status, ETag and body", (int(again.status_code), header(again, "etag")))
        inv = expect(get_invoice.sync_detailed(c.invoice_id, client=client), 200, Invoice, "the contract's invoice")
        check((inv.status, inv.total, inv.customer_ref) == (InvoiceStatus.OPEN, "300.00", ref_a),
              "approval issued an open invoice of 300.00", (inv.status, inv.total))
        other = expect(create_contract.sync_detailed(
            client=client, idempotency_key=key(),
            body=CreateContract.from_dict({"customer_ref": ref_a, "title": "Retainer", "currency": "USD",
                                           "amount": "99.00", "billing_interval": "monthly",
                                           "starts_on": (datetime.date.today() + datetime.timedelta(days=30)).isoformat()})),
                       201, Contract, "createContract monthly")
        expect(submit_contract.sync_detailed(other.id, client=client, idempotency_key=key(), body=NoFields()),
               200, Contract, "submitContract without If-Match")
        other = expect(reject_contract.sync_detailed(other.id, client=client, if_match='"2"', idempotency_key=key(),
                                                     body=RejectContract(reason="too early")),
                       200, Contract, "rejectContract")
        check(other.status == ContractStatus.REJECTED and other.invoice_id is None, "rejected, no invoice", other.status)
        page = expect(list_contracts.sync_detailed(client=client, customer_ref=ref_a, status=ContractStatus.APPROVED),
                      200, PageContract, "listContracts")
        check([x.id for x in page.data] == [c.id], "listContracts finds the approved one", [x.id for x in page.data])
        check(c.billing_interval == BillingInterval.ONE_TIME, "billing_interval one_time", c.billing_interval)

        print("recurring: a monthly contract started two months ago bills three periods at once; "
              "cancelled immediately, the unused days are credited")
        today = datetime.datetime.now(datetime.timezone.utc).date()
        months_ago = today.month - 3  # zero-based month two months back
        year, month = today.year + months_ago // 12, months_ago % 12 + 1
        starts_on = datetime.date(year, month, min(today.day, 28))
        monthly = expect(create_contract.sync_detailed(
            client=client, idempotency_key=key(),
            body=CreateContract.from_dict({"customer_ref": ref_a, "title": "Hosting", "currency": "USD",
                                           "amount": "31.00", "billing_interval": "monthly",
                                           "starts_on": starts_on.isoformat()})), 201, Contract, "createContract recurring")
        expect(submit_contract.sync_detailed(monthly.id, client=client, idempotency_key=key(), body=NoFields()),
               200, Contract, "submitContract recurring")
        monthly = expect(approve_contract.sync_detailed(monthly.id, client=client, if_match='"2"',
                                                        idempotency_key=key(), body=ApproveContract()),
                         200, Contract, "approveContract recurring")
        periods: list[Any] = []
        for _ in range(300):  # the server bills every BILLING_INTERVAL (1 s here)
            page = expect(list_contract_periods.sync_detailed(monthly.id, client=client), 200, PageContractPeriod,
                          "listContractPeriods")
            periods = page.data
            if len(periods) >= 3:
                break
            time.sleep(0.1)
        check([p.seq for p in periods] == [0, 1, 2], "three periods billed at once", [p.seq for p in periods])
        check(all(p.amount == "31.00" and p.invoice_status == InvoiceStatus.OPEN for p in periods),
              "each an open invoice of the contract's amount", [(p.amount, p.invoice_status) for p in periods])
        current = periods[-1]
        first_inv = expect(get_invoice.sync_detailed(periods[0].invoice_id, client=client), 200, Invoice,
                           "a period's invoice")
        check(first_inv.metadata.to_dict().get("contract_id") == str(monthly.id) and first_inv.customer_ref == ref_a,
              "the period's invoice names its contract and customer", first_inv.metadata.to_dict())
        cancelled = expect(cancel_contract.sync_detailed(monthly.id, client=client, if_match='"3"',
                                                         idempotency_key=key(),
                                                         body=CancelContract(at_period_end=False)),
                           200, Contract, "cancelContract immediately")
        check(cancelled.status == ContractStatus.CANCELLED and cancelled.next_period_on is None,
              "cancelled, nothing more to bill", (cancelled.status, cancelled.next_period_on))
        days = (current.period_end - current.period_start).days
        unused = (current.period_end - today).days
        credit = (Decimal("31.00") * unused / days).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        inv = expect(get_invoice.sync_detailed(current.invoice_id, client=client), 200, Invoice,
                     "the current period's invoice")
        check([n.amount for n in inv.credit_notes] == [str(credit)],
              "the credit note is the unused days' share", ([n.amount for n in inv.credit_notes], str(credit)))
        check(inv.amount_due == str(Decimal("31.00") - credit), "what is due drops by it", inv.amount_due)

        print("webhook: a signed payment.succeeded delivered twice pays the invoice once")
        provider = f"py{run}"
        secret = expect(create_webhook_secret.sync_detailed(client=client, idempotency_key=key(),
                                                            body=CreateWebhookSecret(provider=provider)),
                        201, WebhookSecret, "createWebhookSecret")
        check(isinstance(secret.secret, str) and secret.secret.startswith("whsec_"), "the secret is shown once")
        inv = expect(create_invoice.sync_detailed(
            client=client, idempotency_key=key(),
            body=CreateInvoice(customer_ref=ref_a, currency="USD",
                               lines=[LineInput(description="hooked", quantity="1", unit_amount="12.00")])),
            201, Invoice, "createInvoice for the webhook")
        expect(finalize_invoice.sync_detailed(inv.id, client=client, idempotency_key=key(), body=NoFields()),
               200, Invoice, "finalizeInvoice for the webhook")
        event_id = f"evt_{run}"
        raw = json.dumps({"id": event_id, "type": "payment.succeeded", "created": int(time.time()),
                          "data": {"invoice_id": str(inv.id), "amount": "12.00", "currency": "USD",
                                   "payment_ref": f"psp-{run}"}}).encode()
        t = int(time.time())
        sig = hmac.new(secret.secret.encode(), f"{t}.".encode() + raw, hashlib.sha256).hexdigest()
        # Signed over the exact bytes sent, so posted raw through the
        # generated client's own httpx client.
        http = client.get_httpx_client()
        receipts = []
        for _ in range(2):
            r = http.post(f"/v1/webhooks/{provider}/{os.environ['CONFORMANCE_SHOP_ID']}", content=raw,
                          headers={"Webhook-Signature": f"t={t},v1={sig}", "Content-Type": "application/json"})
            receipts.append(Receipt.from_dict(r.json()) if r.status_code == 200 else None)
        check([x.duplicate if x else None for x in receipts] == [False, True], "first new, then duplicate",
              [x.to_dict() if x else None for x in receipts])
        bad = http.post(f"/v1/webhooks/{provider}/{os.environ['CONFORMANCE_SHOP_ID']}", content=raw + b" ",
                        headers={"Webhook-Signature": f"t={t},v1={sig}", "Content-Type": "application/json"})
        check(bad.status_code == 401 and bad.json().get("code") == "signature_invalid", "a tampered body: 401",
              bad.status_code)
        processed = None
        for _ in range(100):
            page = expect(list_webhook_events.sync_detailed(client=client, status=EventStatus.PROCESSED), 200,
                          PageWebhookEvent, "listWebhookEvents processed")
            processed = next((e for e in page.data if e.event_id == event_id), None)
            if processed:
                break
            time.sleep(0.2)
        check(processed is not None, "the worker processed the event")
        if processed is not None:
            ev = expect(get_webhook_event.sync_detailed(processed.id, client=client), 200, WebhookEvent,
                        "getWebhookEvent")
            check(ev.attempts == 1, "applied in one attempt", ev.attempts)
            got = expect(get_invoice.sync_detailed(inv.id, client=client), 200, Invoice, "the paid invoice")
            paid = expect(list_invoice_payments.sync_detailed(inv.id, client=client), 200, PagePayment,
                          "the paid invoice's payments")
            check(got.status == InvoiceStatus.PAID and len(paid.data) == 1, "paid once", (got.status, len(paid.data)))

        print("batches: one failing item changes nothing; fixed, applied once; an item alone answers from its record")
        bw = expect(create_wallet.sync_detailed(
            client=client, idempotency_key=key(),
            body=CreateWallet(customer_ref=f"py-flow-{run}-batch", currency="USD")), 201, Wallet, "createWallet batch")
        k_credit, k_debit = key(), key()

        def batch_body(debit_amount: str) -> CreateBatch:
            return CreateBatch.from_dict({"items": [
                {"op": "credit", "idempotency_key": k_credit, "wallet_id": str(bw.id), "amount": "10.00",
                 "category": "top_up"},
                {"op": "debit", "idempotency_key": k_debit, "wallet_id": str(bw.id), "amount": debit_amount,
                 "category": "usage"},
            ]})

        refused_batch = create_batch.sync_detailed(client=client, idempotency_key=key(), body=batch_body("25.00"))
        check(refused_batch.status_code == 422 and isinstance(refused_batch.parsed, Problem)
              and refused_batch.parsed.code == "insufficient_funds"
              and "items[1]" in (refused_batch.parsed.errors.to_dict() if refused_batch.parsed.errors else {}),
              "a batch overdrawing in items[1]: 422 insufficient_funds naming the item", refused_batch.content[:300])
        still = expect(get_wallet.sync_detailed(bw.id, client=client), 200, Wallet, "getWallet after the refusal")
        check(still.balance == "0.00", "the refused batch changed nothing", still.balance)
        batch_key = key()
        applied = expect(create_batch.sync_detailed(client=client, idempotency_key=batch_key, body=batch_body("4.00")),
                         201, BatchResult, "createBatch fixed, same item keys")
        check([x.status for x in applied.items] == [201, 201] and not any(x.replayed for x in applied.items),
              "both items applied", [x.to_dict() for x in applied.items])
        again = create_batch.sync_detailed(client=client, idempotency_key=batch_key, body=batch_body("4.00"))
        check(again.status_code == 201 and header(again, "Idempotent-Replayed") == "true"
              and isinstance(again.parsed, BatchResult)
              and [x.to_dict() for x in again.parsed.items] == [x.to_dict() for x in applied.items],
              "the batch retried: its stored answer", again.content[:200])
        alone = debit_wallet.sync_detailed(bw.id, client=client, idempotency_key=k_debit,
                                           body=DebitRequest(amount="4.00", category=DebitCategory.USAGE))
        check(alone.status_code == 201 and header(alone, "Idempotent-Replayed") == "true"
              and isinstance(alone.parsed, WalletTransaction)
              and str(alone.parsed.id) == applied.items[1].body.to_dict()["id"],
              "the debit item sent alone answers from its record", alone.content[:200])
        after = expect(get_wallet.sync_detailed(bw.id, client=client), 200, Wallet, "getWallet after the batch")
        check(after.balance == "6.00", "applied once: 10.00 - 4.00", after.balance)

        print("events: a loopback receiver gets a signed balance alert and the debit, then catches up")
        received: list[tuple[dict[str, str], bytes]] = []

        class Hook(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        receiver = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
        threading.Thread(target=receiver.serve_forever, daemon=True).start()
        try:
            ep = expect(create_webhook_endpoint.sync_detailed(
                client=client, idempotency_key=key(),
                body=CreateWebhookEndpoint(url=f"http://127.0.0.1:{receiver.server_port}/hook",
                                           event_types=["wallet.debited", "wallet.balance_below"])),
                201, WebhookEndpoint, "createWebhookEndpoint")
            check(isinstance(ep.secret, str) and ep.secret.startswith("whsec_"), "the endpoint's secret is shown")
            again = expect(get_webhook_endpoint.sync_detailed(ep.id, client=client), 200, WebhookEndpoint,
                           "getWebhookEndpoint")
            check(not isinstance(again.secret, str), "and only once", again.secret)
            watched = expect(create_wallet.sync_detailed(
                client=client, idempotency_key=key(),
                body=CreateWallet(customer_ref=f"py-flow-{run}-watched", currency="USD")), 201, Wallet,
                "createWallet watched")
            expect(credit_wallet.sync_detailed(
                watched.id, client=client, idempotency_key=key(),
                body=CreditRequest(amount="20.00", category=CreditCategory.TOP_UP)), 201, WalletTransaction,
                "credit watched 20.00")
            alert = expect(create_balance_alert.sync_detailed(
                watched.id, client=client, idempotency_key=key(), body=CreateBalanceAlert(available_below="15.00")),
                201, BalanceAlert, "createBalanceAlert 15.00")
            check(alert.armed is True, "armed at 20.00", alert.armed)
            debit = expect(debit_wallet.sync_detailed(
                watched.id, client=client, idempotency_key=key(),
                body=DebitRequest(amount="6.00", category=DebitCategory.USAGE)), 201, WalletTransaction,
                "debit watched 6.00 (to 14.00)")
            for _ in range(100):
                if len(received) >= 2:
                    break
                time.sleep(0.1)
            time.sleep(0.5)  # anything more would arrive now
            types = sorted(json.loads(body)["type"] for _, body in received)
            check(types == ["wallet.balance_below", "wallet.debited"], "the alert once and the debit", types)
            for headers, body in received:
                parts = [p.split("=", 1) for p in headers.get("webhook-signature", "").split(",")]
                t = next((v for k, v in parts if k == "t"), "0")
                want = hmac.new(ep.secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
                check(any(k == "v1" and hmac.compare_digest(v, want) for k, v in parts)
                      and abs(time.time() - int(t)) < 300, "the delivery's signature verifies", headers)
                check(headers.get("webhook-id") == json.loads(body)["id"], "Webhook-Id is the event id")
            below = expect(list_events.sync_detailed(client=client, type_="wallet.balance_below"), 200,
                           PageEventView, "listEvents type=wallet.balance_below")
            ours = [e for e in below.data if e.data.to_dict()["wallet"]["id"] == str(watched.id)]
            check(len(ours) == 1 and ours[0].data.to_dict()["wallet"]["balance"] == "14.00",
                  "one alert event, the wallet after the debit", [e.to_dict() for e in ours])
            seen: list[EventView] = []
            after: Any = None
            while True:
                kwargs = {"starting_after": after} if after else {}
                page = expect(list_events.sync_detailed(client=client, limit=25, **kwargs), 200, PageEventView,
                              "listEvents page")
                seen.extend(page.data)
                if not page.has_more:
                    break
                after = page.data[-1].id
            ids = [str(e.id) for e in seen]
            check(len(ids) == len(set(ids)), "catch-up lists every event once", len(ids))
            delivered = {json.loads(body)["id"] for _, body in received}
            check(delivered <= set(ids), "catch-up holds every delivered event")
            debited = [e for e in seen if e.type_ == "wallet.debited" and e.data.to_dict()["id"] == str(debit.id)]
            check(len(debited) == 1, "the debit's event, its data the movement", len(debited))
            if debited:
                one = expect(get_event.sync_detailed(debited[0].id, client=client), 200, EventView, "getEvent")
                check(one.data.to_dict()["amount"] == "6.00", "getEvent shows the debit", one.data.to_dict())
            deliveries = expect(list_webhook_deliveries.sync_detailed(ep.id, client=client), 200, PageDelivery,
                                "listWebhookDeliveries")
            check(sorted(str(d.status) for d in deliveries.data) == ["delivered", "delivered"],
                  "both deliveries delivered", [d.to_dict() for d in deliveries.data])
            expect(delete_webhook_endpoint.sync_detailed(ep.id, client=client, idempotency_key=key()), 200,
                   WebhookEndpoint, "deleteWebhookEndpoint")
        finally:
            receiver.shutdown()

        print("reconciliation of today: every check passes, the trial balance is balanced")
        day = datetime.datetime.now(datetime.timezone.utc).date()
        rec = expect(get_reconciliation.sync_detailed(client=client, from_=day, to=day), 200, Reconciliation,
                     "getReconciliation")
        check(rec.ok is True and rec.failed_checks == [], "ok, no failed check", rec.failed_checks)
        check(all(t.balanced for t in rec.trial_balance), "trial balance balanced")
        # No REPORTS_DATABASE_URL here: the primary, and so no lag.
        check(rec.read_from == ReadFrom.PRIMARY and rec.replica_lag_ms is None, "read from the primary",
              (rec.read_from, rec.replica_lag_ms))
        tb = expect(get_trial_balance.sync_detailed(client=client, as_of=day), 200, TrialBalanceReport,
                    "getTrialBalance")
        check(all(c.balanced for c in tb.currencies), "trial balance as of today balanced")

        missing = get_wallet.sync_detailed(uuid.uuid4(), client=client)
        check(isinstance(missing.parsed, Problem) and missing.status_code == 404 and missing.parsed.code == "not_found",
              "unknown wallet: 404 not_found problem", int(missing.status_code))

    return report()


if __name__ == "__main__":
    sys.exit(main())
