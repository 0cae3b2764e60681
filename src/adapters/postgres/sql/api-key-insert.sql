-- api-key-insert: stores a new API key (its SHA-256 hash and lookup prefix, never the key).
-- $1 id uuid
-- $2 tenant text
-- $3 name text, null for none
-- $4 prefix text: the lookup prefix (unique)
-- $5 hash text: hex SHA-256 of the key
-- $6 scopes jsonb: array of scope names
-- $7 root boolean
-- reply: the stored row
INSERT INTO api_keys (id, tenant_id, name, prefix, hash, scopes, root)
VALUES ($1, $2, $3, $4, $5, ARRAY(SELECT jsonb_array_elements_text($6::jsonb)), $7)
RETURNING *
