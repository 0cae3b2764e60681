-- sweep-prune-idempotency-keys: deletes expired idempotency keys (their answers are no longer replayed).
-- $1 limit integer: most keys per call
-- reply: one row, n: how many were deleted
WITH due AS (
  SELECT tenant_id, key FROM idempotency_keys WHERE expires_at <= now()
  ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED
), del AS (DELETE FROM idempotency_keys k USING due WHERE k.tenant_id = due.tenant_id AND k.key = due.key RETURNING 1)
SELECT count(*)::int AS n FROM del
