-- Daily roll-ups of the journal: per shop, day (UTC), currency and account
-- (wallets as one account), the net of that day's entries. Written by the
-- roll-up job for closed days only, so a balance as of a date is the
-- roll-ups up to the last rolled day plus the entries since: the cost of a
-- report follows its period, not the shop's history.
CREATE TABLE journal_daily_totals (
    shop_id   uuid NOT NULL,
    day       date NOT NULL,
    currency  text NOT NULL,
    account   text NOT NULL,
    total     numeric(28,4) NOT NULL,
    PRIMARY KEY (shop_id, currency, account, day)
);

-- The last day rolled up, for all shops (one row).
CREATE TABLE journal_rollup_state (
    id        boolean PRIMARY KEY DEFAULT true CHECK (id),
    last_day  date
);
INSERT INTO journal_rollup_state (last_day) VALUES (NULL);

-- Finding a day's journal transactions, and the entries after a date.
CREATE INDEX journal_transactions_time ON journal_transactions (created_at);
CREATE INDEX journal_transactions_shop_time ON journal_transactions (shop_id, created_at);
