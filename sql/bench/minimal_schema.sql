-- Run 1d of `make bench`: a minimal ledger, the anchor of issue 35's
-- target (new HTTP debits ÷ this). It does the same business work as one
-- idempotent debit -- a key row, the wallet's balance, a movement, a
-- journal transaction with two entries, an audit row, the stored answer --
-- with one index per table (its primary key), no foreign keys, no
-- triggers, no checks and bigint ids. Not the project's schema: it shows
-- what PostgreSQL on this machine can do for that work, naively.
CREATE TABLE m_keys (
    key        text PRIMARY KEY,
    status     integer,
    body       bytea,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE m_wallets (
    id      bigint PRIMARY KEY,
    balance numeric NOT NULL,
    version bigint NOT NULL
);
CREATE TABLE m_movements (
    id            bigserial PRIMARY KEY,
    wallet_id     bigint NOT NULL,
    version       bigint NOT NULL,
    amount        numeric NOT NULL,
    balance_after numeric NOT NULL,
    key           text NOT NULL,
    journal_id    bigint NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE m_journal (
    id         bigserial PRIMARY KEY,
    kind       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE m_entries (
    id         bigserial PRIMARY KEY,
    journal_id bigint NOT NULL,
    account    text NOT NULL,
    wallet_id  bigint,
    amount     numeric NOT NULL
);
CREATE TABLE m_audit (
    id         bigserial PRIMARY KEY,
    action     text NOT NULL,
    entity_id  bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO m_wallets SELECT n, 1000000000, 1 FROM generate_series(1, 1000) n;
ANALYZE;
