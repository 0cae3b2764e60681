-- session-get-many: the sessions of a tenant among the ids given (missing ones left out, in no order).
-- $1 tenant text
-- $2 ids jsonb: array of session ids
-- reply: the rows found
SELECT * FROM sessions WHERE tenant_id = $1 AND id IN (SELECT jsonb_array_elements_text($2::jsonb))
