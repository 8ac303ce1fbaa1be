-- Rows written by one statement beside the rows they reference (a debit's
-- consumptions and its movement, a batch item's consumptions and the grant
-- an earlier item of the batch made, a hold's grants and the hold) are
-- checked at commit: Citus may run such a statement's parts on the shard
-- one after another, so a check at the end of the statement could run
-- before the row it looks for is written.
ALTER TABLE grant_consumptions DROP CONSTRAINT grant_consumptions_shop_id_wallet_transaction_id_fkey;
ALTER TABLE grant_consumptions ADD CONSTRAINT grant_consumptions_shop_id_wallet_transaction_id_fkey
    FOREIGN KEY (shop_id, wallet_transaction_id) REFERENCES wallet_transactions (shop_id, id)
    DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE grant_consumptions DROP CONSTRAINT grant_consumptions_shop_id_grant_id_fkey;
ALTER TABLE grant_consumptions ADD CONSTRAINT grant_consumptions_shop_id_grant_id_fkey
    FOREIGN KEY (shop_id, grant_id) REFERENCES credit_grants (shop_id, id)
    DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE reservation_grants DROP CONSTRAINT reservation_grants_shop_id_reservation_id_fkey;
ALTER TABLE reservation_grants ADD CONSTRAINT reservation_grants_shop_id_reservation_id_fkey
    FOREIGN KEY (shop_id, reservation_id) REFERENCES credit_reservations (shop_id, id)
    DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE reservation_grants DROP CONSTRAINT reservation_grants_shop_id_grant_id_fkey;
ALTER TABLE reservation_grants ADD CONSTRAINT reservation_grants_shop_id_grant_id_fkey
    FOREIGN KEY (shop_id, grant_id) REFERENCES credit_grants (shop_id, id)
    DEFERRABLE INITIALLY DEFERRED;
