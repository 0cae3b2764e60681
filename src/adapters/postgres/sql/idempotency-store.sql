-- idempotency-store: stores the answer of a tenant's idempotency key, in the transaction of the
-- operation it answers (under idempotency-lock). An expired row of the key is replaced.
-- $1 tenant text
-- $2 key text
-- $3 fingerprint text
-- $4 status integer
-- $5 headers jsonb: the answer's headers that are part of it (etag, location)
-- $6 body text: the answer's JSON text, or null for none
-- $7 ttlSeconds integer: how long the answer is kept
-- reply: none
INSERT INTO idempotency_keys (tenant_id, key, fingerprint, status, headers, body, expires_at)
VALUES ($1, $2, $3, $4::int, $5::jsonb, $6, now() + $7::int * interval '1 second')
ON CONFLICT (tenant_id, key) DO UPDATE SET
  fingerprint = EXCLUDED.fingerprint, status = EXCLUDED.status, headers = EXCLUDED.headers,
  body = EXCLUDED.body, created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at
WHERE idempotency_keys.expires_at <= now()
