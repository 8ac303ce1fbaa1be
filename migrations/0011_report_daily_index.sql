-- A shop's movements of a period, for the report's daily net movement.
CREATE INDEX wallet_transactions_shop_time ON wallet_transactions (shop_id, created_at);
