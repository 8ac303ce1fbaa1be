-- Per currency and account: the sum of the entries of journal
-- transactions before $2 (wallets as one account).
SELECT e.currency AS "currency!", e.account AS "account!", sum(e.amount) AS "balance!"
  FROM journal_entries e
  JOIN journal_transactions t ON t.shop_id = e.shop_id AND t.id = e.journal_transaction_id
 WHERE e.shop_id = $1 AND t.created_at < $2 AND ($3::text IS NULL OR e.currency = $3)
 GROUP BY 1, 2
 ORDER BY 1, 2
