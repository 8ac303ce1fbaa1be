-- Money that flowed back in [$2, $3), per currency: refunds of wallet
-- movements, refunds of invoice payments, credit notes. Each part reads
-- only the shop's refunds or credit notes (the refund_of partial index,
-- the small refund tables), never its whole history.
WITH parts AS (
    SELECT w.currency, 'movement' AS kind, r.amount
      FROM wallet_transactions r
      JOIN wallets w ON w.shop_id = r.shop_id AND w.id = r.wallet_id
     WHERE r.shop_id = $1 AND w.shop_id = $1 AND r.refund_of IS NOT NULL
       AND r.created_at >= $2 AND r.created_at < $3
    UNION ALL
    SELECT i.currency, 'payment', p.amount
      FROM payment_refunds p
      JOIN invoices i ON i.shop_id = p.shop_id AND i.id = p.invoice_id
     WHERE p.shop_id = $1 AND i.shop_id = $1 AND p.created_at >= $2 AND p.created_at < $3
    UNION ALL
    SELECT i.currency, 'credit_note', c.amount
      FROM credit_notes c
      JOIN invoices i ON i.shop_id = c.shop_id AND i.id = c.invoice_id
     WHERE c.shop_id = $1 AND i.shop_id = $1 AND c.created_at >= $2 AND c.created_at < $3
)
SELECT currency AS "currency!",
       count(*) FILTER (WHERE kind = 'movement') AS "movement_refunds!",
       COALESCE(sum(amount) FILTER (WHERE kind = 'movement'), 0) AS "movement_refunds_total!",
       count(*) FILTER (WHERE kind = 'payment') AS "payment_refunds!",
       COALESCE(sum(amount) FILTER (WHERE kind = 'payment'), 0) AS "payment_refunds_total!",
       count(*) FILTER (WHERE kind = 'credit_note') AS "credit_notes!",
       COALESCE(sum(amount) FILTER (WHERE kind = 'credit_note'), 0) AS "credit_notes_total!"
  FROM parts
 WHERE $4::text IS NULL OR currency = $4
 GROUP BY currency
 ORDER BY 1
