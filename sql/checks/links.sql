-- The links between a movement's rows that no foreign key checks (their
-- writers write them together; migration 0025, docs/ledger.md), one count
-- per link of the rows breaking it: every count must be 0. Read by the
-- integration tests (after every scenario) and by `make chaos`.
SELECT
    -- A journal transaction belongs to a shop.
    (SELECT count(*) FROM journal_transactions t
      WHERE NOT EXISTS (SELECT 1 FROM shops s WHERE s.id = t.shop_id)
    ) AS journal_transactions_without_shop,
    -- An event belongs to a shop.
    (SELECT count(*) FROM events e
      WHERE NOT EXISTS (SELECT 1 FROM shops s WHERE s.id = e.shop_id)
    ) AS events_without_shop,
    -- An entry belongs to its journal transaction.
    (SELECT count(*) FROM journal_entries e
      WHERE NOT EXISTS (SELECT 1 FROM journal_transactions t
                         WHERE t.shop_id = e.shop_id AND t.id = e.journal_transaction_id)
    ) AS entries_without_transaction,
    -- A movement has its journal transaction.
    (SELECT count(*) FROM wallet_transactions w
      WHERE NOT EXISTS (SELECT 1 FROM journal_transactions t
                         WHERE t.shop_id = w.shop_id AND t.id = w.journal_transaction_id)
    ) AS movements_without_transaction,
    -- A consumption names its movement and its grant.
    (SELECT count(*) FROM grant_consumptions c
      WHERE NOT EXISTS (SELECT 1 FROM wallet_transactions w
                         WHERE w.shop_id = c.shop_id AND w.id = c.wallet_transaction_id)
    ) AS consumptions_without_movement,
    (SELECT count(*) FROM grant_consumptions c
      WHERE NOT EXISTS (SELECT 1 FROM credit_grants g
                         WHERE g.shop_id = c.shop_id AND g.id = c.grant_id)
    ) AS consumptions_without_grant
