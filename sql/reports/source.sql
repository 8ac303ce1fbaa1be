-- Which server the report reads and, on a streaming replica, how far its
-- replay is behind: 0 while it streams and has replayed all it received;
-- otherwise the age of the last replayed transaction (an upper bound while
-- the primary is idle, honest when the replica is cut off); NULL when it has
-- replayed nothing since it started. The WAL receiver's status needs
-- pg_read_all_stats; without it the lag is the (larger) replay age.
-- Also the last day the roll-up job has rolled for shop $1, as this
-- snapshot sees it.
SELECT pg_is_in_recovery() AS "replica!",
       now() AS "now!",
       CASE WHEN pg_is_in_recovery() THEN
            CASE WHEN EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming')
                      AND pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
                 ELSE (extract(epoch FROM now() - pg_last_xact_replay_timestamp()) * 1000)::bigint
            END
       END AS "lag_ms",
       (SELECT last_day FROM journal_rollup_shops WHERE shop_id = $1) AS "rolled_through"
