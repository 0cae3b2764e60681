-- run-get: one run of a session of a tenant.
-- $1 id uuid
-- $2 session text
-- $3 tenant text
-- reply: zero or one row
SELECT * FROM runs WHERE id = $1 AND tenant_id = $3 AND session_id = $2
