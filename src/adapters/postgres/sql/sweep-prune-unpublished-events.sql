-- sweep-prune-unpublished-events: deletes never-published events written longer ago than the retention period (instances without a broker).
-- $1 hours integer: the retention period
-- $2 limit integer: most events per call
-- reply: one row, n: how many were deleted
WITH due AS (
  SELECT id FROM outbox WHERE published_at IS NULL AND created_at < now() - $1::int * interval '1 hour'
  ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED
), del AS (DELETE FROM outbox o USING due WHERE o.id = due.id RETURNING 1)
SELECT count(*)::int AS n FROM del
