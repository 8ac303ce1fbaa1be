-- Per wallet of the shop (optionally one currency): the period [$2, $3),
-- its balance from the journal and as stored. Opening and closing balances
-- are index seeks (wallet_transactions_wallet_time): the balance_after of
-- the last movement before each bound, never a sum over earlier history.
-- The journal balance is the wallet's last rolled balance (one seek in
-- journal_wallet_balances) plus the shop's entries after $5, the last
-- rolled day (NULL: none), passed as a value so the planner sees the range.
-- Every table is filtered by the shop itself ($1), not through a join, so
-- Citus routes the whole statement to the shop's shard.
WITH recent AS (
    SELECT e.wallet_id, sum(e.amount) AS total
      FROM journal_transactions t
      JOIN journal_entries e ON e.shop_id = t.shop_id AND e.journal_transaction_id = t.id
     WHERE t.shop_id = $1 AND e.shop_id = $1
       AND t.created_at >= COALESCE(($5::date + 1)::timestamp AT TIME ZONE 'UTC', '-infinity')
       AND e.wallet_id IS NOT NULL
     GROUP BY e.wallet_id
)
SELECT w.id AS "wallet_id!", w.customer_ref AS "customer_ref!", w.currency AS "currency!",
       COALESCE(o.balance_after, 0) AS "opening!",
       COALESCE(m.credits, 0) AS "credits!",
       COALESCE(m.debits, 0) AS "debits!",
       COALESCE(c.balance_after, 0) AS "closing!",
       COALESCE(b.balance, 0) + COALESCE(r.total, 0) AS "journal!",
       w.balance AS "stored!"
  FROM wallets w
  LEFT JOIN LATERAL (SELECT t.balance_after FROM wallet_transactions t
                      WHERE t.shop_id = $1 AND t.wallet_id = w.id AND t.created_at < $2
                      ORDER BY t.created_at DESC, t.wallet_version DESC LIMIT 1) o ON true
  LEFT JOIN LATERAL (SELECT t.balance_after FROM wallet_transactions t
                      WHERE t.shop_id = $1 AND t.wallet_id = w.id AND t.created_at < $3
                      ORDER BY t.created_at DESC, t.wallet_version DESC LIMIT 1) c ON true
  LEFT JOIN LATERAL (SELECT sum(t.amount) FILTER (WHERE t.type = 'credit') AS credits,
                            sum(t.amount) FILTER (WHERE t.type = 'debit') AS debits
                       FROM wallet_transactions t
                      WHERE t.shop_id = $1 AND t.wallet_id = w.id
                        AND t.created_at >= $2 AND t.created_at < $3) m ON true
  LEFT JOIN LATERAL (SELECT jb.balance FROM journal_wallet_balances jb
                      WHERE jb.shop_id = $1 AND jb.wallet_id = w.id AND jb.day <= $5::date
                      ORDER BY jb.day DESC LIMIT 1) b ON true
  LEFT JOIN recent r ON r.wallet_id = w.id
 WHERE w.shop_id = $1 AND ($4::text IS NULL OR w.currency = $4)
 ORDER BY w.currency, w.id
