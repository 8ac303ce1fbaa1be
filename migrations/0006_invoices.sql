-- Invoices a shop issues to its customers, their lines and payments.
-- Numbers are per shop and gapless: the next one is taken from the shop's
-- counter row inside the finalizing transaction, so a rollback returns it.

CREATE TABLE invoice_counters (
    shop_id      uuid PRIMARY KEY REFERENCES shops (id),
    last_number  bigint NOT NULL CHECK (last_number > 0)
);

CREATE TABLE invoices (
    shop_id                 uuid NOT NULL REFERENCES shops (id),
    id                      uuid NOT NULL,
    number                  bigint,
    customer_ref            text NOT NULL,
    currency                text NOT NULL CHECK (currency ~ '^[A-Z]{3,6}$'),
    status                  text NOT NULL DEFAULT 'draft'
                              CHECK (status IN ('draft', 'open', 'paid', 'void')),
    due_date                date,
    memo                    text,
    metadata                jsonb NOT NULL DEFAULT '{}',
    subtotal                numeric(24,4) NOT NULL CHECK (subtotal >= 0),
    total                   numeric(24,4) NOT NULL CHECK (total >= 0),
    amount_paid             numeric(24,4) NOT NULL DEFAULT 0,
    version                 bigint NOT NULL DEFAULT 1,
    created_at              timestamptz NOT NULL,
    updated_at              timestamptz NOT NULL,
    finalized_at            timestamptz,
    paid_at                 timestamptz,
    voided_at               timestamptz,
    PRIMARY KEY (shop_id, id),
    CONSTRAINT invoices_number UNIQUE (shop_id, number),
    CONSTRAINT invoices_paid_within_total CHECK (amount_paid >= 0 AND amount_paid <= total),
    -- A number is given at finalize and only then; paid means nothing is due.
    CHECK ((number IS NULL) = (finalized_at IS NULL)),
    CHECK (status <> 'draft' OR number IS NULL),
    CHECK (status NOT IN ('open', 'paid') OR number IS NOT NULL),
    CHECK ((status = 'paid') = (paid_at IS NOT NULL) AND (status <> 'paid' OR amount_paid = total)),
    CHECK ((status = 'void') = (voided_at IS NOT NULL))
);
CREATE INDEX invoices_customer ON invoices (shop_id, customer_ref, id);

CREATE TABLE invoice_lines (
    shop_id      uuid NOT NULL,
    invoice_id   uuid NOT NULL,
    line         smallint NOT NULL CHECK (line BETWEEN 1 AND 100),
    description  text NOT NULL CHECK (description <> ''),
    quantity     numeric(24,6) NOT NULL CHECK (quantity >= 0),
    unit_amount  numeric(24,6) NOT NULL CHECK (unit_amount >= 0),
    amount       numeric(24,4) NOT NULL CHECK (amount >= 0),
    PRIMARY KEY (shop_id, invoice_id, line),
    FOREIGN KEY (shop_id, invoice_id) REFERENCES invoices (shop_id, id) ON DELETE CASCADE
);

CREATE TABLE invoice_payments (
    shop_id                 uuid NOT NULL,
    id                      uuid NOT NULL,
    invoice_id              uuid NOT NULL,
    method                  text NOT NULL CHECK (method IN ('bank_transfer', 'card', 'wallet', 'other')),
    amount                  numeric(24,4) NOT NULL CHECK (amount > 0),
    external_ref            text,
    wallet_id               uuid,
    wallet_transaction_id   uuid,
    journal_transaction_id  uuid NOT NULL,
    created_at              timestamptz NOT NULL,
    PRIMARY KEY (shop_id, id),
    FOREIGN KEY (shop_id, invoice_id) REFERENCES invoices (shop_id, id),
    FOREIGN KEY (shop_id, wallet_id) REFERENCES wallets (shop_id, id),
    FOREIGN KEY (shop_id, wallet_transaction_id) REFERENCES wallet_transactions (shop_id, id),
    FOREIGN KEY (shop_id, journal_transaction_id) REFERENCES journal_transactions (shop_id, id),
    CONSTRAINT invoice_payments_external_ref UNIQUE (shop_id, external_ref),
    CHECK ((method = 'wallet') = (wallet_id IS NOT NULL)),
    CHECK ((wallet_id IS NULL) = (wallet_transaction_id IS NULL))
);
CREATE INDEX invoice_payments_invoice ON invoice_payments (shop_id, invoice_id);
