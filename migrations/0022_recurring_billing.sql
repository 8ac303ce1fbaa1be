-- Recurring billing (docs/recurring-billing.md): an approved monthly or
-- yearly contract invoices every period, in advance, exactly once.
--
-- `next_period_on` is the start of the next period to bill (set at
-- approval, advanced by each billed period, NULL once the last is billed);
-- a contract_periods row per billed period, its primary key
-- (shop, contract, period start), is what makes a second bill of the same
-- period impossible whatever the job does.
ALTER TABLE contracts
    ADD COLUMN ends_on date,
    ADD COLUMN collection text NOT NULL DEFAULT 'invoice' CHECK (collection IN ('invoice', 'wallet')),
    ADD COLUMN wallet_id uuid,
    ADD COLUMN next_period_on date,
    ADD COLUMN periods_billed integer NOT NULL DEFAULT 0 CHECK (periods_billed >= 0),
    ADD COLUMN cancel_mode text CHECK (cancel_mode IN ('at_period_end', 'immediately')),
    ADD COLUMN past_due_at timestamptz,
    ADD CONSTRAINT contracts_wallet FOREIGN KEY (shop_id, wallet_id) REFERENCES wallets (shop_id, id),
    ADD CONSTRAINT contracts_wallet_collection CHECK ((collection = 'wallet') = (wallet_id IS NOT NULL)),
    ADD CONSTRAINT contracts_ends_after_start CHECK (ends_on IS NULL OR ends_on >= starts_on),
    ADD CONSTRAINT contracts_recurring_only CHECK (
        billing_interval <> 'one_time' OR (ends_on IS NULL AND collection = 'invoice'));

-- A recurring contract whose wallet collection keeps failing is past due
-- until its period invoices are settled.
ALTER TABLE contracts DROP CONSTRAINT contracts_status_check;
ALTER TABLE contracts ADD CONSTRAINT contracts_status_check
    CHECK (status IN ('draft', 'pending_approval', 'approved', 'past_due', 'rejected', 'cancelled'));
ALTER TABLE contracts ADD CONSTRAINT contracts_past_due CHECK ((status = 'past_due') = (past_due_at IS NOT NULL));
ALTER TABLE contracts ADD CONSTRAINT contracts_past_due_recurring
    CHECK (status <> 'past_due' OR billing_interval <> 'one_time');

-- The billing job's search: due periods of billable contracts.
CREATE INDEX contracts_next_period ON contracts (shop_id, next_period_on)
    WHERE next_period_on IS NOT NULL AND status IN ('approved', 'past_due');

CREATE TABLE contract_periods (
    shop_id          uuid NOT NULL REFERENCES shops (id),
    contract_id      uuid NOT NULL,
    period_start     date NOT NULL,
    -- Exclusive: the next period's start.
    period_end       date NOT NULL CHECK (period_end > period_start),
    -- The period's number, 0 for the first.
    seq              integer NOT NULL CHECK (seq >= 0),
    invoice_id       uuid NOT NULL,
    amount           numeric(24,4) NOT NULL CHECK (amount > 0),
    -- Wallet collection: attempts so far and when the next one is due
    -- (NULL when paid, not collected from a wallet, or retries ran out).
    payment_attempts integer NOT NULL DEFAULT 0 CHECK (payment_attempts >= 0),
    next_payment_at  timestamptz,
    billed_at        timestamptz NOT NULL,
    PRIMARY KEY (shop_id, contract_id, period_start),
    UNIQUE (shop_id, contract_id, seq),
    UNIQUE (shop_id, invoice_id),
    FOREIGN KEY (shop_id, contract_id) REFERENCES contracts (shop_id, id),
    -- Deferred: Citus may run a statement's parts out of order.
    FOREIGN KEY (shop_id, invoice_id) REFERENCES invoices (shop_id, id) DEFERRABLE INITIALLY DEFERRED
);
-- Dunning: the wallet payments due again.
CREATE INDEX contract_periods_dunning ON contract_periods (shop_id, next_payment_at)
    WHERE next_payment_at IS NOT NULL;
