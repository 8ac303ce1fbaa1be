-- Turns a migrated database on a Citus coordinator into the distributed one
-- (docs/scale-out.md). Run by `billing-ledger citus distribute`, in one
-- transaction: all of it happens or none. Idempotent: a table already
-- distributed is left as it is, so running it twice changes nothing. A
-- table a later migration created is local (or, with a foreign key to a
-- reference table, a Citus local table) until this runs again.
--
-- shops and the small global tables become reference tables (a copy on
-- every node); every table with a shop_id is distributed by shop_id, all
-- co-located, so a shop's rows of every table live on one worker and a
-- statement filtered by one shop runs there alone.
--
-- Citus distributes a table only when the tables its foreign keys point at
-- already are, so the foreign keys among these tables are dropped first and
-- added back, with the same names and definitions, once every table is
-- distributed.
DO $distribute$
DECLARE
    reference_tables text[] := ARRAY['shops', 'api_key_prefixes', 'idempotency_cleanup_runs'];
    -- In foreign-key order, so co-location follows the first one.
    distributed_tables text[] := ARRAY['api_keys', 'audit_log', 'idempotency_keys', 'wallets',
        'journal_transactions', 'journal_entries', 'wallet_transactions', 'credit_reservations',
        'invoice_counters', 'invoices', 'invoice_lines', 'invoice_payments', 'contracts',
        'webhook_secrets', 'webhook_events', 'journal_daily_totals', 'journal_wallet_balances',
        'journal_rollup_shops', 'credit_note_counters', 'credit_notes', 'payment_refunds',
        'credit_grants', 'grant_consumptions', 'reservation_grants', 'events', 'webhook_endpoints',
        'event_deliveries', 'delivery_attempts', 'balance_alerts', 'contract_periods'];
    t text;
    fk record;
    fks text[] := '{}';
BEGIN
    -- The triggers (append-only ledger tables, the journal balance check)
    -- read only their own row's shop, which lives on their shard's worker.
    SET LOCAL citus.enable_unsafe_triggers = on;
    -- DDL on distributed tables after distributing them in one transaction.
    SET LOCAL citus.multi_shard_modify_mode = 'sequential';

    FOR fk IN
        SELECT c.conrelid::regclass AS tab, c.conname, pg_get_constraintdef(c.oid) AS def
          FROM pg_constraint c
         WHERE c.contype = 'f'
           AND c.conrelid::regclass::text = ANY (reference_tables || distributed_tables)
           AND NOT EXISTS (SELECT 1 FROM pg_dist_partition p WHERE p.logicalrelid = c.conrelid)
    LOOP
        fks := fks || format('ALTER TABLE %s ADD CONSTRAINT %I %s', fk.tab, fk.conname, fk.def);
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', fk.tab, fk.conname);
    END LOOP;

    FOREACH t IN ARRAY reference_tables LOOP
        IF to_regclass(t) IS NULL THEN -- an older schema: its migration is pending
            RAISE NOTICE 'skipping %: no such table', t;
            CONTINUE;
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = t::regclass AND repmodel = 't') THEN
            PERFORM create_reference_table(t);
            -- A populated table's rows were copied to the nodes; its
            -- coordinator-local copy is dead weight.
            PERFORM truncate_local_data_after_distributing_table(t);
        END IF;
    END LOOP;

    FOREACH t IN ARRAY distributed_tables LOOP
        IF to_regclass(t) IS NULL THEN -- an older schema: its migration is pending
            RAISE NOTICE 'skipping %: no such table', t;
            CONTINUE;
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = t::regclass AND partmethod = 'h') THEN
            PERFORM create_distributed_table(t, 'shop_id', colocate_with => CASE
                WHEN t = distributed_tables[1] THEN 'default' ELSE distributed_tables[1] END);
            PERFORM truncate_local_data_after_distributing_table(t);
        END IF;
    END LOOP;

    FOREACH t IN ARRAY fks LOOP
        EXECUTE t;
    END LOOP;
END
$distribute$;
