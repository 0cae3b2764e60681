-- session-lock-acquire: takes a session's lease when it is free or lapsed, and then (only then) its next fencing token.
-- $1 sessionId text
-- $2 tenant text
-- $3 token text: the new holder's token
-- $4 ttlMs integer: how long the lease lasts unless renewed
-- $5 keyPrefix text: with Redis leases (this lease stands in while Redis is unreachable), the Redis keyspace: the
--   token is then in the odd epoch above the keyspace's (even) lock epoch: above every token Redis handed out in
--   it, and never one Redis hands out; null: no Redis
-- reply: one row; found (whether the session exists), fence (the new token, null when the lease is held) and version
--   (the session's version as committed when the fence was bumped: the row lock makes it every earlier write's)
WITH s AS (
  SELECT tenant_id, id FROM sessions WHERE tenant_id = $2 AND id = $1
), lk AS (
  -- ON CONFLICT locks the existing lease and checks it as it is now, not on the snapshot.
  INSERT INTO session_locks (tenant_id, session_id, token, expires_at)
  SELECT tenant_id, id, $3, now() + $4::int * interval '1 millisecond' FROM s
  ON CONFLICT (tenant_id, session_id) DO UPDATE SET token = EXCLUDED.token, expires_at = EXCLUDED.expires_at
    WHERE session_locks.expires_at <= now()
  RETURNING tenant_id, session_id
), f AS (
  UPDATE sessions SET fence = GREATEST(fence + 1,
    (SELECT (e.epoch + 1) * 4294967296 + 1 FROM session_lock_epochs e WHERE e.key_prefix = $5::text))
  WHERE (tenant_id, id) = (SELECT tenant_id, session_id FROM lk) RETURNING fence, version
)
SELECT EXISTS (SELECT 1 FROM s) AS found, (SELECT fence FROM f) AS fence, (SELECT version FROM f) AS version
