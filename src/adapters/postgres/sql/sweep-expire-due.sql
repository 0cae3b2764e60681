-- sweep-expire-due: claims live sessions past their deadline (active ones too) and expires them, with their events.
-- $1 limit integer: most sessions per call
-- reply: one row (id, tenant_id) per session expired
WITH due AS (
  -- SKIP LOCKED: sweepers on several instances split the work. FOR UPDATE re-checks the
  -- conditions on the newest row, so one written meanwhile is judged as it is now.
  SELECT s.tenant_id, s.id, s.status AS prev_status, agent_sessions_deadline(s) AS deadline,
    agent_sessions_deadline_reason(s) AS reason, agent_sessions_timeout_warned(s) AS warned
  FROM sessions s
  WHERE agent_sessions_live_status(s.status) AND agent_sessions_deadline(s) <= now()
  ORDER BY agent_sessions_deadline(s)
  LIMIT $1
  FOR UPDATE OF s SKIP LOCKED
), upd AS (
  UPDATE sessions s SET status = 'expired', ended_at = now(), end_reason = due.reason,
    version = s.version + 1, updated_at = now(),
    timeout_warned_at = CASE WHEN due.warned THEN s.timeout_warned_at ELSE now() END
  FROM due WHERE s.tenant_id = due.tenant_id AND s.id = due.id
  RETURNING s.id, s.tenant_id, s.version, due.prev_status, due.deadline, due.reason, due.warned
), events AS (
  SELECT u.tenant_id, u.id AS session_id, e.ord, e.type, e.payload
  FROM upd u CROSS JOIN LATERAL (VALUES
    -- A session whose deadline passed between two sweeps still gets its one warning first.
    (1, 'session.timeout_warning', CASE WHEN NOT u.warned THEN
      jsonb_build_object('expires_at', u.deadline, 'reason', u.reason, 'seconds_left', 0, 'version', u.version - 1) END),
    (2, 'session.status_changed', jsonb_build_object('from', u.prev_status, 'to', 'expired', 'version', u.version)),
    (3, 'session.expired', jsonb_build_object('reason', u.reason, 'expired_at', u.deadline, 'version', u.version))
  ) AS e(ord, type, payload)
), emitted AS (
  INSERT INTO outbox (tenant_id, type, session_id, payload)
  SELECT e.tenant_id, e.type, e.session_id, e.payload FROM events e WHERE e.payload IS NOT NULL ORDER BY e.session_id, e.ord
)
SELECT upd.id, upd.tenant_id FROM upd
