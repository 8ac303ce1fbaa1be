"""Seeds a fresh server for scripts/conformance/run.sh through the admin API:
a shop (its owner key is the shop key the tests use), two USD wallets, the
first credited, for schemathesis to transfer between, and a webhook signing
secret for the provider `conformance`, so deliveries can be signed.

    python seed.py BASE_URL ADMIN_KEY   # prints shell assignments on stdout

Standard library only; any failure exits non-zero with the server's answer.
"""

from __future__ import annotations

import json
import shlex
import sys
import urllib.error
import urllib.request
import uuid


def call(base: str, token: str, method: str, path: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        req.add_header("Content-Type", "application/json")
        req.add_header("Idempotency-Key", f"seed-{uuid.uuid4()}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as e:
        sys.exit(f"seed: {method} {path} answered {e.code}: {e.read()[:500]!r}")


def main() -> None:
    base, admin_key = sys.argv[1].rstrip("/"), sys.argv[2]
    shop = call(base, admin_key, "POST", "/v1/admin/shops", {"name": "conformance"})
    shop_key = shop["api_key"]["secret"]
    if not shop_key:
        sys.exit("seed: the new shop's key has no secret")
    wallets = [
        call(base, shop_key, "POST", "/v1/wallets", {"customer_ref": f"conformance-{n}", "currency": "USD"})["id"]
        for n in ("transfer-from", "transfer-to")
    ]
    call(base, shop_key, "POST", f"/v1/wallets/{wallets[0]}/credit", {"amount": "1000000.00", "category": "top_up"})
    secret = call(base, shop_key, "POST", "/v1/webhook-secrets", {"provider": "conformance"})["secret"]
    print(f"CONFORMANCE_SHOP_ID={shlex.quote(shop['id'])}")
    print(f"CONFORMANCE_WEBHOOK_SECRET={shlex.quote(secret)}")
    print(f"CONFORMANCE_SHOP_KEY={shlex.quote(shop_key)}")
    print(f"CONFORMANCE_TRANSFER_WALLETS={shlex.quote(','.join(wallets))}")


if __name__ == "__main__":
    main()
