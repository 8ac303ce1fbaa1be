-- Per UTC day of [$2, $3) and currency: the wallets' credits, debits and
-- net movement (credits − debits), for the report page's chart.
SELECT (t.created_at AT TIME ZONE 'UTC')::date AS "day!", w.currency AS "currency!",
       COALESCE(sum(t.amount) FILTER (WHERE t.type = 'credit'), 0) AS "credits!",
       COALESCE(sum(t.amount) FILTER (WHERE t.type <> 'credit'), 0) AS "debits!",
       sum(CASE t.type WHEN 'credit' THEN t.amount ELSE -t.amount END) AS "net!"
  FROM wallet_transactions t
  JOIN wallets w ON w.shop_id = t.shop_id AND w.id = t.wallet_id
 WHERE t.shop_id = $1 AND t.created_at >= $2 AND t.created_at < $3
   AND ($4::text IS NULL OR w.currency = $4)
 GROUP BY 1, 2
 ORDER BY 1, 2
