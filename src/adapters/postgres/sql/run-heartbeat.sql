-- run-heartbeat: renews this owner's leases on its running and queued runs and reports each run's state (the durable path of every signal).
-- $1 owner text
-- $2 ids jsonb: array of run ids
-- $3 leaseMs integer
-- reply: one row per run that still exists: id, status, owner, interrupt_requested, interrupt_requested_ms, input_seq, session_ended
-- SKIP LOCKED: a run row held by a finalization or an input write is renewed at the next beat
-- instead of making the heartbeat wait in a lock cycle. A renewed run is reported as renewed
-- (its newest row); the others as the statement found them.
-- The ids are read with agent_sessions_each (migration 065): one primary-key probe each, whatever the table holds.
WITH wanted AS (
  SELECT (e #>> '{}')::uuid AS id FROM agent_sessions_each($2::jsonb) AS e
), renewed AS (
  UPDATE runs r SET lease_expires_at = now() + $3::integer * interval '1 millisecond'
  WHERE r.id IN (
    SELECT x.id FROM wanted w JOIN runs x ON x.id = w.id
    WHERE x.owner = $1 AND x.status IN ('running', 'queued')
    FOR UPDATE OF x SKIP LOCKED
  )
  RETURNING r.id, r.tenant_id, r.session_id, r.status, r.owner, r.interrupt_requested_at, r.input_seq
), seen AS (
  SELECT * FROM renewed
  UNION ALL
  SELECT r.id, r.tenant_id, r.session_id, r.status, r.owner, r.interrupt_requested_at, r.input_seq FROM runs r
  WHERE r.id IN (SELECT id FROM wanted) AND r.id NOT IN (SELECT id FROM renewed)
)
SELECT x.id, x.status, x.owner, x.interrupt_requested_at IS NOT NULL AS interrupt_requested,
  (extract(epoch FROM x.interrupt_requested_at) * 1000)::float8 AS interrupt_requested_ms, x.input_seq,
  s.status IN ('terminated', 'failed', 'expired') AS session_ended
FROM seen x JOIN sessions s ON s.tenant_id = x.tenant_id AND s.id = x.session_id
