-- What a refund or credit note of the period [$2, $3) touched, checked
-- against the rows that explain it (at most 100 ids each):
-- movements refunded beyond their amount, or that are not spending, or
-- whose refunds are not credits of their own wallet; payments whose
-- amount_refunded is not the sum of their refunds (or exceeds the
-- payment); invoices whose amount_credited or amount_paid is not what
-- their credit notes, payments and refunds say, or that owe less than 0.
-- Each starts from the period's refunds and credit notes (the refund_of
-- partial index, the small refund tables) and joins by key, so the cost
-- follows what flowed back, not the shop's history.
WITH refunded AS (
    SELECT DISTINCT refund_of AS id FROM wallet_transactions
     WHERE shop_id = $1 AND refund_of IS NOT NULL AND created_at >= $2 AND created_at < $3
), touched AS (
    SELECT invoice_id AS id FROM payment_refunds
     WHERE shop_id = $1 AND created_at >= $2 AND created_at < $3
    UNION
    SELECT invoice_id FROM credit_notes
     WHERE shop_id = $1 AND created_at >= $2 AND created_at < $3
)
SELECT ARRAY(
           SELECT o.id FROM refunded f
             JOIN wallet_transactions o ON o.shop_id = $1 AND o.id = f.id
            WHERE (o.category NOT IN ('usage', 'purchase', 'fee', 'reservation_capture')
                   OR o.amount < (SELECT sum(r.amount) FROM wallet_transactions r
                                   WHERE r.shop_id = $1 AND r.refund_of = o.id)
                   OR EXISTS (SELECT 1 FROM wallet_transactions r
                               WHERE r.shop_id = $1 AND r.refund_of = o.id
                                 AND (r.wallet_id <> o.wallet_id OR r.type <> 'credit')))
            ORDER BY o.id LIMIT 100) AS "over_refunded_transactions!",
       ARRAY(
           SELECT p.id FROM touched t
             JOIN invoice_payments p ON p.shop_id = $1 AND p.invoice_id = t.id
            WHERE (p.amount_refunded > p.amount
                   OR p.amount_refunded <> COALESCE((SELECT sum(r.amount) FROM payment_refunds r
                                                     WHERE r.shop_id = $1 AND r.payment_id = p.id), 0))
            ORDER BY p.id LIMIT 100) AS "over_refunded_payments!",
       ARRAY(
           SELECT i.id FROM touched t
             JOIN invoices i ON i.shop_id = $1 AND i.id = t.id
            WHERE (i.amount_credited <> COALESCE((SELECT sum(c.amount) FROM credit_notes c
                                                  WHERE c.shop_id = $1 AND c.invoice_id = i.id), 0)
                   OR i.amount_paid <> COALESCE((SELECT sum(p.amount) FROM invoice_payments p
                                                  WHERE p.shop_id = $1 AND p.invoice_id = i.id), 0)
                                     - COALESCE((SELECT sum(r.amount) FROM payment_refunds r
                                                  WHERE r.shop_id = $1 AND r.invoice_id = i.id), 0)
                                     - COALESCE((SELECT sum(c.customer_credit) FROM credit_notes c
                                                  WHERE c.shop_id = $1 AND c.invoice_id = i.id), 0)
                                     - COALESCE((SELECT sum(c.refunded) FROM credit_notes c
                                                  WHERE c.shop_id = $1 AND c.invoice_id = i.id
                                                    AND c.refund = 'wallet'), 0)
                   OR i.total - i.amount_credited - i.amount_paid < 0)
            ORDER BY i.id LIMIT 100) AS "invoices_not_adding_up!"
