-- run-session-lock: locks a session row for a run decision (lock order: the session, then its runs) and reads its run bookkeeping.
-- $1 id uuid
-- $2 tenant text, null for any tenant (an owner finalizing its run names the session by id alone)
-- reply: zero or one row: tenant_id, status, effective_status, live, version, output_seq, running_run_id, queued_runs
-- Live: a live status, before its expiry, and (unless a run is going) before its idle deadline;
-- the status a reader sees is expired once a live status is past a deadline.
SELECT s.tenant_id, s.status, s.version, s.output_seq, s.running_run_id, s.queued_runs, l.live,
  CASE WHEN s.status IN ('initializing', 'active', 'idle', 'waiting_input') AND NOT l.live THEN 'expired' ELSE s.status END
    AS effective_status
FROM sessions s
CROSS JOIN LATERAL (SELECT
  s.status IN ('initializing', 'active', 'idle', 'waiting_input')
  AND (s.expires_at IS NULL OR s.expires_at > now())
  AND (s.idle_timeout_seconds IS NULL OR s.status = 'active'
       OR s.last_active_at + s.idle_timeout_seconds * interval '1 second' > now()) AS live) l
WHERE s.id = $1 AND ($2::text IS NULL OR s.tenant_id = $2)
FOR UPDATE OF s
