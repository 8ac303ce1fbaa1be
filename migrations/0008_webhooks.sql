-- Inbound payment webhooks. Secrets are kept in the clear because an HMAC
-- can only be verified with the secret itself; a rotated secret stays valid
-- until `expires_at`. Events are the queue: the receiver only inserts (the
-- UNIQUE event id makes a redelivery a no-op) and the worker leases due
-- rows with SKIP LOCKED, then applies each under its row lock.

CREATE TABLE webhook_secrets (
    shop_id     uuid NOT NULL REFERENCES shops (id),
    id          uuid NOT NULL,
    provider    text NOT NULL CHECK (provider ~ '^[a-z0-9_-]{1,40}$'),
    secret      text NOT NULL,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz,
    PRIMARY KEY (shop_id, id)
);
CREATE INDEX webhook_secrets_provider ON webhook_secrets (shop_id, provider);

CREATE TABLE webhook_events (
    shop_id          uuid NOT NULL REFERENCES shops (id),
    id               uuid NOT NULL,
    provider         text NOT NULL,
    event_id         text NOT NULL,
    type             text NOT NULL,
    payload          jsonb NOT NULL,
    status           text NOT NULL
                       CHECK (status IN ('pending', 'processed', 'failed', 'dead', 'ignored')),
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error       text,
    next_attempt_at  timestamptz NOT NULL,
    received_at      timestamptz NOT NULL,
    processed_at     timestamptz,
    result           jsonb,
    PRIMARY KEY (shop_id, id),
    CONSTRAINT webhook_events_event UNIQUE (shop_id, provider, event_id),
    CHECK ((status = 'processed') = (processed_at IS NOT NULL))
);
-- What the worker scans: due events only.
CREATE INDEX webhook_events_due ON webhook_events (next_attempt_at) WHERE status IN ('pending', 'failed');
CREATE INDEX webhook_events_shop_status ON webhook_events (shop_id, status, id);
-- What retention scans.
CREATE INDEX webhook_events_done ON webhook_events (received_at) WHERE status IN ('processed', 'ignored');
