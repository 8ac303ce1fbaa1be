-- Per currency and account: the balance at $2 (exclusive), from the daily
-- roll-ups through $4 plus the entries of the journal transactions after
-- it (wallets as one account). $4 (NULL: none) is the last rolled day that
-- ends by $2; passed as a value, not read here, so the planner sees the
-- range of recent entries and seeks it by index.
WITH parts AS (
    SELECT d.currency, d.account, d.total AS amount
      FROM journal_daily_totals d
     WHERE d.shop_id = $1 AND d.day <= $4::date AND ($3::text IS NULL OR d.currency = $3)
    UNION ALL
    SELECT e.currency, e.account, e.amount
      FROM journal_transactions t
      JOIN journal_entries e ON e.shop_id = t.shop_id AND e.journal_transaction_id = t.id
     WHERE t.shop_id = $1 AND t.created_at < $2
       AND t.created_at >= COALESCE(($4::date + 1)::timestamp AT TIME ZONE 'UTC', '-infinity')
       AND ($3::text IS NULL OR e.currency = $3)
)
SELECT currency AS "currency!", account AS "account!", sum(amount) AS "balance!"
  FROM parts
 GROUP BY 1, 2
 ORDER BY 1, 2
