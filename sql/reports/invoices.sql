-- Per currency: invoices issued, paid and voided in [$2, $3) and those open
-- now with what is due (total − amount_credited − amount_paid). Each part
-- is a range of its own index, so the cost follows the period (and the
-- open invoices), not the shop's history.
WITH parts AS (
    SELECT currency, 'issued' AS kind, total AS amount FROM invoices
     WHERE shop_id = $1 AND finalized_at >= $2 AND finalized_at < $3
    UNION ALL
    SELECT currency, 'paid', total FROM invoices
     WHERE shop_id = $1 AND paid_at >= $2 AND paid_at < $3
    UNION ALL
    SELECT currency, 'voided', total FROM invoices
     WHERE shop_id = $1 AND voided_at >= $2 AND voided_at < $3
    UNION ALL
    SELECT currency, 'open', total - amount_credited - amount_paid FROM invoices
     WHERE shop_id = $1 AND status = 'open'
)
SELECT currency AS "currency!",
       count(*) FILTER (WHERE kind = 'issued') AS "issued!",
       COALESCE(sum(amount) FILTER (WHERE kind = 'issued'), 0) AS "issued_total!",
       count(*) FILTER (WHERE kind = 'paid') AS "paid!",
       COALESCE(sum(amount) FILTER (WHERE kind = 'paid'), 0) AS "paid_total!",
       count(*) FILTER (WHERE kind = 'voided') AS "voided!",
       COALESCE(sum(amount) FILTER (WHERE kind = 'voided'), 0) AS "voided_total!",
       count(*) FILTER (WHERE kind = 'open') AS "outstanding!",
       COALESCE(sum(amount) FILTER (WHERE kind = 'open'), 0) AS "outstanding_total!"
  FROM parts
 WHERE $4::text IS NULL OR currency = $4
 GROUP BY currency
 ORDER BY 1
