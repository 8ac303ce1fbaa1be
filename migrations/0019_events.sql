-- Outbound events (docs/events.md): a transactional outbox, the shops'
-- webhook endpoints, one delivery per event and subscribed endpoint with
-- its attempts, and balance alerts.
--
-- An event is written by the statement that stores its request's outcome
-- and audit row, so it exists exactly when its change committed. `seq` is
-- taken as it is written, under the row lock of the object it is about (a
-- wallet, an invoice), so the events of one object are in their commit
-- order by `seq`. `position` is its place in the shop's stream, given by
-- the first reader after it committed (one reader of a shop at a time, in
-- `seq` order): a committed event never gets a place behind one a reader
-- was already shown, so paging by `starting_after` never skips one.

CREATE SEQUENCE event_seq;

CREATE TABLE events (
    shop_id       uuid NOT NULL REFERENCES shops (id),
    -- UUIDv7: the receiver's deduplication key (`Webhook-Id`).
    id            uuid NOT NULL,
    type          text NOT NULL,
    -- What orders deliveries to one endpoint: the wallet an event is about,
    -- else the object it is about.
    ordering_key  uuid NOT NULL,
    -- The object as the API showed it when the change committed.
    data          jsonb NOT NULL,
    seq           bigint NOT NULL DEFAULT nextval('event_seq'),
    position      bigint,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shop_id, id)
);
CREATE UNIQUE INDEX events_stream ON events (shop_id, position);
CREATE INDEX events_unplaced ON events (shop_id, seq) WHERE position IS NULL;
-- Retention and `created_after`.
CREATE INDEX events_created ON events (created_at);

CREATE TABLE webhook_endpoints (
    shop_id              uuid NOT NULL REFERENCES shops (id),
    id                   uuid NOT NULL,
    url                  text NOT NULL,
    description          text,
    -- Event types, or '*' for all.
    event_types          text[] NOT NULL CHECK (cardinality(event_types) > 0),
    -- Signs deliveries; shown once (at creation and at rotation).
    secret               text NOT NULL,
    -- The secret a rotation replaced, still signing beside the new one
    -- until `previous_expires_at`.
    previous_secret      text,
    previous_expires_at  timestamptz,
    disabled             boolean NOT NULL DEFAULT false,
    -- Why it was disabled: by the shop, or after failing deliveries.
    disabled_reason      text,
    -- Deliveries that ended `failed` in a row, reset by a delivered one.
    consecutive_failures integer NOT NULL DEFAULT 0,
    version              bigint NOT NULL DEFAULT 1,
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL,
    deleted_at           timestamptz,
    PRIMARY KEY (shop_id, id)
);
-- What an event's statement joins to fan out: the shop's live endpoints.
CREATE INDEX webhook_endpoints_live ON webhook_endpoints (shop_id)
    WHERE NOT disabled AND deleted_at IS NULL;

CREATE TABLE event_deliveries (
    shop_id          uuid NOT NULL REFERENCES shops (id),
    id               uuid NOT NULL,
    endpoint_id      uuid NOT NULL,
    event_id         uuid NOT NULL,
    event_type       text NOT NULL,
    ordering_key     uuid NOT NULL,
    event_seq        bigint NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
                       CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    -- A worker is posting it until then; after that (it crashed) another
    -- may take it again.
    leased_until     timestamptz,
    last_status_code integer,
    last_error       text,
    delivered_at     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shop_id, id),
    CONSTRAINT event_deliveries_once UNIQUE (shop_id, endpoint_id, event_id),
    FOREIGN KEY (shop_id, endpoint_id) REFERENCES webhook_endpoints (shop_id, id),
    CHECK ((status = 'delivered') = (delivered_at IS NOT NULL))
);
-- The worker's queue.
CREATE INDEX event_deliveries_due ON event_deliveries (next_attempt_at) WHERE status = 'pending';
-- Ordering: an earlier pending delivery of the same endpoint and key.
CREATE INDEX event_deliveries_order ON event_deliveries
    (shop_id, endpoint_id, ordering_key, event_seq) WHERE status = 'pending';
CREATE INDEX event_deliveries_endpoint ON event_deliveries (shop_id, endpoint_id, id);
CREATE INDEX event_deliveries_event ON event_deliveries (shop_id, event_id);

CREATE TABLE delivery_attempts (
    shop_id       uuid NOT NULL REFERENCES shops (id),
    id            uuid NOT NULL,
    delivery_id   uuid NOT NULL,
    attempted_at  timestamptz NOT NULL,
    -- None when no answer came (refused, timed out, blocked address).
    status_code   integer,
    latency_ms    integer NOT NULL,
    error         text,
    PRIMARY KEY (shop_id, id)
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (shop_id, delivery_id, attempted_at);

CREATE TABLE balance_alerts (
    shop_id          uuid NOT NULL,
    id               uuid NOT NULL,
    wallet_id        uuid NOT NULL,
    available_below  numeric(24,4) NOT NULL,
    -- Armed: the wallet's available is at or above the threshold, and the
    -- next movement that takes it below fires `wallet.balance_below`.
    armed            boolean NOT NULL,
    created_at       timestamptz NOT NULL,
    PRIMARY KEY (shop_id, id),
    FOREIGN KEY (shop_id, wallet_id) REFERENCES wallets (shop_id, id)
);
CREATE INDEX balance_alerts_wallet ON balance_alerts (shop_id, wallet_id);
