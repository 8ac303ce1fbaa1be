-- The roll-up job's progress per shop instead of one row for all shops: on
-- Citus each shop's days roll up in a statement that stays on its shop's
-- shard, and one shop's roll-up never waits for another's. A shop's row is
-- written with its first rolled day. Applied to a distributed database, this
-- table is local until `billing-ledger citus distribute` runs again
-- (docs/scale-out.md, "A new migration").
CREATE TABLE journal_rollup_shops (
    shop_id   uuid PRIMARY KEY REFERENCES shops (id),
    last_day  date NOT NULL
);

-- The old single row said every shop was rolled through last_day.
INSERT INTO journal_rollup_shops (shop_id, last_day)
SELECT s.id, r.last_day
  FROM shops s, journal_rollup_state r
 WHERE r.last_day IS NOT NULL;

DROP TABLE journal_rollup_state;
