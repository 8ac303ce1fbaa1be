-- pgbench script: the fixed yardstick for `make bench` (run 1c). It writes
-- the same rows as one idempotent debit -- key row, wallet update returning
-- the balance, journal transaction, two journal entries, wallet
-- transaction, audit row, stored response -- one plain statement each
-- inside BEGIN/COMMIT, with no service in between. Unlike debit.sql, which
-- mirrors the service's own statements and changes with them, this script
-- never changes when the service gets faster, so the ratio of HTTP debits
-- to it shows real progress. Only a schema change may touch it.
\set n random(1, 1000)
BEGIN;
-- the key row; picking the wallet (bench_wallets) rides in the same statement
INSERT INTO idempotency_keys (shop_id, key, fingerprint, expires_at)
SELECT w.shop_id, gen_random_uuid()::text,
       '\x8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4'::bytea,
       now() + make_interval(hours => 24)
  FROM bench_wallets b JOIN wallets w ON w.id = b.wallet_id
 WHERE b.n = :n
RETURNING shop_id, key AS idem_key, (SELECT wallet_id FROM bench_wallets WHERE n = :n) AS wallet_id,
          gen_random_uuid() AS journal_id \gset
UPDATE wallets SET balance = balance - 0.01, version = version + 1, updated_at = now()
 WHERE shop_id = :shop_id::uuid AND id = :wallet_id::uuid
RETURNING balance, version \gset
INSERT INTO journal_transactions (shop_id, id, kind) VALUES (:shop_id::uuid, :journal_id::uuid, 'wallet.debit');
INSERT INTO journal_entries (shop_id, journal_transaction_id, line, account, wallet_id, currency, amount)
VALUES (:shop_id::uuid, :journal_id::uuid, 1, 'wallet', :wallet_id::uuid, 'USD', -0.01);
INSERT INTO journal_entries (shop_id, journal_transaction_id, line, account, wallet_id, currency, amount)
VALUES (:shop_id::uuid, :journal_id::uuid, 2, 'revenue', NULL, 'USD', 0.01);
INSERT INTO wallet_transactions
    (shop_id, id, wallet_id, wallet_version, type, category, amount, balance_after,
     description, metadata, idempotency_key, transfer_id, journal_transaction_id)
VALUES (:shop_id::uuid, gen_random_uuid(), :wallet_id::uuid, :version, 'debit', 'usage', 0.01, :balance,
        NULL, '{}', :idem_key::text, NULL, :journal_id::uuid);
INSERT INTO audit_log (shop_id, id, api_key_id, action, entity, entity_id, request_id)
VALUES (:shop_id::uuid, gen_random_uuid(), NULL, 'wallet.debit', 'wallet_transaction', gen_random_uuid(),
        '01a207a9-2872-779e-88a9-a9a728e67f59');
-- the stored response: a typical 350-byte body (hex, since pgbench would read
-- the colons of JSON as variables)
UPDATE idempotency_keys
   SET response_status = 201, response_content_type = 'application/json',
       response_body = '\x7b226964223a2230316132303761392d323837372d373763612d626362652d336233386330333261376163222c2277616c6c65745f6964223a2230316132303761392d323830362d373739612d393933332d363138333535663831633134222c2274797065223a226465626974222c2263617465676f7279223a227573616765222c22616d6f756e74223a22302e3031222c2263757272656e6379223a22555344222c2262616c616e63655f6166746572223a223939393939392e3939222c226465736372697074696f6e223a6e756c6c2c226d65746164617461223a7b7d2c227472616e736665725f6964223a6e756c6c2c226a6f75726e616c5f7472616e73616374696f6e5f6964223a2230316132303761392d323837352d373533382d613738632d616632663365313632373136222c22637265617465645f6174223a22323032362d31312d32335430393a30373a33362e3137393733365a227d'::bytea
 WHERE shop_id = :shop_id::uuid AND key = :idem_key::text;
COMMIT;
