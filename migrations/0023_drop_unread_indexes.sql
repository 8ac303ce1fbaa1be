-- Indexes every debit paid for and no query reads (issue 35, measured by
-- `make bench-schema`, docs/performance.md):
-- * journal_transactions_time (created_at): every statement that reads the
--   journal by time is one shop's (reports and roll-ups, single-shard on
--   Citus), served by journal_transactions_shop_time.
-- * journal_entries_wallet and journal_entries_system: a wallet's and a
--   system account's journal balances come from the daily roll-ups plus
--   the entries of the days not yet rolled, reached through their journal
--   transactions (journal_entries' primary key), never by account.
-- report_queries_use_their_indexes keeps each report statement's plan on
-- the indexes that remain.
DROP INDEX journal_transactions_time;
DROP INDEX journal_entries_wallet;
DROP INDEX journal_entries_system;
