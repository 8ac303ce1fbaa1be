-- Reconciliation reads a wallet's balance at a date as the balance_after of
-- its last movement before it: one index seek, however long the history.
CREATE INDEX wallet_transactions_wallet_time ON wallet_transactions (shop_id, wallet_id, created_at, wallet_version);
