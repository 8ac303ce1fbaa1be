-- pgbench script: exactly the statements of one idempotent debit of the
-- service (POST /v1/wallets/{id}/debit, see src/executor/mod.rs,
-- src/idempotency/mod.rs, src/wallets/service.rs, src/ledger/mod.rs), with no
-- service in between. When the debit path changes, this script changes too.
-- `make bench` runs it with -M prepared (sqlx prepares every statement) over
-- the wallets it created; bench_wallets maps n -> (key prefix, wallet).
\set n random(1, 1000)
\set k random(1, 9000000000000000000)
-- 1. authentication (in the service, only when its auth cache misses; the join with
--    bench_wallets only picks the wallet for this transaction)
SELECT k.shop_id, k.id AS key_id, k.role, k.secret_hash, b.wallet_id
  FROM bench_wallets b JOIN api_keys k ON k.prefix = b.prefix AND k.revoked_at IS NULL
 WHERE b.n = :n \gset
BEGIN;
-- 2. one statement: claim the Idempotency-Key (or take over its expired
--    record) and lock the wallet, looking for an earlier movement under the key
WITH claim AS (
    INSERT INTO idempotency_keys (shop_id, key, fingerprint, expires_at)
    VALUES (:shop_id::uuid, 'bench-' || :k, '\x8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4'::bytea,
            now() + make_interval(hours => 24))
    ON CONFLICT (shop_id, key) DO NOTHING RETURNING 1),
takeover AS (
    UPDATE idempotency_keys
       SET fingerprint = '\x00'::bytea, response_status = 0, response_content_type = '',
           response_location = NULL, response_etag = NULL, response_body = '',
           created_at = now(), expires_at = now() + make_interval(hours => 24)
     WHERE shop_id = :shop_id::uuid AND key = 'bench-' || :k AND expires_at <= now() RETURNING 1),
ours AS (SELECT 1 FROM claim UNION ALL SELECT 1 FROM takeover),
locked AS (
    SELECT w.id, w.currency, w.balance, w.reserved, w.overdraft_limit, now() AS at, t.id AS earlier
      FROM wallets w
      LEFT JOIN wallet_transactions t ON t.shop_id = w.shop_id AND t.idempotency_key = 'bench-' || :k
     WHERE w.shop_id = :shop_id::uuid AND w.id = ANY(ARRAY[:wallet_id::uuid])
       AND (false OR EXISTS (SELECT 1 FROM ours))
     ORDER BY w.id
       FOR UPDATE OF w)
SELECT EXISTS (SELECT 1 FROM ours) AS ours, l.balance, gen_random_uuid() AS journal_id
  FROM (SELECT 1) one LEFT JOIN locked l ON true \gset
-- 3. one statement: the stored response (a typical 350-byte body, hex:
--    pgbench would read the colons of JSON as variables), the audit row (as
--    the one-element arrays the service binds), the
--    journal transaction with its two entries, the wallet's new balance and
--    its history row
WITH stored AS (
    UPDATE idempotency_keys
       SET response_status = 201, response_content_type = 'application/json',
           response_location = NULL, response_etag = NULL,
           response_body = '\x7b226964223a2230316132303761392d323837372d373763612d626362652d336233386330333261376163222c2277616c6c65745f6964223a2230316132303761392d323830362d373739612d393933332d363138333535663831633134222c2274797065223a226465626974222c2263617465676f7279223a227573616765222c22616d6f756e74223a22302e3031222c2263757272656e6379223a22555344222c2262616c616e63655f6166746572223a223939393939392e3939222c226465736372697074696f6e223a6e756c6c2c226d65746164617461223a7b7d2c227472616e736665725f6964223a6e756c6c2c226a6f75726e616c5f7472616e73616374696f6e5f6964223a2230316132303761392d323837352d373533382d613738632d616632663365313632373136222c22637265617465645f6174223a22323032362d31312d32335430393a30373a33362e3137393733365a227d'::bytea
     WHERE shop_id = :shop_id::uuid AND key = 'bench-' || :k AND 201::smallint IS NOT NULL),
audited AS (
    INSERT INTO audit_log (shop_id, id, api_key_id, action, entity, entity_id, request_id, detail)
    SELECT :shop_id::uuid, a.id, a.api_key_id, a.action, a.entity, a.entity_id, a.request_id, a.detail
      FROM UNNEST(ARRAY[gen_random_uuid()], ARRAY[:key_id::uuid], '{wallet.debit}'::text[],
                  '{wallet_transaction}'::text[], ARRAY[gen_random_uuid()],
                  '{01a207a9-2872-779e-88a9-a9a728e67f59}'::text[], '{NULL}'::jsonb[])
           AS a(id, api_key_id, action, entity, entity_id, request_id, detail)),
jt AS (
    INSERT INTO journal_transactions (shop_id, id, kind, created_at)
    SELECT :shop_id::uuid, :journal_id::uuid, 'wallet.debit', now()
     WHERE cardinality('{1,2}'::smallint[]) > 0),
je AS (
    INSERT INTO journal_entries (shop_id, journal_transaction_id, line, account, wallet_id, currency, amount)
    SELECT :shop_id::uuid, :journal_id::uuid, e.line, e.account, e.wallet_id, 'USD', e.amount
      FROM UNNEST('{1,2}'::smallint[], '{wallet,revenue}'::text[],
                  ARRAY[:wallet_id::uuid, NULL], '{-0.01,0.01}'::numeric[])
           AS e(line, account, wallet_id, amount)),
w AS (
    UPDATE wallets SET balance = balance + -0.01, version = version + 1, updated_at = now()
     WHERE shop_id = :shop_id::uuid AND id = :wallet_id::uuid
    RETURNING balance, version)
INSERT INTO wallet_transactions
    (shop_id, id, wallet_id, wallet_version, type, category, amount, balance_after,
     description, metadata, idempotency_key, transfer_id, journal_transaction_id, created_at)
SELECT :shop_id::uuid, gen_random_uuid(), :wallet_id::uuid, w.version, 'debit', 'usage', 0.01, w.balance,
       NULL, '{}', 'bench-' || :k, NULL, :journal_id::uuid, now() FROM w
RETURNING balance_after;
COMMIT;
