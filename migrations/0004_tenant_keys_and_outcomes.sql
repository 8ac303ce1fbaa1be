-- Every primary, unique and foreign key of a table with shop_id starts with
-- it (DESIGN §3), so tenant isolation is cheap and the schema distributes by
-- shop_id. Platform (admin) actions are kept under the nil shop id.

-- The audit trail outlives what it records, so it has no foreign key to shops.
ALTER TABLE audit_log DROP CONSTRAINT audit_log_pkey;
ALTER TABLE audit_log DROP CONSTRAINT audit_log_shop_id_fkey;
UPDATE audit_log SET shop_id = '00000000-0000-0000-0000-000000000000' WHERE shop_id IS NULL;
ALTER TABLE audit_log ALTER COLUMN shop_id SET NOT NULL;
ALTER TABLE audit_log ADD PRIMARY KEY (shop_id, id);

-- A key is looked up by its public prefix before its shop is known; the
-- prefix is random (12 alphanumerics), and authentication compares the hash
-- of every row that has it.
ALTER TABLE api_keys DROP CONSTRAINT api_keys_prefix_key;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_shop_prefix UNIQUE (shop_id, prefix);
CREATE INDEX api_keys_prefix ON api_keys (prefix);

-- Idempotency records: shop_id like every tenant table, and the headers a
-- replay repeats.
ALTER TABLE idempotency_keys RENAME COLUMN scope TO shop_id;
ALTER TABLE idempotency_keys
    ADD COLUMN response_content_type text NOT NULL DEFAULT '',
    ADD COLUMN response_etag text;
UPDATE idempotency_keys SET response_content_type =
    CASE WHEN response_status BETWEEN 200 AND 299 THEN 'application/json'
         ELSE 'application/problem+json' END
 WHERE response_status <> 0;

-- The balance check runs once per journal transaction at commit (a posting
-- may have many lines), not once per entry. Entries are only ever written
-- with their journal transaction, in the same statement.
DROP TRIGGER journal_balanced ON journal_entries;
DROP FUNCTION journal_assert_balanced();

CREATE FUNCTION journal_assert_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    entries bigint;
    bad text;
BEGIN
    SELECT sum(n), min(currency) FILTER (WHERE total <> 0) INTO entries, bad
      FROM (SELECT currency, count(*) AS n, sum(amount) AS total
              FROM journal_entries
             WHERE shop_id = NEW.shop_id AND journal_transaction_id = NEW.id
             GROUP BY currency) per_currency;
    IF bad IS NOT NULL OR coalesce(entries, 0) < 2 THEN
        RAISE EXCEPTION 'journal transaction % is unbalanced (currency %) or has fewer than two entries',
            NEW.id, coalesce(bad, '-')
            USING ERRCODE = 'check_violation', CONSTRAINT = 'journal_balanced';
    END IF;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER journal_balanced
    AFTER INSERT ON journal_transactions
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION journal_assert_balanced();
