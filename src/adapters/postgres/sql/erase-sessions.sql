-- erase-sessions: deletes up to `limit` sessions of a tenant (of one user, or all of them) with their items, runs, run inputs (FK cascade) and output (trigger, migration 063); refuses the whole batch while one of them has a run queued or running. Emits no event: erasure must not leave the data it removes in the outbox (docs/operations.md, "Erasure").
-- $1 tenant text
-- $2 userId text: only this user's sessions; null: every session of the tenant
-- $3 limit integer: most sessions deleted by this call (one batch, one transaction)
-- reply: one row: ids (jsonb array of the sessions deleted), items, runs, output_events (counts deleted), busy (sessions of the batch with a run queued or running; nothing deleted when > 0)
WITH cur AS (
  -- Locks in id order, so overlapping batches never deadlock. A run admission locks the
  -- session row too, so no run can start on a locked session before this commits.
  SELECT id, running_run_id, queued_runs FROM sessions
  WHERE tenant_id = $1 AND ($2::text IS NULL OR user_id = $2::text)
  ORDER BY id LIMIT $3::int FOR UPDATE
), busy AS (
  SELECT count(*) AS n FROM cur WHERE cur.running_run_id IS NOT NULL OR cur.queued_runs > 0
), del AS (
  DELETE FROM sessions s USING cur, busy WHERE s.tenant_id = $1 AND s.id = cur.id AND busy.n = 0 RETURNING s.tenant_id, s.id
)
SELECT
  COALESCE((SELECT jsonb_agg(d.id ORDER BY d.id) FROM del d), '[]'::jsonb) AS ids,
  (SELECT count(*) FROM session_items i WHERE i.tenant_id = $1 AND i.session_id IN (SELECT d.id FROM del d)) AS items,
  (SELECT count(*) FROM runs r WHERE r.tenant_id = $1 AND r.session_id IN (SELECT d.id FROM del d)) AS runs,
  (SELECT count(*) FROM run_output o WHERE o.tenant_id = $1 AND o.session_id IN (SELECT d.id FROM del d)) AS output_events,
  busy.n AS busy
FROM busy
