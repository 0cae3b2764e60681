-- run-active-runs: the running and queued runs of a session whose row this transaction holds, locked in turn; the running run first, then the queue in order.
-- $1 session text
-- $2 tenant text
-- reply: rows id, status, owner, lease_lapsed, input (only the head of the queue's: the run a finalization may start),
--   persist_output, agent, on_owner_lost, max_retries, attempts
-- Run in its own statement after run-session-lock: its snapshot then holds every run that a
-- writer of the session (all of whom lock the session row first) committed. Each status is
-- read through its own partial index, so a session's history of ended runs is never scanned.
WITH running AS (
  SELECT r.id, r.status, r.owner, r.created_at, r.input, r.lease_expires_at, r.persist_output, r.agent, r.on_owner_lost,
    r.max_retries, r.attempts
  FROM runs r WHERE r.tenant_id = $2 AND r.session_id = $1 AND r.status = 'running'
  FOR UPDATE
), queued AS (
  SELECT r.id, r.status, r.owner, r.created_at, r.input, r.lease_expires_at, r.persist_output, r.agent, r.on_owner_lost,
    r.max_retries, r.attempts
  FROM runs r WHERE r.tenant_id = $2 AND r.session_id = $1 AND r.status = 'queued'
  FOR UPDATE
), active AS (
  SELECT *, 0 AS rank FROM running
  UNION ALL
  SELECT *, row_number() OVER (ORDER BY created_at, id) AS rank FROM queued
)
SELECT id, status, owner, COALESCE(lease_expires_at < now(), false) AS lease_lapsed,
  CASE WHEN rank = 1 THEN input END AS input, persist_output, agent, on_owner_lost, max_retries, attempts
FROM active
ORDER BY rank
