-- Credit grants (docs/grants.md): every credit a wallet holds is a grant,
-- paid (a top-up) or granted (promotion, goodwill), with a priority and an
-- optional deadline. Movements record what they took from each grant; an
-- expired grant's remainder leaves through a `grant_expired` movement to
-- the `breakage` account.
--
-- Every write to a wallet's grants happens under its wallet's row lock, in
-- a transaction that also bumps the wallet's version: a reader that saw a
-- version saw the grants that go with it.

ALTER TABLE journal_entries DROP CONSTRAINT journal_entries_account_check;
ALTER TABLE journal_entries ADD CONSTRAINT journal_entries_account_check CHECK (account IN
    ('wallet', 'external_payments', 'receivables', 'revenue', 'credit_grants', 'customer_credit',
     'breakage'));

CREATE TABLE credit_grants (
    shop_id                uuid NOT NULL,
    id                     uuid NOT NULL,
    wallet_id              uuid NOT NULL,
    kind                   text NOT NULL CHECK (kind IN ('paid', 'granted')),
    amount                 numeric(24,4) NOT NULL CHECK (amount > 0),
    -- Still in the wallet: free, or reserved by holds (`held`).
    remaining              numeric(24,4) NOT NULL,
    held                   numeric(24,4) NOT NULL DEFAULT 0,
    -- What left through grant_expired movements.
    expired                numeric(24,4) NOT NULL DEFAULT 0,
    priority               smallint NOT NULL DEFAULT 50 CHECK (priority BETWEEN 0 AND 100),
    expires_at             timestamptz,
    -- When the first part of it expired.
    expired_at             timestamptz,
    -- The credit movement that made it (none for balances the migration
    -- turned into grants).
    wallet_transaction_id  uuid,
    -- The grant a transfer carried it from, or a refund gave it back for.
    source_grant_id        uuid,
    metadata               jsonb NOT NULL DEFAULT '{}',
    created_at             timestamptz NOT NULL,
    PRIMARY KEY (shop_id, id),
    FOREIGN KEY (shop_id, wallet_id) REFERENCES wallets (shop_id, id),
    CONSTRAINT credit_grants_amounts CHECK (
        held >= 0 AND held <= remaining AND expired >= 0 AND remaining + expired <= amount),
    -- Expired at or after its deadline. (Once expired, only credit a hold
    -- still reserves is left in it; a capture or release frees the rest and
    -- expires it in the same transaction, so that holds at commit and is
    -- checked by the reconciliation report, not by this row check.)
    CONSTRAINT credit_grants_expired CHECK (
        expired_at IS NULL OR (expires_at IS NOT NULL AND expired_at >= expires_at))
);
CREATE INDEX credit_grants_wallet ON credit_grants (shop_id, wallet_id, id);
-- What a movement reads under its wallet's lock: the grants with credit left.
CREATE INDEX credit_grants_live ON credit_grants (shop_id, wallet_id) WHERE remaining > 0;
-- The expiry job's queue: free credit with a deadline.
CREATE INDEX credit_grants_due ON credit_grants (expires_at)
    WHERE remaining > held AND expires_at IS NOT NULL;

-- What each movement took from (amount > 0) or gave back to (< 0, a
-- refund) each grant, in the order it did (`line`). `held`: taken from
-- credit a hold had reserved (which a capture may spend after the grant's
-- deadline).
CREATE TABLE grant_consumptions (
    shop_id                uuid NOT NULL,
    wallet_transaction_id  uuid NOT NULL,
    line                   smallint NOT NULL,
    grant_id               uuid NOT NULL,
    amount                 numeric(24,4) NOT NULL CHECK (amount <> 0),
    held                   boolean NOT NULL DEFAULT false,
    PRIMARY KEY (shop_id, wallet_transaction_id, line),
    FOREIGN KEY (shop_id, wallet_transaction_id) REFERENCES wallet_transactions (shop_id, id),
    FOREIGN KEY (shop_id, grant_id) REFERENCES credit_grants (shop_id, id)
);
CREATE INDEX grant_consumptions_grant ON grant_consumptions (shop_id, grant_id);
CREATE TRIGGER grant_consumptions_append_only BEFORE UPDATE OR DELETE ON grant_consumptions
    FOR EACH ROW EXECUTE FUNCTION forbid_change();

-- What each active hold reserved from each grant.
CREATE TABLE reservation_grants (
    shop_id         uuid NOT NULL,
    reservation_id  uuid NOT NULL,
    grant_id        uuid NOT NULL,
    amount          numeric(24,4) NOT NULL CHECK (amount > 0),
    PRIMARY KEY (shop_id, reservation_id, grant_id),
    FOREIGN KEY (shop_id, reservation_id) REFERENCES credit_reservations (shop_id, id),
    FOREIGN KEY (shop_id, grant_id) REFERENCES credit_grants (shop_id, id)
);
CREATE INDEX reservation_grants_grant ON reservation_grants (shop_id, grant_id);

-- Existing balances become one paid grant without a deadline, and active
-- holds reserve from it, oldest first, as far as it reaches.
INSERT INTO credit_grants (shop_id, id, wallet_id, kind, amount, remaining, held, created_at)
SELECT shop_id, gen_random_uuid(), id, 'paid', balance, balance, LEAST(balance, reserved), now()
  FROM wallets WHERE balance > 0;

INSERT INTO reservation_grants (shop_id, reservation_id, grant_id, amount)
SELECT shop_id, id, grant_id, take FROM (
    SELECT r.shop_id, r.id, g.id AS grant_id,
           LEAST(r.amount, GREATEST(g.held - (sum(r.amount) OVER (
               PARTITION BY r.shop_id, r.wallet_id ORDER BY r.id) - r.amount), 0)) AS take
      FROM credit_reservations r
      JOIN credit_grants g ON g.shop_id = r.shop_id AND g.wallet_id = r.wallet_id
     WHERE r.status = 'active'
) a WHERE take > 0;

-- A movement's answer lists the grants it created.
CREATE INDEX credit_grants_movement ON credit_grants (shop_id, wallet_transaction_id)
    WHERE wallet_transaction_id IS NOT NULL;
