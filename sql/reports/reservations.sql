-- Per currency: active holds (count, total, and those more than five
-- minutes past expiry that the expiry job has not freed) against the
-- wallets' reserved, with the first 100 overdue holds' ids.
SELECT c.currency AS "currency!",
       COALESCE(h.active, 0) AS "active!",
       COALESCE(h.held, 0) AS "held!",
       COALESCE(h.overdue, 0) AS "overdue!",
       COALESCE(h.overdue_ids[1:100], '{}') AS "overdue_ids!",
       c.reserved AS "reserved!"
  FROM (SELECT currency, sum(reserved) AS reserved FROM wallets
         WHERE shop_id = $1 AND ($2::text IS NULL OR currency = $2) GROUP BY currency) c
  LEFT JOIN (SELECT currency, count(*) AS active, sum(amount) AS held,
                    count(*) FILTER (WHERE expires_at < now() - interval '5 minutes') AS overdue,
                    array_agg(id ORDER BY expires_at, id)
                        FILTER (WHERE expires_at < now() - interval '5 minutes') AS overdue_ids
               FROM credit_reservations
              WHERE shop_id = $1 AND status = 'active' GROUP BY currency) h USING (currency)
 ORDER BY 1
