-- outbox-mark: marks events as published (acknowledged by the broker); a row already marked keeps its time.
-- $1 ids jsonb: array of event ids
-- reply: none
-- The ids are read with agent_sessions_each (migration 065): one primary-key probe each, whatever the table holds.
UPDATE outbox SET published_at = now()
WHERE id IN (SELECT (e #>> '{}')::bigint FROM agent_sessions_each($1::jsonb) AS e) AND published_at IS NULL
