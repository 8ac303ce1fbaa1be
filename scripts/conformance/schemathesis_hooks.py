"""Schemathesis hooks for scripts/conformance/run.sh (loaded via SCHEMATHESIS_HOOKS).

Hypothesis keeps drawing the same small strings ("0", "!", ...) for the
Idempotency-Key header, so most generated mutations would reuse a key with a
different body and be refused (422 idempotency_key_reused) before the body
is ever looked at. A valid key is therefore replaced by a fresh one for every
request; missing or invalid keys (the negative cases) are left untouched.
Replays are exercised by client_flow.py and ts/flow.ts instead.
"""

from __future__ import annotations

import re
import uuid

import schemathesis

VALID_KEY = re.compile(r"[!-~]{1,255}")


@schemathesis.hook
def before_call(ctx, case, kwargs):
    headers = case.headers
    if not headers:
        return
    for name in list(headers):
        if name.lower() == "idempotency-key":
            value = headers[name]
            if isinstance(value, str) and VALID_KEY.fullmatch(value):
                headers[name] = f"st-{uuid.uuid4()}"
