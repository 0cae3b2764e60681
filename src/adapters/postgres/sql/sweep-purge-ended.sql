-- sweep-purge-ended: claims sessions that ended longer ago than the retention period and deletes them (items, runs by FK cascade, output by trigger: migration 063), with session.deleted.
-- $1 days integer: the retention period
-- $2 limit integer: most sessions per call
-- reply: one row (id, tenant_id) per session deleted
WITH due AS (
  SELECT s.tenant_id, s.id FROM sessions s
  WHERE s.status IN ('terminated', 'failed', 'expired')
    AND s.ended_at < now() - $1::int * interval '1 day'
  ORDER BY s.ended_at
  LIMIT $2
  FOR UPDATE OF s SKIP LOCKED
), del AS (
  DELETE FROM sessions s USING due WHERE s.tenant_id = due.tenant_id AND s.id = due.id RETURNING s.id, s.tenant_id, s.version
), events AS (
  SELECT d.tenant_id, d.id AS session_id, 1 AS ord, 'session.deleted' AS type,
    jsonb_build_object('reason', 'retention', 'version', d.version) AS payload
  FROM del d
), emitted AS (
  INSERT INTO outbox (tenant_id, type, session_id, payload)
  SELECT e.tenant_id, e.type, e.session_id, e.payload FROM events e WHERE e.payload IS NOT NULL ORDER BY e.session_id, e.ord
)
SELECT del.id, del.tenant_id FROM del
