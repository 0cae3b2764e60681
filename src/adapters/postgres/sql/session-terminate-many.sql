-- session-terminate-many: terminates the sessions of a tenant among the ids given that are not terminated yet, with their events.
-- $1 tenant text
-- $2 ids jsonb: array of uuids
-- $3 reason text: the end_reason
-- $4 notifyChannel text: where near caches hear "<id> <version>" of written sessions; null: not announced
-- reply: one row (id) per session found, terminated now or before
WITH cur AS (
  -- Locks in id order, so overlapping batches never deadlock. FOR UPDATE re-checks the
  -- status on the newest row, so a session terminated meanwhile is left alone.
  SELECT id, status FROM sessions
  WHERE tenant_id = $1 AND id IN (SELECT (jsonb_array_elements_text($2::jsonb))::uuid) AND status <> 'terminated'
  ORDER BY id FOR UPDATE
), upd AS (
  UPDATE sessions s SET
    version = s.version + 1, updated_at = now(), status = 'terminated', ended_at = now(), end_reason = $3
  FROM cur WHERE s.id = cur.id
  RETURNING s.*, cur.status AS prev_status
), fx AS (
  SELECT
    count(agent_sessions_emit(u.tenant_id, u.id, jsonb_build_array(
      jsonb_build_object('type', 'session.status_changed', 'payload',
        jsonb_build_object('from', u.prev_status, 'to', u.status, 'version', u.version)),
      jsonb_build_object('type', 'session.terminated', 'payload',
        jsonb_build_object('reason', u.end_reason, 'version', u.version))))) AS events,
    count(pg_catalog.pg_notify($4, u.id::text || ' ' || u.version::text)) FILTER (WHERE $4::text IS NOT NULL) AS notified
  -- Events in id order, as the rows were locked.
  FROM (SELECT * FROM upd ORDER BY id) u
)
SELECT s.id FROM sessions s, fx
WHERE s.tenant_id = $1 AND s.id IN (SELECT (jsonb_array_elements_text($2::jsonb))::uuid)
