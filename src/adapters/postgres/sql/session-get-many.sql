-- session-get-many: the sessions of a tenant among the ids given (missing ones left out, in no order).
-- $1 tenant text
-- $2 ids jsonb: array of session ids
-- reply: the rows found
-- The ids are read with agent_sessions_each (migration 065): one primary-key probe each, whatever the table holds.
SELECT * FROM sessions WHERE tenant_id = $1 AND id IN (SELECT e #>> '{}' FROM agent_sessions_each($2::jsonb) AS e)
