-- sweep-warn-expiring: claims live sessions whose deadline is near and not yet warned of, marks them warned, with session.timeout_warning.
-- $1 leadSeconds integer: how long before the deadline to warn
-- $2 limit integer: most sessions per call
-- reply: one row (id, tenant_id) per session warned
WITH due AS (
  -- SKIP LOCKED: sweepers on several instances split the work. FOR UPDATE re-checks the
  -- conditions on the newest row, so one written meanwhile is judged as it is now.
  SELECT s.tenant_id, s.id, agent_sessions_deadline(s) AS deadline, agent_sessions_deadline_reason(s) AS reason FROM sessions s
  WHERE agent_sessions_live_status(s.status)
    AND NOT agent_sessions_timeout_warned(s)
    AND agent_sessions_deadline(s) > now()
    AND agent_sessions_deadline(s) <= now() + $1::int * interval '1 second'
  ORDER BY agent_sessions_deadline(s)
  LIMIT $2
  FOR UPDATE OF s SKIP LOCKED
), u AS (
  UPDATE sessions s SET timeout_warned_at = now() FROM due WHERE s.tenant_id = due.tenant_id AND s.id = due.id
  RETURNING s.id, s.tenant_id, s.version, due.deadline, due.reason
), events AS (
  SELECT u.tenant_id, u.id AS session_id, 1 AS ord, 'session.timeout_warning' AS type,
    jsonb_build_object('expires_at', u.deadline, 'reason', u.reason,
      'seconds_left', GREATEST(0, floor(extract(epoch FROM u.deadline - now())))::int, 'version', u.version) AS payload
  FROM u
), emitted AS (
  INSERT INTO outbox (tenant_id, type, session_id, payload)
  SELECT e.tenant_id, e.type, e.session_id, e.payload FROM events e WHERE e.payload IS NOT NULL ORDER BY e.session_id, e.ord
)
SELECT u.id, u.tenant_id FROM u
