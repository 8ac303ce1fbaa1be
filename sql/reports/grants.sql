-- Credit grants in [$2, $3), per currency: paid and granted credit issued
-- (grants created), spent (what movements took from grants, net of what
-- refunds gave back) and expired (the breakage: what grant_expired
-- movements took). Reads the period's grants and movements only.
WITH parts AS (
    SELECT w.currency, 'paid_issued' AS part, g.amount
      FROM credit_grants g
      JOIN wallets w ON w.shop_id = g.shop_id AND w.id = g.wallet_id
     WHERE g.shop_id = $1 AND w.shop_id = $1 AND g.kind = 'paid'
       AND g.created_at >= $2 AND g.created_at < $3
    UNION ALL
    SELECT w.currency, 'granted_issued', g.amount
      FROM credit_grants g
      JOIN wallets w ON w.shop_id = g.shop_id AND w.id = g.wallet_id
     WHERE g.shop_id = $1 AND w.shop_id = $1 AND g.kind = 'granted'
       AND g.created_at >= $2 AND g.created_at < $3
    UNION ALL
    SELECT w.currency, CASE WHEN t.category = 'grant_expired' THEN 'expired' ELSE 'spent' END, c.amount
      FROM wallet_transactions t
      JOIN grant_consumptions c ON c.shop_id = t.shop_id AND c.wallet_transaction_id = t.id
      JOIN wallets w ON w.shop_id = t.shop_id AND w.id = t.wallet_id
     WHERE t.shop_id = $1 AND c.shop_id = $1 AND w.shop_id = $1
       AND t.created_at >= $2 AND t.created_at < $3
)
SELECT currency AS "currency!",
       COALESCE(sum(amount) FILTER (WHERE part = 'paid_issued'), 0) AS "paid_issued!",
       COALESCE(sum(amount) FILTER (WHERE part = 'granted_issued'), 0) AS "granted_issued!",
       COALESCE(sum(amount) FILTER (WHERE part = 'spent'), 0) AS "spent!",
       COALESCE(sum(amount) FILTER (WHERE part = 'expired'), 0) AS "expired!"
  FROM parts
 WHERE $4::text IS NULL OR currency = $4
 GROUP BY currency
 ORDER BY 1
