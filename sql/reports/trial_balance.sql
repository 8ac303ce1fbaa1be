-- Per currency and account: the balance at $2 (exclusive), from the daily
-- roll-ups of the days before both $2 and the last rolled day, plus the
-- entries of the journal transactions after that (wallets as one account).
WITH rolled AS (
    SELECT CASE WHEN s.last_day IS NOT NULL
                THEN LEAST(($2::timestamptz AT TIME ZONE 'UTC')::date - 1, s.last_day) END AS through
      FROM journal_rollup_state s
),
parts AS (
    SELECT d.currency, d.account, d.total AS amount
      FROM journal_daily_totals d, rolled
     WHERE d.shop_id = $1 AND d.day <= rolled.through AND ($3::text IS NULL OR d.currency = $3)
    UNION ALL
    SELECT e.currency, e.account, e.amount
      FROM rolled, journal_transactions t
      JOIN journal_entries e ON e.shop_id = t.shop_id AND e.journal_transaction_id = t.id
     WHERE t.shop_id = $1 AND t.created_at < $2
       AND t.created_at >= COALESCE((rolled.through + 1)::timestamp AT TIME ZONE 'UTC', '-infinity')
       AND ($3::text IS NULL OR e.currency = $3)
)
SELECT currency AS "currency!", account AS "account!", sum(amount) AS "balance!"
  FROM parts
 GROUP BY 1, 2
 ORDER BY 1, 2
