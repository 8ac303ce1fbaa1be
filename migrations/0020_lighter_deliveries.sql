-- A subscribed endpoint adds a delivery row to every event's transaction
-- and updates it once delivered: only the indexes its hot paths need stay
-- (make bench, run 6g). Due endpoints and the backlog gauges read the
-- pending rows through event_deliveries_order; an endpoint's deliveries
-- are listed newest event first through event_deliveries_once; retention
-- finds an event's deliveries through its endpoints and the same index.
DROP INDEX event_deliveries_due;
DROP INDEX event_deliveries_endpoint;
DROP INDEX event_deliveries_event;
-- The endpoint's key (shop_id, endpoint_id) already names the shop.
ALTER TABLE event_deliveries DROP CONSTRAINT event_deliveries_shop_id_fkey;
