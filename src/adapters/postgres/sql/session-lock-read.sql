-- session-lock-read: what a Redis lease needs from PostgreSQL, read after the lease was taken (no write).
-- $1 tenant text
-- $2 id text
-- $3 keyPrefix text: the Redis keyspace of the leases
-- reply: one row (version, the session's committed version; fence, the newest token the row has seen;
--   epoch, the current lock epoch of the keyspace, null before the first), or no row when the session is not found
SELECT s.version, s.fence, (SELECT e.epoch FROM session_lock_epochs e WHERE e.key_prefix = $3) AS epoch
FROM sessions s WHERE s.tenant_id = $1 AND s.id = $2
