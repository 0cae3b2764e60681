-- api-key-by-prefix: the key with this lookup prefix, revoked or not.
-- $1 prefix text
-- reply: zero or one row
SELECT * FROM api_keys WHERE prefix = $1
