-- Foreign keys a money movement paid for in every transaction, whose rows
-- are written by one statement from one plan (issue 35, item 2). Each
-- guarantee stays, proven by construction and checked by every test that
-- moves money (`assert_ledger_consistent`) and by `make chaos`'s checker
-- (docs/ledger.md, "What holds the links"):
-- * journal_transactions -> shops and events -> shops: every movement and
--   every event took FOR KEY SHARE on its shop's row, so a shop's
--   concurrent movements shared one row lock (a multixact each time).
--   Shops are never deleted, and both rows are written only by the
--   executor for the authenticated shop, which it has just read.
-- * journal_entries -> journal_transactions, wallet_transactions ->
--   journal_transactions, grant_consumptions -> wallet_transactions and
--   -> credit_grants: the entries and their journal transaction come from
--   one Posting in one statement (the ledger's three writers); a movement
--   names the journal transaction written beside it (a transfer's second
--   leg, its first leg's); a consumption names the movement of its own
--   statement and a grant read under the wallet's lock or written beside
--   it. The two consumption keys were deferred: two more statements at
--   every commit.
-- Kept: every key to `wallets` (an entry's currency is its wallet's) and
-- the deferred journal_balanced trigger.
ALTER TABLE journal_transactions DROP CONSTRAINT journal_transactions_shop_id_fkey;
ALTER TABLE events DROP CONSTRAINT events_shop_id_fkey;
ALTER TABLE journal_entries DROP CONSTRAINT journal_entries_shop_id_journal_transaction_id_fkey;
ALTER TABLE wallet_transactions DROP CONSTRAINT wallet_transactions_shop_id_journal_transaction_id_fkey;
ALTER TABLE grant_consumptions DROP CONSTRAINT grant_consumptions_shop_id_wallet_transaction_id_fkey;
ALTER TABLE grant_consumptions DROP CONSTRAINT grant_consumptions_shop_id_grant_id_fkey;
