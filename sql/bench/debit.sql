-- pgbench script: exactly the statements of one idempotent debit of the
-- service (POST /v1/wallets/{id}/debit, see src/http/idempotency.rs,
-- src/idempotency/mod.rs, src/wallets/service.rs, src/ledger/mod.rs), with no
-- service in between. When the debit path changes, this script changes too.
-- `make bench` runs it with -M prepared (sqlx prepares every statement) over
-- the wallets it created; bench_wallets maps n -> (key prefix, wallet).
\set n random(1, 1000)
-- 1. authentication (its own pool connection in the service; the join with
--    bench_wallets only picks the wallet for this transaction)
SELECT k.shop_id, k.id AS key_id, k.role, k.secret_hash, b.wallet_id
  FROM bench_wallets b JOIN api_keys k ON k.prefix = b.prefix AND k.revoked_at IS NULL
 WHERE b.n = :n \gset
BEGIN;
-- 2. claim the Idempotency-Key
INSERT INTO idempotency_keys (scope, key, fingerprint, expires_at)
VALUES (:shop_id, gen_random_uuid()::text, '\x8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4'::bytea,
        now() + make_interval(hours => 24))
ON CONFLICT (scope, key) DO NOTHING
RETURNING key AS idem_key \gset
SAVEPOINT _sqlx_savepoint_1;
-- 3. lock the wallet, look for an earlier movement under the key
SELECT w.currency, w.balance - w.reserved AS available, w.overdraft_limit, t.id AS earlier
  FROM wallets w
  LEFT JOIN wallet_transactions t ON t.shop_id = w.shop_id AND t.idempotency_key = :idem_key
 WHERE w.shop_id = :shop_id AND w.id = :wallet_id
   FOR UPDATE OF w;
-- 4. the journal transaction and its two entries
WITH jt AS (INSERT INTO journal_transactions (shop_id, id, kind)
            VALUES (:shop_id, gen_random_uuid(), 'wallet.debit') RETURNING id),
     je AS (INSERT INTO journal_entries (shop_id, journal_transaction_id, line, account, wallet_id, currency, amount)
            SELECT :shop_id, jt.id, e.line, e.account, e.wallet_id, 'USD', e.amount
              FROM jt, UNNEST('{1,2}'::smallint[], '{wallet,revenue}'::text[],
                              ARRAY[:wallet_id::uuid, NULL], '{-0.01,0.01}'::numeric[])
                   AS e(line, account, wallet_id, amount))
SELECT id AS journal_id FROM jt \gset
-- 5. the wallet's new balance and its history row
WITH w AS (
    UPDATE wallets SET balance = balance + -0.01, version = version + 1, updated_at = now()
     WHERE shop_id = :shop_id AND id = :wallet_id
    RETURNING balance, version
)
INSERT INTO wallet_transactions
    (shop_id, id, wallet_id, wallet_version, type, category, amount, balance_after,
     description, metadata, idempotency_key, transfer_id, journal_transaction_id)
SELECT :shop_id, gen_random_uuid(), :wallet_id, w.version, 'debit', 'usage', 0.01, w.balance,
       NULL, '{}', :idem_key, NULL, :journal_id FROM w
RETURNING balance_after, created_at;
RELEASE SAVEPOINT _sqlx_savepoint_1;
-- 6. the stored response and the audit row
WITH audit AS (
    INSERT INTO audit_log (id, shop_id, api_key_id, action, entity, entity_id, request_id)
    VALUES (gen_random_uuid(), :shop_id, :key_id, 'wallet.debit', 'wallet_transaction', gen_random_uuid(),
            '01a207a9-2872-779e-88a9-a9a728e67f59')
)
UPDATE idempotency_keys
   SET response_status = 201,
       response_body = '{"id":"01a207a9-2877-77ca-bcbe-3b38c032a7ac","wallet_id":"01a207a9-2806-779a-9933-618355f81c14","type":"debit","category":"usage","amount":"0.01","currency":"USD","balance_after":"999999.99","description":null,"metadata":{},"transfer_id":null,"journal_transaction_id":"01a207a9-2875-7538-a78c-af2f3e162716","created_at":"2026-11-23T09:07:36.179736Z"}'::bytea,
       response_location = NULL
 WHERE scope = :shop_id AND key = :idem_key;
COMMIT;
