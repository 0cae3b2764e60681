-- api-key-delete-tenant: deletes every key of a tenant, revoked ones included (tenant erasure).
-- $1 tenant text
-- reply: one row: deleted (count)
WITH del AS (DELETE FROM api_keys WHERE tenant_id = $1 RETURNING 1)
SELECT count(*) AS deleted FROM del
