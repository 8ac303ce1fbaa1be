-- pgbench script: run 1d of `make bench`, a debit on the minimal ledger of
-- minimal_schema.sql -- the key row, the wallet update returning the
-- balance, the journal transaction, two entries, the movement, the audit
-- row and the stored answer (the same 350-byte body as yardstick.sql), one
-- plain statement each inside BEGIN/COMMIT, on one of 1,000 wallets.
\set n random(1, 1000)
BEGIN;
INSERT INTO m_keys (key) VALUES (gen_random_uuid()::text) RETURNING key AS idem_key \gset
UPDATE m_wallets SET balance = balance - 0.01, version = version + 1 WHERE id = :n
RETURNING balance, version \gset
INSERT INTO m_journal (kind) VALUES ('wallet.debit') RETURNING id AS journal_id \gset
INSERT INTO m_entries (journal_id, account, wallet_id, amount) VALUES (:journal_id, 'wallet', :n, -0.01);
INSERT INTO m_entries (journal_id, account, wallet_id, amount) VALUES (:journal_id, 'revenue', NULL, 0.01);
INSERT INTO m_movements (wallet_id, version, amount, balance_after, key, journal_id)
VALUES (:n, :version, 0.01, :balance, :idem_key, :journal_id) RETURNING id AS movement_id \gset
INSERT INTO m_audit (action, entity_id) VALUES ('wallet.debit', :movement_id);
UPDATE m_keys
   SET status = 201,
       body = '\x7b226964223a2230316132303761392d323837372d373763612d626362652d336233386330333261376163222c2277616c6c65745f6964223a2230316132303761392d323830362d373739612d393933332d363138333535663831633134222c2274797065223a226465626974222c2263617465676f7279223a227573616765222c22616d6f756e74223a22302e3031222c2263757272656e6379223a22555344222c2262616c616e63655f6166746572223a223939393939392e3939222c226465736372697074696f6e223a6e756c6c2c226d65746164617461223a7b7d2c227472616e736665725f6964223a6e756c6c2c226a6f75726e616c5f7472616e73616374696f6e5f6964223a2230316132303761392d323837352d373533382d613738632d616632663365313632373136222c22637265617465645f6174223a22323032362d31312d32335430393a30373a33362e3137393733365a227d'::bytea
 WHERE key = :idem_key;
COMMIT;
