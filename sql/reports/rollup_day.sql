-- Rolls up day $1 of shop $2 (its next one, and closed: the caller checked
-- both under the shop's advisory lock) in one statement, every table read
-- and written filtered by the shop, so on Citus it runs on the shop's
-- shard alone: per currency and account the
-- day's net, and per wallet that moved its journal balance at the day's end
-- (its last rolled balance plus the day). The day is a value, not read
-- here, so the planner sees one day's range of journal transactions.
WITH entries AS (
    SELECT e.shop_id, e.currency, e.account, e.wallet_id, e.amount
      FROM journal_transactions t
      JOIN journal_entries e ON e.shop_id = t.shop_id AND e.journal_transaction_id = t.id
     WHERE t.shop_id = $2 AND e.shop_id = $2
       AND t.created_at >= $1::date::timestamp AT TIME ZONE 'UTC'
       AND t.created_at < ($1::date + 1)::timestamp AT TIME ZONE 'UTC'
),
totals AS (
    INSERT INTO journal_daily_totals (shop_id, day, currency, account, total)
    SELECT $2::uuid, $1::date, currency, account, sum(amount)
      FROM entries
     GROUP BY shop_id, currency, account
    ON CONFLICT (shop_id, currency, account, day) DO UPDATE SET total = EXCLUDED.total
),
wallets AS (
    INSERT INTO journal_wallet_balances (shop_id, wallet_id, day, balance)
    SELECT $2::uuid, d.wallet_id, $1::date, COALESCE(prev.balance, 0) + d.total
      FROM (SELECT shop_id, wallet_id, sum(amount) AS total FROM entries
             WHERE wallet_id IS NOT NULL GROUP BY shop_id, wallet_id) d
      LEFT JOIN LATERAL (SELECT b.balance FROM journal_wallet_balances b
                          WHERE b.shop_id = $2 AND b.wallet_id = d.wallet_id AND b.day < $1::date
                          ORDER BY b.day DESC LIMIT 1) prev ON true
    ON CONFLICT (shop_id, wallet_id, day) DO UPDATE SET balance = EXCLUDED.balance
)
INSERT INTO journal_rollup_shops (shop_id, last_day) VALUES ($2, $1::date)
ON CONFLICT (shop_id) DO UPDATE SET last_day = EXCLUDED.last_day
