-- session-get: one session of a tenant.
-- $1 id uuid
-- $2 tenant text
-- reply: zero or one row
SELECT * FROM sessions WHERE id = $1::uuid AND tenant_id = $2
