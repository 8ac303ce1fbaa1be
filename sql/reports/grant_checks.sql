-- The grant invariants (docs/grants.md) over what moved in [$2, $3), at
-- most 100 ids each: wallets whose grants do not hold their non-negative
-- balance; grants whose amount is not what is left plus what movements
-- took from them, or that kept free credit after they expired; movements
-- of the period since grants exist ($4) whose consumptions do not add up
-- or took free credit at or after a grant's deadline; and grants more
-- than five minutes past their deadline with free credit the expiry job
-- has not expired.
WITH moved AS (
    SELECT DISTINCT wallet_id FROM wallet_transactions
     WHERE shop_id = $1 AND created_at >= $2 AND created_at < $3
), period AS (
    SELECT id, type, category, amount, balance_after, created_at FROM wallet_transactions
     WHERE shop_id = $1 AND created_at >= GREATEST($2, $4) AND created_at < $3
)
SELECT ARRAY(
           SELECT w.id FROM moved m
             JOIN wallets w ON w.shop_id = $1 AND w.id = m.wallet_id
            WHERE GREATEST(w.balance, 0) <> COALESCE((SELECT sum(g.remaining) FROM credit_grants g
                                                       WHERE g.shop_id = $1 AND g.wallet_id = w.id
                                                         AND g.remaining > 0), 0)
            ORDER BY w.id LIMIT 100) AS "wallets_not_matching_grants!",
       ARRAY(
           SELECT g.id FROM moved m
             JOIN credit_grants g ON g.shop_id = $1 AND g.wallet_id = m.wallet_id
            WHERE g.amount <> g.remaining + COALESCE((SELECT sum(c.amount) FROM grant_consumptions c
                                                       WHERE c.shop_id = $1 AND c.grant_id = g.id), 0)
               OR (g.expired_at IS NOT NULL AND g.remaining <> g.held)
            ORDER BY g.id LIMIT 100) AS "grants_not_adding_up!",
       ARRAY(
           SELECT t.id FROM period t
            WHERE (t.type = 'debit'
                   AND COALESCE((SELECT sum(c.amount) FROM grant_consumptions c
                                  WHERE c.shop_id = $1 AND c.wallet_transaction_id = t.id), 0)
                       <> LEAST(t.amount, GREATEST(t.balance_after + t.amount, 0)))
               OR (t.category <> 'grant_expired'
                   AND EXISTS (SELECT 1 FROM grant_consumptions c
                                 JOIN credit_grants g ON g.shop_id = $1 AND g.id = c.grant_id
                                WHERE c.shop_id = $1 AND c.wallet_transaction_id = t.id
                                  AND c.amount > 0 AND NOT c.held AND t.created_at >= g.expires_at))
            ORDER BY t.id LIMIT 100) AS "movements_not_adding_up!",
       ARRAY(
           SELECT g.id FROM credit_grants g
            WHERE g.shop_id = $1 AND g.remaining > g.held AND g.expires_at < now() - interval '5 minutes'
            ORDER BY g.id LIMIT 100) AS "overdue_grant_ids!"
