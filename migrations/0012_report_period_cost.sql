-- A report's cost follows its period, not the shop's history.

-- Per wallet, its journal balance at the end of each rolled day it moved
-- (written by the roll-up job with the daily totals): the wallet's journal
-- balance now is one index seek plus the entries since the last rolled day.
CREATE TABLE journal_wallet_balances (
    shop_id    uuid NOT NULL,
    wallet_id  uuid NOT NULL,
    day        date NOT NULL,
    balance    numeric(28,4) NOT NULL,
    PRIMARY KEY (shop_id, wallet_id, day)
);
-- Days already rolled have no wallet balances: roll them again (the daily
-- totals are upserted). Until the job catches up, reports read the entries.
UPDATE journal_rollup_state SET last_day = NULL;

-- Invoices issued, paid and voided in a period, and those open now.
CREATE INDEX invoices_finalized ON invoices (shop_id, finalized_at) WHERE finalized_at IS NOT NULL;
CREATE INDEX invoices_paid ON invoices (shop_id, paid_at) WHERE paid_at IS NOT NULL;
CREATE INDEX invoices_voided ON invoices (shop_id, voided_at) WHERE voided_at IS NOT NULL;
CREATE INDEX invoices_open ON invoices (shop_id, currency) WHERE status = 'open';
-- Invoice payments of a period.
CREATE INDEX invoice_payments_shop_time ON invoice_payments (shop_id, created_at);
