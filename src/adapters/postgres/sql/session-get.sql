-- session-get: one session of a tenant.
-- $1 id text
-- $2 tenant text
-- reply: zero or one row
SELECT * FROM sessions WHERE tenant_id = $2 AND id = $1
