-- stats-event-lag: the relay's lag over every tenant (metrics); both partial indexes on unpublished rows serve it.
-- reply: one row, n (unpublished events) and age (seconds since the oldest was written, null when none)
SELECT count(*)::int AS n, extract(epoch FROM now() - min(created_at))::float8 AS age
FROM outbox WHERE published_at IS NULL
