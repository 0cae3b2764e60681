-- run-orphans: candidates for the orphan sweep: running and queued runs whose lease lapsed, oldest lapse first (each is checked again under lock before it is ended).
-- $1 limit integer
-- reply: rows id, tenant_id, session_id, status
SELECT id, tenant_id, session_id, status FROM runs
WHERE status IN ('running', 'queued') AND lease_expires_at < now()
ORDER BY lease_expires_at LIMIT $1
