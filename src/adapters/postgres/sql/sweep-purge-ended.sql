-- sweep-purge-ended: claims sessions that ended longer ago than the retention period and deletes them (items, runs, output by FK cascade), with session.deleted.
-- $1 days integer: the retention period
-- $2 limit integer: most sessions per call
-- $3 notifyChannel text: where near caches hear "<id> <version>" of deleted sessions; null: not announced
-- $4 deletedVersion bigint: the version announced for a deleted session (the caches' tombstone)
-- reply: one row (id, tenant_id) per session deleted
WITH due AS (
  SELECT s.id FROM sessions s
  WHERE s.status IN ('terminated', 'failed', 'expired')
    AND s.ended_at < now() - $1::int * interval '1 day'
  ORDER BY s.ended_at
  LIMIT $2
  FOR UPDATE OF s SKIP LOCKED
), del AS (
  DELETE FROM sessions s USING due WHERE s.id = due.id RETURNING s.id, s.tenant_id, s.version
), fx AS (
  SELECT
    count(agent_sessions_emit(d.tenant_id, d.id, jsonb_build_array(
      jsonb_build_object('type', 'session.deleted', 'payload', jsonb_build_object('reason', 'retention', 'version', d.version))))) AS events,
    count(pg_catalog.pg_notify($3, d.id::text || ' ' || $4::bigint::text)) FILTER (WHERE $3::text IS NOT NULL) AS notified
  -- Events in id order.
  FROM (SELECT * FROM del ORDER BY id) d
)
SELECT del.id, del.tenant_id FROM del, fx
