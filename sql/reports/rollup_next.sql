-- The next day to roll up: the day after the last one rolled, or the first
-- day with entries; NULL while the journal is empty.
SELECT COALESCE(last_day + 1,
                (SELECT (min(created_at) AT TIME ZONE 'UTC')::date FROM journal_transactions)) AS day
  FROM journal_rollup_state
