-- Tenants (shops), their API keys and the audit trail.

CREATE TABLE shops (
    id          uuid PRIMARY KEY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- The full key is `blk_<prefix>_<secret>`; only its SHA-256 is stored.
CREATE TABLE api_keys (
    shop_id     uuid NOT NULL REFERENCES shops (id),
    id          uuid NOT NULL,
    prefix      text NOT NULL UNIQUE,
    secret_hash bytea NOT NULL,
    role        text NOT NULL CHECK (role IN ('owner', 'finance')),
    label       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    PRIMARY KEY (shop_id, id)
);

-- Written in the same transaction as the change it records. shop_id is NULL
-- for platform (admin) actions.
CREATE TABLE audit_log (
    id          uuid PRIMARY KEY,
    shop_id     uuid REFERENCES shops (id),
    api_key_id  uuid,
    action      text NOT NULL,
    entity      text NOT NULL,
    entity_id   uuid NOT NULL,
    request_id  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_shop_entity ON audit_log (shop_id, entity_id);
