-- The credit-grant invariants over a whole database (docs/grants.md), one
-- count per invariant of the rows breaking it: every count must be 0. Read
-- by the integration tests (after every scenario) and by `make chaos`; the
-- reconciliation report checks the same over a period
-- (sql/reports/grant_checks.sql).
SELECT
    -- A wallet's grants hold its non-negative balance.
    (SELECT count(*) FROM wallets w
      WHERE GREATEST(w.balance, 0) <> COALESCE((SELECT sum(g.remaining) FROM credit_grants g
                                                 WHERE g.shop_id = w.shop_id AND g.wallet_id = w.id), 0)
    ) AS wallets_not_matching_grants,
    -- A grant's amount is what is left plus what movements took (net) from
    -- it; its `expired` is what grant_expired movements took.
    (SELECT count(*) FROM credit_grants g
      WHERE g.amount <> g.remaining + COALESCE((SELECT sum(c.amount) FROM grant_consumptions c
                                                 WHERE c.shop_id = g.shop_id AND c.grant_id = g.id), 0)
         OR g.expired <> COALESCE((SELECT sum(c.amount) FROM grant_consumptions c
                                    JOIN wallet_transactions t
                                      ON t.shop_id = c.shop_id AND t.id = c.wallet_transaction_id
                                   WHERE c.shop_id = g.shop_id AND c.grant_id = g.id
                                     AND t.category = 'grant_expired'), 0)
    ) AS grants_not_adding_up,
    -- A debit's consumptions are what the grants held of it (the rest
    -- overdrew the wallet).
    (SELECT count(*) FROM wallet_transactions t
      WHERE t.type = 'debit'
        AND COALESCE((SELECT sum(c.amount) FROM grant_consumptions c
                       WHERE c.shop_id = t.shop_id AND c.wallet_transaction_id = t.id), 0)
            <> LEAST(t.amount, GREATEST(t.balance_after + t.amount, 0))
    ) AS debits_not_adding_up,
    -- Nothing takes free credit from a grant at or after its deadline, and
    -- nothing expires it before.
    (SELECT count(*) FROM grant_consumptions c
       JOIN wallet_transactions t ON t.shop_id = c.shop_id AND t.id = c.wallet_transaction_id
       JOIN credit_grants g ON g.shop_id = c.shop_id AND g.id = c.grant_id
      WHERE (c.amount > 0 AND NOT c.held AND t.category <> 'grant_expired' AND t.created_at >= g.expires_at)
         OR (t.category = 'grant_expired' AND (g.expires_at IS NULL OR t.created_at < g.expires_at))
    ) AS spent_after_deadline,
    -- An expired grant keeps only what holds reserve.
    (SELECT count(*) FROM credit_grants g WHERE g.expired_at IS NOT NULL AND g.remaining <> g.held
    ) AS expired_with_free_credit,
    -- A grant's held credit is what active holds reserved from it, and no
    -- hold reserved more than its amount.
    (SELECT count(*) FROM credit_grants g
      WHERE g.held <> COALESCE((SELECT sum(a.amount) FROM reservation_grants a
                                 WHERE a.shop_id = g.shop_id AND a.grant_id = g.id), 0)
    ) + (SELECT count(*) FROM reservation_grants a
           JOIN credit_reservations r ON r.shop_id = a.shop_id AND r.id = a.reservation_id
          WHERE r.status <> 'active'
             OR r.amount < (SELECT sum(b.amount) FROM reservation_grants b
                             WHERE b.shop_id = r.shop_id AND b.reservation_id = r.id)
    ) AS holds_not_matching_grants
