"""Project rules for openapi.yaml that no generic validator knows:

* the operationIds clients are generated from (renaming one breaks them);
* every POST takes a required `Idempotency-Key` header;
* success bodies are application/json, errors application/problem+json
  with the `Problem` schema;
* the OpenAPI links schemathesis follows in its stateful phase:
  createWallet -> getWallet / creditWallet / debitWallet /
  listWalletTransactions, and creditWallet / debitWallet -> getWallet.

    python spec_contract.py openapi.yaml     # exit 1 and a list on violations
"""

from __future__ import annotations

import sys

import yaml

OPERATIONS = {
    ("get", "/healthz"): "healthz",
    ("get", "/readyz"): "readyz",
    ("post", "/v1/admin/idempotency/cleanup"): "cleanupIdempotencyKeys",
    ("get", "/v1/admin/idempotency/stats"): "getIdempotencyStats",
    ("post", "/v1/admin/shops"): "createShop",
    ("post", "/v1/admin/shops/{id}/api-keys"): "createApiKey",
    ("post", "/v1/transfers"): "createTransfer",
    ("post", "/v1/batches"): "createBatch",
    ("get", "/v1/wallets"): "listWallets",
    ("post", "/v1/wallets"): "createWallet",
    ("get", "/v1/wallets/{id}"): "getWallet",
    ("post", "/v1/wallets/{id}/credit"): "creditWallet",
    ("post", "/v1/wallets/{id}/debit"): "debitWallet",
    ("get", "/v1/wallets/{id}/transactions"): "listWalletTransactions",
    ("get", "/v1/wallets/{id}/transactions/{transaction_id}"): "getWalletTransaction",
    ("get", "/v1/wallets/{id}/grants"): "listWalletGrants",
    ("post", "/v1/wallets/{id}/transactions/{transaction_id}/refund"): "refundWalletTransaction",
    ("post", "/v1/wallets/{id}/reservations"): "createReservation",
    ("get", "/v1/wallets/{id}/reservations"): "listReservations",
    ("get", "/v1/reservations/{id}"): "getReservation",
    ("post", "/v1/reservations/{id}/capture"): "captureReservation",
    ("post", "/v1/reservations/{id}/release"): "releaseReservation",
    ("post", "/v1/invoices"): "createInvoice",
    ("get", "/v1/invoices"): "listInvoices",
    ("get", "/v1/invoices/{id}"): "getInvoice",
    ("patch", "/v1/invoices/{id}"): "updateInvoice",
    ("post", "/v1/invoices/{id}/finalize"): "finalizeInvoice",
    ("post", "/v1/invoices/{id}/pay"): "payInvoice",
    ("get", "/v1/invoices/{id}/payments"): "listInvoicePayments",
    ("post", "/v1/invoices/{id}/void"): "voidInvoice",
    ("post", "/v1/invoices/{id}/payments/{payment_id}/refund"): "refundInvoicePayment",
    ("post", "/v1/invoices/{id}/credit-notes"): "createCreditNote",
    ("get", "/v1/credit-notes"): "listCreditNotes",
    ("get", "/v1/credit-notes/{id}"): "getCreditNote",
    ("post", "/v1/contracts"): "createContract",
    ("get", "/v1/contracts"): "listContracts",
    ("get", "/v1/contracts/{id}"): "getContract",
    ("patch", "/v1/contracts/{id}"): "updateContract",
    ("post", "/v1/contracts/{id}/submit"): "submitContract",
    ("post", "/v1/contracts/{id}/approve"): "approveContract",
    ("post", "/v1/contracts/{id}/reject"): "rejectContract",
    ("post", "/v1/contracts/{id}/cancel"): "cancelContract",
    ("get", "/v1/contracts/{id}/periods"): "listContractPeriods",
    ("post", "/v1/webhook-secrets"): "createWebhookSecret",
    ("post", "/v1/webhooks/{provider}/{shop_id}"): "receiveWebhook",
    ("get", "/v1/webhook-events"): "listWebhookEvents",
    ("get", "/v1/webhook-events/{id}"): "getWebhookEvent",
    ("post", "/v1/webhook-events/{id}/retry"): "retryWebhookEvent",
    ("get", "/v1/admin/webhooks/stats"): "getWebhookStats",
    ("get", "/v1/events"): "listEvents",
    ("get", "/v1/events/{id}"): "getEvent",
    ("get", "/v1/webhook-endpoints"): "listWebhookEndpoints",
    ("post", "/v1/webhook-endpoints"): "createWebhookEndpoint",
    ("get", "/v1/webhook-endpoints/{id}"): "getWebhookEndpoint",
    ("patch", "/v1/webhook-endpoints/{id}"): "updateWebhookEndpoint",
    ("delete", "/v1/webhook-endpoints/{id}"): "deleteWebhookEndpoint",
    ("post", "/v1/webhook-endpoints/{id}/rotate-secret"): "rotateWebhookEndpointSecret",
    ("get", "/v1/webhook-endpoints/{id}/deliveries"): "listWebhookDeliveries",
    ("post", "/v1/webhook-endpoints/{id}/deliveries/{delivery_id}/retry"): "retryWebhookDelivery",
    ("get", "/v1/wallets/{id}/balance-alerts"): "listBalanceAlerts",
    ("post", "/v1/wallets/{id}/balance-alerts"): "createBalanceAlert",
    ("delete", "/v1/wallets/{id}/balance-alerts/{alert_id}"): "deleteBalanceAlert",
    ("get", "/health/full"): "getFullHealth",
    ("get", "/metrics"): "getMetrics",
    ("get", "/v1/reports/reconciliation"): "getReconciliation",
    ("get", "/v1/reports/trial-balance"): "getTrialBalance",
}

# Successes that may also be answered as CSV (Accept: text/csv).
CSV_TOO = {"getReconciliation"}

# Signed by the provider instead: the event id is its idempotency key.
NO_IDEMPOTENCY_KEY = {"receiveWebhook"}
# Health reports answer 503 with the same JSON report as 200.
REPORTS_ON_ERROR = {"getFullHealth"}

# Operations that change a versioned object: a required If-Match header,
# and 412 / 428 answers documented.
PRECONDITIONED = {"updateContract", "approveContract", "rejectContract", "cancelContract"}

# (source operationId, status) -> operationIds its links must reach with `id`.
LINKS = {
    ("createWallet", "201"): {"getWallet", "creditWallet", "debitWallet", "listWalletTransactions"},
    ("creditWallet", "201"): {"getWallet", "createReservation", "listWalletGrants"},
    ("createReservation", "201"): {"getReservation", "captureReservation", "releaseReservation"},
    ("createInvoice", "201"): {"getInvoice", "updateInvoice", "finalizeInvoice", "voidInvoice"},
    ("finalizeInvoice", "200"): {"payInvoice"},
    ("createContract", "201"): {"getContract", "updateContract", "submitContract", "cancelContract"},
    ("submitContract", "200"): {"approveContract", "rejectContract"},
    ("debitWallet", "201"): {"getWallet", "refundWalletTransaction"},
    ("refundWalletTransaction", "201"): {"getWalletTransaction", "getWallet"},
    ("createCreditNote", "201"): {"getCreditNote", "getInvoice"},
    ("refundInvoicePayment", "201"): {"getInvoice"},
}

PROBLEM = "#/components/schemas/Problem"
METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}


def main(path: str) -> int:
    doc = yaml.safe_load(open(path, encoding="utf-8"))
    errors: list[str] = []
    seen: dict[tuple[str, str], dict] = {}
    for p, item in (doc.get("paths") or {}).items():
        for method, op in item.items():
            if method in METHODS:
                seen[(method, p)] = op

    for key, want in OPERATIONS.items():
        op = seen.get(key)
        if op is None:
            errors.append(f"{key[0].upper()} {key[1]}: missing")
        elif op.get("operationId") != want:
            errors.append(f"{key[0].upper()} {key[1]}: operationId {op.get('operationId')!r}, expected {want!r}")
    for key in sorted(set(seen) - set(OPERATIONS)):
        errors.append(f"{key[0].upper()} {key[1]}: not known to scripts/conformance/spec_contract.py (add it there)")

    by_id = {op.get("operationId"): op for op in seen.values()}
    for op_id in sorted(PRECONDITIONED):
        op = by_id.get(op_id) or {}
        tags = [x for x in op.get("parameters", []) if x.get("in") == "header" and x.get("name") == "If-Match"]
        if not tags or not tags[0].get("required"):
            errors.append(f"{op_id}: no required If-Match header parameter")
        for status in ("412", "428"):
            if status not in (op.get("responses") or {}):
                errors.append(f"{op_id}: {status} not documented")
    for (method, p), op in sorted(seen.items()):
        label = f"{method.upper()} {p}"
        if method == "post" and op.get("operationId") not in NO_IDEMPOTENCY_KEY:
            keys = [x for x in op.get("parameters", []) if x.get("in") == "header" and x.get("name", "").lower() == "idempotency-key"]
            if not keys or not keys[0].get("required"):
                errors.append(f"{label}: no required Idempotency-Key header parameter")
        for status, resp in (op.get("responses") or {}).items():
            content = resp.get("content") or {}
            if str(status).startswith("2"):
                allowed = {"application/json", "text/csv"} if op.get("operationId") in CSV_TOO else {"application/json"}
                if op.get("operationId") == "getMetrics":
                    # Prometheus text by default, JSON on request.
                    allowed = {"application/json", "text/plain"}
                bad = [t for t in content if t not in allowed]
                if bad:
                    errors.append(f"{label} {status}: success content types {bad}, expected application/json")
            elif op.get("operationId") in REPORTS_ON_ERROR and str(status) == "503":
                if set(content) != {"application/json"}:
                    errors.append(f"{label} {status}: expected the report as application/json")
            elif str(status)[0] in "45" or status == "default":
                schema = (content.get("application/problem+json") or {}).get("schema") or {}
                if set(content) != {"application/problem+json"} or schema.get("$ref") != PROBLEM:
                    errors.append(f"{label} {status}: expected only application/problem+json with $ref {PROBLEM}")

    for (source, status), targets in LINKS.items():
        op = by_id.get(source)
        if op is None:
            continue
        links = ((op.get("responses") or {}).get(status) or {}).get("links") or {}
        reached = {}
        for name, link in links.items():
            target = link.get("operationId")
            if target not in by_id:
                errors.append(f"{source} {status} link {name}: unknown operationId {target!r}")
            reached[target] = link
        for target in sorted(targets):
            link = reached.get(target)
            if link is None:
                errors.append(f"{source} {status}: no link to {target}")
            elif "id" not in (link.get("parameters") or {}) and "path.id" not in (link.get("parameters") or {}):
                errors.append(f"{source} {status} link to {target}: no `id` parameter")

    for e in errors:
        print(f"  {e}")
    print(f"spec contract: {'OK' if not errors else f'{len(errors)} violation(s)'} ({path})")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
