-- stats-running-runs: how many runs of a tenant are running.
-- $1 tenant text
-- reply: one row, n
SELECT count(*)::int AS n FROM runs WHERE tenant_id = $1 AND status = 'running'
