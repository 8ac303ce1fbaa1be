-- Per currency: invoices issued, paid and voided in [$2, $3), those open
-- now with what is due, and the receivables account's balance (its
-- entries negated: finalize debits it).
SELECT i.currency AS "currency!",
       count(*) FILTER (WHERE i.finalized_at >= $2 AND i.finalized_at < $3) AS "issued!",
       COALESCE(sum(i.total) FILTER (WHERE i.finalized_at >= $2 AND i.finalized_at < $3), 0) AS "issued_total!",
       count(*) FILTER (WHERE i.paid_at >= $2 AND i.paid_at < $3) AS "paid!",
       COALESCE(sum(i.total) FILTER (WHERE i.paid_at >= $2 AND i.paid_at < $3), 0) AS "paid_total!",
       count(*) FILTER (WHERE i.voided_at >= $2 AND i.voided_at < $3) AS "voided!",
       COALESCE(sum(i.total) FILTER (WHERE i.voided_at >= $2 AND i.voided_at < $3), 0) AS "voided_total!",
       count(*) FILTER (WHERE i.status = 'open') AS "outstanding!",
       COALESCE(sum(i.total - i.amount_paid) FILTER (WHERE i.status = 'open'), 0) AS "outstanding_total!",
       COALESCE((SELECT -sum(e.amount) FROM journal_entries e
                  WHERE e.shop_id = $1 AND e.account = 'receivables' AND e.wallet_id IS NULL
                    AND e.currency = i.currency), 0) AS "receivables!"
  FROM invoices i
 WHERE i.shop_id = $1 AND ($4::text IS NULL OR i.currency = $4)
 GROUP BY i.currency
 ORDER BY 1
