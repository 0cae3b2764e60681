-- session-purge-many: deletes the sessions of a tenant among the ids given (items and runs by FK cascade, output by trigger: migration 063), with session.deleted.
-- $1 tenant text
-- $2 ids jsonb: array of session ids
-- reply: one row (id) per session deleted
-- The ids are read with agent_sessions_each (migration 065): one primary-key probe each, whatever the table holds.
WITH cur AS (
  -- Locks in id order, so overlapping batches never deadlock.
  SELECT id FROM sessions
  WHERE tenant_id = $1 AND id IN (SELECT e #>> '{}' FROM agent_sessions_each($2::jsonb) AS e)
  ORDER BY id FOR UPDATE
), del AS (
  DELETE FROM sessions s USING cur WHERE s.tenant_id = $1 AND s.id = cur.id RETURNING s.*
), events AS (
  SELECT d.tenant_id, d.id AS session_id, 1 AS ord, 'session.deleted' AS type, jsonb_build_object('version', d.version) AS payload
  FROM del d
), emitted AS (
  INSERT INTO outbox (tenant_id, type, session_id, payload)
  SELECT e.tenant_id, e.type, e.session_id, e.payload FROM events e WHERE e.payload IS NOT NULL ORDER BY e.session_id, e.ord
)
SELECT del.id FROM del
