-- idempotency-find: the stored answer of a tenant's idempotency key, unless it expired.
-- $1 tenant text
-- $2 key text
-- reply: one row (fingerprint, status, headers, body) or none
SELECT fingerprint, status, headers, body FROM idempotency_keys
WHERE tenant_id = $1 AND key = $2 AND expires_at > now()
