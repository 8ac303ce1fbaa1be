-- Rolls up the next closed day after the last one rolled (or the first day
-- with entries), in one statement, under the caller's advisory lock: per
-- shop, currency and account the day's net, and per wallet that moved its
-- journal balance at the day's end (its last rolled balance plus the day).
-- $1: the last day that may be rolled (a day whose end is past every
-- transaction that could still commit). Returns the day rolled, if any.
WITH state AS (
    SELECT COALESCE(last_day + 1,
                    (SELECT (min(created_at) AT TIME ZONE 'UTC')::date FROM journal_transactions)) AS day
      FROM journal_rollup_state
),
todo AS (
    SELECT day FROM state WHERE day IS NOT NULL AND day <= $1
),
entries AS (
    SELECT e.shop_id, e.currency, e.account, e.wallet_id, e.amount
      FROM todo
      JOIN journal_transactions t
        ON t.created_at >= todo.day::timestamp AT TIME ZONE 'UTC'
       AND t.created_at < (todo.day + 1)::timestamp AT TIME ZONE 'UTC'
      JOIN journal_entries e ON e.shop_id = t.shop_id AND e.journal_transaction_id = t.id
),
totals AS (
    INSERT INTO journal_daily_totals (shop_id, day, currency, account, total)
    SELECT e.shop_id, todo.day, e.currency, e.account, sum(e.amount)
      FROM todo, entries e
     GROUP BY e.shop_id, todo.day, e.currency, e.account
    ON CONFLICT (shop_id, currency, account, day) DO UPDATE SET total = EXCLUDED.total
),
wallets AS (
    INSERT INTO journal_wallet_balances (shop_id, wallet_id, day, balance)
    SELECT d.shop_id, d.wallet_id, todo.day, COALESCE(prev.balance, 0) + d.total
      FROM todo
     CROSS JOIN (SELECT shop_id, wallet_id, sum(amount) AS total FROM entries
                  WHERE wallet_id IS NOT NULL GROUP BY shop_id, wallet_id) d
      LEFT JOIN LATERAL (SELECT b.balance FROM journal_wallet_balances b
                          WHERE b.shop_id = d.shop_id AND b.wallet_id = d.wallet_id AND b.day < todo.day
                          ORDER BY b.day DESC LIMIT 1) prev ON true
    ON CONFLICT (shop_id, wallet_id, day) DO UPDATE SET balance = EXCLUDED.balance
)
UPDATE journal_rollup_state SET last_day = todo.day FROM todo
RETURNING last_day AS "day!"
