-- Which shop holds a key prefix, readable without knowing the shop: the key
-- is looked up by its public prefix before its shop is known, and on Citus
-- api_keys is distributed by shop, so a lookup by prefix alone would ask
-- every shard. This small table is a reference table there (a copy on every
-- node, docs/scale-out.md); on a single server it is one more index probe on
-- a cache miss. Prefixes are random, not unique across shops (a collision
-- lists both shops, and authentication compares every holder's hash).
CREATE TABLE api_key_prefixes (
    prefix   text NOT NULL,
    shop_id  uuid NOT NULL REFERENCES shops (id),
    PRIMARY KEY (prefix, shop_id)
);
INSERT INTO api_key_prefixes (prefix, shop_id)
SELECT DISTINCT prefix, shop_id FROM api_keys;
