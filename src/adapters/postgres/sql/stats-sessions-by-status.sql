-- stats-sessions-by-status: how many sessions a tenant has per effective status.
-- $1 tenant text
-- reply: one row (status, n) per status present
SELECT agent_sessions_effective_status(s) AS status, count(*)::int AS n FROM sessions s WHERE s.tenant_id = $1 GROUP BY 1
