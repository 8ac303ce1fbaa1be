-- The append-only refusal names the table a client knows: on Citus the
-- trigger fires on a shard (wallet_transactions_102010), whose id suffix is
-- dropped. On a distributed database Citus passes the new definition on to
-- the workers with the migration (docs/scale-out.md, "A new migration").
CREATE OR REPLACE FUNCTION forbid_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', regexp_replace(TG_TABLE_NAME, '_[0-9]+$', '')
        USING ERRCODE = 'insufficient_privilege';
END $$;
