-- sweep-prune-published-events: deletes events published longer ago than the retention period. Raises each tenant's pruned_events horizon.
-- $1 hours integer: the retention period
-- $2 limit integer: most events per call
-- reply: one row, n: how many were deleted
WITH due AS (
  SELECT id FROM outbox WHERE published_at IS NOT NULL AND published_at < now() - $1::int * interval '1 hour'
  ORDER BY published_at LIMIT $2 FOR UPDATE SKIP LOCKED
), del AS (DELETE FROM outbox o USING due WHERE o.id = due.id RETURNING o.tenant_id, o.id
), horizon AS (
  -- Each tenant's highest pruned id, in the same commit: a feed reader whose cursor is below it
  -- gets a `gap` event (events.ts). Rows are pruned in time order, so ids below it are gone too
  -- but for the rare one published late; the gap covers those as well.
  INSERT INTO pruned_events (tenant_id, through)
  SELECT d.tenant_id, max(d.id) FROM del d GROUP BY d.tenant_id
  ON CONFLICT (tenant_id) DO UPDATE SET through = GREATEST(pruned_events.through, EXCLUDED.through), pruned_at = now()
)
SELECT count(*)::int AS n FROM del
