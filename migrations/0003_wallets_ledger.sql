-- Wallets, their append-only transactions, and the double-entry journal.
-- Money is NUMERIC(24,4): 15 integer digits per amount with headroom for sums.

CREATE TABLE wallets (
    shop_id          uuid NOT NULL REFERENCES shops (id),
    id               uuid NOT NULL,
    customer_ref     text NOT NULL,
    currency         text NOT NULL CHECK (currency ~ '^[A-Z]{3,6}$'),
    balance          numeric(24,4) NOT NULL DEFAULT 0,
    reserved         numeric(24,4) NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    overdraft_limit  numeric(24,4) NOT NULL DEFAULT 0 CHECK (overdraft_limit >= 0),
    version          bigint NOT NULL DEFAULT 1,
    metadata         jsonb NOT NULL DEFAULT '{}',
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shop_id, id),
    -- The database itself refuses an overdrawn wallet, whatever the code does.
    CONSTRAINT wallets_not_overdrawn CHECK (balance - reserved >= -overdraft_limit),
    -- Target of the journal's (wallet, currency) foreign key.
    UNIQUE (shop_id, id, currency)
);
CREATE INDEX wallets_customer_ref ON wallets (shop_id, customer_ref, id);

CREATE TABLE journal_transactions (
    shop_id      uuid NOT NULL REFERENCES shops (id),
    id           uuid NOT NULL,
    kind         text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shop_id, id)
);

-- Signed amounts: positive credits an account (raises a wallet's balance),
-- negative debits it. Entries of one journal transaction sum to zero per
-- currency (checked at commit by the trigger below). System accounts
-- (external_payments, receivables, revenue, credit_grants) are identified by
-- (shop_id, account, currency) and keep no balance row: their balance is the
-- sum of their entries, so no hot row serialises a shop's movements.
CREATE TABLE journal_entries (
    shop_id                 uuid NOT NULL,
    journal_transaction_id  uuid NOT NULL,
    line                    smallint NOT NULL,
    account                 text NOT NULL CHECK (account IN
                              ('wallet', 'external_payments', 'receivables', 'revenue', 'credit_grants')),
    wallet_id               uuid,
    currency                text NOT NULL,
    amount                  numeric(24,4) NOT NULL CHECK (amount <> 0),
    PRIMARY KEY (shop_id, journal_transaction_id, line),
    FOREIGN KEY (shop_id, journal_transaction_id) REFERENCES journal_transactions (shop_id, id),
    FOREIGN KEY (shop_id, wallet_id, currency) REFERENCES wallets (shop_id, id, currency),
    CHECK ((account = 'wallet') = (wallet_id IS NOT NULL))
);
CREATE INDEX journal_entries_wallet ON journal_entries (shop_id, wallet_id) WHERE wallet_id IS NOT NULL;
CREATE INDEX journal_entries_system ON journal_entries (shop_id, account, currency) WHERE wallet_id IS NULL;

CREATE FUNCTION journal_assert_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    SELECT currency, sum(amount) AS total INTO bad
      FROM journal_entries
     WHERE shop_id = NEW.shop_id AND journal_transaction_id = NEW.journal_transaction_id
     GROUP BY currency
    HAVING sum(amount) <> 0
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'journal transaction % is unbalanced in %: %',
            NEW.journal_transaction_id, bad.currency, bad.total
            USING ERRCODE = 'check_violation', CONSTRAINT = 'journal_balanced';
    END IF;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER journal_balanced
    AFTER INSERT ON journal_entries
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION journal_assert_balanced();

CREATE TABLE wallet_transactions (
    shop_id                 uuid NOT NULL,
    id                      uuid NOT NULL,
    wallet_id               uuid NOT NULL,
    wallet_version          bigint NOT NULL,   -- the wallet's version after this movement
    type                    text NOT NULL CHECK (type IN ('credit', 'debit')),
    category                text NOT NULL,
    amount                  numeric(24,4) NOT NULL CHECK (amount > 0),
    balance_after           numeric(24,4) NOT NULL,
    description             text,
    metadata                jsonb NOT NULL DEFAULT '{}',
    idempotency_key         text,
    transfer_id             uuid,
    journal_transaction_id  uuid NOT NULL,
    created_at              timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shop_id, id),
    FOREIGN KEY (shop_id, wallet_id) REFERENCES wallets (shop_id, id),
    FOREIGN KEY (shop_id, journal_transaction_id) REFERENCES journal_transactions (shop_id, id),
    UNIQUE (shop_id, wallet_id, wallet_version),
    CONSTRAINT wallet_transactions_idempotency_key UNIQUE (shop_id, idempotency_key)
);

-- The journal and wallet history are append-only.
CREATE FUNCTION forbid_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER journal_transactions_append_only BEFORE UPDATE OR DELETE ON journal_transactions
    FOR EACH ROW EXECUTE FUNCTION forbid_change();
CREATE TRIGGER journal_entries_append_only BEFORE UPDATE OR DELETE ON journal_entries
    FOR EACH ROW EXECUTE FUNCTION forbid_change();
CREATE TRIGGER wallet_transactions_append_only BEFORE UPDATE OR DELETE ON wallet_transactions
    FOR EACH ROW EXECUTE FUNCTION forbid_change();
