-- Credit reservations: two-phase spending. A hold moves its amount into the
-- wallet's `reserved` and posts nothing; capture posts the captured amount
-- (wallet -> revenue) and frees the hold; release and expiry free it.

CREATE TABLE credit_reservations (
    shop_id                uuid NOT NULL,
    id                     uuid NOT NULL,
    wallet_id              uuid NOT NULL,
    currency               text NOT NULL,
    amount                 numeric(24,4) NOT NULL CHECK (amount > 0),
    captured_amount        numeric(24,4) NOT NULL DEFAULT 0,
    status                 text NOT NULL DEFAULT 'active'
                             CHECK (status IN ('active', 'captured', 'released', 'expired')),
    reservation_key        text,
    description            text,
    metadata               jsonb NOT NULL DEFAULT '{}',
    expires_at             timestamptz NOT NULL,
    created_at             timestamptz NOT NULL,
    settled_at             timestamptz,
    wallet_transaction_id  uuid,
    PRIMARY KEY (shop_id, id),
    FOREIGN KEY (shop_id, wallet_id, currency) REFERENCES wallets (shop_id, id, currency),
    FOREIGN KEY (shop_id, wallet_transaction_id) REFERENCES wallet_transactions (shop_id, id),
    CONSTRAINT credit_reservations_key UNIQUE (shop_id, reservation_key),
    -- Only a capture posts, never more than the hold; a settled hold says when.
    CONSTRAINT credit_reservations_settled CHECK (
        (status = 'captured') = (wallet_transaction_id IS NOT NULL)
        AND (status = 'active') = (settled_at IS NULL)
        AND captured_amount >= 0 AND captured_amount <= amount
        AND (status = 'captured') = (captured_amount > 0)
    )
);
CREATE INDEX credit_reservations_wallet ON credit_reservations (shop_id, wallet_id, id);
-- The expiry job's queue: only active holds, oldest deadline first.
CREATE INDEX credit_reservations_due ON credit_reservations (expires_at) WHERE status = 'active';
