-- sweep-expire-due: claims live sessions past their deadline (active ones too) and expires them, with their events.
-- $1 limit integer: most sessions per call
-- $2 notifyChannel text: where near caches hear "<id> <version>" of written sessions; null: not announced
-- reply: one row (id, tenant_id) per session expired
WITH due AS (
  -- SKIP LOCKED: sweepers on several instances split the work. FOR UPDATE re-checks the
  -- conditions on the newest row, so one written meanwhile is judged as it is now.
  SELECT s.id, s.status AS prev_status, agent_sessions_deadline(s) AS deadline,
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
  FROM due WHERE s.id = due.id
  RETURNING s.id, s.tenant_id, s.version, due.prev_status, due.deadline, due.reason, due.warned
), fx AS (
  SELECT
    count(agent_sessions_emit(u.tenant_id, u.id, jsonb_build_array(
      -- A session whose deadline passed between two sweeps still gets its one warning first.
      CASE WHEN NOT u.warned THEN jsonb_build_object('type', 'session.timeout_warning', 'payload',
        jsonb_build_object('expires_at', u.deadline, 'reason', u.reason, 'seconds_left', 0, 'version', u.version - 1)) END,
      jsonb_build_object('type', 'session.status_changed', 'payload',
        jsonb_build_object('from', u.prev_status, 'to', 'expired', 'version', u.version)),
      jsonb_build_object('type', 'session.expired', 'payload',
        jsonb_build_object('reason', u.reason, 'expired_at', u.deadline, 'version', u.version))))) AS events,
    count(pg_catalog.pg_notify($2, u.id::text || ' ' || u.version::text)) FILTER (WHERE $2::text IS NOT NULL) AS notified
  -- Events in id order.
  FROM (SELECT * FROM upd ORDER BY id) u
)
SELECT upd.id, upd.tenant_id FROM upd, fx
