"""Schemathesis hooks for scripts/conformance/run.sh (loaded via SCHEMATHESIS_HOOKS).

1. Fresh Idempotency-Keys. Hypothesis keeps drawing the same small strings
   ("0", "!", ...) for the Idempotency-Key header, so most generated mutations
   would reuse a key with another body and be refused (422
   idempotency_key_reused) before their body is looked at. Every valid key is
   replaced by a fresh one; missing or invalid keys (negative cases) are kept.
   Replays are exercised by client_flow.py and ts/flow.ts instead.

2. Real wallets for transfers. Nothing in one response names two wallets of
   the shop, so links cannot feed POST /v1/transfers and random ids only ever
   reach 404. Two of every three transfers whose generated wallet ids are
   well-formed UUIDs get the two wallets run.sh seeded
   (CONFORMANCE_TRANSFER_WALLETS="from,to", the first one funded); the others
   (the first one included) keep their random ids so the 404 answer stays
   covered.

3. Unknown ids. Ids in paths mostly come from earlier answers (links), so
   every fourth call of an operation with an `{id}` gets a fresh UUID
   instead: what the service answers for an object that does not exist (or
   is another shop's) must be documented too.

4. Signed webhook deliveries. The fuzzer cannot sign, so two of every three
   calls of the receiver go to the seeded shop and provider `conformance`
   with a valid Webhook-Signature over the exact bytes the transport sends
   (`json.dumps` of the body, as requests serializes it); the rest keep what
   was generated, covering the 401 and 404 answers.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import os
import time
import re
import uuid

import schemathesis

VALID_KEY = re.compile(r"[!-~]{1,255}")
UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
TRANSFER_WALLETS = [w for w in os.environ.get("CONFORMANCE_TRANSFER_WALLETS", "").split(",") if w]
_transfers = itertools.count()
_unknown_ids = itertools.count()
_deliveries = itertools.count()
WEBHOOK_SHOP = os.environ.get("CONFORMANCE_SHOP_ID", "")
WEBHOOK_SECRET = os.environ.get("CONFORMANCE_WEBHOOK_SECRET", "")
RECEIVER = "/v1/webhooks/{provider}/{shop_id}"


def sign(secret: str, body: bytes) -> str:
    t = int(time.time())
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


@schemathesis.hook
def before_call(ctx, case, kwargs):
    headers = case.headers
    if headers:
        for name in list(headers):
            if name.lower() == "idempotency-key":
                value = headers[name]
                if isinstance(value, str) and VALID_KEY.fullmatch(value):
                    headers[name] = f"st-{uuid.uuid4()}"

    operation = case.operation
    if (
        len(TRANSFER_WALLETS) == 2
        and operation.method.upper() == "POST"
        and operation.path == "/v1/transfers"
        and isinstance(case.body, dict)
        and all(isinstance(case.body.get(k), str) and UUID.fullmatch(case.body[k]) for k in ("from_wallet_id", "to_wallet_id"))
        and next(_transfers) % 3 != 0
    ):
        case.body["from_wallet_id"], case.body["to_wallet_id"] = TRANSFER_WALLETS

    if "{id}" in operation.path and case.path_parameters and next(_unknown_ids) % 4 == 0:
        case.path_parameters["id"] = str(uuid.uuid4())

    if operation.path == RECEIVER and WEBHOOK_SECRET and next(_deliveries) % 3 != 0:
        try:
            raw = json.dumps(case.body, allow_nan=False).encode()
        except (TypeError, ValueError):
            return
        case.path_parameters = {"provider": "conformance", "shop_id": WEBHOOK_SHOP}
        case.headers = {**(case.headers or {}), "Webhook-Signature": sign(WEBHOOK_SECRET, raw)}
