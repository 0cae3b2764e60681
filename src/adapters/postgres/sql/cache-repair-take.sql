-- cache-repair-take: the oldest recorded repairs, locked until the draining transaction ends (FOR UPDATE, not SKIP LOCKED: a second drain waits for the first to finish).
-- $1 batchSize int
-- reply: id, tenant_id, session_id, version per repair, oldest first
SELECT id, tenant_id, session_id, version FROM cache_repairs ORDER BY id LIMIT $1 FOR UPDATE
