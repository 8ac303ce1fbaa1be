-- `make bench` run 9: a shop's wallet history written by SQL, as the
-- service writes it (a wallet movement, its journal transaction with two
-- balanced entries, the wallet's running balance and version), so a
-- reconciliation of yesterday can be timed with and without a long past.
--
-- psql variables: shop (uuid), wallets, history (movements spread over the
-- 365 days before yesterday), day (movements spread over yesterday, UTC).
-- Every wallet gets the same share; a wallet's k-th movement debits 1.00
-- when k is a multiple of 4 and credits 1.00 otherwise, so its balance
-- after it is k - 2 * (k / 4), never negative.
\set ON_ERROR_STOP 1
BEGIN;
-- Constructed consistent: the per-row triggers (balance check, foreign
-- keys, append-only) would only slow 4 million inserts down.
SET LOCAL session_replication_role = replica;

CREATE TEMP TABLE seed ON COMMIT DROP AS
WITH p AS (
    SELECT :'shop'::uuid AS shop, :wallets::bigint AS wallets, :history::bigint AS history,
           :day::bigint AS day,
           (now() AT TIME ZONE 'UTC')::date - 1 AS yesterday
)
SELECT p.shop, g % p.wallets AS w, g / p.wallets + 1 AS k,
       md5(p.shop::text || '-m' || g)::uuid AS id,
       CASE WHEN g < p.history
            THEN (p.yesterday - 365)::timestamp AT TIME ZONE 'UTC'
                 + g * (interval '365 days' / greatest(p.history, 1))
            ELSE p.yesterday::timestamp AT TIME ZONE 'UTC'
                 + (g - p.history) * (interval '1 day' / p.day)
       END AS created_at
  FROM p, generate_series(0, p.history + p.day - 1) g;

INSERT INTO wallets (shop_id, id, customer_ref, currency, balance, version)
SELECT shop, md5(shop::text || '-w' || w)::uuid, 'bench-' || w, 'USD',
       max(k) - 2 * (max(k) / 4), max(k) + 1
  FROM seed GROUP BY shop, w;

-- Each balance held in one paid grant without expiry, as the migration that
-- introduced grants left every balance (the seeded movements predate it).
INSERT INTO credit_grants (shop_id, id, wallet_id, kind, amount, remaining, created_at)
SELECT shop_id, md5(id::text || '-g')::uuid, id, 'paid', balance, balance, now()
  FROM wallets WHERE shop_id = :'shop'::uuid AND balance > 0;

INSERT INTO journal_transactions (shop_id, id, kind, created_at)
SELECT shop, id, CASE WHEN k % 4 = 0 THEN 'wallet.debit' ELSE 'wallet.credit' END, created_at
  FROM seed;

INSERT INTO journal_entries (shop_id, journal_transaction_id, line, account, wallet_id, currency, amount)
SELECT shop, id, 1, 'wallet', md5(shop::text || '-w' || w)::uuid, 'USD',
       CASE WHEN k % 4 = 0 THEN -1 ELSE 1 END
  FROM seed
UNION ALL
SELECT shop, id, 2, CASE WHEN k % 4 = 0 THEN 'revenue' ELSE 'external_payments' END, NULL, 'USD',
       CASE WHEN k % 4 = 0 THEN 1 ELSE -1 END
  FROM seed;

INSERT INTO wallet_transactions (shop_id, id, wallet_id, wallet_version, type, category, amount,
                                 balance_after, journal_transaction_id, created_at)
SELECT shop, id, md5(shop::text || '-w' || w)::uuid, k + 1,
       CASE WHEN k % 4 = 0 THEN 'debit' ELSE 'credit' END,
       CASE WHEN k % 4 = 0 THEN 'usage' ELSE 'top_up' END,
       1, k - 2 * (k / 4), id, created_at
  FROM seed;
COMMIT;
ANALYZE wallets, credit_grants, journal_transactions, journal_entries, wallet_transactions;
