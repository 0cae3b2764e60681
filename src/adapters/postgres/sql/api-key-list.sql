-- api-key-list: keys of one tenant, or of all tenants, oldest first.
-- $1 tenant text, null for every tenant
-- reply: the rows
SELECT * FROM api_keys WHERE $1::text IS NULL OR tenant_id = $1 ORDER BY created_at, id
