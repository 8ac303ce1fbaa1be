-- The next day to roll up for shop $1: the day after its last one rolled, or
-- its first day with entries; NULL while its journal is empty.
SELECT COALESCE((SELECT last_day + 1 FROM journal_rollup_shops WHERE shop_id = $1),
                (SELECT (min(created_at) AT TIME ZONE 'UTC')::date FROM journal_transactions
                  WHERE shop_id = $1)) AS day
