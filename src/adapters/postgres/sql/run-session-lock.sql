-- run-session-lock: locks a session row for a run decision (lock order: the session, then its runs) and reads its run bookkeeping.
-- $1 id text
-- $2 tenant text
-- reply: zero or one row: tenant_id, status, effective_status, live, version, output_seq, running_run_id, queued_runs
-- output_seq is the row's: the last seq unless a run is running, whose appends run-active-runs
-- reads (in a statement after this one, whose snapshot holds every append that held the row).
-- Live and the status a reader sees are the database's definitions (agent_sessions_live,
-- agent_sessions_effective_status: migration 051).
SELECT s.tenant_id, s.status, s.version, s.output_seq, s.running_run_id, s.queued_runs, agent_sessions_live(s) AS live,
  agent_sessions_effective_status(s) AS effective_status
FROM sessions s
WHERE s.tenant_id = $2 AND s.id = $1
FOR UPDATE OF s
