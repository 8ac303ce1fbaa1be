-- Recurring billing over one shop ($1): the periods whose start falls in
-- the report's days ($2..$3, dates), the contracts past due, the contracts
-- a due period has waited for since before $4 (a day before today: the
-- job bills within a minute, so a day means it is stuck), and the
-- contracts whose billed periods do not add up to exactly one invoice
-- each, numbered 0..n-1 (a second invoice carrying a period's contract and
-- start, a gap, or a count the contract does not say).
WITH c AS (
    SELECT id, status, next_period_on, periods_billed FROM contracts
     WHERE shop_id = $1 AND billing_interval <> 'one_time' AND approved_at IS NOT NULL
),
p AS (
    SELECT contract_id, count(*) AS n, max(seq) AS last_seq FROM contract_periods
     WHERE shop_id = $1 GROUP BY contract_id
),
extra AS (
    SELECT DISTINCT p.contract_id FROM contract_periods p
      JOIN invoices i ON i.shop_id = p.shop_id AND i.id <> p.invoice_id
                     AND i.metadata->>'contract_id' = p.contract_id::text
                     AND i.metadata->>'period_start' = p.period_start::text
     WHERE p.shop_id = $1
)
SELECT
    (SELECT count(*) FROM contract_periods
      WHERE shop_id = $1 AND period_start BETWEEN $2::date AND $3::date) AS "periods_billed!",
    coalesce((SELECT array_agg(id ORDER BY id) FROM c WHERE status = 'past_due'), '{}') AS "past_due!",
    coalesce((SELECT array_agg(id ORDER BY id) FROM c
               WHERE status IN ('approved', 'past_due') AND next_period_on < $4::date), '{}') AS "behind!",
    coalesce((SELECT array_agg(id ORDER BY id) FROM (
                  SELECT c.id FROM c LEFT JOIN p ON p.contract_id = c.id
                   WHERE coalesce(p.n, 0) <> c.periods_billed OR coalesce(p.last_seq, -1) <> c.periods_billed - 1
                  UNION
                  SELECT contract_id FROM extra) bad), '{}') AS "not_one_invoice_per_period!"
