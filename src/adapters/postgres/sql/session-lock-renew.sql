-- session-lock-renew: extends a lease its holder still has; a lapsed lease is lost even if nobody has taken it yet.
-- $1 sessionId text
-- $2 token text: the holder's token
-- $3 ttlMs integer: how long the lease lasts from now
-- $4 tenant text
-- reply: one row when renewed, none when the lease is lost
WITH cur AS (
  SELECT * FROM session_locks WHERE tenant_id = $4 AND session_id = $1 FOR UPDATE
)
UPDATE session_locks l SET expires_at = now() + $3::int * interval '1 millisecond'
FROM cur
-- The guard reads the locked lease (cur), never the statement's snapshot of l.
WHERE l.tenant_id = cur.tenant_id AND l.session_id = cur.session_id AND cur.token = $2 AND cur.expires_at > now()
RETURNING 1
