-- run-active-runs: the running and queued runs of a session whose row this transaction holds, locked in turn; the running run first, then the queue in order.
-- $1 session text
-- $2 tenant text
-- reply: rows id, status, owner, lease_lapsed, input (only the first two queued runs': the runs a finalization may start),
--   persist_output, takes_input, interrupt_requested, starts_in_ms (how long until a debounced queued run's not_before, by the database's
--   clock; 0 when it may start), agent, on_owner_lost, max_retries, attempts, last_seq (the running run's: the session's last
--   archived seq, which its appends moved past the session row's output_seq; null on queued runs)
-- Run in its own statement after run-session-lock: its snapshot then holds every run that a
-- writer of the session (all of whom lock the session row first) committed. Each status is
-- read through its own partial index, so a session's history of ended runs is never scanned.
-- An append holds the session row (FOR KEY SHARE) until it commits, so last_seq, read in this
-- later snapshot, counts every event appended before the lock was taken.
WITH running AS (
  SELECT r.id, r.status, r.owner, r.created_at, r.input, r.lease_expires_at, r.persist_output, r.takes_input, r.not_before, r.interrupt_requested_at,
    r.agent, r.on_owner_lost, r.max_retries, r.attempts
  FROM runs r WHERE r.tenant_id = $2 AND r.session_id = $1 AND r.status = 'running'
  FOR UPDATE
), queued AS (
  SELECT r.id, r.status, r.owner, r.created_at, r.input, r.lease_expires_at, r.persist_output, r.takes_input, r.not_before, r.interrupt_requested_at,
    r.agent, r.on_owner_lost, r.max_retries, r.attempts
  FROM runs r WHERE r.tenant_id = $2 AND r.session_id = $1 AND r.status = 'queued'
  FOR UPDATE
), active AS (
  SELECT *, 0 AS rank FROM running
  UNION ALL
  SELECT *, row_number() OVER (ORDER BY created_at, id) AS rank FROM queued
)
SELECT id, status, owner, COALESCE(lease_expires_at < now(), false) AS lease_lapsed,
  CASE WHEN rank IN (1, 2) THEN input END AS input, persist_output, takes_input,
  interrupt_requested_at IS NOT NULL AS interrupt_requested,
  CASE WHEN active.not_before IS NULL THEN 0 ELSE GREATEST(0, ceil(extract(epoch FROM (active.not_before - clock_timestamp())) * 1000))::bigint END AS starts_in_ms,
  agent, on_owner_lost, max_retries, attempts,
  CASE WHEN rank = 0 THEN (SELECT max(o.seq) FROM run_output o WHERE o.tenant_id = $2 AND o.session_id = $1) END AS last_seq
FROM active
ORDER BY rank
