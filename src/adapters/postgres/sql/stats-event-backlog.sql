-- stats-event-backlog: a tenant's unpublished events: how many, and the age of the oldest.
-- $1 tenant text
-- reply: one row, n and age (seconds, null when none)
SELECT count(*)::int AS n, extract(epoch FROM now() - min(created_at))::float8 AS age
FROM outbox WHERE tenant_id = $1 AND published_at IS NULL
