-- run-session-claim: run-session-lock for the orphan sweep: skips a session row another transaction holds (it is being finalized there).
-- $1 id uuid
-- reply: zero or one row: tenant_id, status, effective_status, live, version, output_seq, running_run_id, queued_runs
SELECT s.tenant_id, s.status, s.version, s.output_seq, s.running_run_id, s.queued_runs, l.live,
  CASE WHEN s.status IN ('initializing', 'active', 'idle', 'waiting_input') AND NOT l.live THEN 'expired' ELSE s.status END
    AS effective_status
FROM sessions s
CROSS JOIN LATERAL (SELECT
  s.status IN ('initializing', 'active', 'idle', 'waiting_input')
  AND (s.expires_at IS NULL OR s.expires_at > now())
  AND (s.idle_timeout_seconds IS NULL OR s.status = 'active'
       OR s.last_active_at + s.idle_timeout_seconds * interval '1 second' > now()) AS live) l
WHERE s.id = $1
FOR UPDATE OF s SKIP LOCKED
