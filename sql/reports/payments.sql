-- Payments that did not reach the books: provider payments and refunds
-- whose event failed (still retried) or is dead (matched no invoice or
-- payment it could apply to), and
-- invoice payments of the period [$2, $3) without their journal transaction
-- (how many, and the first 100 ids).
SELECT (SELECT count(*) FROM webhook_events
         WHERE shop_id = $1 AND type IN ('payment.succeeded', 'refund.succeeded') AND status = 'failed') AS "failing!",
       ARRAY(SELECT id FROM webhook_events
              WHERE shop_id = $1 AND type IN ('payment.succeeded', 'refund.succeeded') AND status = 'dead'
              ORDER BY id LIMIT 100) AS "dead!",
       (SELECT count(*) FROM invoice_payments p
         WHERE p.shop_id = $1 AND p.created_at >= $2 AND p.created_at < $3
           AND NOT EXISTS (SELECT 1 FROM journal_transactions t
                            WHERE t.shop_id = p.shop_id AND t.id = p.journal_transaction_id)) AS "unposted!",
       ARRAY(SELECT p.id FROM invoice_payments p
              WHERE p.shop_id = $1 AND p.created_at >= $2 AND p.created_at < $3
                AND NOT EXISTS (SELECT 1 FROM journal_transactions t
                                 WHERE t.shop_id = p.shop_id AND t.id = p.journal_transaction_id)
              ORDER BY p.id LIMIT 100) AS "unposted_ids!"
