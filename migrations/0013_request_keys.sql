-- Every money movement keeps the request key that made it on its own row,
-- unique per shop, so a retry after the key's idempotency record expired
-- finds the earlier result instead of running again (wallet movements
-- already did: wallet_transactions.idempotency_key).
ALTER TABLE invoice_payments ADD COLUMN idempotency_key text;
CREATE UNIQUE INDEX invoice_payments_idempotency_key
    ON invoice_payments (shop_id, idempotency_key) WHERE idempotency_key IS NOT NULL;

ALTER TABLE invoices ADD COLUMN finalize_key text;
CREATE UNIQUE INDEX invoices_finalize_key
    ON invoices (shop_id, finalize_key) WHERE finalize_key IS NOT NULL;

-- The hold's request, and the capture or release that settled it.
ALTER TABLE credit_reservations ADD COLUMN idempotency_key text, ADD COLUMN settle_key text;
CREATE UNIQUE INDEX credit_reservations_idempotency_key
    ON credit_reservations (shop_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE UNIQUE INDEX credit_reservations_settle_key
    ON credit_reservations (shop_id, settle_key) WHERE settle_key IS NOT NULL;

