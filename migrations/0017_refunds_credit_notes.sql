-- Money flows back: refunds of wallet movements and of invoice payments,
-- and credit notes on invoices (docs/refunds.md).

-- A refund is a credit movement naming the movement it gives back. What a
-- movement has had refunded is the sum of its refunds, read under the
-- wallet's lock (every refund of a movement locks its wallet first), so
-- the append-only original is never updated.
ALTER TABLE wallet_transactions ADD COLUMN refund_of uuid;
CREATE INDEX wallet_transactions_refund_of
    ON wallet_transactions (shop_id, refund_of) WHERE refund_of IS NOT NULL;

-- Overpayment the shop keeps for the customer (a credit note on a paid
-- invoice with `refund: none`): a liability, neither receivable nor paid.
ALTER TABLE journal_entries DROP CONSTRAINT journal_entries_account_check;
ALTER TABLE journal_entries ADD CONSTRAINT journal_entries_account_check CHECK (account IN
    ('wallet', 'external_payments', 'receivables', 'revenue', 'credit_grants', 'customer_credit'));

-- amount_due = total − amount_credited − amount_paid, never negative:
-- amount_paid is net of refunds and of overpayment moved to customer_credit.
ALTER TABLE invoices
    ADD COLUMN amount_credited numeric(24,4) NOT NULL DEFAULT 0,
    ADD COLUMN customer_credit numeric(24,4) NOT NULL DEFAULT 0 CHECK (customer_credit >= 0);
ALTER TABLE invoices DROP CONSTRAINT invoices_status_check;
ALTER TABLE invoices ADD CONSTRAINT invoices_status_check
    CHECK (status IN ('draft', 'open', 'paid', 'void', 'credited'));
ALTER TABLE invoices DROP CONSTRAINT invoices_paid_within_total;
ALTER TABLE invoices ADD CONSTRAINT invoices_paid_within_total
    CHECK (amount_paid >= 0 AND amount_credited >= 0 AND amount_paid + amount_credited <= total);
ALTER TABLE invoices DROP CONSTRAINT invoices_check2;
ALTER TABLE invoices ADD CONSTRAINT invoices_numbered
    CHECK (status NOT IN ('open', 'paid', 'credited') OR number IS NOT NULL);
ALTER TABLE invoices DROP CONSTRAINT invoices_check3;
ALTER TABLE invoices ADD CONSTRAINT invoices_paid_means_nothing_due
    CHECK ((status = 'paid') = (paid_at IS NOT NULL)
           AND (status <> 'paid' OR amount_paid + amount_credited = total));
ALTER TABLE invoices ADD CONSTRAINT invoices_credited_in_full
    CHECK ((status = 'credited') = (total > 0 AND amount_credited = total));

-- What of a payment went back to the payer.
ALTER TABLE invoice_payments ADD COLUMN amount_refunded numeric(24,4) NOT NULL DEFAULT 0;
ALTER TABLE invoice_payments ADD CONSTRAINT invoice_payments_refunded_within_amount
    CHECK (amount_refunded >= 0 AND amount_refunded <= amount);

-- Credit notes: numbered per shop in their own gapless series, taken at
-- creation from the shop's counter row, so a rollback returns the number.
CREATE TABLE credit_note_counters (
    shop_id      uuid PRIMARY KEY REFERENCES shops (id),
    last_number  bigint NOT NULL CHECK (last_number > 0)
);

CREATE TABLE credit_notes (
    shop_id                 uuid NOT NULL,
    id                      uuid NOT NULL,
    number                  bigint NOT NULL,
    invoice_id              uuid NOT NULL,
    amount                  numeric(24,4) NOT NULL CHECK (amount > 0),
    reason                  text NOT NULL,
    lines                   jsonb NOT NULL,
    refund                  text NOT NULL CHECK (refund IN ('none', 'wallet', 'original')),
    wallet_id               uuid,
    wallet_transaction_id   uuid,
    -- Of the overpayment it made: refunded, and kept as customer credit.
    refunded                numeric(24,4) NOT NULL DEFAULT 0 CHECK (refunded >= 0),
    customer_credit         numeric(24,4) NOT NULL DEFAULT 0 CHECK (customer_credit >= 0),
    journal_transaction_id  uuid NOT NULL,
    idempotency_key         text,
    created_at              timestamptz NOT NULL,
    PRIMARY KEY (shop_id, id),
    CONSTRAINT credit_notes_number UNIQUE (shop_id, number),
    FOREIGN KEY (shop_id, invoice_id) REFERENCES invoices (shop_id, id),
    CHECK ((refund = 'wallet') = (wallet_id IS NOT NULL))
);
CREATE UNIQUE INDEX credit_notes_idempotency_key
    ON credit_notes (shop_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX credit_notes_invoice ON credit_notes (shop_id, invoice_id);

-- A refund of an invoice payment: to the paying wallet, or recorded as
-- sent to the payer (`external_ref`, unique per shop).
CREATE TABLE payment_refunds (
    shop_id                 uuid NOT NULL,
    id                      uuid NOT NULL,
    invoice_id              uuid NOT NULL,
    payment_id              uuid NOT NULL,
    amount                  numeric(24,4) NOT NULL CHECK (amount > 0),
    reason                  text,
    external_ref            text,
    wallet_transaction_id   uuid,
    credit_note_id          uuid,
    journal_transaction_id  uuid NOT NULL,
    idempotency_key         text,
    created_at              timestamptz NOT NULL,
    PRIMARY KEY (shop_id, id),
    FOREIGN KEY (shop_id, payment_id) REFERENCES invoice_payments (shop_id, id),
    CONSTRAINT payment_refunds_external_ref UNIQUE (shop_id, external_ref)
);
CREATE UNIQUE INDEX payment_refunds_idempotency_key
    ON payment_refunds (shop_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX payment_refunds_invoice ON payment_refunds (shop_id, invoice_id);
