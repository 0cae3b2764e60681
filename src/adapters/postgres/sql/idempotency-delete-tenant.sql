-- idempotency-delete-tenant: deletes every idempotency key of a tenant (tenant erasure).
-- $1 tenant text
-- reply: one row: deleted (count)
WITH del AS (DELETE FROM idempotency_keys WHERE tenant_id = $1 RETURNING 1)
SELECT count(*)::int AS deleted FROM del
