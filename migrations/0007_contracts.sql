-- Billing contracts a shop drafts, submits and has approved or rejected.
-- `version` is the optimistic-concurrency token (the ETag): every change
-- bumps it, and every transition is one conditional UPDATE naming the
-- status and version it expects, so two reviewers can never both win.

-- What an audit row adds about its change (a contract transition records
-- the version it moved from).
ALTER TABLE audit_log ADD COLUMN detail jsonb;

CREATE TABLE contracts (
    shop_id           uuid NOT NULL REFERENCES shops (id),
    id                uuid NOT NULL,
    customer_ref      text NOT NULL,
    title             text NOT NULL CHECK (title <> ''),
    currency          text NOT NULL CHECK (currency ~ '^[A-Z]{3,6}$'),
    amount            numeric(24,4) NOT NULL CHECK (amount > 0),
    billing_interval  text NOT NULL CHECK (billing_interval IN ('one_time', 'monthly', 'yearly')),
    starts_on         date NOT NULL,
    terms             text,
    metadata          jsonb NOT NULL DEFAULT '{}',
    status            text NOT NULL DEFAULT 'draft'
                        CHECK (status IN ('draft', 'pending_approval', 'approved', 'rejected', 'cancelled')),
    version           bigint NOT NULL DEFAULT 1 CHECK (version > 0),
    approval_note     text,
    rejection_reason  text,
    invoice_id        uuid,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    submitted_at      timestamptz,
    approved_at       timestamptz,
    rejected_at       timestamptz,
    cancelled_at      timestamptz,
    PRIMARY KEY (shop_id, id),
    -- Deferred: the approving UPDATE names the invoice it issues, and the
    -- invoice is written after it in the same transaction.
    FOREIGN KEY (shop_id, invoice_id) REFERENCES invoices (shop_id, id) DEFERRABLE INITIALLY DEFERRED,
    -- An invoice is issued by one contract's approval, once.
    CONSTRAINT contracts_invoice UNIQUE (shop_id, invoice_id),
    CHECK ((status = 'rejected') = (rejected_at IS NOT NULL)),
    CHECK ((status = 'cancelled') = (cancelled_at IS NOT NULL)),
    CHECK (status <> 'approved' OR approved_at IS NOT NULL),
    CHECK (status <> 'draft' OR submitted_at IS NULL),
    -- An approved one-time contract has its invoice; nothing else has one.
    CHECK ((invoice_id IS NOT NULL) = (billing_interval = 'one_time' AND approved_at IS NOT NULL))
);
CREATE INDEX contracts_status ON contracts (shop_id, status, id);
CREATE INDEX contracts_customer ON contracts (shop_id, customer_ref, id);
