-- A delivery that succeeds keeps that attempt on its own row (its answer's
-- code and time are there already; the latency joins them): only failed
-- attempts write a delivery_attempts row, so a healthy endpoint's delivery
-- costs one row version fewer and two index entries fewer (make bench, run
-- 6g). Rows delivered before this keep their attempt in delivery_attempts
-- and leave this NULL.
ALTER TABLE event_deliveries ADD COLUMN delivered_latency_ms integer;

-- Endpoints are never deleted (deleted_at marks them) and a delivery is
-- written by the event's own statement from the shop's live endpoints, so
-- its endpoint always exists; the check only locked the endpoint's row
-- (FOR KEY SHARE) in every event's transaction, from every connection at
-- once. tests/api/events.rs checks that every delivery has its endpoint.
ALTER TABLE event_deliveries DROP CONSTRAINT event_deliveries_shop_id_endpoint_id_fkey;
