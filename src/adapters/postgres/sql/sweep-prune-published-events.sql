-- sweep-prune-published-events: deletes events published longer ago than the retention period.
-- $1 hours integer: the retention period
-- $2 limit integer: most events per call
-- reply: one row, n: how many were deleted
WITH due AS (
  SELECT id FROM outbox WHERE published_at IS NOT NULL AND published_at < now() - $1::int * interval '1 hour'
  ORDER BY published_at LIMIT $2 FOR UPDATE SKIP LOCKED
), del AS (DELETE FROM outbox o USING due WHERE o.id = due.id RETURNING 1)
SELECT count(*)::int AS n FROM del
