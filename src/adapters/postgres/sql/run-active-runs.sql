-- run-active-runs: the running and queued runs of a session whose row this transaction holds, locked in turn; the running run first, then the queue in order.
-- $1 session uuid
-- reply: rows id, status, owner, lease_lapsed, input (only the head of the queue's: the run a finalization may start)
-- Run in its own statement after run-session-lock: its snapshot then holds every run that a
-- writer of the session (all of whom lock the session row first) committed.
WITH locked AS (
  SELECT r.id, r.status, r.owner, r.created_at, r.input, r.lease_expires_at < now() AS lease_lapsed
  FROM runs r
  WHERE r.session_id = $1 AND r.status IN ('running', 'queued')
  FOR UPDATE
)
SELECT id, status, owner, COALESCE(lease_lapsed, false) AS lease_lapsed,
  CASE WHEN status = 'queued' AND row_number() OVER (PARTITION BY status ORDER BY created_at, id) = 1 THEN input END AS input
FROM locked
ORDER BY status = 'running' DESC, created_at, id
