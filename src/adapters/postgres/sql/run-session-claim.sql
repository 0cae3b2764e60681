-- run-session-claim: run-session-lock for the orphan sweep: skips a session row another transaction holds (it is being finalized there).
-- $1 id text
-- $2 tenant text
-- reply: zero or one row: tenant_id, status, effective_status, live, version, output_seq, running_run_id, queued_runs
-- (output_seq as run-session-lock's)
SELECT s.tenant_id, s.status, s.version, s.output_seq, s.running_run_id, s.queued_runs, agent_sessions_live(s) AS live,
  agent_sessions_effective_status(s) AS effective_status
FROM sessions s
WHERE s.tenant_id = $2 AND s.id = $1
FOR UPDATE OF s SKIP LOCKED
