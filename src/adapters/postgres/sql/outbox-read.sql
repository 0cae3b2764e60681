-- outbox-read: one tenant's events after a cursor and up to a bound, in id order (the event feed).
-- $1 tenant text
-- $2 after bigint: exclusive lower bound (the last id delivered)
-- $3 upTo bigint: inclusive upper bound (the horizon)
-- $4 types jsonb: array of event types, null for every type
-- $5 session text, null for every session
-- $6 limit int
-- reply: the rows (id, type, tenant_id, session_id, payload, created_at)
SELECT o.id, o.type, o.tenant_id, o.session_id, o.payload, o.created_at
FROM outbox o
WHERE o.tenant_id = $1
  AND o.id > $2::bigint
  AND o.id <= $3::bigint
  AND ($4::jsonb IS NULL OR o.type IN (SELECT jsonb_array_elements_text($4::jsonb)))
  AND ($5::text IS NULL OR o.session_id = $5::text)
ORDER BY o.id
LIMIT $6
