-- One row per (scope, Idempotency-Key). scope is the shop id, or the nil UUID
-- for platform admin requests. The row is inserted first in the request's
-- transaction and completed with the response before commit, so a committed
-- row always carries its response: a concurrent duplicate waits on the
-- uncommitted insert and then replays.
CREATE TABLE idempotency_keys (
    scope            uuid NOT NULL,
    key              text NOT NULL,
    fingerprint      bytea NOT NULL,           -- SHA-256 of method, path and body
    response_status  smallint NOT NULL DEFAULT 0,
    response_body    bytea NOT NULL DEFAULT ''::bytea,
    response_location text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_expires_at ON idempotency_keys (expires_at);

-- Bookkeeping for the cleanup job, shared by every instance.
CREATE TABLE idempotency_cleanup_runs (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    finished_at   timestamptz NOT NULL DEFAULT now(),
    rows_deleted  bigint NOT NULL
);
