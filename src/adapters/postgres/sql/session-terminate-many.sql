-- session-terminate-many: terminates the sessions of a tenant among the ids given that are not terminated yet, with their events.
-- $1 tenant text
-- $2 ids jsonb: array of session ids
-- $3 reason text: the end_reason
-- reply: one row (id) per session found, terminated now or before
-- The ids are read with agent_sessions_each (migration 065): one primary-key probe each, whatever the table holds.
WITH cur AS (
  -- Locks in id order, so overlapping batches never deadlock. FOR UPDATE re-checks the
  -- status on the newest row, so a session terminated meanwhile is left alone.
  SELECT id, status FROM sessions
  WHERE tenant_id = $1 AND id IN (SELECT e #>> '{}' FROM agent_sessions_each($2::jsonb) AS e) AND status <> 'terminated'
  ORDER BY id FOR UPDATE
), upd AS (
  UPDATE sessions s SET
    version = s.version + 1, revision = s.revision + 1, updated_at = now(), status = 'terminated', ended_at = now(), end_reason = $3
  FROM cur WHERE s.tenant_id = $1 AND s.id = cur.id
  RETURNING s.*, cur.status AS prev_status
), events AS (
  SELECT u.tenant_id, u.id AS session_id, e.ord, e.type, e.payload
  FROM upd u CROSS JOIN LATERAL (VALUES
    (1, 'session.status_changed', jsonb_build_object('from', u.prev_status, 'to', u.status, 'version', u.version)),
    (2, 'session.terminated', jsonb_build_object('reason', u.end_reason, 'version', u.version))
  ) AS e(ord, type, payload)
), emitted AS (
  INSERT INTO outbox (tenant_id, type, session_id, payload)
  SELECT e.tenant_id, e.type, e.session_id, e.payload FROM events e WHERE e.payload IS NOT NULL ORDER BY e.session_id, e.ord
)
SELECT s.id FROM sessions s
WHERE s.tenant_id = $1 AND s.id IN (SELECT e #>> '{}' FROM agent_sessions_each($2::jsonb) AS e)
